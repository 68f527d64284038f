"""Your own data and encoders in a study: ``run_study(cfg, out, data=UserData(...), encoders=...)``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

import umt
from umt.data import ArrayDataset, DataBundle, DataConfig, load_data
from umt.data.synthetic import SyntheticConfig
from umt.data.user import UserData, content_hash, materialise
from umt.errors import UMTError
from umt.study import load_config, run_study

SMALL = SyntheticConfig(n_train=120, n_val=60, n_test=60, dim=16)


class DictSamples(Dataset[dict[str, Any]]):
    """A plain map-style Dataset of dict samples, as a user writes one (tensors, int labels)."""

    def __init__(self, split: ArrayDataset) -> None:
        self.split = split

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int) -> dict[str, Any]:
        sample: dict[str, Any] = {m: torch.tensor(a[i]) for m, a in self.split.arrays.items()}
        sample["label"] = int(self.split.labels[i])
        sample["id"] = f"sample-{i}"  # keys that are not modalities are ignored
        return sample


def user_data(bundle: DataBundle) -> UserData:
    return UserData(
        train=DictSamples(bundle.train),
        val=DictSamples(bundle.val),
        test=DictSamples(bundle.test),
        modalities=list(bundle.modalities),
        num_classes=bundle.num_classes,
        name="mine",
    )


def overrides(tiny: list[str], *extra: str) -> list[str]:
    small = [f"data.synthetic.{k}={v}" for k, v in (("n_train", 120), ("n_val", 60))]
    return [*tiny, *small, "data.synthetic.n_test=60", "data.synthetic.dim=16", *extra]


def test_materialise_stacks_samples_and_names_bad_ones() -> None:
    good = [{"a": torch.ones(2, 3) * i, "label": i % 2} for i in range(3)]
    ds = materialise(good, ["a"], split="val")
    assert ds.arrays["a"].shape == (3, 2, 3) and ds.arrays["a"].dtype == np.float32
    assert ds.labels.tolist() == [0, 1, 0] and ds.arrays["a"][2, 1, 2] == 2.0

    ragged = [*good[:2], {"a": torch.ones(2, 4), "label": 0}]
    with pytest.raises(UMTError, match=r"split 'val', sample 2: 'a' has shape \(2, 4\)"):
        materialise(ragged, ["a"], split="val")
    missing = [*good[:1], {"b": torch.ones(2, 3), "label": 0}]
    with pytest.raises(UMTError, match=r"split 'test', sample 1: no key 'a'"):
        materialise(missing, ["a"], split="test")
    with pytest.raises(UMTError, match=r"sample 0: no key 'label'"):
        materialise([{"a": torch.ones(1)}], ["a"], split="train")
    with pytest.raises(UMTError, match="expected a dict"):
        materialise([(torch.ones(1), 0)], ["a"], split="train")
    with pytest.raises(UMTError, match="expected an integer class"):
        materialise([{"a": torch.ones(1), "label": 0.5}], ["a"], split="train")


def test_content_hash_follows_the_data() -> None:
    data = load_data(DataConfig(name="synthetic", synthetic=SMALL))
    same = user_data(data).bundle()
    assert content_hash(same) == content_hash(data)  # the same numbers, read another way
    arrays = {m: a.copy() for m, a in data.test.arrays.items()}
    arrays["weak"][7, 3] += 1.0
    changed = DataBundle("x", data.train, data.val, ArrayDataset(arrays, data.test.labels), 10)
    assert content_hash(changed) != content_hash(data)


def test_study_on_user_datasets_equals_the_built_in_study(
    tmp_path: Path, tiny_overrides: list[str]
) -> None:
    """The same arrays as the config's synthetic data, given as a user's Dataset of dicts: every
    stage, probe and the choice come out the same; the cache follows the content."""
    cfg = load_config(overrides=overrides(tiny_overrides, "train.epochs=1"))
    built_in = run_study(cfg, tmp_path / "a", log=lambda _: None)
    data = load_data(cfg.data)
    mine = run_study(cfg, tmp_path / "b", log=lambda _: None, data=user_data(data))

    assert mine.summary["data"]["source"] == "user" and mine.summary["data"]["name"] == "mine"
    assert mine.summary["data"]["content_hash"] == content_hash(data)
    assert "source" not in built_in.summary["data"]
    stages = ["teacher-strong", "teacher-weak", "joint", "umt", "ume"]
    assert list(mine.summary["methods"]) == list(built_in.summary["methods"]) == stages
    for stage, entry in built_in.summary["methods"].items():
        assert mine.summary["methods"][stage]["test_acc"] == entry["test_acc"], stage
    assert mine.summary["probes"] == built_in.summary["probes"]
    assert (mine.run_dir / "report.md").is_file()

    # Unchanged content: every stage is reused; one changed test sample: everything retrains.
    again = run_study(cfg, tmp_path / "b", log=lambda _: None, data=data)  # a DataBundle works
    assert again.trained == []
    arrays = {m: a.copy() for m, a in data.test.arrays.items()}
    arrays["strong"][0] = 0.0
    edited = DataBundle("mine", data.train, data.val, ArrayDataset(arrays, data.test.labels), 10)
    changed = run_study(cfg, tmp_path / "b", log=lambda _: None, data=edited)
    assert "seed0/teacher-strong" in changed.trained and "seed0/joint" in changed.trained


class TwoLayer(nn.Module):
    """A user's encoder with no ``feature_dim`` (found by a dry forward pass)."""

    def __init__(self, shape: tuple[int, ...], width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(shape)), width), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def test_user_encoders_in_every_stage(tmp_path: Path, tiny_overrides: list[str]) -> None:
    cfg = load_config(overrides=overrides(tiny_overrides, "train.epochs=1", "methods=[joint,umt]"))
    data = load_data(cfg.data)
    shapes: list[tuple[int, ...]] = []

    def factory(shape: tuple[int, ...]) -> nn.Module:
        shapes.append(shape)
        return TwoLayer(shape, 12)

    result = umt.run_study(cfg, tmp_path, log=lambda _: None, data=data, encoders={"weak": factory})
    assert set(shapes) == {(16,)}
    run = result.run_dir / "seed0"
    for stage in ("teacher-weak", "joint", "umt"):
        state = torch.load(run / stage / "model.pt", weights_only=True)
        assert tuple(state["encoders.weak.body.1.weight"].shape) == (12, 16), stage
    strong = torch.load(run / "joint" / "model.pt", weights_only=True)
    assert not any(k.startswith("encoders.strong.body") for k in strong)  # model.encoder's

    # Another architecture is another cache key: the stages with that encoder retrain.
    wider = umt.run_study(
        cfg, tmp_path, log=lambda _: None, data=data, encoders={"weak": lambda s: TwoLayer(s, 20)}
    )
    assert "seed0/teacher-strong" not in wider.trained
    assert {"seed0/teacher-weak", "seed0/joint", "seed0/umt"} <= set(wider.trained)


def test_bad_user_inputs_are_refused_before_training(
    tmp_path: Path, tiny_overrides: list[str]
) -> None:
    cfg = load_config(overrides=overrides(tiny_overrides))
    data = load_data(cfg.data)
    with pytest.raises(UMTError, match=r"encoders=.*\['audio'\] are not modalities"):
        run_study(cfg, tmp_path, data=data, encoders={"audio": lambda s: nn.Identity()})
    with pytest.raises(UMTError, match="expected umt.UserData or umt.DataBundle"):
        run_study(cfg, tmp_path, data=[1, 2, 3])  # type: ignore[arg-type]

    def conv(shape: tuple[int, ...]) -> nn.Module:
        return nn.Unflatten(1, (4, 4))  # (B, 16) -> (B, 4, 4): not a feature vector

    with pytest.raises(UMTError, match=r"encoders\['weak'\]: the encoder must return \(B, D\)"):
        run_study(cfg, tmp_path, data=data, encoders={"weak": conv})
