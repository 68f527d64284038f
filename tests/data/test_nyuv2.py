"""NYU Depth V2: the official files' layout (built tiny here), the split, the class mappings,
errors on malformed files, `umt prepare nyuv2` and the loader."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from helpers import ROOT
from scipy.io import savemat

from umt.cli import main
from umt.data import DataConfig, load_data
from umt.data.nyuv2 import NYUv2Config
from umt.data.prepare.nyuv2 import (
    prepare_nyuv2,
    read_labelled,
    read_mapping13,
    read_mapping40,
    read_splits,
)
from umt.data.segmentation import IGNORE_INDEX, SegAugmentConfig
from umt.errors import UMTError

N, H, W = 6, 24, 32


def _raw(seed: int = 0) -> dict[str, np.ndarray]:
    """Images (N, 3, H, W), depths (N, H, W), raw labels (N, H, W) in 0..894, as MATLAB holds
    them (before the column-major transposition)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (N, 3, H, W), dtype=np.uint8)
    depths = rng.uniform(0.5, 8.0, (N, H, W)).astype(np.float32)
    labels = rng.integers(0, 895, (N, H, W)).astype(np.uint16)
    labels[:, 0, 0] = 0  # an unlabelled pixel in every image
    return {"images": images, "depths": depths, "labels": labels}


def _mapping40() -> np.ndarray:
    return (np.arange(894) % 40 + 1).astype(np.float64)[None]  # (1, 894): raw c -> (c-1)%40+1


def _write_src(
    src: Path, raw: dict[str, np.ndarray], *, train=(1, 2, 3, 4), test=(5, 6), with13=True
) -> Path:
    src.mkdir(parents=True, exist_ok=True)
    with h5py.File(src / "nyu_depth_v2_labeled.mat", "w") as f:
        # h5py sees MATLAB's (H, W, 3, N) as (N, 3, W, H): store the transposed layout.
        f["images"] = raw["images"].transpose(0, 1, 3, 2)
        f["depths"] = raw["depths"].transpose(0, 2, 1)
        f["labels"] = raw["labels"].transpose(0, 2, 1)
        f["names"] = np.zeros(3)  # other variables of the real file are ignored
    savemat(
        src / "splits.mat",
        {"trainNdxs": np.array(train, float)[:, None], "testNdxs": np.array(test, float)[:, None]},
    )
    names = np.array([f"class{i}" for i in range(1, 41)], dtype=object)[None]
    savemat(src / "classMapping40.mat", {"mapClass": _mapping40(), "className": names})
    if with13:
        m13 = (np.arange(40) % 13 + 1).astype(np.float64)[None]
        names13 = np.array([f"c13_{i}" for i in range(1, 14)], dtype=object)[None]
        savemat(
            src / "class13Mapping.mat",
            {"classMapping13": {"classMapping": m13, "labelName": names13}},
        )
    return src


def _expected40(raw_labels: np.ndarray) -> np.ndarray:
    """Batch labels: unlabelled -> IGNORE_INDEX, else (c - 1) % 40."""
    return np.where(raw_labels == 0, IGNORE_INDEX, (raw_labels.astype(np.int64) - 1) % 40)


def test_reader_transposes_matlab_layout_and_maps_classes(tmp_path: Path) -> None:
    raw = _raw()
    src = _write_src(tmp_path / "src", raw)
    data = read_labelled(src / "nyu_depth_v2_labeled.mat")
    assert data["images"].shape == (N, 3, W, H)  # as MATLAB stores it
    assert np.array_equal(np.asarray(data["images"][2]).transpose(0, 2, 1), raw["images"][2])
    lookup, names = read_mapping40(src / "classMapping40.mat")
    assert lookup.shape == (895,) and lookup[0] == 0 and lookup[1] == 1 and lookup[41] == 1
    assert names is not None and names[0] == "class1" and len(names) == 40
    m13, names13 = read_mapping13(src / "class13Mapping.mat")
    assert m13.shape == (41,) and m13[0] == 0 and m13[14] == 1
    assert names13 is not None and names13[-1] == "c13_13"
    train, test = read_splits(src / "splits.mat", N)
    assert train.tolist() == [0, 1, 2, 3] and test.tolist() == [4, 5]  # 1-based -> 0-based


def test_prepare_and_load_with_val_carved_from_train(tmp_path: Path) -> None:
    raw = _raw()
    src = _write_src(tmp_path / "src", raw)
    out = prepare_nyuv2(src, tmp_path / "nyu", val_fraction=0.25, seed=0, log=lambda _: None)
    info = json.loads((out / "nyuv2.json").read_text())
    assert info["sizes"] == {"train": 3, "val": 1, "test": 2}
    val_image = info["val_indices"][0] - 1  # 1-based in the record
    assert val_image in range(4)  # carved from the training images, never from test
    cfg = DataConfig(name="nyuv2", root=str(out))
    data = load_data(cfg)
    assert data.task == "segmentation" and data.num_classes == 40
    assert data.input_shapes == {"rgb": (3, H, W), "depth": (1, H, W)}
    assert data.train.augmented and not data.test.augmented
    test = data.test[[0, 1]]
    assert torch.equal(test["label"], torch.from_numpy(_expected40(raw["labels"][[4, 5]])))
    # Depth standardised with the training statistics of nyuv2.json.
    mean, std = info["stats"]["depth"]["mean"][0], info["stats"]["depth"]["std"][0]
    expect = (raw["depths"][4].astype(np.float16).astype(np.float32) - mean) / std
    assert np.allclose(test["depth"][0, 0].numpy(), expect, atol=1e-4)
    # The same image in the val split, unaugmented.
    val = data.val[[0]]
    assert torch.equal(val["label"][0], torch.from_numpy(_expected40(raw["labels"][val_image])))
    # Training batches are augmented, but labels stay in range (or ignored).
    train = data.train[[0, 1, 2]]
    ok = (train["label"] == IGNORE_INDEX) | ((train["label"] >= 0) & (train["label"] < 40))
    assert bool(ok.all())
    d13 = load_data(DataConfig(name="nyuv2", root=str(out), nyuv2=NYUv2Config(classes=13)))
    assert d13.num_classes == 13 and int(d13.test[[0]]["label"].max()) < 13


