"""Data sets: the embedded ones, the synthetic generator, and users' folders.

``DATASETS`` (``umt.data.registry``) maps a name to its :class:`DatasetSpec`; ``load_data(cfg)``
loads the one ``cfg.name`` names.
"""

from umt.data.base import SPLITS, ArrayDataset, Batch, DataBundle, make_loader
from umt.data.config import DataConfig
from umt.data.registry import DATASETS, DatasetSpec, dataset, load_data
from umt.data.user import UserData

__all__ = [
    "DATASETS",
    "SPLITS",
    "ArrayDataset",
    "Batch",
    "DataBundle",
    "DataConfig",
    "DatasetSpec",
    "UserData",
    "dataset",
    "load_data",
    "make_loader",
]
