"""A stage's cache key holds the data's content (data folders) or its settings (embedded data)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from umt.data import load_data
from umt.data.fingerprint import data_key
from umt.data.folder import export_folder
from umt.study import load_config, run_study

# Computed with the code before content fingerprints (config_hash(cfg.data)): the embedded and
# generated data sets' keys must not change, or every cached study would retrain.
KEYS_BEFORE = [
    ([], "57790ae6cabe"),
    (["data.name=synthetic"], "134426a33151"),
    (["data.name=rgbd"], "9c642b1949eb"),
    (
        ["data.name=synthetic", "data.synthetic.preset=paired", "data.synthetic.n_train=300"],
        "53a2451f0677",
    ),
]


@pytest.mark.parametrize(("overrides", "key"), KEYS_BEFORE)
def test_embedded_data_keys_are_unchanged(overrides: list[str], key: str) -> None:
    assert data_key(load_config(overrides=overrides).data) == key


SMALL = [
    "data.name=synthetic",
    "data.synthetic.n_train=120",
    "data.synthetic.n_val=40",
    "data.synthetic.n_test=40",
]
STUDY = [
    "seeds=[0]",
    "methods=[]",  # the teachers alone: enough to see what retrains
    "train.epochs=1",
    "train.progress=false",
    "train.threads=1",
    "model.encoder.hidden=16",
    "model.encoder.feature_dim=8",
    "model.head_hidden=8",
    "probe.max_iter=5",
]


def _study(root: Path, out: Path) -> list[str]:
    cfg = load_config(overrides=[*STUDY, "data.name=folder", f"data.root={root}"])
    return run_study(cfg, out, log=lambda _: None, report=False).trained


def test_changed_data_file_retrains_unchanged_or_moved_folder_does_not(tmp_path: Path) -> None:
    root = tmp_path / "data"
    export_folder(load_data(load_config(overrides=SMALL).data), root)
    out = tmp_path / "runs"
    assert _study(root, out) == ["seed0/teacher-strong", "seed0/teacher-weak"]
    assert _study(root, out) == []  # unchanged: nothing trains

    moved = tmp_path / "moved"
    shutil.move(root, moved)
    assert _study(moved, out) == []  # the content is the key, not the path

    path = moved / "train" / "weak.npy"
    weak = np.load(path)
    weak[0] += 1.0  # one sample changed in place: same size, same shape
    np.save(path, weak)
    assert _study(moved, out) == ["seed0/teacher-strong", "seed0/teacher-weak"]
    assert _study(moved, out) == []
    assert (out / "default" / ".data-fingerprints.json").is_file()
