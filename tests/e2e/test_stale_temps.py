"""Temporary files of the atomic writer left by ``kill -9`` (issue 16): the next run of the study,
holding its lock, removes those (the writer's own naming only, nowhere else) and says how many."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT

from umt.io import TEMP_NAME, remove_stale_temps
from umt.study import load_config, run_study
from umt.study.preflight import claim_run_dir

STALE = [".summary.json.0123abcd.tmp", "seed0/joint/.model.pt.deadbeef.tmp"]
# Look-alikes that are not the writer's: they must survive.
KEEP = [
    "summary.json.0123abcd.tmp",  # no leading dot
    ".summary.json.0123ABCD.tmp",  # token_hex is lower-case
    ".summary.json.0123abc.tmp",  # 7 hex digits
    ".summary.json.0123abcd.tmp.bak",
    "seed0/joint/notes.tmp",
    "seed0/joint/metrics.csv",
]


def _plant(run: Path) -> None:
    for name in STALE + KEEP:
        (run / name).parent.mkdir(parents=True, exist_ok=True)
        (run / name).write_text("x")
    (run / "seed0" / ".dir.0123abcd.tmp").mkdir()  # a folder with the name: not a file to delete


def test_the_pattern_is_the_writers() -> None:
    assert all(TEMP_NAME.fullmatch(Path(p).name) for p in STALE)
    assert not any(TEMP_NAME.fullmatch(Path(p).name) for p in KEEP)


def test_claiming_the_run_dir_removes_stale_temps_only(tmp_path: Path) -> None:
    run = tmp_path / "study"
    _plant(run)
    said: list[str] = []
    with claim_run_dir(run, log=said.append):
        for name in STALE:
            assert not (run / name).exists()
        for name in KEEP:
            assert (run / name).read_text() == "x", name
        assert (run / "seed0" / ".dir.0123abcd.tmp").is_dir()
    assert said == [f"removed 2 temporary file(s) left in {run} by an interrupted run"]
    with claim_run_dir(run, log=said.append):  # nothing left to remove: nothing said
        pass
    assert len(said) == 1


def test_a_file_killed_mid_write_is_removed_by_the_next_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A real writer killed with SIGKILL mid-write leaves its temporary file.
    run = tmp_path / "out" / "default"
    code = (
        "import sys, time\n"
        "from umt.io import write_with\n"
        f"write_with({str(run / 'summary.json')!r}, lambda f: (f.write(b'{{'), f.flush(), "
        "print('writing', flush=True), time.sleep(60)))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, env=env)
    assert proc.stdout is not None and proc.stdout.readline() == b"writing\n"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    left = [p for p in run.iterdir() if TEMP_NAME.fullmatch(p.name)]
    assert len(left) == 1 and not (run / "summary.json").exists()
    (run / "seed0").mkdir()
    (run / "seed0" / "summary.json.0123abcd.tmp").write_text("keep")  # a look-alike

    overrides = [
        "seeds=[0]",
        "methods=[ume]",
        "data.name=synthetic",
        "data.synthetic.n_train=40",
        "data.synthetic.n_val=20",
        "data.synthetic.n_test=20",
        "train.epochs=1",
        "train.threads=1",
        "train.progress=false",
        "probe.max_iter=5",
    ]
    lines: list[str] = []
    run_study(load_config(overrides=overrides), tmp_path / "out", log=lines.append)
    assert not left[0].exists()
    assert (run / "seed0" / "summary.json.0123abcd.tmp").read_text() == "keep"
    assert any("removed 1 temporary file(s)" in line for line in lines)  # in the study's log
    assert "temporary" not in capsys.readouterr().out  # not printed past a quiet log
    assert remove_stale_temps(run) == []  # the run itself left none
