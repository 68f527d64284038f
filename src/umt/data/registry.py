"""Every data set a study can name, registered once: ``DATASETS`` maps a name to its
:class:`DatasetSpec` (loader, one-line description, task, and the files its content is keyed on).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from umt.data.avdigits import load_avdigits
from umt.data.base import DataBundle
from umt.data.config import DataConfig
from umt.data.folder import load_folder
from umt.data.folder.load import data_files
from umt.data.nyuv2 import load_nyuv2, nyuv2_files
from umt.data.prepared import load_prepared
from umt.data.rgbd import load_rgbd
from umt.data.synthetic import PRESETS, load_synthetic
from umt.errors import UMTError

Loader = Callable[[DataConfig], DataBundle]


@dataclass(frozen=True)
class DatasetSpec:
    """A data set a study can name (``data.name``): everything about it in one entry.

    Attributes:
        load: the loader, ``(DataConfig) -> DataBundle``.
        description: one line for ``umt datasets``.
        task: ``classification`` or ``segmentation``; ``None`` where the folder declares it
            (its ``meta.json``).
        files: for a data set read from ``data.root``: every file under the root that its
            loader reads (their content keys the study's stages, so an edited file retrains);
            ``None`` for an embedded or generated set (keyed on its settings).
        recipe: a built-in set's recipe, found by the recipe search (``umt.search``), shipped
            as ``umt/configs/recipes/<recipe>.yaml``: a layer of settings under the user's
            (``umt.study.config.load_config``); ``None``: the configured defaults.
    """

    load: Loader
    description: str
    task: str | None
    files: Callable[[Path], list[Path]] | None = None
    recipe: str | None = None

    @property
    def reads_folder(self) -> bool:
        """Whether the data set is read from ``data.root`` (else built in: embedded or generated)."""
        return self.files is not None


DATASETS: dict[str, DatasetSpec] = {
    "synthetic": DatasetSpec(
        lambda cfg: load_synthetic(cfg.synthetic),
        "generated vectors; knobs for uni-modal strength and paired features "
        f"(presets: {', '.join(PRESETS)})",
        task="classification",
    ),
    "folder": DatasetSpec(
        load_folder,
        "your own data: a folder in the umt-folder format at data.root "
        "(`umt data check PATH` validates it)",
        task=None,
        files=data_files,
    ),
    "prepared": DatasetSpec(
        load_prepared,
        "a folder written by `umt prepare` (VGGSound, Kinetics-Sounds, CREMA-D, AVE) at "
        "data.root, with training augmentation (data.prepared)",
        task="classification",
        files=data_files,
    ),
    "avdigits": DatasetSpec(
        load_avdigits,
        "embedded: spoken digits in noise (strong audio) + noisy, shifted 8x8 handwritten "
        "digits (weak vision); an AV-MNIST-like stand-in for VGGSound",
        task="classification",
        recipe="avdigits",  # configs/recipes/avdigits.yaml: found by the recipe search
    ),
    "rgbd": DatasetSpec(
        lambda cfg: load_rgbd(cfg.rgbd),
        "embedded: procedural RGB-D scenes for semantic segmentation (colour separates most "
        "classes, depth the rest); a NYU Depth V2 stand-in",
        task="segmentation",
    ),
    "nyuv2": DatasetSpec(
        load_nyuv2,
        "NYU Depth V2 RGB-D segmentation (40 or 13 classes): a folder written by "
        "`umt prepare nyuv2` at data.root (data.nyuv2)",
        task="segmentation",
        files=nyuv2_files,  # labels13/ too
    ),
}


def dataset(name: str) -> DatasetSpec:
    """The data set called ``name``, or an error listing the valid names."""
    if name not in DATASETS:
        raise UMTError(f"unknown data set {name!r} (data.name); expected one of {sorted(DATASETS)}")
    return DATASETS[name]


def load_data(cfg: DataConfig) -> DataBundle:
    """Load the data set that ``cfg`` names.

    Raises:
        UMTError: the name is unknown (the message lists the valid names), or ``data.root`` is
            set for a data set that reads no folder.
    """
    spec = dataset(cfg.name)
    if cfg.root is not None and not spec.reads_folder:
        raise UMTError(
            f"data.root={cfg.root!r} is set, but data.name={cfg.name!r} is built in and "
            "reads no folder; for your own data set data.name=folder (prepared or nyuv2 for "
            "what `umt prepare` wrote), or drop data.root"
        )
    return spec.load(cfg)
