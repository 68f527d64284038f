"""Bad values a user can give (issue 28, case 7) and what a run directory may hold (case 6): one
clear error naming the key, file or value before anything trains, never a traceback, a silent
drop, or a file outside ``--out`` overwritten."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from helpers.runs import TINY

from umt.cli import main
from umt.data.folder import check_folder
from umt.data.folder.template import write_template
from umt.errors import UMTError
from umt.study import load_config


def _run(tmp_path: Path, *overrides: str, config: Path | None = None) -> int:
    args = ["run", "--out", str(tmp_path / "runs")]
    if config is not None:
        args += ["--config", str(config)]
    for o in [*TINY, "methods=[]", "train.epochs=1", *overrides]:
        args += ["--set", o]
    return main(args)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("seeds=[-1]", r"seeds: \[-1\] out of range; a seed is an integer in 0..4294967295"),
        ("seeds=[4294967296]", r"seeds: \[4294967296\] out of range"),
        ("choice.margin=nan", r"choice.margin: expected a finite number, got nan"),
        ("train.lr=.inf", r"train.lr: expected a finite number, got inf"),
        ("model.encoder.feature_dim=0", r"model.encoder.feature_dim .*expected an integer >= 1"),
        ("model.encoder.hidden=0", r"model.encoder.hidden .*expected an integer >= 1, got 0"),
        ("model.encoder.dropout=1", r"model.encoder.dropout: expected in \[0, 1\), got 1.0"),
        ("model.head_hidden=-1", r"model.head_hidden: expected an integer >= 0, got -1"),
        ("model.fusion_dim=0", r"model.fusion_dim: expected an integer >= 1, got 0"),
    ],
)
def test_a_bad_setting_is_refused_when_read(override: str, message: str) -> None:
    with pytest.raises(UMTError, match=message):
        load_config(overrides=[override])


def test_a_bad_seed_creates_no_stage_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(tmp_path, "seeds=[-1]") == 2
    assert capsys.readouterr().err.startswith("umt: error: seeds: [-1] out of range")
    assert not (tmp_path / "runs").exists()


def test_more_devices_than_the_machine_has_is_one_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    n = (os.cpu_count() or 1) + 6
    assert _run(tmp_path, f"train.devices={n}", "train.accelerator=cpu") == 2
    err = capsys.readouterr().err
    assert err.startswith(f"umt: error: train.devices={n}: training runs on the CPU here")
    assert f"at most {os.cpu_count()}" in err and len(err.strip().splitlines()) == 1


def test_a_key_given_twice_in_a_yaml_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "study.yaml"
    path.write_text("train:\n  lr: 0.1\nseeds: [0]\ntrain:\n  epochs: 3\n")
    with pytest.raises(UMTError, match=r"found key 'train' a second time \(first on line 1\)"):
        load_config(path)
    path.write_text("base: &b {lr: 0.1}\ntrain:\n  <<: *b\n  epochs: 3\n")  # a merge key is fine
    with pytest.raises(UMTError, match="unknown key 'base'"):
        load_config(path)


def _folder(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    write_template(root)
    return root


def test_a_class_count_larger_than_the_training_split_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _folder(tmp_path)
    meta = json.loads((root / "meta.json").read_text())
    meta["num_classes"] = 1_000_000_000
    meta.pop("class_names", None)
    (root / "meta.json").write_text(json.dumps(meta))
    problems = [p for p in check_folder(root) if p.severity == "error"]
    assert [p.file for p in problems] == ["meta.json"]
    assert (
        "num_classes is 1000000000 in meta.json, more than the 24 training" in problems[0].message
    )
    assert _run(tmp_path, "data.name=folder", f"data.root={root}") == 2
    assert "num_classes is 1000000000" in capsys.readouterr().err


def test_a_training_split_of_one_class_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _folder(tmp_path)
    labels = np.load(root / "train" / "labels.npy")
    np.save(root / "train" / "labels.npy", np.full_like(labels, 2))
    problems = [p for p in check_folder(root) if p.severity == "error"]
    assert [p.file for p in problems] == ["train/labels.npy"]
    assert "every training label is 2" in problems[0].message
    assert _run(tmp_path, "data.name=folder", f"data.root={root}") == 2
    assert "every training label is 2" in capsys.readouterr().err


@pytest.mark.parametrize("link", ["symbolic", "hard"])
def test_a_linked_lock_file_is_refused_and_its_target_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], link: str
) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    run_dir = tmp_path / "runs" / "default"
    run_dir.mkdir(parents=True)
    (os.symlink if link == "symbolic" else os.link)(victim, run_dir / ".lock")
    assert _run(tmp_path) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"umt: error: '{run_dir / '.lock'}' is ") and "remove it" in err
    assert victim.read_text() == "precious\n"
    assert not (run_dir / "seed0").exists()
