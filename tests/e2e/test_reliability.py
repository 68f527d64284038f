"""Crash and resume, divergence, and bad input: nothing finished is lost, errors say what to do."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from helpers.runs import TINY

from umt.data import ArrayDataset, DataBundle
from umt.errors import UMTError
from umt.models import ModelConfig, build_model
from umt.study import load_config, run_study

# Small enough to run in seconds, long enough (4 epochs of 10 steps) to be killed mid-stage.
RESUME = [*TINY, "train.epochs=4", "data.synthetic.n_train=600"]


def _numbers(summary: dict[str, Any]) -> dict[str, Any]:
    """The summary without timings (which differ between any two runs)."""
    methods = {
        name: {k: v for k, v in entry.items() if k != "train_seconds"}
        for name, entry in summary["methods"].items()
    }
    per_seed = {
        seed: {
            stage: {k: v for k, v in r.items() if k not in ("train_seconds",)}
            for stage, r in run["stages"].items()
        }
        for seed, run in summary["per_seed"].items()
    }
    return {
        "methods": methods,
        "probes": summary["probes"],
        "choice": summary["choice"],
        "per_seed": per_seed,
    }


def _umt_run(
    out: Path, fault: str | None = None, sig: str = "KILL"
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "UMT_FAULT_SIGNAL": sig}
    env.pop("UMT_FAULT", None)
    if fault:
        env["UMT_FAULT"] = fault
    args = [sys.executable, "-m", "umt.cli", "run", "--out", str(out)]
    for o in RESUME:
        args += ["--set", o]
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def uninterrupted_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("whole")
    done = _umt_run(out)
    assert done.returncode == 0, done.stderr
    return out / "default"


@pytest.fixture(scope="module")
def uninterrupted(uninterrupted_dir: Path) -> dict[str, Any]:
    return dict(json.loads((uninterrupted_dir / "summary.json").read_text()))


@pytest.mark.parametrize(
    ("fault", "sig", "reused"),
    [
        ("step:joint:25", "KILL", 2),  # mid-epoch 3 of joint: both teachers reused
        ("checkpoint:umt:1", "KILL", 3),  # while umt's epoch-1 checkpoint is written
        ("done:seed0/teacher-weak", "KILL", 2),  # between stages, right after one finished
        ("step:umt:15", "TERM", 3),  # a polite kill mid-epoch
    ],
)
def test_killed_run_resumes_to_the_uninterrupted_result(
    tmp_path: Path, uninterrupted: dict[str, Any], fault: str, sig: str, reused: int
) -> None:
    killed = _umt_run(tmp_path, fault, sig)
    assert killed.returncode != 0
    assert not (tmp_path / "default" / "summary.json").exists()

    resumed = _umt_run(tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{4 - reused} stage(s) trained" in resumed.stdout
    summary = json.loads((tmp_path / "default" / "summary.json").read_text())
    assert _numbers(summary) == _numbers(uninterrupted)  # bit-identical on CPU


def test_divergence_fails_the_stage_and_the_rest_still_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UMT_FAULT", "nan:joint:25")  # epoch 2, after two good checkpoints
    result = run_study(load_config(overrides=RESUME), tmp_path, log=lambda _: None)
    summary = result.summary
    assert set(summary["failed"]) == {"seed0/joint"}
    message = summary["failed"]["seed0/joint"]
    assert "'joint'" in message and "epoch 2" in message and "step 25" in message
    assert "joint" not in summary["methods"]
    assert {"umt", "ume", "teacher-weak"} <= set(summary["methods"])
    assert summary["choice"] is None  # the rule compares with joint, which failed
    stage = tmp_path / "default" / "seed0" / "joint"
    assert (stage / "failed.json").is_file() and not (stage / "result.json").exists()
    state = torch.load(stage / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert state["epoch"] == 1  # the last good checkpoint: saved at the end of epoch 1
    assert "Failed stages" in (tmp_path / "default" / "report.md").read_text()

    monkeypatch.delenv("UMT_FAULT")  # the next run retries the failed stage only
    again = run_study(load_config(overrides=RESUME), tmp_path, log=lambda _: None)
    # The failed stage, and UMT: with umt.select=better it distils only the modalities whose
    # teachers beat joint's encoders, so joint's result is one of its inputs.
    assert again.trained == ["seed0/joint", "seed0/umt"]
    assert again.summary["failed"] == {}


def test_corrupt_model_file_is_retrained_not_trusted(tmp_path: Path) -> None:
    cfg = load_config(overrides=RESUME)
    first = run_study(cfg, tmp_path, log=lambda _: None, report=False)
    model_file = tmp_path / "default" / "seed0" / "joint" / "model.pt"
    model_file.write_bytes(model_file.read_bytes()[:100])  # cut off
    again = run_study(cfg, tmp_path, log=lambda _: None, report=False)
    assert again.trained == ["seed0/joint"]
    assert _numbers(again.summary) == _numbers(first.summary)


def test_cut_off_last_checkpoint_restarts_the_stage(tmp_path: Path) -> None:
    killed = _umt_run(tmp_path, "step:joint:25")
    assert killed.returncode != 0
    last = tmp_path / "default" / "seed0" / "joint" / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:50])
    resumed = _umt_run(tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "2 stage(s) trained" in resumed.stdout


def _bundle(labels: np.ndarray, n_classes: int = 3) -> DataBundle:
    ds = ArrayDataset({"a": np.zeros((len(labels), 2))}, labels)
    return DataBundle("toy", ds, ds, ds, num_classes=n_classes)


def test_labels_out_of_range_are_refused_with_the_index() -> None:
    with pytest.raises(UMTError, match=r"label 7 at index 2; labels must be in 0..2"):
        _bundle(np.array([0, 1, 7, 2]))


def test_empty_split_is_refused() -> None:
    empty = ArrayDataset({"a": np.zeros((0, 2))}, np.zeros(0, dtype=int))
    full = ArrayDataset({"a": np.zeros((3, 2))}, np.zeros(3, dtype=int))
    with pytest.raises(UMTError, match="split 'val' is empty"):
        DataBundle("toy", full, empty, full, num_classes=2)


def test_a_modality_missing_from_the_batch_is_named() -> None:
    model = build_model(ModelConfig(), {"audio": (4,), "visual": (4,)}, 3)
    with pytest.raises(UMTError, match=r"no modality \['visual'\].*expects \['audio', 'visual'\]"):
        model({"audio": torch.zeros(2, 4), "label": torch.zeros(2)})


def test_missing_data_root_is_named(tmp_path: Path) -> None:
    cfg = load_config(overrides=["data.name=folder", f"data.root={tmp_path / 'nowhere'}"])
    with pytest.raises(UMTError, match="nowhere"):
        run_study(cfg, tmp_path, log=lambda _: None)


def test_cli_shows_errors_without_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    from umt.cli import main

    assert main(["run", "--set", "data.name=folder", "--set", "data.root=/no/such/dir"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("umt: error:") and "Traceback" not in err


def test_finished_stage_with_cut_off_checkpoints_retrains_instead_of_dying(tmp_path: Path) -> None:
    """The crash loop of issue 16: ``best.ckpt`` cut off and ``model.pt`` damaged."""
    cfg = load_config(overrides=RESUME)
    first = run_study(cfg, tmp_path, log=lambda _: None, report=False)
    stage = tmp_path / "default" / "seed0" / "joint"
    best = stage / "checkpoints" / "best.ckpt"
    best.write_bytes(best.read_bytes()[:100])
    (stage / "model.pt").write_bytes(b"damaged")
    again = run_study(cfg, tmp_path, log=lambda _: None, report=False)
    assert again.trained == ["seed0/joint"]
    assert _numbers(again.summary) == _numbers(first.summary)
    third = run_study(cfg, tmp_path, log=lambda _: None, report=False)
    assert third.trained == []


def test_full_disk_leaves_no_partial_checkpoint_and_the_rerun_recovers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from umt.cli import main

    args = ["run", "--out", str(tmp_path)]
    for o in RESUME:
        args += ["--set", o]
    monkeypatch.setenv("UMT_FAULT", "diskfull:best.ckpt")  # every best.ckpt write fails half-way
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("umt: error: cannot write") and "No space left on device" in err, err
    assert "best.ckpt" in err and "Traceback" not in err
    run = tmp_path / "default"
    assert list(run.rglob("best.ckpt")) == [] and list(run.rglob("*.tmp")) == []

    monkeypatch.delenv("UMT_FAULT")
    resumed = run_study(load_config(overrides=RESUME), tmp_path, log=lambda _: None, report=False)
    assert len(resumed.trained) == 4
    for ckpt in run.rglob("*.ckpt"):
        torch.load(ckpt, map_location="cpu", weights_only=True)  # every checkpoint is whole


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_resumed_stage_keeps_its_history_messages_and_time(
    tmp_path: Path, uninterrupted_dir: Path
) -> None:
    killed = _umt_run(tmp_path, "step:joint:25")  # in epoch 3 of 4 (10 steps an epoch)
    assert killed.returncode != 0
    stage = tmp_path / "default" / "seed0" / "joint"
    last = torch.load(stage / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["epoch"] == 1  # epochs 1 and 2 (0-based 0, 1) finished
    before = float(last["umt_train_seconds"])
    assert before > 0

    resumed = _umt_run(tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming stage joint from epoch 3 of 4 (2 finished before" in resumed.stdout
    # metrics.csv: every epoch, the ones before the kill included, as in the uninterrupted run.
    rows = _csv_rows(stage / "metrics.csv")
    whole = _csv_rows(uninterrupted_dir / "seed0" / "joint" / "metrics.csv")
    assert sorted({r["epoch"] for r in rows}) == ["0", "1", "2", "3"]
    assert rows == whole
    result = json.loads((stage / "result.json").read_text())
    assert result["train_seconds"] > before  # the time before the kill is counted


def test_moved_run_directory_retrains_a_stage_with_finite_numbers(tmp_path: Path) -> None:
    cfg = load_config(overrides=[*RESUME, "methods=[]"])
    first = run_study(cfg, tmp_path / "a", log=lambda _: None, report=False)
    (tmp_path / "a").rename(tmp_path / "b")  # the checkpoints still name folder a
    stage = tmp_path / "b" / "default" / "seed0" / "teacher-weak"
    (stage / "result.json").unlink()  # retrain it (from its finished checkpoints)
    again = run_study(cfg, tmp_path / "b", log=lambda _: None, report=False)
    assert again.trained == ["seed0/teacher-weak"]
    text = (tmp_path / "b" / "default" / "summary.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    fit_val = again.summary["per_seed"]["0"]["stages"]["teacher-weak"]["fit_val_acc"]
    assert fit_val == first.summary["per_seed"]["0"]["stages"]["teacher-weak"]["fit_val_acc"]
    assert _numbers(again.summary) == _numbers(first.summary)
