"""The segmentation probe: an encoder's last-stage map ``(N, C, h, w)`` probed by the same kind of
classifier as :mod:`umt.probe`'s, applied at every position: a 1x1 convolution ``C -> K`` on the
standardised map, its logits bilinearly upsampled to the label maps' ``(H, W)``, cross-entropy
over labelled pixels; full-batch L-BFGS (the loss accumulated over chunks of samples, so memory
stays bounded), the L2 strength chosen on the validation mean IoU, the test mean IoU read once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy, MulticlassJaccardIndex

from umt.data.base import ArrayDataset
from umt.data.segmentation import IGNORE_INDEX
from umt.probe import DEFAULT_PROBE, ProbeConfig, encode_split


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
