"""Semantic segmentation: a label per pixel, scored by mean IoU (unlabelled pixels ignored);
encoders give stage maps ``(B, C, h, w)``, probed by a per-position linear classifier.

The probe is :mod:`umt.tasks.seg_probe`'s.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torchmetrics import Metric
from torchmetrics.classification import MulticlassAccuracy, MulticlassJaccardIndex

from umt.data.base import ArrayDataset, Batch, DataBundle, make_loader
from umt.data.segmentation import IGNORE_INDEX
from umt.errors import UMTError
from umt.methods import stage_display_name
from umt.models.encoders import EncoderFactory
from umt.models.multimodal import ModelConfig
from umt.models.pretrained import init_encoders
from umt.models.segmentation import build_seg_model
from umt.probe import ProbeConfig, encode_model_split
from umt.tasks.base import Predict, ProbeOutcome, ReportText, mean_std
from umt.tasks.seg_probe import SegProbeResult, extract_maps, linear_probe_maps


@torch.no_grad()
def segmentation_scores(
    predict: Callable[[Batch], torch.Tensor] | nn.Module,
    dataset: ArrayDataset,
    num_classes: int,
    *,
    device: torch.device | str = "cpu",
    batch_size: int = 64,
    transform: Callable[[Batch], Batch] | None = None,
) -> dict[str, Any]:
    """Mean IoU, pixel accuracy and per-class IoU of ``predict`` (logits ``(B, K, H, W)``) on
    ``dataset``, over all its pixels, unlabelled ones (``IGNORE_INDEX``) left out.

    The mean IoU averages the classes present in the labels or the predictions of the split
    (torchmetrics' ``macro``); ``iou`` lists every class (0 for an absent one).
    """
    if isinstance(predict, nn.Module):
        predict.eval().to(device)
    kw: dict[str, Any] = {"ignore_index": IGNORE_INDEX, "sync_on_compute": False}
    miou = MulticlassJaccardIndex(num_classes, average="macro", **kw).to(device)
    iou = MulticlassJaccardIndex(num_classes, average="none", **kw).to(device)
    pixel = MulticlassAccuracy(num_classes, average="micro", **kw).to(device)
    for batch in make_loader(dataset, batch_size=batch_size, shuffle=False, shard=False):
        batch = {k: v.to(device) for k, v in batch.items()}
        if transform is not None:
            batch = transform(batch)
        pred = predict(batch).argmax(1)  # (B, H, W)
        for metric in (miou, iou, pixel):
            metric.update(pred, batch["label"])
    return {
        "miou": float(miou.compute()),
        "pixel_acc": float(pixel.compute()),
        "iou": [float(v) for v in iou.compute()],
    }


@torch.no_grad()
def iou_outcomes(
    predict: Callable[[Batch], torch.Tensor] | nn.Module,
    dataset: ArrayDataset,
    num_classes: int,
    *,
    device: torch.device | str = "cpu",
    batch_size: int = 64,
) -> np.ndarray:
    """Per image, per class, the intersection and the union pixel counts of ``predict``'s
    prediction and the labels (unlabelled pixels left out): ``(N, 2, K)`` int64, in the
    dataset's order. Summed over any set of images they give that set's IoU (:func:`miou_of`).
    """
    if isinstance(predict, nn.Module):
        predict.eval().to(device)
    k = num_classes
    out = []
    for batch in make_loader(dataset, batch_size=batch_size, shuffle=False, shard=False):
        batch = {key: v.to(device) for key, v in batch.items()}
        pred, label = predict(batch).argmax(1), batch["label"]  # (B, H, W) each
        b = len(label)
        image = torch.arange(b, device=label.device).view(b, 1, 1).expand_as(label)
        valid = label != IGNORE_INDEX
        # One confusion matrix per image (B, K, K): rows labels, columns predictions.
        cell = (image * k * k + label.clamp_min(0) * k + pred)[valid]
        conf = torch.bincount(cell, minlength=b * k * k).view(b, k, k)
        inter = conf.diagonal(dim1=1, dim2=2)
        union = conf.sum(1) + conf.sum(2) - inter
        out.append(torch.stack([inter, union], 1).cpu().numpy())
    return np.concatenate(out).astype(np.int64)


def miou_of(outcomes: np.ndarray) -> float:
    """Mean IoU from per-image ``(N, 2, K)`` intersection and union counts: summed over the
    images, averaged over the classes present (union > 0), in float32 as torchmetrics'
    ``MulticlassJaccardIndex(average="macro")`` computes it.

    Example:
        >>> o = np.array([[[2, 0], [4, 0]], [[0, 1], [0, 1]]])  # class 0: 2/4; class 1: 1/1
        >>> miou_of(o)
        0.75
    """
    totals = torch.from_numpy(np.asarray(outcomes).sum(0)).float()  # (2, K)
    inter, union = totals[0], totals[1]
    present = (union > 0).float()
    iou = torch.where(union > 0, inter / union.clamp_min(1), torch.zeros_like(inter))
    return float(((present * iou) / present.sum()).sum())


def segmentation_examples(
    models: Mapping[str, nn.Module],
    data: DataBundle,
    *,
    count: int = 4,
    device: torch.device | str = "cpu",
) -> bytes:
    """A PNG: for ``count`` test images, the inputs, the ground truth and each model's
    prediction (rows: images; columns: modalities, ground truth, models)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ds = data.test
    rows = list(range(min(count, len(ds))))
    batch = ds[rows]
    preds = {}
    with torch.no_grad():
        for name, model in models.items():
            model.eval().to(device)
            inputs = {k: v.to(device) for k, v in batch.items()}
            preds[name] = model(inputs).argmax(1).cpu().numpy()
    label = batch["label"].numpy()
    k = data.num_classes
    cmap = plt.get_cmap("tab10" if k <= 10 else "tab20" if k <= 20 else "gist_ncar", k)
    cols = [*data.modalities, "ground truth", *models]
    fig, axes = plt.subplots(
        len(rows), len(cols), figsize=(1.6 * len(cols), 1.6 * len(rows)), dpi=100, squeeze=False
    )
    for i in range(len(rows)):
        for j, col in enumerate(cols):
            ax = axes[i][j]
            ax.axis("off")
            if i == 0:
                ax.set_title(stage_display_name(col) if col in models else col, fontsize=7)
            if col in data.modalities:
                x = batch[col][i].numpy()
                x = (x - x.min()) / max(float(x.max() - x.min()), 1e-6)  # shown, not measured
                ax.imshow(x.transpose(1, 2, 0) if x.shape[0] == 3 else x[0], cmap="gray")
            else:
                y = label[i] if col == "ground truth" else preds[col][i]
                shown = np.ma.masked_less(y, 0)  # unlabelled pixels blank
                ax.imshow(shown, cmap=cmap, vmin=0, vmax=k - 1, interpolation="nearest")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


class Segmentation:
    """The segmentation task (see :class:`umt.tasks.base.Task`)."""

    name = "segmentation"
    metric = "miou"
    metric_name = "mIoU"
    column = "mIoU"
    fusion_sweep = False  # a segmentation model fuses per stage (model.seg.fusion)
    additive = False  # mIoU: a ratio of sums over the samples
    report = ReportText(
        score_heading="Mean IoU",
        score="test mean IoU",
        sizes_unit=" images",
        selection="Checkpoints are selected on the validation mean IoU; the test split is read "
        "once per model. Mean IoU averages the classes present; unlabelled pixels are ignored.",
        probe="A 1x1 linear classifier is trained on each frozen encoder's last-stage feature "
        "map (its logits upsampled to the labels; train split, L2 chosen on val mean IoU); the "
        "table gives its test mean IoU. An encoder of the fused model below its teacher's has "
        "learned less of its modality alone: modality failure. Each branch is probed on the map "
        "the fused model computes for it: a branch fed the fused map (ESANet's RGB branch) is "
        "probed with that input, as the fused model runs it. Features are computed on every "
        "split's evaluation view (no random augmentation).",
        class_table=True,
        examples=True,
    )

    def build_model(
        self,
        cfg: ModelConfig,
        shapes: Mapping[str, tuple[int, ...]],
        num_classes: int,
        *,
        uni: bool = False,
        fusion: str | None = None,
        encoders: Mapping[str, EncoderFactory] | None = None,
        init_seed: int | None = None,
    ) -> nn.Module:
        if encoders:
            raise UMTError(
                f"encoders {sorted(encoders)}: your own encoders are for classification; a "
                "segmentation model's branches are set by model.seg"
            )
        model = build_seg_model(cfg.seg, shapes, num_classes, init_seed=init_seed)
        if cfg.encoder.weights:
            init_encoders(model.encoders, cfg.encoder.weights)  # our SegEncoder state dicts
        return model

    def val_metric(self, num_classes: int) -> Metric:
        return MulticlassJaccardIndex(num_classes, ignore_index=IGNORE_INDEX)

    def scores(
        self,
        predict: Predict,
        dataset: ArrayDataset,
        num_classes: int,
        *,
        device: torch.device | str = "cpu",
        transform: Callable[[Batch], Batch] | None = None,
    ) -> dict[str, Any]:
        return segmentation_scores(
            predict, dataset, num_classes, device=device, transform=transform
        )

    def split_results(self, val: dict[str, Any], test: dict[str, Any]) -> dict[str, Any]:
        return {
            "val_miou": val["miou"],
            "val_pixel_acc": val["pixel_acc"],
            "test_miou": test["miou"],
            "test_pixel_acc": test["pixel_acc"],
            "test_iou": test["iou"],
        }

    def outcomes(
        self,
        predict: Predict,
        dataset: ArrayDataset,
        num_classes: int,
        *,
        device: torch.device | str = "cpu",
    ) -> np.ndarray:
        return iou_outcomes(predict, dataset, num_classes, device=device)

    def score_of(self, outcomes: np.ndarray) -> float:
        return miou_of(outcomes)

    def probe(
        self,
        encoder: nn.Module,
        data: DataBundle,
        modality: str,
        cfg: ProbeConfig,
        *,
        device: torch.device | str = "cpu",
    ) -> SegProbeResult:
        maps = [
            extract_maps(encoder, data.eval_split(s), modality, device=device)
            for s in ("train", "val", "test")
        ]
        return linear_probe_maps(maps[0], maps[1], maps[2], data.num_classes, cfg, device=device)

    def refit_head(self, model: nn.Module, outcome: ProbeOutcome) -> bool:
        return False  # the decoder is not a linear read-out of the last map

    def probe_model(
        self,
        model: nn.Module,
        data: DataBundle,
        modality: str,
        cfg: ProbeConfig,
        *,
        device: torch.device | str = "cpu",
    ) -> SegProbeResult:
        # The branch's last-stage map (N, C, h, w) as the fused forward pass computes it.
        maps = [
            encode_model_split(model, data.eval_split(s), modality, batch_size=64, device=device)
            for s in ("train", "val", "test")
        ]
        return linear_probe_maps(maps[0], maps[1], maps[2], data.num_classes, cfg, device=device)

    def summary_extras(self, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
        return {
            "test_pixel_acc": mean_std([r["test_pixel_acc"] for r in rows]),
            "test_iou": [
                mean_std(list(c)) for c in zip(*(r["test_iou"] for r in rows), strict=True)
            ],
        }

    def data_extras(self, data: DataBundle) -> dict[str, Any]:
        return {"class_names": data.info.get("class_names")}

    def examples_figure(
        self, models: Mapping[str, nn.Module], data: DataBundle, *, device: torch.device | str
    ) -> bytes | None:
        return segmentation_examples(models, data, device=device) if models else None
