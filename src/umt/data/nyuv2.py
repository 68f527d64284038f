"""NYU Depth V2 (Silberman et al., ECCV 2012): RGB-D semantic segmentation, 40 (or 13) classes,
read from a folder ``umt prepare nyuv2`` wrote (``umt.data.prepare.nyuv2``): a umt-folder
(``task: segmentation``) with ``nyuv2.json`` (the training split's per-channel statistics) and,
where preparation had the 13-class mapping, ``labels13/<split>.npy``.

Loading (``data.name: nyuv2``, ``data.root``): RGB and depth are standardised with those
statistics; training batches get the usual random scale, crop and flip (``data.nyuv2.augment``);
evaluation is deterministic.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from umt.data.base import DataBundle
from umt.data.config import DataConfig, NYUv2Config
from umt.data.folder import load_folder
from umt.data.folder.load import data_files
from umt.data.segmentation import (
    IGNORE_INDEX,
    NormalisedView,
    SegmentationDataset,
    check_label_maps,
)
from umt.errors import UMTError

MAPPING13_FILE = "class13Mapping.mat"
INFO_FILE = "nyuv2.json"
STORED_IGNORE = 255  # unlabelled pixels in the stored uint8 label maps


# -- loading ----------------------------------------------------------------------------------


def nyuv2_files(root: Path) -> list[Path]:
    """The files the loader reads: a umt-folder's (``data_files``) and the 13-class label maps
    (``labels13/<split>.npy``), so that an edited label map retrains the stages that read it.

    Example:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> (root / "labels13").mkdir()
        >>> for f in ("meta.json", "labels13/train.npy"):
        ...     _ = (root / f).write_text("x")
        >>> [p.relative_to(root).as_posix() for p in nyuv2_files(root)]
        ['meta.json', 'labels13/train.npy']
    """
    extra = sorted((root / "labels13").glob("*.npy"))
    return data_files(root) + [f for f in extra if f.is_file()]


def _to_batch_labels(y: np.ndarray) -> np.ndarray:
    return np.where(y == STORED_IGNORE, IGNORE_INDEX, y.astype(np.int64))


def load_nyuv2(cfg: DataConfig) -> DataBundle:
    """Open a folder written by ``umt prepare nyuv2`` (``data.root``), memory-mapped.

    Raises:
        UMTError: ``data.root`` is unset, not a valid umt-folder, has no ``nyuv2.json``, or
            13 classes are asked of a folder prepared without ``class13Mapping.mat``.
    """
    folder = load_folder(cfg)
    root = Path(str(folder.info["root"]))
    try:
        info = json.loads((root / INFO_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise UMTError(
            f"data.root: cannot read {root / INFO_FILE} ({e}); prepare the folder with "
            "`umt prepare nyuv2 --src DIR --out DIR`"
        ) from e
    n_cfg = cfg.nyuv2
    if n_cfg.classes == 13 and not info.get("classes13"):
        raise UMTError(
            f"data.nyuv2.classes=13: {root} was prepared without {MAPPING13_FILE}; put it in "
            "--src and prepare again, or use 40 classes"
        )
    stats = info["stats"]
    splits = {}
    for split in ("train", "val", "test"):
        ds = folder.split(split)
        labels = ds.labels
        if n_cfg.classes == 13:
            labels = np.load(root / "labels13" / f"{split}.npy", mmap_mode="r")
        arrays = {
            "rgb": NormalisedView(ds.arrays["rgb"], stats["rgb"]["mean"], stats["rgb"]["std"]),
            "depth": NormalisedView(
                ds.arrays["depth"], stats["depth"]["mean"], stats["depth"]["std"]
            ),
        }
        splits[split] = SegmentationDataset(
            arrays,
            labels,
            label_map=_to_batch_labels,
            augment=n_cfg.augment if split == "train" else None,
        )
    check_label_maps(
        np.asarray(splits["test"].labels[:1]), n_cfg.classes, STORED_IGNORE, str(root / "test")
    )
    names = folder.info.get("class_names") if n_cfg.classes == 40 else info.get("class_names13")
    return DataBundle(
        name="nyuv2",
        train=splits["train"],
        val=splits["val"],
        test=splits["test"],
        num_classes=n_cfg.classes,
        task="segmentation",
        description=f"NYU Depth V2 ({n_cfg.classes} classes, {info['size'][0]}x{info['size'][1]})",
        info={**folder.info, "class_names": names, "nyuv2": info},
    )


__all__ = ["NYUv2Config", "load_nyuv2"]
