"""RGB-D segmentation: the two-branch model, metrics, UMT/UME per pixel, the embedded set, and a
tiny study end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import quiet, random_batch

from umt.data import DataConfig, load_data
from umt.data.rgbd import CLASS_NAMES, RGBDConfig, load_rgbd
from umt.data.segmentation import (
    IGNORE_INDEX,
    SegAugmentConfig,
    SegmentationDataset,
    augment_sample,
)
from umt.errors import UMTError
from umt.methods import UMT, UMTConfig, ume_combine
from umt.methods.losses import umt_stage_distill_loss
from umt.models import SegModelConfig, build_seg_model
from umt.probe import ProbeConfig
from umt.study import load_config, run_study
from umt.tasks import SEGMENTATION, modality_scores, probe, segmentation_scores

SHAPES = {"rgb": (3, 16, 16), "depth": (1, 16, 16)}
TINY = SegModelConfig(width=4, stages=3)


def _batch() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)  # the global generator: what a test builds after the batch depends on it
    return random_batch(SHAPES, 2, seed=None, num_classes=5, label_shape=(16, 16))


@pytest.mark.parametrize("fusion", ["add", "attention"])
@pytest.mark.parametrize("inject", [True, False])
def test_two_branch_shapes_and_gradients_reach_both_branches(fusion: str, inject: bool) -> None:
    cfg = SegModelConfig(width=4, stages=3, fusion=fusion, inject=inject)
    model = build_seg_model(cfg, SHAPES, num_classes=5)
    batch = _batch()
    logits, stages = model.forward_stages(batch)
    assert tuple(logits.shape) == (2, 5, 16, 16)  # logits at input resolution
    for m in ("rgb", "depth"):
        assert [tuple(h.shape[1:]) for h in stages[m]] == [(4, 16, 16), (8, 8, 8), (16, 4, 4)]
    F.cross_entropy(logits, batch["label"]).backward()
    for m in ("rgb", "depth"):
        grads = [p.grad for p in model.encoders[m].parameters()]
        assert all(g is not None for g in grads)
        assert sum(float(g.abs().sum()) for g in grads if g is not None) > 0, m


def test_stem_stride_four_and_teacher_shapes() -> None:
    cfg = SegModelConfig(width=4, stages=2, stem_stride=4)
    teacher = build_seg_model(cfg, {"depth": (1, 32, 24)}, num_classes=3)
    assert list(teacher.encoders) == ["depth"] and len(teacher.fusions) == 0
    out = teacher({"depth": torch.zeros(2, 1, 32, 24)})
    assert tuple(out.shape) == (2, 3, 32, 24)
    # The branch alone (probe input) is the teacher's in-model computation.
    maps = teacher.encoders["depth"].forward_stages(torch.zeros(1, 1, 32, 24))
    assert [tuple(h.shape[1:]) for h in maps] == [(4, 8, 6), (8, 4, 3)]


def test_injection_feeds_depth_into_the_rgb_branch_only() -> None:
    model = build_seg_model(TINY, SHAPES, num_classes=5).eval()
    a, b = _batch(), _batch()
    b["depth"] = b["depth"] + 1.0
    _, sa = model.forward_stages(a)
    _, sb = model.forward_stages(b)
    assert torch.equal(sa["rgb"][0], sb["rgb"][0])  # stage 0 of rgb sees no depth yet
    assert not torch.equal(sa["rgb"][1], sb["rgb"][1])  # later stages do (ESANet)
    plain = build_seg_model(SegModelConfig(width=4, stages=3, inject=False), SHAPES, 5).eval()
    assert torch.equal(plain.forward_stages(a)[1]["rgb"][2], plain.forward_stages(b)[1]["rgb"][2])


def test_bad_model_settings_are_refused() -> None:
    with pytest.raises(UMTError, match=r"model.seg.fusion.*'concat'"):
        SegModelConfig(fusion="concat")
    with pytest.raises(UMTError, match="model.seg.primary"):
        build_seg_model(SegModelConfig(primary="audio"), SHAPES, 3)
    with pytest.raises(UMTError, match=r"\(C, H, W\) images"):
        build_seg_model(TINY, {"rgb": (3, 16)}, 3)


def test_miou_matches_a_hand_computed_example_with_ignored_pixels() -> None:
    # 2x3 labels, one pixel unlabelled; prediction given as one-hot logits.
    label = torch.tensor([[[0, 0, 1], [1, 2, IGNORE_INDEX]]])
    pred = torch.tensor([[[0, 1, 1], [1, 2, 0]]])
    ds = SegmentationDataset({"x": pred[:, None].float().numpy()}, label.numpy())

    def predict(b: dict[str, torch.Tensor]) -> torch.Tensor:
        return F.one_hot(b["x"][:, 0].long(), 3).permute(0, 3, 1, 2).float()

    s = segmentation_scores(predict, ds, 3)
    # Class 0: TP 1, FP 0 (the unlabelled pixel does not count), FN 1 -> 1/2.
    # Class 1: TP 2, FP 1, FN 0 -> 2/3. Class 2: TP 1 -> 1. Mean: (1/2 + 2/3 + 1) / 3.
    assert s["iou"] == pytest.approx([1 / 2, 2 / 3, 1.0])
    assert s["miou"] == pytest.approx((1 / 2 + 2 / 3 + 1) / 3)
    assert s["pixel_acc"] == pytest.approx(4 / 5)


def test_ume_averages_per_pixel_probabilities() -> None:
    a = torch.zeros(1, 2, 1, 2)
    a[0, 0, 0, 0] = 10.0  # pixel 0: model a is sure of class 0
    b = torch.zeros(1, 2, 1, 2)
    b[0, 1, 0, 1] = 10.0  # pixel 1: model b is sure of class 1
    p = ume_combine({"a": a, "b": b}).exp()
    assert p.sum(1).flatten().tolist() == pytest.approx([1.0, 1.0])
    assert p.argmax(1).flatten().tolist() == [0, 1]
    expected = (a.softmax(1) + b.softmax(1)) / 2
    assert torch.allclose(p, expected, atol=1e-6)


def test_stage_distillation_all_stages_by_default_and_selected_stages() -> None:
    s = {"d": [torch.ones(1, 1, 2, 2), 3 * torch.ones(1, 2, 1, 1)]}
    t = {"d": [torch.zeros(1, 1, 2, 2), torch.zeros(1, 2, 1, 1)]}
    total, per = umt_stage_distill_loss(s, t, {"d": 1.0})
    assert total.item() == pytest.approx((1 + 9) / 2) and per["d"].item() == pytest.approx(5.0)
    assert umt_stage_distill_loss(s, t, {"d": 2.0}, stages=(1,))[0].item() == pytest.approx(18)
    with pytest.raises(UMTError, match=r"umt.stages: \[5\]"):
        umt_stage_distill_loss(s, t, {"d": 1.0}, stages=(5,))


def test_umt_step_distils_each_branch_from_its_teacher_at_every_stage() -> None:
    torch.manual_seed(0)
    teachers = {m: build_seg_model(TINY, {m: SHAPES[m]}, 5) for m in SHAPES}
    student = build_seg_model(TINY, SHAPES, 5)
    method = UMT({m: t.encoders[m] for m, t in teachers.items()}, UMTConfig(weight=2.0))
    out = method.step(student, _batch())
    assert set(out) >= {"loss", "task_loss", "distill_loss", "distill_rgb", "distill_depth"}
    assert out["loss"].item() == pytest.approx(
        out["task_loss"].item() + 2 * (out["distill_rgb"].item() + out["distill_depth"].item()),
        rel=1e-5,
    )
    out["loss"].backward()
    assert all(p.grad is None for t in teachers.values() for p in t.parameters())
    # Student == teacher on a branch that sees no other modality: zero distance.
    student.encoders["depth"].load_state_dict(teachers["depth"].encoders["depth"].state_dict())
    with torch.no_grad():
        assert method.step(student.eval(), _batch())["distill_depth"].item() == pytest.approx(0.0)


def test_augmentation_moves_images_and_labels_together() -> None:
    torch.manual_seed(0)
    # Image value == label value at every pixel: any augmentation must keep them equal.
    label = torch.randint(0, 4, (3, 4)).repeat_interleave(4, 0).repeat_interleave(4, 1)  # blocks
    for _ in range(10):
        imgs, y = augment_sample(
            {"a": label[None].float(), "b": 2 * label[None].float()},
            label,
            SegAugmentConfig(scale=(1.0, 2.0)),
        )
        assert tuple(y.shape) == (12, 16)
        # Nearest labels and bilinear images agree but at block boundaries.
        agree = (imgs["a"][0] - y.float()).abs() < 0.5
        assert agree.float().mean() > 0.8
        assert torch.equal(imgs["b"][0], 2 * imgs["a"][0])
    # Shrinking pads the labels with the ignored label.
    _, y = augment_sample(
        {"a": torch.zeros(1, 8, 8)},
        torch.zeros(8, 8, dtype=torch.long),
        SegAugmentConfig(scale=(0.5, 0.5), flip=False),
    )
    assert (y == IGNORE_INDEX).sum() == 64 - 16


def test_rgbd_is_deterministic_small_and_registered() -> None:
    cfg = RGBDConfig(size=16, n_train=20, n_val=5, n_test=5, seed=3)
    a, b = load_rgbd(cfg), load_rgbd(cfg)
    assert np.array_equal(a.train.arrays["rgb"], b.train.arrays["rgb"])
    assert np.array_equal(a.test.labels, b.test.labels)
    c = load_rgbd(RGBDConfig(size=16, n_train=20, n_val=5, n_test=5, seed=4))
    assert not np.array_equal(a.train.labels, c.train.labels)
    assert a.task == "segmentation" and a.num_classes == len(CLASS_NAMES)
    assert a.input_shapes == {"rgb": (3, 16, 16), "depth": (1, 16, 16)}
    assert set(np.unique(a.train.labels)) <= set(range(len(CLASS_NAMES)))
    via = load_data(DataConfig(name="rgbd", rgbd=cfg))
    assert np.array_equal(via.val.arrays["depth"], a.val.arrays["depth"])


def test_rgbd_needs_depth_for_posters_and_colour_for_blocks() -> None:
    data = load_rgbd(RGBDConfig(size=32, n_train=60, n_val=1, n_test=1))
    rgb, depth, y = data.train.arrays["rgb"], data.train.arrays["depth"][:, 0], data.train.labels
    wall_depth, poster_depth = np.median(depth[y == 0]), np.median(depth[y == 5])
    near, far = np.median(depth[y == 3]), np.median(depth[y == 4])
    assert abs(wall_depth - poster_depth) < 0.1  # a poster is on the wall: depth can't tell
    assert far - near > 0.5  # green near vs far: depth tells them apart
    green_near = rgb[:, :, :][np.broadcast_to((y == 3)[:, None], rgb.shape)].reshape(3, -1)
    assert green_near.size > 0
    red = rgb.transpose(1, 0, 2, 3)[:, y == 1].mean(1)
    blue = rgb.transpose(1, 0, 2, 3)[:, y == 2].mean(1)
    assert red[0] > red[2] + 1.0 and blue[2] > blue[0] + 1.0  # colour tells red from blue


def test_probe_and_masked_evaluation_on_segmentation() -> None:
    data = load_rgbd(RGBDConfig(size=16, n_train=24, n_val=8, n_test=8))
    torch.manual_seed(0)
    model = build_seg_model(TINY, data.input_shapes, data.num_classes)
    r = probe(model.encoders["depth"], data, "depth", ProbeConfig(l2=(1e-3,), max_iter=5))
    d = r.as_dict()
    assert set(d) == {"val_miou", "test_miou", "test_pixel_acc", "l2"} and d["l2"] == 1e-3
    only = modality_scores(SEGMENTATION, model, data.test, data.num_classes, data.modalities)
    assert set(only) == {"rgb", "depth"}


TINY_STUDY = [
    "data.name=rgbd",
    "data.rgbd.size=16",
    "data.rgbd.n_train=48",
    "data.rgbd.n_val=16",
    "data.rgbd.n_test=16",
    "model.seg.width=4",
    "seeds=[0]",
    "train.epochs=1",
    "train.batch_size=16",
    "train.progress=false",
    "train.threads=1",
    "probe.l2=[0.001]",
    "probe.max_iter=5",
]


def test_tiny_segmentation_study_end_to_end(tmp_path: Path) -> None:
    result = run_study(load_config(overrides=TINY_STUDY), tmp_path, log=quiet)
    run = tmp_path / "default"
    for name in (
        "summary.json",
        "report.md",
        "report.html",
        "figures/probes.png",
        "figures/examples.png",
    ):
        assert (run / name).is_file(), name
    s = json.loads((run / "summary.json").read_text())
    assert s["data"]["task"] == "segmentation"
    assert set(s["methods"]) == {"teacher-rgb", "teacher-depth", "joint", "umt", "ume"}
    for method, entry in s["methods"].items():
        assert len(entry["test_iou"]) == len(CLASS_NAMES)
        # The numbers (torchmetrics' Jaccard index) recomputed by hand from the stage's per-image
        # intersection and union counts: IoU_c = sum I_c / sum U_c, averaged over the classes
        # present (union > 0).
        stage = run / "seed0" / method
        scores = json.loads((stage / "result.json").read_text())
        counts = np.load(stage / "test-outcomes.npy").sum(0)  # (2, K): intersections, unions
        present = counts[1] > 0
        iou = np.where(present, counts[0] / np.maximum(counts[1], 1), 0.0)
        assert scores["test_iou"] == pytest.approx(iou.tolist(), abs=1e-6), method
        assert scores["test_miou"] == pytest.approx(iou[present].mean(), abs=1e-6), method
        assert entry["test_miou"]["values"] == [scores["test_miou"]]
        assert [c["mean"] for c in entry["test_iou"]] == scores["test_iou"]
    assert set(s["methods"]["joint"]["missing_test_miou"]) == {"rgb", "depth"}
    assert set(s["probes"]["depth"]) == {"teacher", "joint", "umt"}
    assert s["choice"]["method"] in ("ume", "umt") and "mIoU" in s["choice"]["reason"]
    report = (run / "report.md").read_text()
    assert "## Per-class IoU" in report and "poster" in report and "examples.png" in report
    assert "data:image/png;base64" in (run / "report.html").read_text()
    assert sorted(result.trained) == [
        "seed0/joint",
        "seed0/teacher-depth",
        "seed0/teacher-rgb",
        "seed0/umt",
    ]
    again = run_study(load_config(overrides=TINY_STUDY), tmp_path, log=quiet, report=False)
    assert again.trained == [] and again.summary["methods"] == result.summary["methods"]


def test_segmentation_study_refuses_classification_only_methods_and_sweeps(
    tmp_path: Path,
) -> None:
    with pytest.raises(UMTError, match=r"\['ogm_ge'\] do not support segmentation"):
        run_study(load_config(overrides=[*TINY_STUDY, "methods=[joint,ogm_ge]"]), tmp_path)
    with pytest.raises(UMTError, match="model.seg.fusion"):
        run_study(load_config(overrides=[*TINY_STUDY, "fusion=[concat,sum]"]), tmp_path)
    with pytest.raises(UMTError, match="cache_teachers"):
        run_study(
            load_config(overrides=[*TINY_STUDY, "umt.cache_teachers=true"]), tmp_path, log=quiet
        )


def test_the_per_pixel_probe_reads_what_the_maps_carry() -> None:
    # Maps that carry each pixel's class linearly (a one-hot channel per class, plus noise)
    # are read almost perfectly; the same maps with the pixels' classes shuffled are not.
    from umt.tasks.seg_probe import linear_probe_maps

    g = torch.Generator().manual_seed(0)

    def split(n: int, shuffle: bool) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(0, 4, (n, 6, 6), generator=g)
        carried = y[torch.randperm(n, generator=g)] if shuffle else y
        maps = F.one_hot(carried, 4).permute(0, 3, 1, 2).float() * 3
        return maps + 0.3 * torch.randn(maps.shape, generator=g), y

    cfg = ProbeConfig(l2=(1e-3,), max_iter=30)
    good = linear_probe_maps(split(20, False), split(8, False), split(8, False), 4, cfg)
    bad = linear_probe_maps(split(20, True), split(8, True), split(8, True), 4, cfg)
    assert good.as_dict()["test_miou"] > 0.95 and bad.as_dict()["test_miou"] < 0.5
