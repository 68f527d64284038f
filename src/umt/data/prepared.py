"""Reading a folder written by ``umt prepare`` (``data.name: prepared``), with the field's usual
training augmentations.

The folder is an ordinary umt-folder (``audio.npy`` ``(N, 1, mels, frames)`` float16 dB,
``visual.npy`` ``(N, T, 3, S, S)`` uint8) plus ``prepared.json``. Each batch is built here:

* **visual** ``(B, frames, 3, crop, crop)``: uint8 converted to float and normalised with the
  ImageNet mean and std, batch by batch. Training: ``frames`` of the ``T`` stored frames chosen at
  random (in temporal order), one random resized crop (area ``scale``, aspect 3/4..4/3) and one
  horizontal flip (p = 0.5) shared by a clip's frames — OGM-GE's ``RandomResizedCrop`` +
  ``RandomHorizontalFlip``. Evaluation: the frames at the centres of ``frames`` equal segments of
  the stored ones and the centre ``crop x crop``.
* **audio** ``(B, 1, mels, frames)``: standardised with the training split's mean and std (in
  ``prepared.json``). Training may add SpecAugment-style masks (``freq_mask``, ``time_mask``:
  widths drawn in ``0..W``, ``masks`` of each, filled with 0, the mean).

The training split is marked ``augmented`` (so the UMT teacher-feature cache refuses it); the
splits' ``arrays`` are views giving the evaluation-time inputs, so ``input_shapes``, per-modality
means and ``umt data export`` see what the model sees.

**Where the work happens.** A batch is made in two steps. On the CPU, in the loader: the rows are
read in one copy from the memory maps (sorted indices; into page-locked memory when CUDA is
available, shared memory in a loader worker, else a ring of reused buffers whose pages stay
mapped, :class:`~umt.data.buffers.BatchBuffers`), frames picked, and each sample's crop box, flip and masks drawn
from the global torch generator (which checkpoints save and restore, so a resumed run draws the
same) — small tensors under keys ``"<modality>:<name>"`` (``"visual:box"``, ``"visual:flip"``,
``"audio:time_masks"``). Then, on whatever device the batch is on,
:meth:`PreparedDataset.on_device` cuts and resizes the boxes, flips, normalises and masks, for
the whole batch at once. ``fit`` trains on
``for_device()`` splits, whose batches stay raw (uint8 frames, float16 spectrograms: under a
third of the bytes to move) and are finished in ``on_after_batch_transfer``, on the GPU when
there is one; indexing a split (``data.train[rows]``, as probes and peers' methods do) gives
finished batches.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from umt.data.base import PARAM_SEP, ArrayDataset, ArrayView, Batch, DataBundle
from umt.data.buffers import BatchBuffers, take_rows
from umt.data.config import DataConfig, PreparedConfig
from umt.data.crops import random_boxes, resized_crops
from umt.data.folder import load_folder
from umt.errors import UMTError

PREPARED_FILE = "prepared.json"
FORMAT = "umt-prepared"
#: ImageNet statistics (RGB), the normalisation of the ResNet recipes in this field.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


#: Per-sample parameters of a raw batch (``"box"``, ``"flip"``, ...), by name.
Params = dict[str, torch.Tensor]


class _View(ArrayView):
    """A stored array as the model sees it at evaluation time (indexing reads ``eval_batch``).

    A batch is made in two steps, so that the pixel work can run on the device after the
    transfer: ``raw(rows, augment=...)`` reads the rows (one copy from the memory map, sorted
    rows) and draws each sample's augmentation on the CPU as small tensors; ``finish(x, params)``
    turns them into the model's inputs, for the whole batch, on whatever device they are on.
    """

    def __init__(self, stored: np.ndarray) -> None:
        super().__init__(stored)
        self.buffers = BatchBuffers()  # what `raw` reads the rows into (training and evaluation)

    def read(self, rows: np.ndarray) -> np.ndarray:
        out: np.ndarray = self.eval_batch(rows).numpy()
        return out

    def raw(self, rows: np.ndarray, *, augment: bool) -> tuple[torch.Tensor, Params]:
        raise NotImplementedError

    def finish(self, x: torch.Tensor, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def eval_batch(self, rows: np.ndarray) -> torch.Tensor:
        """The evaluation inputs of ``rows`` (deterministic), on the CPU."""
        return self.finish(*self.raw(rows, augment=False))

    def train_batch(self, rows: np.ndarray) -> torch.Tensor:
        """Augmented inputs of ``rows`` (drawn from the global torch generator), on the CPU."""
        return self.finish(*self.raw(rows, augment=True))


class FramesView(_View):
    """Clips ``(N, T, 3, S, S)`` uint8 -> ``(N, frames, 3, crop, crop)`` float32, normalised.

    Raw batches: uint8 ``(B, frames, 3, crop, crop)`` (evaluation: the centre frames and crop)
    or ``(B, frames, 3, S, S)`` with ``"box"`` ``(B, 4)`` and ``"flip"`` ``(B,)`` (training: the
    frames are picked on the CPU, the crop is cut and resized by ``finish``).

    Example:
        >>> stored = np.random.default_rng(0).integers(0, 256, (4, 3, 3, 16, 16), dtype=np.uint8)
        >>> view = FramesView(stored, PreparedConfig(frames=1, crop=12))
        >>> view.shape, tuple(view.train_batch(np.array([0, 2])).shape)
        ((4, 1, 3, 12, 12), (2, 1, 3, 12, 12))
        >>> bool(torch.equal(view.eval_batch(np.array([1])), view.eval_batch(np.array([1]))))
        True
        >>> x, params = view.raw(np.array([0, 2]), augment=True)
        >>> x.dtype, tuple(x.shape), sorted(params)
        (torch.uint8, (2, 1, 3, 16, 16), ['box', 'flip'])
    """

    def __init__(self, stored: np.ndarray, cfg: PreparedConfig) -> None:
        super().__init__(stored)
        if stored.ndim != 5 or stored.shape[2] != 3:
            raise UMTError(
                f"prepared visual data must be clips (N, T, 3, H, W); got shape {stored.shape}"
            )
        n, t, _, h, w = stored.shape
        self.frames = cfg.frames or t
        self.crop = cfg.crop or min(h, w)
        if not 1 <= self.frames <= t:
            raise UMTError(
                f"data.prepared.frames={cfg.frames}: the folder stores {t} frames per clip; "
                f"choose 1..{t} (0: all)"
            )
        if not 1 <= self.crop <= min(h, w):
            raise UMTError(
                f"data.prepared.crop={cfg.crop}: the folder stores {h}x{w} frames; choose "
                f"1..{min(h, w)} (0: the stored size)"
            )
        lo, hi = cfg.scale
        if not 0 < lo <= hi <= 1:
            raise UMTError(f"data.prepared.scale must satisfy 0 < min <= max <= 1; got {cfg.scale}")
        self.cfg = cfg
        self.shape = (n, self.frames, 3, self.crop, self.crop)
        # Evaluation: the frames at the centres of `frames` equal segments of the stored ones.
        self.centre_frames = np.floor((np.arange(self.frames) + 0.5) * t / self.frames).astype(int)
        std = torch.tensor(IMAGENET_STD).view(1, 1, 3, 1, 1) * 255.0
        self.scale = 1.0 / std  # (x - mean) / std == x * scale + shift
        self.shift = -torch.tensor(IMAGENET_MEAN).view(1, 1, 3, 1, 1) * 255.0 / std

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, T, 3, H, W)`` on the 0..255 scale -> float32 ``(x - mean) / std``, per batch.
        Copying uint8 into a new float tensor and scaling in place is about 9x faster than
        ``(x.float() - m) / s``."""
        out = x if x.dtype == torch.float32 else torch.empty(x.shape, device=x.device).copy_(x)
        return out.mul_(self.scale.to(x.device)).add_(self.shift.to(x.device))

    def raw(self, rows: np.ndarray, *, augment: bool) -> tuple[torch.Tensor, Params]:
        t, h, w = self.stored.shape[1], self.stored.shape[3], self.stored.shape[4]
        if not augment:
            y0, x0, c = (h - self.crop) // 2, (w - self.crop) // 2, self.crop
            if self.frames == t and c == h == w:
                return take_rows(self.stored, rows), {}
            frames = self.centre_frames[None, :]  # one copy of the centre frames' centre crops
            clips = self.stored[rows[:, None], frames, :, y0 : y0 + c, x0 : x0 + c]
            return torch.from_numpy(np.ascontiguousarray(clips)), {}
        n = len(rows)
        if self.frames < t:  # random frames, in temporal order, the same number per clip
            pick = torch.rand(n, t).argsort(1)[:, : self.frames].sort(1).values.numpy()
            # frame j of clip i is row i * t + j of the clips' frames, (N * T, 3, H, W)
            frames = self.stored.reshape(-1, *self.stored.shape[2:])
            x = take_rows(frames, (rows[:, None] * t + pick).reshape(-1), self.buffers)
            x = x.view(n, self.frames, *x.shape[1:])
        else:
            x = take_rows(self.stored, rows, self.buffers)
        box = random_boxes(n, h, w, self.cfg.scale)  # one box and one flip per clip
        flip = torch.rand(n) < 0.5 if self.cfg.flip else torch.zeros(n, dtype=torch.bool)
        return x, {"box": box, "flip": flip}

    def finish(self, x: torch.Tensor, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        if "box" in params:
            x = resized_crops(x, params["box"], params["flip"], self.crop)
        return self._normalise(x)


class SpectrogramView(_View):
    """Spectrograms ``(N, 1, mels, frames)`` in dB -> standardised float32 (same shape).

    Raw batches: the rows as stored (float16), with ``"freq_masks"`` and ``"time_masks"``
    ``(B, masks, 2)`` int64 ``(start, width)`` when training draws SpecAugment masks.

    Example:
        >>> stored = np.full((3, 1, 8, 20), -30.0, dtype=np.float16)
        >>> view = SpectrogramView(stored, PreparedConfig(time_mask=5), mean=-40.0, std=10.0)
        >>> view.eval_batch(np.array([0])).unique().tolist()
        [1.0]
        >>> tuple(view.train_batch(np.array([0, 1])).shape)
        (2, 1, 8, 20)
    """

    def __init__(self, stored: np.ndarray, cfg: PreparedConfig, *, mean: float, std: float) -> None:
        super().__init__(stored)
        if stored.ndim != 4:
            raise UMTError(
                f"prepared audio must be spectrograms (N, 1, mels, frames); got shape {stored.shape}"
            )
        if cfg.freq_mask < 0 or cfg.time_mask < 0 or cfg.masks < 0:
            raise UMTError(
                "data.prepared.freq_mask, time_mask and masks must be >= 0; got "
                f"{cfg.freq_mask}, {cfg.time_mask}, {cfg.masks}"
            )
        self.cfg = cfg
        self.shape = tuple(stored.shape)
        self.mean, self.std = float(mean), max(float(std), 1e-6)

    def raw(self, rows: np.ndarray, *, augment: bool) -> tuple[torch.Tensor, Params]:
        x = take_rows(self.stored, rows, self.buffers)  # as stored
        params: Params = {}
        n, m, f = len(rows), self.shape[-2], self.shape[-1]
        for key, width_max, size in (
            ("freq_masks", self.cfg.freq_mask, m),
            ("time_masks", self.cfg.time_mask, f),
        ):
            if augment and width_max > 0 and self.cfg.masks > 0:
                width = (torch.rand(n, self.cfg.masks) * (min(width_max, size) + 1)).long()
                start = (torch.rand(n, self.cfg.masks) * (size - width + 1)).long()
                params[key] = torch.stack([start, width], -1)  # (B, masks, 2)
        return x, params

    def finish(self, x: torch.Tensor, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        x = torch.empty(x.shape, device=x.device).copy_(x).sub_(self.mean).div_(self.std)
        for key, axis in (("freq_masks", -2), ("time_masks", -1)):
            if key in params:  # (B, masks, 2): filled with 0, the training mean
                start, width = params[key].unbind(-1)
                pos = torch.arange(x.shape[axis], device=x.device)
                hit = (pos >= start[..., None]) & (pos < (start + width)[..., None])
                hit = hit.any(1)  # (B, M) or (B, F)
                shape = (len(x), 1, -1, 1) if axis == -2 else (len(x), 1, 1, -1)
                x = x.masked_fill(hit.view(shape), 0.0)
        return x


class PreparedDataset(ArrayDataset):
    """A split of a prepared folder: batches built by the views, augmented when ``augmented``.

    Subsets (a teacher's one modality) and indexed copies keep the views and the augmentation.
    :meth:`for_device` gives the same split with raw batches (uint8 frames as stored, float16
    spectrograms, the augmentation drawn as ``"<modality>:<param>"`` keys), which
    :meth:`on_device` finishes after the transfer: the training loop's way to keep a GPU fed.
    """

    def __init__(
        self,
        views: Mapping[str, _View],
        labels: np.ndarray,
        *,
        with_index: bool = False,
        augmented: bool = False,
        raw: bool = False,
    ) -> None:
        # The views are array-likes standing in for arrays (see the module docstring).
        super().__init__(
            cast(Mapping[str, np.ndarray], views),
            labels,
            with_index=with_index,
            augmented=augmented,
        )
        self.views = dict(views)
        self.raw = raw  # batches left raw, for on_device

    def __getitem__(self, index: int | Sequence[int]) -> Batch:  # type: ignore[override]
        idx = np.sort(np.atleast_1d(np.asarray(index)))  # sorted reads are faster on a memmap
        batch: Batch = {}
        for m, v in self.views.items():  # the draws: global torch generator, in modality order
            batch[m], params = v.raw(idx, augment=self.augmented)
            batch.update({f"{m}{PARAM_SEP}{k}": p for k, p in params.items()})
        batch["label"] = torch.from_numpy(self.labels[idx].astype(np.int64))
        if self.with_index:
            batch["index"] = torch.from_numpy(idx.astype(np.int64))
        return batch if self.raw else self.on_device(batch)

    def on_device(self, batch: Batch) -> Batch:
        """A raw batch (of :meth:`for_device`, of any split) finished where it is: frames cut,
        resized, flipped and normalised, spectrograms standardised and masked, in batch; the
        ``"<modality>:<param>"`` keys are consumed."""
        out: Batch = {}
        for key, x in batch.items():
            if key in self.views:
                prefix = key + PARAM_SEP
                params = {k[len(prefix) :]: p for k, p in batch.items() if k.startswith(prefix)}
                out[key] = self.views[key].finish(x, params)
            elif PARAM_SEP not in key:
                out[key] = x
        return out

    def for_device(self) -> PreparedDataset:
        return PreparedDataset(
            self.views, self.labels, with_index=self.with_index, augmented=self.augmented, raw=True
        )

    def subset(self, modalities: Sequence[str]) -> PreparedDataset:
        return PreparedDataset(
            {m: self.views[m] for m in modalities},
            self.labels,
            with_index=self.with_index,
            augmented=self.augmented,
            raw=self.raw,
        )

    def indexed(self) -> PreparedDataset:
        return PreparedDataset(
            self.views, self.labels, with_index=True, augmented=self.augmented, raw=self.raw
        )


def read_prepared_info(root: Path) -> dict[str, Any]:
    """``prepared.json`` of a folder written by ``umt prepare``.

    Raises:
        UMTError: it is missing or not a ``umt prepare`` record.
    """
    path = root / PREPARED_FILE
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UMTError(
            f"data.root: {root} has no {PREPARED_FILE}, so it was not written by `umt prepare`; "
            "use data.name=folder for other umt-folders"
        ) from None
    except (OSError, ValueError) as e:
        raise UMTError(f"{path}: cannot read it ({e}); run `umt prepare` again") from e
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise UMTError(f'{path}: expected a JSON object with "format": "{FORMAT}"')
    return info


def load_prepared(cfg: DataConfig) -> DataBundle:
    """Open a folder written by ``umt prepare`` (``data.root``), memory-mapped, augmented as
    ``data.prepared`` says (see the module docstring).

    Raises:
        UMTError: ``data.root`` is unset, not a valid umt-folder, has no ``prepared.json``, or
            ``data.prepared`` asks for more frames or a larger crop than are stored.
    """
    folder = load_folder(cfg)  # checks the umt-folder and opens the arrays memory-mapped
    root = Path(str(folder.info["root"]))
    info = read_prepared_info(root)
    p = cfg.prepared
    stats = info.get("audio_stats") or {}
    mean, std = float(stats.get("mean", 0.0)), float(stats.get("std", 1.0))

    def views(ds: ArrayDataset) -> dict[str, _View]:
        out: dict[str, _View] = {}
        for m, arr in ds.arrays.items():
            if arr.ndim == 5:
                out[m] = FramesView(arr, p)
            elif arr.ndim == 4:
                out[m] = SpectrogramView(arr, p, mean=mean, std=std)
            else:
                raise UMTError(
                    f"{root}: modality {m!r} has samples of shape {arr.shape[1:]}; a prepared "
                    "folder holds clips (T, 3, H, W) and spectrograms (1, mels, frames)"
                )
        return out

    return DataBundle(
        name=folder.name,
        train=PreparedDataset(views(folder.train), folder.train.labels, augmented=p.augment),
        val=PreparedDataset(views(folder.val), folder.val.labels),
        test=PreparedDataset(views(folder.test), folder.test.labels),
        num_classes=folder.num_classes,
        task=folder.task,
        description=folder.description,
        info={**folder.info, "prepared": info},
    )


__all__ = [
    "FORMAT",
    "BatchBuffers",
    "PREPARED_FILE",
    "FramesView",
    "PreparedConfig",
    "PreparedDataset",
    "SpectrogramView",
    "load_prepared",
    "random_boxes",
    "read_prepared_info",
    "resized_crops",
    "take_rows",
]
