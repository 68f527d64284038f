"""What segmentation data sets share: label maps, the ignored label, joint augmentation.

A segmentation batch is the classification batch with label maps::

    {"rgb": Tensor,    # (B, 3, H, W) float32
     "depth": Tensor,  # (B, 1, H, W) float32
     "label": Tensor}  # (B, H, W) int64 in 0..K-1, or IGNORE_INDEX for unlabelled pixels

Unlabelled pixels carry :data:`IGNORE_INDEX` (-100), PyTorch's ``cross_entropy`` default, so that
every method's loss ignores them without knowing the task; the metrics are told the same value.

Augmentation must move every modality and the label map together: :class:`SegmentationDataset`
draws one random scale, crop and flip per sample and applies it to all of them (bilinear for the
images, nearest for the labels). Evaluation is deterministic: the stored images as they are.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from umt.data.base import ArrayDataset, ArrayView, Batch
from umt.errors import UMTError

#: Label of unlabelled pixels in batches (``torch.nn.functional.cross_entropy``'s default).
IGNORE_INDEX = -100


@dataclass(frozen=True)
class SegAugmentConfig:
    """Training augmentation of segmentation data (the same draw for every modality and the
    labels of a sample).

    Attributes:
        enabled: augment the training split at all.
        scale: range of the random rescaling factor; the rescaled image is randomly cropped (or
            padded, labels with the ignored label) back to the stored size.
        flip: random horizontal flips (p = 0.5).
    """

    enabled: bool = True
    scale: tuple[float, float] = (1.0, 1.4)
    flip: bool = True

    def __post_init__(self) -> None:
        lo, hi = self.scale
        if not 0 < lo <= hi:
            raise UMTError(f"augment.scale must satisfy 0 < min <= max; got {self.scale}")


def augment_sample(
    images: Mapping[str, torch.Tensor], label: torch.Tensor, cfg: SegAugmentConfig
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """One sample's random scale, crop and flip, the same for every image and the label map.

    Args:
        images: modality -> ``(C, H, W)`` float.
        label: ``(H, W)`` int64.
        cfg: the augmentation.

    Example:
        >>> img, lab = augment_sample({"a": torch.ones(1, 6, 8)}, torch.zeros(6, 8, dtype=torch.long),
        ...                           SegAugmentConfig(scale=(1.5, 1.5)))
        >>> tuple(img["a"].shape), tuple(lab.shape)
        ((1, 6, 8), (6, 8))
    """
    h, w = label.shape
    lo, hi = cfg.scale
    s = lo if lo == hi else float(torch.empty(()).uniform_(lo, hi))
    sh, sw = max(1, round(h * s)), max(1, round(w * s))
    out = {}
    if (sh, sw) != (h, w):
        y = F.interpolate(label[None, None].float(), size=(sh, sw), mode="nearest-exact")[
            0, 0
        ].long()
    else:
        y = label
    # Pad to at least (h, w) (labels with IGNORE_INDEX), then crop (h, w) at a random offset.
    ph, pw = max(0, h - sh), max(0, w - sw)
    y0 = int(torch.randint(0, max(sh, h) - h + 1, ()))
    x0 = int(torch.randint(0, max(sw, w) - w + 1, ()))
    flip = cfg.flip and bool(torch.rand(()) < 0.5)
    y = F.pad(y, (0, pw, 0, ph), value=IGNORE_INDEX)[y0 : y0 + h, x0 : x0 + w]
    for m, x in images.items():
        if (sh, sw) != (h, w):
            x = F.interpolate(x[None], size=(sh, sw), mode="bilinear", align_corners=False)[0]
        x = F.pad(x, (0, pw, 0, ph))[:, y0 : y0 + h, x0 : x0 + w]
        out[m] = x.flip(-1) if flip else x
    return out, (y.flip(-1) if flip else y)


class SegmentationDataset(ArrayDataset):
    """A split of a segmentation data set: images per modality and ``(N, H, W)`` label maps.

    Args:
        arrays: modality -> ``(N, C, H, W)`` array-like (a float array, or a view that
            normalises stored values when indexed).
        labels: ``(N, H, W)`` integer label maps, stored values.
        label_map: stored label values -> batch labels (e.g. 255 -> :data:`IGNORE_INDEX`);
            ``None`` keeps them.
        augment: the training augmentation, or ``None`` (evaluation; deterministic).

    Example:
        >>> ds = SegmentationDataset({"a": np.zeros((3, 1, 4, 4))}, np.full((3, 4, 4), 255),
        ...                          label_map=lambda y: np.where(y == 255, IGNORE_INDEX, y))
        >>> batch = ds[[0, 1]]
        >>> tuple(batch["a"].shape), batch["label"].unique().tolist()
        ((2, 1, 4, 4), [-100])
    """

    def __init__(
        self,
        arrays: Mapping[str, Any],
        labels: np.ndarray,
        *,
        label_map: Callable[[np.ndarray], np.ndarray] | None = None,
        augment: SegAugmentConfig | None = None,
        with_index: bool = False,
    ) -> None:
        if labels.ndim != 3:
            raise UMTError(f"segmentation labels must be maps (N, H, W); got shape {labels.shape}")
        super().__init__(
            arrays,
            labels,
            with_index=with_index,
            augmented=augment is not None and augment.enabled,
        )
        self.label_map = label_map
        self.augment = augment

    def __getitem__(self, index: int | Sequence[int]) -> Batch:  # type: ignore[override]
        idx = np.sort(np.atleast_1d(np.asarray(index)))
        batch = {
            m: torch.from_numpy(np.ascontiguousarray(arr[idx], dtype=np.float32))
            for m, arr in self.arrays.items()
        }
        y = np.asarray(self.labels[idx])
        if self.label_map is not None:
            y = self.label_map(y)
        label = torch.from_numpy(y.astype(np.int64))
        if self.augmented and self.augment is not None:
            for i in range(len(idx)):
                imgs, label[i] = augment_sample(
                    {m: x[i] for m, x in batch.items()}, label[i], self.augment
                )
                for m, x in imgs.items():
                    batch[m][i] = x
        batch["label"] = label
        if self.with_index:
            batch["index"] = torch.from_numpy(idx.astype(np.int64))
        return batch

    def _copy(self, arrays: Mapping[str, Any], with_index: bool) -> SegmentationDataset:
        return SegmentationDataset(
            arrays,
            self.labels,
            label_map=self.label_map,
            augment=self.augment if self.augmented else None,
            with_index=with_index,
        )

    def subset(self, modalities: Sequence[str]) -> SegmentationDataset:
        return self._copy({m: self.arrays[m] for m in modalities}, self.with_index)

    def indexed(self) -> SegmentationDataset:
        return self._copy(self.arrays, True)


def check_label_maps(labels: np.ndarray, num_classes: int, ignore: int | None, where: str) -> None:
    """Raise a :class:`UMTError` naming ``where`` if a label is neither in ``0..K-1`` nor
    ``ignore``.

    Example:
        >>> check_label_maps(np.array([[[0, 7]]]), 3, 255, "labels.npy")
        Traceback (most recent call last):
        umt.errors.UMTError: labels.npy: label 7 at sample 0 is out of range; expected 0..2 or 255 (unlabelled)
    """
    bad = (labels < 0) | (labels >= num_classes)
    if ignore is not None:
        bad &= labels != ignore
    if bad.any():
        pos = np.argwhere(bad)[0]
        allowed = f"0..{num_classes - 1}" + (
            f" or {ignore} (unlabelled)" if ignore is not None else ""
        )
        raise UMTError(
            f"{where}: label {int(labels[tuple(pos)])} at sample {int(pos[0])} is out of range; "
            f"expected {allowed}"
        )


class NormalisedView(ArrayView):
    """A stored ``(N, C, H, W)`` array seen as float32 ``(x - mean_c) / std_c`` when indexed (an
    array-like: ``shape``, ``dtype``, ``len``, indexing by row, slice or index list).

    Example:
        >>> v = NormalisedView(np.full((2, 1, 2, 2), 10, dtype=np.uint8), [5.0], [2.5])
        >>> v[[0]].tolist()
        [[[[2.0, 2.0], [2.0, 2.0]]]]
    """

    def __init__(self, stored: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__(stored)
        self.shape = tuple(stored.shape)
        c = stored.shape[1]
        self.mean = np.asarray(mean, dtype=np.float32).reshape(1, c, 1, 1)
        self.std = np.maximum(np.asarray(std, dtype=np.float32), 1e-6).reshape(1, c, 1, 1)

    def read(self, rows: np.ndarray) -> np.ndarray:
        x = np.asarray(self.stored[rows], dtype=np.float32)
        out: np.ndarray = (x - self.mean) / self.std
        return out


__all__ = [
    "IGNORE_INDEX",
    "NormalisedView",
    "SegAugmentConfig",
    "SegmentationDataset",
    "augment_sample",
    "check_label_maps",
]
