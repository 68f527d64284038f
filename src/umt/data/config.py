"""The data configuration, ``data:`` in a study's YAML: :class:`DataConfig` and the options of
the loaders that read it whole.

The loaders take a :class:`DataConfig` and ``umt.data`` maps names to loaders, so it lives here,
below both. :class:`PreparedConfig` and :class:`NYUv2Config` live here too: their loaders
(``prepared``, ``nyuv2``) take the whole :class:`DataConfig`, which holds them, so the two
modules import them from here (and re-export them). The generators' settings
(:class:`~umt.data.synthetic.SyntheticConfig`, :class:`~umt.data.rgbd.RGBDConfig`) stay beside
their generators, which never see a :class:`DataConfig`.

Example:
    >>> DataConfig(name="nyuv2", nyuv2=NYUv2Config(classes=13)).nyuv2.classes
    13
"""

from __future__ import annotations

from dataclasses import dataclass, field

from umt.data.rgbd import RGBDConfig
from umt.data.segmentation import SegAugmentConfig
from umt.data.synthetic import SyntheticConfig
from umt.errors import UMTError


@dataclass(frozen=True)
class PreparedConfig:
    """How ``data.name: prepared`` turns stored clips into model inputs.

    Attributes:
        frames: frames per clip given to the model, at most the number stored; 0: all of them.
        crop: side of the square frames given to the model, at most the stored size; 0: the
            stored size (training crops are resized back to it).
        augment: random frames, crops and flips (and the masks below) on the training split.
        scale: area range of the random resized crop, as a share of the stored frame.
        flip: random horizontal flips in training.
        freq_mask: SpecAugment: largest width of a frequency mask, in mel bands (0: none).
        time_mask: SpecAugment: largest width of a time mask, in spectrogram frames (0: none).
        masks: how many masks of each kind per training spectrogram.
    """

    frames: int = 0
    crop: int = 0
    augment: bool = True
    scale: tuple[float, float] = (0.08, 1.0)
    flip: bool = True
    freq_mask: int = 0
    time_mask: int = 0
    masks: int = 1


@dataclass(frozen=True)
class NYUv2Config:
    """How ``data.name: nyuv2`` reads a prepared folder (``data.nyuv2``).

    Attributes:
        classes: 40 (``labels.npy``) or 13 (``labels13/``, if preparation had the mapping).
        augment: training augmentation (ESANet: random rescale 1.0-1.4, crop, flip).
    """

    classes: int = 40
    augment: SegAugmentConfig = field(default_factory=SegAugmentConfig)

    def __post_init__(self) -> None:
        if self.classes not in (40, 13):
            raise UMTError(f"data.nyuv2.classes: expected 40 or 13, got {self.classes}")


@dataclass(frozen=True)
class DataConfig:
    """Which data set a study runs on.

    Attributes:
        name: a key of ``DATASETS`` (``umt datasets`` lists them).
        root: folder of the data on disk, for data sets read from disk (``folder``, benchmarks).
        synthetic: the generator's settings, for ``name: synthetic``.
        prepared: frames, crops and augmentation, for ``name: prepared`` (``umt prepare``).
        rgbd: the generator's settings, for ``name: rgbd`` (embedded RGB-D segmentation).
        nyuv2: classes and augmentation, for ``name: nyuv2`` (``umt prepare nyuv2``).
    """

    name: str = "avdigits"
    root: str | None = None
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    prepared: PreparedConfig = field(default_factory=PreparedConfig)
    rgbd: RGBDConfig = field(default_factory=RGBDConfig)
    nyuv2: NYUv2Config = field(default_factory=NYUv2Config)


__all__ = ["DataConfig", "NYUv2Config", "PreparedConfig"]
