"""UMT with cached teacher features: same training signal, no teacher forward pass per step."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from umt.data import ArrayDataset, DataConfig, load_data
from umt.errors import UMTError
from umt.methods import UMT, UMTConfig
from umt.methods.base import MethodContext
from umt.methods.umt import build_umt
from umt.models import ModelConfig, build_model
from umt.study import load_config, run_study


def test_cached_targets_equal_the_online_teachers() -> None:
    data = load_data(DataConfig(name="synthetic"))
    torch.manual_seed(0)
    teacher = build_model(ModelConfig(), {"weak": (64,)}, 10, linear_head=True).eval()
    batch = data.train.indexed()[[3, 7, 11, 500]]
    with torch.no_grad():
        all_feats = teacher.encoders["weak"](torch.from_numpy(data.train.arrays["weak"]))
    online = UMT({"weak": teacher.encoders["weak"]}, UMTConfig())
    cached = UMT(
        {"weak": teacher.encoders["weak"]}, UMTConfig(), cached={"weak": all_feats.numpy()}
    )
    assert cached.needs_index and not online.needs_index
    a = online.teacher_targets(batch)["weak"]
    b = cached.teacher_targets(batch)["weak"]
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_cache_is_refused_for_augmented_inputs() -> None:
    data = load_data(DataConfig(name="synthetic"))
    aug = ArrayDataset(data.train.arrays, data.train.labels, augmented=True)
    bundle = type(data)(data.name, aug, data.val, data.test, num_classes=data.num_classes)
    teacher = build_model(ModelConfig(), {"weak": (64,)}, 10, linear_head=True)
    model = build_model(ModelConfig(), data.input_shapes, 10)
    ctx = MethodContext(
        UMTConfig(cache_teachers=True), model, {"weak": teacher}, bundle, 0, lambda m: np.zeros(1)
    )
    with pytest.raises(UMTError, match="randomly augmented"):
        build_umt(ctx)


def test_auto_caches_exactly_where_the_inputs_are_the_same_every_epoch() -> None:
    data = load_data(DataConfig(name="synthetic"))
    aug = ArrayDataset(data.train.arrays, data.train.labels, augmented=True)
    augmented = type(data)(data.name, aug, data.val, data.test, num_classes=data.num_classes)
    torch.manual_seed(0)
    teacher = build_model(ModelConfig(), {"weak": (64,)}, 10, linear_head=True)
    asked: list[str] = []

    def features(m: str) -> np.ndarray:
        asked.append(m)
        return np.zeros((len(data.train), 64), dtype=np.float32)

    built = {}
    for name, bundle in (("plain", data), ("augmented", augmented)):
        model = build_model(ModelConfig(), data.input_shapes, 10)
        ctx = MethodContext(UMTConfig(), model, {"weak": teacher}, bundle, 0, features)
        built[name] = build_umt(ctx)  # cache_teachers: auto, the default
    assert asked == ["weak"]  # the augmented data set never asked for cached features
    assert built["plain"].cached is not None and built["plain"].needs_index
    assert built["augmented"].cached is None and not built["augmented"].needs_index
    # keyed as the explicit choice it resolved to: `auto` reuses stages of `true` / `false`
    assert built["plain"].resolved_settings().cache_teachers is True
    assert built["augmented"].resolved_settings().cache_teachers is False
    with pytest.raises(UMTError, match="umt.cache_teachers: expected auto, true or false"):
        UMTConfig(cache_teachers="yes")  # type: ignore[arg-type]


def test_study_with_cached_teachers_runs_no_teacher_forward(
    tmp_path: Path, tiny_overrides: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    online = run_study(
        load_config(overrides=[*tiny_overrides, "methods=[umt]", "umt.cache_teachers=false"]),
        tmp_path,
        log=lambda _: None,
    )
    calls = {"n": 0}
    original = UMT.teacher_targets

    def counting(self: UMT, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        calls["n"] += 1
        assert self.cached is not None  # every step reads the cache
        return original(self, batch)

    monkeypatch.setattr(UMT, "teacher_targets", counting)
    cached = run_study(
        load_config(overrides=[*tiny_overrides, "methods=[umt]", "umt.cache_teachers=true"]),
        tmp_path,
        log=lambda _: None,
    )
    assert cached.trained == ["seed0/umt"]  # teachers reused, only UMT retrained
    assert calls["n"] > 0
    for m in ("strong", "weak"):
        assert (tmp_path / "default" / "seed0" / f"teacher-{m}" / "features-train.npy").is_file()
    a = online.summary["methods"]["umt"]["test_acc"]["mean"]
    b = cached.summary["methods"]["umt"]["test_acc"]["mean"]
    assert abs(a - b) <= 0.03  # same targets up to float rounding of a different batch shape
