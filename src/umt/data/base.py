"""The data contract every data set follows.

A batch is a ``dict``: one tensor per modality name plus ``"label"``::

    {"audio": Tensor,   # (B, *shape_audio)  float32
     "visual": Tensor,  # (B, *shape_visual) float32
     "label": Tensor}   # (B,) int64

A data set may also hand out *raw* batches that are finished on the device they are moved to
(``for_device`` / ``on_device``): then a key ``"<modality>:<name>"`` carries per-sample
parameters of that modality drawn on the CPU (``"visual:box"``: each clip's crop box), consumed
by ``on_device``. Such keys are never modalities (:func:`is_modality_key`); a colon is not
allowed in a modality's name.

A data set is a :class:`DataBundle`: three :class:`ArrayDataset` splits (train / val / test) over
the same modalities. Nothing here knows a modality's name.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from umt.errors import UMTError

Batch = dict[str, torch.Tensor]
SPLITS = ("train", "val", "test")
#: Batch keys that are not modalities.
NON_MODALITY_KEYS = frozenset({"label", "index"})
#: Separates a modality from the name of a per-sample parameter in a raw batch's keys.
PARAM_SEP = ":"


def is_modality_key(key: str) -> bool:
    """Whether a batch key holds a modality (not the labels, indices or per-sample parameters).

    Example:
        >>> [is_modality_key(k) for k in ("visual", "label", "index", "visual:box")]
        [True, False, False, False]
    """
    return key not in NON_MODALITY_KEYS and PARAM_SEP not in key


class ArrayView:
    """A stored array seen as float32 rows computed on read: an array-like (``shape``,
    ``dtype``, ``len``, indexing by row, slice or index list) that ``ArrayDataset`` can hold.
    Subclasses set ``shape`` and give ``read(rows)``, the rows at the integer indices ``rows``."""

    dtype = np.dtype(np.float32)
    shape: tuple[int, ...]

    def __init__(self, stored: np.ndarray) -> None:
        self.stored = stored

    def read(self, rows: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def itemsize(self) -> int:
        return self.dtype.itemsize

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    def __len__(self) -> int:
        return len(self.stored)

    def __getitem__(self, index: Any) -> np.ndarray:
        rows = np.arange(len(self))[index]
        single = np.ndim(rows) == 0
        out = self.read(np.atleast_1d(rows))
        return out[0] if single else out


class ArrayDataset(Dataset[Batch]):
    """Samples held as one array per modality (in memory or memory-mapped) plus labels.

    Indexing takes a *list* of indices and returns a whole batch, so that a batch costs one
    fancy-indexing per modality rather than one Python call per sample.

    Args:
        arrays: modality name -> array of shape ``(N, *shape)``; ``np.memmap`` works.
        labels: ``(N,)`` integer class labels (or ``(N, H, W)`` label maps for segmentation).

    Example:
        >>> ds = ArrayDataset({"a": np.zeros((4, 3)), "b": np.ones((4, 2))}, np.arange(4))
        >>> batch = ds[[0, 2]]
        >>> sorted(batch), tuple(batch["a"].shape), batch["label"].tolist()
        (['a', 'b', 'label'], (2, 3), [0, 2])
    """

    def __init__(
        self,
        arrays: Mapping[str, np.ndarray],
        labels: np.ndarray,
        *,
        with_index: bool = False,
        augmented: bool = False,
    ) -> None:
        if not arrays:
            raise UMTError("a data set needs at least one modality; got none")
        n = len(labels)
        for name, arr in arrays.items():
            if len(arr) != n:
                raise UMTError(
                    f"modality {name!r} has {len(arr)} samples but there are {n} labels; "
                    "every modality must have one entry per label"
                )
        self.arrays = dict(arrays)
        self.labels = np.asarray(labels)
        self.with_index = with_index  # batches carry "index": each sample's position (B,)
        self.augmented = augmented  # inputs differ between epochs (random augmentation)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int | Sequence[int]) -> Batch:  # type: ignore[override]
        idx = np.sort(np.atleast_1d(np.asarray(index)))  # sorted reads are faster on a memmap
        batch = {
            name: torch.from_numpy(np.ascontiguousarray(arr[idx], dtype=np.float32))
            for name, arr in self.arrays.items()
        }
        batch["label"] = torch.from_numpy(self.labels[idx].astype(np.int64))
        if self.with_index:
            batch["index"] = torch.from_numpy(idx.astype(np.int64))
        return batch

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self.arrays)

    def subset(self, modalities: Sequence[str]) -> ArrayDataset:
        """The same samples with only the given modalities."""
        return ArrayDataset(
            {m: self.arrays[m] for m in modalities},
            self.labels,
            with_index=self.with_index,
            augmented=self.augmented,
        )

    def indexed(self) -> ArrayDataset:
        """The same samples, with each batch carrying ``"index"`` (for per-sample caches)."""
        return ArrayDataset(self.arrays, self.labels, with_index=True, augmented=self.augmented)

    def for_device(self) -> ArrayDataset:
        """The same samples as raw batches, to be finished by :meth:`on_device` after they are
        moved to the device (the training loop does both). Here the batches are already
        finished: the split itself. ``data.name: prepared`` reads uint8 frames and draws the
        augmentation on the CPU, and crops, flips and normalises on the device."""
        return self

    def on_device(self, batch: Batch) -> Batch:
        """Finishes a batch of :meth:`for_device` on the device it is on (here: as it is)."""
        return batch

    def eval_view(self) -> ArrayDataset:
        """The same samples as evaluation sees them: the random training augmentation off, so
        every read of a sample gives the same input (the evaluation transforms: centre crop,
        centre frames, no flip or masks). ``self`` where nothing is augmented.

        One place for every data set: a subclass that augments does so only while
        ``augmented`` is true (``PreparedDataset``, ``SegmentationDataset``), so a shallow copy
        with the flag off reads its evaluation path.

        Example:
            >>> ds = ArrayDataset({"a": np.zeros((2, 3))}, np.zeros(2, dtype=int), augmented=True)
            >>> ds.eval_view().augmented, ds.augmented, ds.eval_view().eval_view() is not ds
            (False, True, True)
        """
        if not self.augmented:
            return self
        view = copy.copy(self)
        view.augmented = False
        return view


@dataclass(frozen=True)
class DataBundle:
    """A data set: its splits and what a model needs to know about it.

    Attributes:
        name: the data set's name, as in ``umt datasets``.
        train, val, test: the splits. Checkpoints are selected on ``val``; ``test`` is read once.
        num_classes: number of classes.
        task: ``"classification"`` (or ``"segmentation"``).
        description: one line for listings and reports.
    """

    name: str
    train: ArrayDataset
    val: ArrayDataset
    test: ArrayDataset
    num_classes: int
    task: str = "classification"
    description: str = ""
    info: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        mods = self.train.modalities
        for split in ("val", "test"):
            other = getattr(self, split).modalities
            if set(other) != set(mods):
                raise UMTError(
                    f"data set {self.name!r}: split {split!r} has modalities {list(other)} "
                    f"but 'train' has {list(mods)}"
                )
        for split in SPLITS:
            ds = getattr(self, split)
            if len(ds) == 0:
                raise UMTError(f"data set {self.name!r}: split {split!r} is empty")
            if ds.labels.ndim == 1:  # one class per sample (label maps are checked by their sets)
                lo, hi = int(ds.labels.min()), int(ds.labels.max())
                if lo < 0 or hi >= self.num_classes:
                    bad = int(np.flatnonzero((ds.labels < 0) | (ds.labels >= self.num_classes))[0])
                    raise UMTError(
                        f"data set {self.name!r}: split {split!r} has label "
                        f"{int(ds.labels[bad])} at index {bad}; labels must be in "
                        f"0..{self.num_classes - 1}"
                    )

    @property
    def modalities(self) -> tuple[str, ...]:
        return self.train.modalities

    @property
    def input_shapes(self) -> dict[str, tuple[int, ...]]:
        """Per modality, the shape of one sample (without the batch dimension)."""
        return {m: tuple(a.shape[1:]) for m, a in self.train.arrays.items()}

    def restrict(self, modalities: Sequence[str]) -> DataBundle:
        """The same data set with only ``modalities`` (a uni-modal view for a teacher)."""
        missing = [m for m in modalities if m not in self.modalities]
        if missing:
            raise UMTError(
                f"data set {self.name!r} has no modality {missing}; it has {self.modalities}"
            )
        return DataBundle(
            name=self.name,
            train=self.train.subset(modalities),
            val=self.val.subset(modalities),
            test=self.test.subset(modalities),
            num_classes=self.num_classes,
            task=self.task,
            description=self.description,
            info=self.info,
        )

    def split(self, name: str) -> ArrayDataset:
        if name not in SPLITS:
            raise UMTError(f"unknown split {name!r}; expected one of {list(SPLITS)}")
        ds: ArrayDataset = getattr(self, name)
        return ds

    def eval_split(self, name: str) -> ArrayDataset:
        """Split ``name`` with the training augmentation off (:meth:`ArrayDataset.eval_view`):
        what probes and feature caches read, so every encoder is measured on the same inputs."""
        return self.split(name).eval_view()

    def modality_means(self) -> dict[str, torch.Tensor]:
        """Per modality, the mean training input (used to mask a modality by its mean)."""
        out = {}
        for m, arr in self.train.arrays.items():
            acc = np.zeros(arr.shape[1:], dtype=np.float64)
            for start in range(0, len(arr), 4096):  # chunked: works on memory-mapped arrays
                acc += np.asarray(arr[start : start + 4096], dtype=np.float64).sum(0)
            out[m] = torch.from_numpy((acc / len(arr)).astype(np.float32))
        return out


class ShardedBatchSampler(Sampler[list[int]]):
    """Batches of indices, shuffled by ``(seed, epoch)`` alone, sharded across DDP processes.

    - The trainer calls ``set_epoch`` before each epoch, so a run resumed at epoch k sees the
      same batches as an uninterrupted one.
    - Under ``torch.distributed``, each process takes its shard: training shards are equal in
      size (wrapping around, so every process takes the same number of steps); evaluation
      shards are contiguous and disjoint, so metrics synced across processes count each sample
      exactly once.

    Example:
        >>> list(ShardedBatchSampler(5, 2, shuffle=False))
        [[0, 1], [2, 3], [4]]
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        *,
        shuffle: bool,
        seed: int = 0,
        drop_last: bool = False,
        shard: bool = True,
    ) -> None:
        self.n, self.batch_size, self.shuffle = n, batch_size, shuffle
        self.seed, self.drop_last, self.epoch, self.shard = seed, drop_last, 0, shard

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _indices(self) -> np.ndarray:
        if self.shuffle:
            gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(self.n, generator=gen).numpy()
        else:
            order = np.arange(self.n)
        if not (
            self.shard and torch.distributed.is_available() and torch.distributed.is_initialized()
        ):
            return order
        rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
        if self.shuffle:
            total = -(-self.n // world) * world
            order = np.concatenate([order, order[: total - self.n]])
            return order[rank::world]
        bounds = np.linspace(0, self.n, world + 1).astype(int)
        return order[bounds[rank] : bounds[rank + 1]]

    def __iter__(self) -> Iterator[list[int]]:
        order = self._indices()
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            if self.drop_last and len(batch) < self.batch_size:
                return
            yield batch.tolist()

    def __len__(self) -> int:
        n = len(self._indices())
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)


def make_loader(
    dataset: ArrayDataset,
    *,
    batch_size: int,
    shuffle: bool,
    seed: int = 0,
    num_workers: int = 0,
    drop_last: bool = False,
    shard: bool = True,
    pin_memory: bool | None = None,
) -> DataLoader[Batch]:
    """A DataLoader that fetches whole batches at once (see :class:`ArrayDataset`).

    Under DDP each process reads its shard; ``shard=False`` reads the whole split (for work one
    process does alone: final evaluation, probes, feature caches). ``pin_memory`` (default:
    whether CUDA is available) puts batches in page-locked memory, so that the copy to the GPU
    runs asynchronously.

    Example:
        >>> ds = ArrayDataset({"a": np.zeros((5, 3))}, np.zeros(5, dtype=int))
        >>> [len(b["label"]) for b in make_loader(ds, batch_size=2, shuffle=False)]
        [2, 2, 1]
    """
    sampler = ShardedBatchSampler(
        len(dataset), batch_size, shuffle=shuffle, seed=seed, drop_last=drop_last, shard=shard
    )
    return DataLoader(
        dataset,
        sampler=sampler,
        batch_size=None,  # the dataset returns whole batches
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory,
    )
