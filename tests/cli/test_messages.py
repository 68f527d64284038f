"""The command's small reliability items: recipes by name, errors and warnings a user reads."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

import umt
import umt.search
from umt.cli import main
from umt.config import to_dict
from umt.data import load_data
from umt.data.folder import export_folder
from umt.study import load_config


def test_config_accepts_a_recipe_name(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "--config", "vggsound"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    recipe = Path(umt.__file__).parent / "configs" / "vggsound.yaml"
    assert shown == to_dict(load_config(recipe))


def test_unknown_recipe_lists_the_recipes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "--config", "vggsund"]) == 2
    err = capsys.readouterr().err
    assert "'vggsund'" in err and "vggsound" in err and "nyuv2" in err


def test_yaml_error_names_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "study.yaml"
    bad.write_text("train:\n  epochs: [1, 2\n")
    assert main(["config", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "<unicode string>" not in err and err.count(str(bad)) >= 2, err  # the summary and mark


def test_sigterm_exits_143(monkeypatch: pytest.MonkeyPatch) -> None:
    def killed(*args: object, **kwargs: object) -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("SIGTERM did not stop the run")

    monkeypatch.setattr(umt.search, "run_study", killed)
    handler = signal.getsignal(signal.SIGTERM)
    try:
        assert main(["run", "--set", "seeds=[0]"]) == 143
    finally:
        signal.signal(signal.SIGTERM, handler)


def test_data_folder_warnings_are_one_line_without_python_source(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    small = ["data.name=synthetic", "data.synthetic.n_train=60", "data.synthetic.n_val=20"]
    export_folder(load_data(load_config(overrides=[*small, "data.synthetic.n_test=20"]).data), data)
    np.save(data / "train" / "extra.npy", np.zeros(3))  # not declared in meta.json: a warning
    args = ["run", "--out", str(tmp_path), "--set", "data.name=folder"]
    args += ["--set", f"data.root={data}", "--set", "umt.weights={bogus: 1}"]  # stops there
    assert main(args) == 2
    err = capsys.readouterr().err
    warning = [line for line in err.splitlines() if "extra.npy" in line]
    assert len(warning) == 1 and warning[0].startswith("umt: warning: "), err
    assert "UserWarning" not in err and "warnings.warn" not in err


def test_no_progress_bars_in_a_redirected_log(tmp_path: Path) -> None:
    """``train.progress`` (on by default) draws bars on a terminal only: ``umt run > log``
    gets the study's lines, not thousands of carriage-returned bar updates."""
    args = [sys.executable, "-m", "umt.cli", "run", "--out", str(tmp_path)]
    for o in ["seeds=[0]", "data.name=synthetic", "methods=[joint]", "train.epochs=2"]:
        args += ["--set", o]
    args += ["--set", "data.synthetic.n_train=200", "--set", "train.threads=1"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "joint: training" in done.stdout
    assert "it/s" not in done.stdout + done.stderr and "\r" not in done.stdout
