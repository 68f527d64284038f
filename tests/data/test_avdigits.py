"""The shipped ``avdigits.npz`` is what ``load_avdigits`` expects, and its splits are clean."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from umt.data import DATASETS, DataBundle, DataConfig, load_data
from umt.data.avdigits import FILENAME, SCRIPT_VERSION, load_avdigits, read_avdigits
from umt.errors import UMTError

SPLITS = ("train", "val", "test")


@pytest.fixture(scope="module")
def data() -> DataBundle:
    return load_avdigits()


@pytest.fixture(scope="module")
def raw() -> dict[str, np.ndarray]:
    with resources.as_file(resources.files("umt.data") / FILENAME) as path:
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}


@pytest.fixture(scope="module")
def meta(raw: dict[str, np.ndarray]) -> dict:
    return json.loads(str(raw["meta"]))


def test_file_is_small_package_data() -> None:
    with resources.as_file(resources.files("umt.data") / FILENAME) as path:
        assert path.stat().st_size < 5.2e6


def test_stored_arrays(raw: dict[str, np.ndarray], meta: dict) -> None:
    spec = meta["spec"]
    frames = 1 + round(spec["sample_rate"] * spec["duration_s"]) // spec["hop_length"]
    for split in SPLITS:
        n = len(raw[f"{split}_label"])
        assert raw[f"{split}_audio"].shape == (n, spec["n_mels"], frames)
        assert raw[f"{split}_visual"].shape == (n, spec["canvas"], spec["canvas"])
        assert raw[f"{split}_audio"].dtype == raw[f"{split}_visual"].dtype == np.uint8
        assert raw[f"{split}_image_index"].shape == (n,)
        assert raw[f"{split}_voice"].shape == (n, 4)


def test_metadata(meta: dict) -> None:
    assert meta["script_version"] == SCRIPT_VERSION
    assert meta["script"] == "scripts/make_avdigits.py"
    assert meta["espeak_ng"].startswith("eSpeak NG")
    assert {"seed", "snr_db", "pixel_noise", "train_pairs", "n_mels"} <= set(meta["spec"])
    assert meta["audio_db_step"] > 0 and meta["visual_scale"] == pytest.approx(1 / 255)


def test_loader_shapes_and_dtypes(data: DataBundle, meta: dict) -> None:
    spec = meta["spec"]
    assert data.name == "avdigits" and data.num_classes == 10 and data.description
    assert data.modalities == ("audio", "visual")
    assert data.input_shapes == {
        "audio": (1, spec["n_mels"], 1 + round(spec["sample_rate"] * spec["duration_s"]) // spec["hop_length"]),
        "visual": (1, spec["canvas"], spec["canvas"]),
    }  # fmt: skip
    batch = data.train[[0, 1, 2]]
    assert batch["audio"].dtype == batch["visual"].dtype == torch.float32
    assert batch["label"].dtype == torch.int64
    assert data.info["generation"] == meta


def test_train_statistics_normalise(data: DataBundle) -> None:
    for arr in data.train.arrays.values():
        assert arr.dtype == np.float32
        assert float(arr.mean()) == pytest.approx(0.0, abs=1e-3)
        assert float(arr.std()) == pytest.approx(1.0, abs=1e-3)


def test_split_sizes_and_classes(data: DataBundle, raw: dict[str, np.ndarray], meta: dict) -> None:
    sizes = {s: len(data.split(s)) for s in SPLITS}
    images = {s: np.unique(raw[f"{s}_image_index"]) for s in SPLITS}
    assert sum(len(v) for v in images.values()) == 1797  # every digit image, once
    assert sizes["train"] == meta["spec"]["train_pairs"] * len(images["train"])
    assert sizes["val"] == len(images["val"]) and sizes["test"] == len(images["test"])
    assert sizes == {"train": 3021, "val": 395, "test": 395}
    for s in SPLITS:
        counts = np.bincount(data.split(s).labels, minlength=10)
        assert len(counts) == 10 and counts.min() > 0.08 * sizes[s]  # all 10, roughly balanced


def test_no_image_or_voice_in_two_splits(raw: dict[str, np.ndarray]) -> None:
    index = {s: set(raw[f"{s}_image_index"].tolist()) for s in SPLITS}
    voice = {s: raw[f"{s}_voice"] for s in SPLITS}  # (N, 4): accent, variant, speed, pitch
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        assert not index[a] & index[b]
        assert not {tuple(v) for v in voice[a].tolist()} & {tuple(v) for v in voice[b].tolist()}
        # Stronger: the speakers (voice variants) differ too.
        assert not set(voice[a][:, 1].tolist()) & set(voice[b][:, 1].tolist())
    for s in SPLITS:  # and no utterance twice within a split
        words = np.c_[voice[s], raw[f"{s}_label"]]
        assert len(np.unique(words, axis=0)) == len(words)


def test_pairs_are_of_the_same_digit(data: DataBundle, raw: dict[str, np.ndarray]) -> None:
    target = load_digits().target
    for s in SPLITS:
        np.testing.assert_array_equal(target[raw[f"{s}_image_index"]], data.split(s).labels)


def test_registered() -> None:
    assert "avdigits" in DATASETS
    assert load_data(DataConfig(name="avdigits")).name == "avdigits"


def test_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(UMTError, match="no file"):
        read_avdigits(tmp_path / "missing.npz")
    old = tmp_path / "old.npz"
    np.savez(old, meta=np.array(json.dumps({"script_version": "0"})))
    with pytest.raises(UMTError, match="old.npz.*version '0'"):
        read_avdigits(old)
    bare = tmp_path / "bare.npz"
    np.savez(bare, train_audio=np.zeros((1, 2, 2), dtype=np.uint8))
    with pytest.raises(UMTError, match="'meta'"):
        read_avdigits(bare)
    junk = tmp_path / "junk.npz"
    junk.write_text("not a zip")
    with pytest.raises(UMTError, match="junk.npz"):
        read_avdigits(junk)
