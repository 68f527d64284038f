"""Your own data in a study, without exporting it: ``umt.run_study(cfg, out, data=UserData(...))``.

The user's ``torch.utils.data.Dataset`` s (one per split, each sample a dict
``{modality: tensor, ..., "label": int}``) are read once, sample by sample, and stacked into the
arrays of a :class:`~umt.data.base.DataBundle`, so every stage, probe and report of a study runs on
them unchanged. The data is then held in memory: this suits data that fits in it (features,
spectrograms, small images); for larger data, write the umt-folder format (``umt data export``
shows it) and use ``data.name: folder``.

A study caches its stages by a hash of the data's content (:func:`content_hash`), so changed data
retrains and unchanged data is reused.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from umt.data.base import SPLITS, ArrayDataset, DataBundle
from umt.errors import UMTError


@dataclass(frozen=True)
class UserData:
    """A user's data set: three ``Dataset`` s of dict samples and what a study needs to know.

    Attributes:
        train, val, test: ``Dataset`` s (``len`` and integer indexing) whose samples are dicts
            ``{modality: tensor or array, ..., "label": int}`` (a label map ``(H, W)`` for
            segmentation); every sample of every split has the same shape per modality.
        modalities: the modality keys to use (other keys of a sample are ignored).
        num_classes: K; labels are ``0..K-1``.
        name: the data set's name in the summary and report.
        task: ``classification`` or ``segmentation``.
        description: one line for the report.

    Example:
        >>> class Pairs(Dataset):
        ...     def __len__(self): return 4
        ...     def __getitem__(self, i):
        ...         return {"a": torch.full((3,), float(i)), "b": torch.zeros(2), "label": i % 2}
        >>> bundle = UserData(Pairs(), Pairs(), Pairs(), modalities=["a", "b"],
        ...                   num_classes=2).bundle()
        >>> bundle.input_shapes, bundle.train.labels.tolist()
        ({'a': (3,), 'b': (2,)}, [0, 1, 0, 1])
    """

    train: Dataset[Any]
    val: Dataset[Any]
    test: Dataset[Any]
    modalities: Sequence[str]
    num_classes: int
    name: str = "user"
    task: str = "classification"
    description: str = ""

    def bundle(self) -> DataBundle:
        """The data read into memory as a :class:`DataBundle` (every sample read once)."""
        if not self.modalities:
            raise UMTError("UserData.modalities: name at least one modality key of the samples")
        if "label" in self.modalities:
            raise UMTError("UserData.modalities: 'label' is the target, not a modality")
        splits = {s: materialise(getattr(self, s), list(self.modalities), split=s) for s in SPLITS}
        return DataBundle(
            name=self.name,
            train=splits["train"],
            val=splits["val"],
            test=splits["test"],
            num_classes=self.num_classes,
            task=self.task,
            description=self.description or f"your own data ({', '.join(self.modalities)})",
        )


def _as_array(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def materialise(dataset: Dataset[Any], modalities: list[str], *, split: str) -> ArrayDataset:
    """Every sample of ``dataset`` stacked into one array per modality (float32) and labels.

    Raises:
        UMTError: naming the split, the sample's index and the key, for a sample that is not a
            dict, lacks a modality or the label, or whose shape differs from the first sample's.

    Example:
        >>> ds = [{"a": np.ones(2), "label": 1}, {"a": np.ones(3), "label": 0}]
        >>> materialise(ds, ["a"], split="train")
        Traceback (most recent call last):
        umt.errors.UMTError: split 'train', sample 1: 'a' has shape (3,), but sample 0's has shape (2,); every sample of a modality must have the same shape
    """
    try:
        n = len(dataset)  # type: ignore[arg-type]
    except TypeError as e:
        raise UMTError(
            f"split {split!r}: the data set ({type(dataset).__name__}) has no len(); give a "
            "map-style torch.utils.data.Dataset"
        ) from e
    if n == 0:
        raise UMTError(f"split {split!r}: the data set is empty")
    keys = [*modalities, "label"]
    arrays: dict[str, np.ndarray] = {}
    for i in range(n):
        sample = dataset[i]
        if not isinstance(sample, Mapping):
            raise UMTError(
                f"split {split!r}, sample {i}: expected a dict {{modality: tensor, 'label': "
                f"int}}, got {type(sample).__name__}"
            )
        for key in keys:
            if key not in sample:
                raise UMTError(
                    f"split {split!r}, sample {i}: no key {key!r} (the sample has "
                    f"{sorted(map(str, sample))}; expected {keys})"
                )
            value = _as_array(sample[key])
            if i == 0:
                dtype = np.int64 if key == "label" else np.float32
                arrays[key] = np.empty((n, *value.shape), dtype=dtype)
            elif value.shape != arrays[key].shape[1:]:
                raise UMTError(
                    f"split {split!r}, sample {i}: {key!r} has shape {value.shape}, but sample "
                    f"0's has shape {arrays[key].shape[1:]}; every sample of a modality must "
                    "have the same shape"
                )
            if key == "label" and not np.issubdtype(value.dtype, np.integer):
                if not np.all(np.mod(value, 1) == 0):
                    raise UMTError(
                        f"split {split!r}, sample {i}: 'label' is {value!r}; expected an "
                        "integer class"
                    )
            arrays[key][i] = value
    labels = arrays.pop("label")
    return ArrayDataset(arrays, labels)


def content_hash(data: DataBundle) -> str:
    """A short hash of a data set's content: every split's arrays (names, shapes, bytes) and
    labels, the number of classes and the task. A study keys its stages on it for user data.

    Example:
        >>> a = ArrayDataset({"x": np.zeros((2, 3))}, np.array([0, 1]))
        >>> b = ArrayDataset({"x": np.ones((2, 3))}, np.array([0, 1]))
        >>> content_hash(DataBundle("d", a, a, a, 2)) == content_hash(DataBundle("d", a, a, b, 2))
        False
    """
    h = hashlib.sha256()
    h.update(f"{data.task}|{data.num_classes}".encode())
    for split in SPLITS:
        ds = data.split(split)
        for name, arr in [*sorted(ds.arrays.items()), ("label", ds.labels)]:
            h.update(f"|{split}/{name}:{tuple(arr.shape)}:{np.dtype(arr.dtype).str}|".encode())
            for start in range(0, len(arr), 4096):  # chunked: works on memory-mapped arrays
                chunk = np.ascontiguousarray(np.asarray(arr[start : start + 4096]))
                h.update(chunk.tobytes())
    return h.hexdigest()[:16]


def user_data_summary(data: DataBundle) -> dict[str, Any]:
    """The summary's ``data`` entries of the user's own data: ``source`` and ``content_hash``
    (none for a configured data set, whose summary stays as it was)."""
    if "content_hash" not in data.info:
        return {}
    return {"source": "user", "content_hash": data.info["content_hash"]}
