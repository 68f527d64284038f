"""Two runs on one study directory: the second is refused with a clear message, never corrupts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from umt.cli import main
from umt.study.preflight import lock_study

HOLDER = """
import sys, time
from pathlib import Path
from umt.study.preflight import lock_study
with lock_study(Path(sys.argv[1])):
    print("locked", flush=True)
    time.sleep(120)
"""


def test_second_run_on_a_locked_study_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "default"
    run_dir.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(run_dir)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        args = ["run", "--out", str(tmp_path), "--set", "data.name=synthetic", "--set", "seeds=[0]"]
        assert main([*args, "--set", "train.progress=false", "--set", "methods=[]"]) == 2
        err = capsys.readouterr().err
        assert f"another umt run (pid {holder.pid})" in err and str(run_dir) in err, err
        assert not (run_dir / "seed0").exists()  # nothing written beside the first run
    finally:
        holder.kill()  # a killed holder leaves no stale lock: the kernel drops it
        holder.wait()
    with lock_study(run_dir):
        pass