def test_prepare_resizes_and_cli_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _write_src(tmp_path / "src", _raw(), with13=False)
    args = ["prepare", "nyuv2", "--src", str(src), "--out", str(tmp_path / "small")]
    assert main([*args, "--height", "12", "--width", "16"]) == 0
    meta = json.loads((tmp_path / "small" / "meta.json").read_text())
    assert meta["modalities"]["rgb"]["shape"] == [3, 12, 16] and meta["label_shape"] == [12, 16]
    cfg = DataConfig(name="nyuv2", root=str(tmp_path / "small"), nyuv2=NYUv2Config(classes=13))
    with pytest.raises(UMTError, match="class13Mapping.mat"):
        load_data(cfg)
    assert main([*args, "--height", "12"]) == 2  # a usage error, shown without a traceback
    assert "--height and --width" in capsys.readouterr().err


def test_malformed_files_name_the_file_and_key(tmp_path: Path) -> None:
    raw = _raw()
    src = _write_src(tmp_path / "src", raw)
    # Wrong key in the labelled file.
    bad = tmp_path / "bad"
    bad.mkdir()
    with h5py.File(bad / "nyu_depth_v2_labeled.mat", "w") as f:
        f["rgb"] = raw["images"]
    with pytest.raises(UMTError, match=r"nyu_depth_v2_labeled.mat: no variable \['images'"):
        read_labelled(bad / "nyu_depth_v2_labeled.mat")
    # Not HDF5 (a v5 .mat).
    savemat(bad / "v5.mat", {"images": np.zeros(3)})
    with pytest.raises(UMTError, match="not an HDF5"):
        read_labelled(bad / "v5.mat")
    # Split file: missing, wrong keys, out of range, overlapping.
    with pytest.raises(UMTError, match="has no splits.mat"):
        prepare_nyuv2(bad, tmp_path / "o1")
    savemat(bad / "splits.mat", {"train": np.ones(3)})
    with pytest.raises(UMTError, match=r"splits.mat: no variable \['trainNdxs', 'testNdxs'\]"):
        read_splits(bad / "splits.mat", N)
    savemat(bad / "splits.mat", {"trainNdxs": np.array([[0.0]]), "testNdxs": np.array([[2.0]])})
    with pytest.raises(UMTError, match=r"trainNdxs holds indices 0..0; expected 1-based"):
        read_splits(bad / "splits.mat", N)
    savemat(bad / "splits.mat", {"trainNdxs": np.array([[1.0]]), "testNdxs": np.array([[1.0]])})
    with pytest.raises(UMTError, match="share images"):
        read_splits(bad / "splits.mat", N)
    # Mapping: wrong key, wrong length/range.
    savemat(bad / "map.mat", {"mapping": _mapping40()})
    with pytest.raises(UMTError, match=r"map.mat: no variable \['mapClass'\]"):
        read_mapping40(bad / "map.mat")
    savemat(bad / "map.mat", {"mapClass": np.full((1, 894), 41.0)})
    with pytest.raises(UMTError, match="expected 894 entries .* in 1..40"):
        read_mapping40(bad / "map.mat")
    # Labels out of range in the labelled file.
    over = dict(raw)
    over["labels"] = raw["labels"].copy()
    over["labels"][1, 3, 3] = 900
    src2 = _write_src(tmp_path / "src2", over)
    with pytest.raises(UMTError, match=r"labels of image 2 \(1-based\) hold 900; expected 0..894"):
        prepare_nyuv2(src2, tmp_path / "o2", log=lambda _: None)
    assert not (tmp_path / "o2").exists()
    # An existing output folder is refused.
    (tmp_path / "exists").mkdir()
    with pytest.raises(UMTError, match="exists"):
        prepare_nyuv2(src, tmp_path / "exists")
    with pytest.raises(UMTError, match="not a valid umt-folder"):
        load_data(DataConfig(name="nyuv2", root=str(tmp_path / "exists")))


def test_augmentation_config_is_checked() -> None:
    with pytest.raises(UMTError, match="augment.scale"):
        SegAugmentConfig(scale=(1.5, 1.0))
    with pytest.raises(UMTError, match="data.nyuv2.classes"):
        NYUv2Config(classes=20)


def test_segmentation_recipes_load() -> None:
    from umt.study import load_config

    configs = ROOT / "src" / "umt" / "configs"
    nyu = load_config(configs / "nyuv2.yaml")
    assert nyu.data.name == "nyuv2" and nyu.data.root is None and nyu.data.nyuv2.classes == 40
    assert nyu.model.seg.fusion == "attention" and nyu.umt.stages == ()
    with pytest.raises(UMTError, match="data.root is not set"):
        load_data(nyu.data)
    rgbd = load_config(configs / "rgbd.yaml")
    assert rgbd.data.name == "rgbd" and set(rgbd.methods) == {"joint", "umt", "ume"}
