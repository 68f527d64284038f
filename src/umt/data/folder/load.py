"""Loading a data folder (``data.name: folder``): checked cheaply, then memory-mapped."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from umt.data.base import SPLITS, ArrayDataset, DataBundle
from umt.data.config import DataConfig
from umt.data.folder.check import _inspect, format_problems
from umt.data.segmentation import IGNORE_INDEX, SegmentationDataset
from umt.errors import UMTError


def load_folder(cfg: DataConfig) -> DataBundle:
    """Open the data folder ``cfg.root`` (the ``folder`` data set), memory-mapped.

    Checks ``meta.json``, the files, per-sample shapes, dtypes, sample counts and class labels'
    range; values (NaN/inf) are left to :func:`check_folder`. Warnings (e.g. undeclared files)
    are issued with :func:`warnings.warn`.

    Args:
        cfg: the data configuration; only ``root`` is read.

    Returns:
        The data set, its arrays ``np.memmap`` instances read batch by batch. ``info`` holds
        ``root``, ``class_names`` (or ``None``), ``label_shape`` and ``ignore_index``.

    Raises:
        UMTError: ``data.root`` is unset or missing, or the folder has problems (all listed).

    Example:
        >>> from umt.data import DataConfig
        >>> load_folder(DataConfig(name="folder"))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        umt.errors.UMTError: data.root is not set; ... set data.root to its path
    """
    if cfg.root is None:
        raise UMTError(
            "data.root is not set; the 'folder' data set reads a folder in the umt-folder "
            "format: set data.root to its path"
        )
    root = Path(cfg.root).expanduser()
    if not root.is_dir():
        what = "is not a folder" if root.exists() else "does not exist"
        raise UMTError(f"data.root: {root} {what}; expected a folder in the umt-folder format")
    found = _inspect(root, scan_values=False)
    errors = [p for p in found.problems if p.severity == "error"]
    if errors:
        raise UMTError(
            f"data.root: {root} is not a valid umt-folder data set "
            f"({len(errors)} error{'s' if len(errors) != 1 else ''}):\n"
            f"{format_problems(errors)}\n"
            f"`umt data check {root}` reports every problem, values included"
        )
    for p in found.problems:
        warnings.warn(f"{root}: {p}", stacklevel=2)
    meta = found.known.meta
    assert meta is not None  # no errors: meta.json is valid

    ignore = meta.ignore_index

    def to_batch_labels(y: np.ndarray) -> np.ndarray:
        # Segmentation batches mark unlabelled pixels with IGNORE_INDEX, whatever is stored.
        return np.where(y == ignore, IGNORE_INDEX, y.astype(np.int64))

    def split(name: str) -> ArrayDataset:
        arrays = {m: found.arrays[name][m] for m in meta.modalities}
        if meta.task == "segmentation":
            mapping = to_batch_labels if ignore is not None and ignore != IGNORE_INDEX else None
            return SegmentationDataset(arrays, found.labels[name], label_map=mapping)
        return ArrayDataset(arrays, found.labels[name])

    return DataBundle(
        name=meta.name,
        train=split("train"),
        val=split("val"),
        test=split("test"),
        num_classes=meta.num_classes,
        task=meta.task,
        description=meta.description or f"umt-folder data set at {root}",
        info={
            "root": str(root),
            "class_names": list(meta.class_names) if meta.class_names is not None else None,
            "label_shape": list(meta.label_shape),
            "ignore_index": meta.ignore_index,
        },
    )


def data_files(root: Path) -> list[Path]:
    """The files a ``umt-folder`` loader reads under ``root``: ``*.json`` at the root and each
    split's ``*.npy``, sorted.

    Example:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> (root / "train").mkdir()
        >>> for f in ("meta.json", "train/a.npy", "train/notes.txt"):
        ...     _ = (root / f).write_text("x")
        >>> [p.relative_to(root).as_posix() for p in data_files(root)]
        ['meta.json', 'train/a.npy']
    """
    files = sorted(root.glob("*.json"))
    for split in SPLITS:
        files += sorted((root / split).glob("*.npy"))
    return [f for f in files if f.is_file()]
