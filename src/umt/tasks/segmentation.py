"""Semantic segmentation: a label per pixel, scored by mean IoU (unlabelled pixels ignored);
encoders give stage maps ``(B, C, h, w)``, probed by a per-position linear classifier.

The probe: the encoder's last-stage map ``(N, C, h, w)`` is probed by the same kind of classifier
as :mod:`umt.probe`'s, applied at every position: a 1x1 convolution ``C -> K`` on the standardised
map, its logits bilinearly upsampled to the label maps' ``(H, W)``, cross-entropy over labelled
pixels; full-batch L-BFGS (the loss accumulated over chunks of samples, so memory stays bounded),
the L2 strength chosen on the validation mean IoU, the test mean IoU read once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
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
from umt.probe import DEFAULT_PROBE, ProbeConfig, encode_model_split, encode_split
from umt.tasks.base import Predict, ReportText, mean_std


@dataclass(frozen=True)
class SegProbeResult:
    val_miou: float
    test_miou: float
    test_pixel_acc: float
    l2: float
    feature_dim: int

    def as_dict(self) -> dict[str, float]:
        return {
            "val_miou": self.val_miou,
            "test_miou": self.test_miou,
            "test_pixel_acc": self.test_pixel_acc,
            "l2": self.l2,
        }


@torch.no_grad()
def extract_maps(
    encoder: nn.Module,
    dataset: ArrayDataset,
    modality: str,
    *,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Feature maps ``(N, C, h, w)`` of the frozen encoder (eval mode) and label maps
    ``(N, H, W)``, on the CPU."""
    return encode_split(encoder, dataset, modality, batch_size=batch_size, device=device)


def _pixel_logits(clf: nn.Conv2d, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The 1x1 classifier's logits ``(B, K, H, W)``, upsampled to the labels' size."""
    return F.interpolate(clf(x), size=size, mode="bilinear", align_corners=False)


def fit_pixel_linear(
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    *,
    l2: float,
    max_iter: int = 100,
    chunk: int = 64,
) -> nn.Conv2d:
    """A per-position linear classifier (1x1 conv) on maps ``(N, C, h, w)`` for labels
    ``(N, H, W)``: full-batch L-BFGS on the mean cross-entropy over labelled pixels (the
    gradient accumulated over chunks of ``chunk`` samples), plus ``l2 * ||W||^2``.

    Example:
        >>> x = torch.tensor([[[[-1.0, 1.0]]]])              # (1, 1, 1, 2): one row, two cells
        >>> y = torch.tensor([[[0, 0, 1, 1]]])              # (1, 1, 4): labels at 2x resolution
        >>> clf = fit_pixel_linear(x, y, 2, l2=1e-4)
        >>> _pixel_logits(clf, x, (1, 4)).argmax(1).tolist()
        [[[0, 0, 1, 1]]]
    """
    torch.manual_seed(0)
    clf = nn.Conv2d(x.shape[1], num_classes, 1).to(x.device)
    assert clf.bias is not None
    nn.init.zeros_(clf.weight)
    nn.init.zeros_(clf.bias)
    size = (y.shape[-2], y.shape[-1])
    n_valid = max(1, int((y != IGNORE_INDEX).sum()))
    opt = torch.optim.LBFGS(clf.parameters(), max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        total = torch.zeros((), device=x.device)
        for start in range(0, len(x), chunk):
            logits = _pixel_logits(clf, x[start : start + chunk], size)
            loss = F.cross_entropy(
                logits, y[start : start + chunk], ignore_index=IGNORE_INDEX, reduction="sum"
            )
            (loss / n_valid).backward()
            total += loss.detach() / n_valid
        reg = l2 * clf.weight.pow(2).sum()
        reg.backward()
        return total + reg.detach()

    with torch.enable_grad():
        opt.step(closure)  # type: ignore[arg-type]
    return clf


@torch.no_grad()
def _seg_scores(
    clf: nn.Conv2d, x: torch.Tensor, y: torch.Tensor, num_classes: int, chunk: int = 64
) -> tuple[float, float]:
    """Mean IoU and pixel accuracy of the probe on maps ``x`` and labels ``y``."""
    kw: dict[str, Any] = {"ignore_index": IGNORE_INDEX, "sync_on_compute": False}
    miou = MulticlassJaccardIndex(num_classes, **kw).to(x.device)
    pixel = MulticlassAccuracy(num_classes, average="micro", **kw).to(x.device)
    for start in range(0, len(x), chunk):
        pred = _pixel_logits(clf, x[start : start + chunk], (y.shape[-2], y.shape[-1])).argmax(1)
        miou.update(pred, y[start : start + chunk])
        pixel.update(pred, y[start : start + chunk])
    return float(miou.compute()), float(pixel.compute())


def linear_probe_maps(
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    num_classes: int,
    cfg: ProbeConfig = DEFAULT_PROBE,
    *,
    device: torch.device | str = "cpu",
) -> SegProbeResult:
    """Fit on ``train`` maps, choose L2 on ``val`` mean IoU, report ``test`` once; the fits run
    on ``device`` (a GPU makes probes of full-size NYU maps practical)."""
    train, val, test = ((x.to(device), y.to(device)) for x, y in (train, val, test))
    xs = train[0].transpose(0, 1).flatten(1)  # (C, N h w): statistics per channel
    mean = xs.mean(1).view(1, -1, 1, 1)
    std = xs.std(1).clamp_min(1e-6).view(1, -1, 1, 1)

    def norm(x: torch.Tensor) -> torch.Tensor:
        return (x - mean) / std

    best: tuple[float, float, nn.Conv2d] | None = None
    for l2 in cfg.l2:
        clf = fit_pixel_linear(norm(train[0]), train[1], num_classes, l2=l2, max_iter=cfg.max_iter)
        val_miou, _ = _seg_scores(clf, norm(val[0]), val[1], num_classes)
        if best is None or val_miou > best[0]:
            best = (val_miou, l2, clf)
    assert best is not None
    val_miou, l2, clf = best
    test_miou, test_pixel = _seg_scores(clf, norm(test[0]), test[1], num_classes)
    return SegProbeResult(
        val_miou=val_miou,
        test_miou=test_miou,
        test_pixel_acc=test_pixel,
        l2=l2,
        feature_dim=train[0].shape[1],
    )


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
    ) -> nn.Module:
        if encoders:
            raise UMTError(
                f"encoders {sorted(encoders)}: your own encoders are for classification; a "
                "segmentation model's branches are set by model.seg"
            )
        model = build_seg_model(cfg.seg, shapes, num_classes)
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
