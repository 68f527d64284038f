"""Probes read the evaluation view, and a fused segmentation branch as the fused model runs it;
UMT's segmentation target (``umt.seg_target``) and its cache-key compatibility (issue 18)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from umt.config import key_dict
from umt.data import DataConfig, load_data
from umt.data.base import ArrayDataset, DataBundle
from umt.data.folder import export_folder
from umt.data.prepared import PreparedConfig
from umt.data.rgbd import RGBDConfig, load_rgbd
from umt.data.segmentation import SegAugmentConfig, SegmentationDataset
from umt.errors import UMTError
from umt.methods import METHODS
from umt.methods.base import MethodContext
from umt.methods.losses import feature_distance
from umt.methods.umt import UMT, UMTConfig
from umt.models.multimodal import ModelConfig
from umt.models.segmentation import SegModelConfig, build_seg_model
from umt.probe import DEFAULT_PROBE, ProbeConfig
from umt.tasks import TASKS, probe

FAST = ProbeConfig(l2=(1e-3,), max_iter=20)


def prepared_folder(root: Path, n: int = 12) -> Path:
    """A tiny folder as ``umt prepare`` writes it: clips ``(N, 4, 3, 16, 16)`` uint8 and
    spectrograms ``(N, 1, 8, 12)`` float16 dB, plus ``prepared.json``."""
    rng = np.random.default_rng(0)

    def split(k: int) -> ArrayDataset:
        return ArrayDataset(
            {
                "audio": rng.normal(-40, 10, (k, 1, 8, 12)).astype(np.float16),
                "visual": rng.integers(0, 256, (k, 4, 3, 16, 16), dtype=np.uint8),
            },
            np.arange(k) % 2,
        )

    bundle = DataBundle("tiny", split(n), split(n // 2), split(n // 2), num_classes=2)
    export_folder(bundle, root)
    info = {"format": "umt-prepared", "audio_stats": {"mean": -40.0, "std": 10.0}}
    (root / "prepared.json").write_text(json.dumps(info))
    return root


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> DataBundle:
    root = prepared_folder(tmp_path_factory.mktemp("prep") / "tiny")
    cfg = PreparedConfig(frames=2, crop=12, augment=True, time_mask=4, freq_mask=3, masks=2)
    return load_data(DataConfig(name="prepared", root=str(root), prepared=cfg))


class Flat(nn.Module):
    """A fixed random linear encoder of any input: ``(B, ...) -> (B, 6)``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(dim, 6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(x)
        return out


def test_eval_view_is_the_evaluation_transform_of_the_training_split(
    prepared: DataBundle,
) -> None:
    train = prepared.train
    rows = list(range(len(train)))
    assert train.augmented
    # The training split itself is randomly augmented: two reads differ (so the test can fail).
    assert not torch.equal(train[rows]["visual"], train[rows]["visual"])
    view = prepared.eval_split("train")
    assert not view.augmented and train.augmented  # the split itself is unchanged
    a, b = view[rows], view[rows]
    for m in ("audio", "visual"):
        assert torch.equal(a[m], b[m])
        # ... and is exactly the evaluation transform (centre frames and crop, no masks).
        ref = train.views[m].eval_batch(np.arange(len(train)))  # type: ignore[attr-defined]
        assert torch.equal(a[m], ref)
    assert torch.equal(a["label"], torch.from_numpy(train.labels.astype(np.int64)))
    # Splits read without augmentation are returned as they are.
    assert prepared.eval_split("val") is prepared.val


def test_probe_twice_on_prepared_data_gives_identical_features_and_accuracy(
    prepared: DataBundle, monkeypatch: pytest.MonkeyPatch
) -> None:
    import umt.tasks.classification as cls

    seen: list[tuple[torch.Tensor, ...]] = []
    real = cls.linear_probe

    def spy(train: Any, val: Any, test: Any, k: int, cfg: ProbeConfig = DEFAULT_PROBE) -> Any:
        seen.append((train[0], val[0], test[0]))
        return real(train, val, test, k, cfg)

    monkeypatch.setattr(cls, "linear_probe", spy)
    encoder = Flat(2 * 3 * 12 * 12)
    first = probe(encoder, prepared, "visual", FAST).as_dict()
    second = probe(encoder, prepared, "visual", FAST).as_dict()
    assert first == second
    assert len(seen) == 2
    for a, b in zip(seen[0], seen[1], strict=True):
        assert torch.equal(a, b)
    # The train features are the encoder's features of the evaluation transform.
    x = prepared.train.views["visual"].eval_batch(np.arange(12))  # type: ignore[attr-defined]
    with torch.no_grad():
        assert torch.allclose(seen[0][0], encoder(x), atol=1e-6)


def test_classification_probe_of_a_model_equals_the_probe_of_its_encoder(
    prepared: DataBundle,
) -> None:
    task = TASKS["classification"]
    torch.manual_seed(0)
    model = task.build_model(ModelConfig(), prepared.input_shapes, 2)
    for m in prepared.modalities:
        alone = task.probe(model.encoders[m], prepared, m, FAST).as_dict()  # type: ignore[index]
        assert task.probe_model(model, prepared, m, FAST).as_dict() == alone


def _seg(inject: bool) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    model = build_seg_model(
        SegModelConfig(width=4, stages=3, inject=inject), {"rgb": (3, 8, 8), "depth": (1, 8, 8)}, 3
    ).eval()
    batch = {"rgb": torch.randn(2, 3, 8, 8), "depth": torch.randn(2, 1, 8, 8)}
    return model, batch


@torch.no_grad()
def test_stage_maps_before_and_after_injection_and_alone() -> None:
    model, batch = _seg(inject=True)
    logits, branch = model.forward_stages(batch)  # type: ignore[operator]
    _, fused = model.forward_stages(batch, maps="fused")  # type: ignore[operator]
    lg, alone = model.forward_stages(batch, maps="alone")  # type: ignore[operator]
    assert torch.equal(lg, logits)  # the choice of maps leaves the prediction alone
    # fused = what the RGB branch carries on: the sum of both branches' maps at each stage.
    for k in range(3):
        assert torch.allclose(fused["rgb"][k], branch["rgb"][k] + branch["depth"][k])
        assert torch.equal(fused["depth"][k], branch["depth"][k])
    rgb_alone = model.encoders["rgb"].forward_stages(batch["rgb"])  # type: ignore[index,operator]
    assert all(torch.equal(a, b) for a, b in zip(alone["rgb"], rgb_alone, strict=True))
    # Stage 0 sees no injected input; stage 1 on does, so the branch run alone differs there.
    assert torch.equal(branch["rgb"][0], rgb_alone[0])
    assert not torch.allclose(branch["rgb"][-1], rgb_alone[-1])
    with pytest.raises(UMTError, match="expected one of"):
        model.forward_stages(batch, maps="before")  # type: ignore[operator]
    # Late fusion (no injection): every branch is uni-modal, the three choices agree.
    late, batch = _seg(inject=False)
    _, a = late.forward_stages(batch)  # type: ignore[operator]
    _, b = late.forward_stages(batch, maps="alone")  # type: ignore[operator]
    _, c = late.forward_stages(batch, maps="fused")  # type: ignore[operator]
    for m in ("rgb", "depth"):
        for x, y, z in zip(a[m], b[m], c[m], strict=True):
            assert torch.equal(x, y) and torch.equal(x, z)


def test_segmentation_probe_reads_the_branch_as_the_fused_model_computes_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import umt.tasks.segmentation as seg

    data = load_rgbd(RGBDConfig(size=16, n_train=12, n_val=4, n_test=4))
    task = TASKS["segmentation"]
    torch.manual_seed(0)
    model = task.build_model(
        ModelConfig(seg=SegModelConfig(width=4, stages=2)), data.input_shapes, 9
    )
    seen: list[torch.Tensor] = []
    real = seg.linear_probe_maps

    def spy(train: Any, val: Any, test: Any, *args: Any, **kw: Any) -> Any:
        seen.append(train[0])
        return real(train, val, test, *args, **kw)

    monkeypatch.setattr(seg, "linear_probe_maps", spy)
    task.probe_model(model, data, "rgb", FAST)
    task.probe(model.encoders["rgb"], data, "rgb", FAST)  # type: ignore[index]
    rows = data.train[list(range(12))]
    with torch.no_grad():
        fused_pass = model.eval().forward_stages(rows)[1]["rgb"][-1]  # type: ignore[operator]
        alone = model.encoders["rgb"](rows["rgb"])  # type: ignore[index,operator]
    assert torch.allclose(seen[0], fused_pass, atol=1e-5)
    assert not torch.allclose(seen[0], alone, atol=1e-3)  # injection changes the RGB map
    assert torch.allclose(seen[1], alone, atol=1e-5)
    # A uni-modal model (a teacher): the model's branch is the branch alone.
    teacher = task.build_model(
        ModelConfig(seg=SegModelConfig(width=4, stages=2)), {"depth": (1, 16, 16)}, 9
    )
    a = task.probe_model(teacher, data, "depth", FAST).as_dict()
    b = task.probe(teacher.encoders["depth"], data, "depth", FAST).as_dict()  # type: ignore[index]
    assert a == b


def test_segmentation_eval_view_turns_the_augmentation_off() -> None:
    rng = np.random.default_rng(0)
    arrays = {"rgb": rng.normal(size=(6, 3, 8, 8)).astype(np.float32)}
    labels = rng.integers(0, 3, (6, 8, 8))
    aug = SegmentationDataset(arrays, labels, augment=SegAugmentConfig(scale=(1.0, 2.0)))
    plain = SegmentationDataset(arrays, labels)
    rows = list(range(6))
    torch.manual_seed(0)
    assert not torch.equal(aug[rows]["rgb"], aug[rows]["rgb"])  # augmented reads differ
    view = aug.eval_view()
    assert torch.equal(view[rows]["rgb"], plain[rows]["rgb"])
    assert torch.equal(view[rows]["label"], plain[rows]["label"])


def test_umt_seg_target_distils_the_chosen_maps_and_keeps_old_keys() -> None:
    torch.manual_seed(3)
    seg_teacher = build_seg_model(SegModelConfig(width=4, stages=3), {"rgb": (3, 8, 8)}, 3)
    online = UMT({"rgb": seg_teacher.encoders["rgb"]}, UMTConfig())  # as built for segmentation
    assert key_dict(online.resolved_settings()) == {  # the stage is keyed on resolved settings
        "weight": 5.0,
        "weights": {},
        "loss": "mse",
        "init_from_teacher": True,
        "cache_teachers": False,
        "stages": [],
        "select": "better",
    }  # seg_target at its default ("branch") is not in the key: older stage keys unchanged
    assert key_dict(UMTConfig(seg_target="alone"))["seg_target"] == "alone"
    with pytest.raises(UMTError, match="umt.seg_target"):
        UMTConfig(seg_target="before")
    model, batch = _seg(inject=True)
    torch.manual_seed(3)
    teacher = build_seg_model(SegModelConfig(width=4, stages=3), {"rgb": (3, 8, 8)}, 3).eval()
    batch["label"] = torch.zeros(2, 8, 8, dtype=torch.long)
    with torch.no_grad():
        target = teacher.encoders["rgb"].forward_stages(batch["rgb"])  # type: ignore[operator]
    for choice in ("branch", "fused", "alone"):
        umt = UMT({"rgb": teacher.encoders["rgb"]}, UMTConfig(weight=1.0, seg_target=choice))
        out = umt.step(model, batch)  # type: ignore[arg-type]
        with torch.no_grad():
            maps = model.forward_stages(batch, maps=choice)[1]["rgb"]  # type: ignore[operator]
        want = torch.stack([feature_distance(s, t) for s, t in zip(maps, target, strict=True)])
        assert torch.allclose(out["distill_rgb"], want.mean())
    # Only a segmentation model has maps to choose between.
    data = load_data(DataConfig(name="synthetic"))
    task = TASKS["classification"]
    cls_model = task.build_model(ModelConfig(), data.input_shapes, data.num_classes)
    ctx = MethodContext(UMTConfig(seg_target="alone"), cls_model, {}, data, 0, None)
    with pytest.raises(UMTError, match="segmentation models only"):
        METHODS["umt"].build(ctx)  # type: ignore[misc]
