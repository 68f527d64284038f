"""``umt data template DIR`` and ``umt data --help`` (issue 16): the help describes the folder
layout and meta.json itself (a pip user has no README); the template is a valid folder that
``umt data check`` accepts and a study trains on; a non-empty DIR is refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from umt.cli import main
from umt.data.folder import check_folder
from umt.study import load_config, run_study


def test_data_help_describes_the_layout_and_meta_json(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["data", "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert "README" not in text
    for needed in ('"format": "umt-folder"', '"version": 1', "num_classes", "labels.npy"):
        assert needed in text, needed
    assert "train/" in text and "val/" in text and "test/" in text
    assert "umt data template DIR" in text and "data.name=folder" in text


def test_template_is_a_valid_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "mine"
    assert main(["data", "template", str(folder)]) == 0
    assert "wrote a template" in capsys.readouterr().out
    assert check_folder(folder) == []  # no error, no warning
    assert main(["data", "check", str(folder)]) == 0
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["format"] == "umt-folder" and meta["num_classes"] == 3
    assert list(meta["modalities"]) == ["audio", "visual"]
    for split in ("train", "val", "test"):
        labels = np.load(folder / split / "labels.npy")
        assert 3 <= len(labels) <= 30 and set(labels.tolist()) == {0, 1, 2}
        for m, spec in meta["modalities"].items():
            arr = np.load(folder / split / f"{m}.npy")
            assert arr.shape == (len(labels), *spec["shape"]) and arr.dtype == spec["dtype"]


def test_template_refuses_a_non_empty_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    assert main(["data", "template", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "not empty" in err and str(tmp_path) in err and "notes.txt" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]  # nothing written
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["data", "template", str(empty)]) == 0  # an empty folder is used
    assert (empty / "meta.json").is_file()


def test_a_study_trains_on_the_template(tmp_path: Path) -> None:
    main(["data", "template", str(tmp_path / "data")])
    overrides = [
        "data.name=folder",
        f"data.root={tmp_path / 'data'}",
        "seeds=[0]",
        "train.epochs=1",
        "train.threads=1",
        "train.progress=false",
        "model.encoder.feature_dim=8",
        "model.encoder.channels=4",
        "model.head_hidden=8",
        "probe.max_iter=10",
    ]
    result = run_study(load_config(overrides=overrides), tmp_path / "runs", log=lambda _: None)
    assert result.summary["data"]["modalities"] == ["audio", "visual"]
    assert result.summary["data"]["sizes"] == {"train": 24, "val": 9, "test": 9}
    assert set(result.summary["methods"]) >= {"teacher-audio", "teacher-visual", "joint", "umt"}
    assert result.summary["failed"] == {}
