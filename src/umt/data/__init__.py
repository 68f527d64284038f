"""Data sets: the embedded ones, the synthetic generator, and users' folders.

``DATASETS`` maps a name to a loader ``(DataConfig) -> DataBundle``.
"""

from __future__ import annotations

from collections.abc import Callable

from umt.data.avdigits import load_avdigits
from umt.data.base import SPLITS, ArrayDataset, Batch, DataBundle, make_loader
from umt.data.config import DataConfig
from umt.data.folder import load_folder
from umt.data.nyuv2 import load_nyuv2
from umt.data.prepared import load_prepared
from umt.data.rgbd import load_rgbd
from umt.data.synthetic import PRESETS, load_synthetic
from umt.data.user import UserData
from umt.errors import UMTError

Loader = Callable[[DataConfig], DataBundle]

DATASETS: dict[str, tuple[Loader, str]] = {
    "synthetic": (
        lambda cfg: load_synthetic(cfg.synthetic),
        "generated vectors; knobs for uni-modal strength and paired features "
        f"(presets: {', '.join(PRESETS)})",
    ),
    "folder": (
        load_folder,
        "your own data: a folder in the umt-folder format at data.root "
        "(`umt data check PATH` validates it)",
    ),
    "prepared": (
        load_prepared,
        "a folder written by `umt prepare` (VGGSound, Kinetics-Sounds, CREMA-D, AVE) at "
        "data.root, with training augmentation (data.prepared)",
    ),
    "avdigits": (
        load_avdigits,
        "embedded: spoken digits in noise (strong audio) + noisy, shifted 8x8 handwritten "
        "digits (weak vision); an AV-MNIST-like stand-in for VGGSound",
    ),
    "rgbd": (
        lambda cfg: load_rgbd(cfg.rgbd),
        "embedded: procedural RGB-D scenes for semantic segmentation (colour separates most "
        "classes, depth the rest); a NYU Depth V2 stand-in",
    ),
    "nyuv2": (
        load_nyuv2,
        "NYU Depth V2 RGB-D segmentation (40 or 13 classes): a folder written by "
        "`umt prepare nyuv2` at data.root (data.nyuv2)",
    ),
}


def load_data(cfg: DataConfig) -> DataBundle:
    """Load the data set that ``cfg`` names.

    Raises:
        UMTError: the name is unknown (the message lists the valid names).
    """
    if cfg.name not in DATASETS:
        raise UMTError(
            f"unknown data set {cfg.name!r} (data.name); expected one of {sorted(DATASETS)}"
        )
    return DATASETS[cfg.name][0](cfg)


__all__ = [
    "DATASETS",
    "SPLITS",
    "ArrayDataset",
    "Batch",
    "DataBundle",
    "DataConfig",
    "UserData",
    "load_data",
    "make_loader",
]
