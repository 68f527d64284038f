"""What a ``umt prepare`` run is given (the settings of its audio, its frames and the run) and
what it returns."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class AudioSettings:
    """How a clip's sound becomes a log-mel spectrogram.

    Attributes:
        sample_rate: Hz; audio is resampled to it, mono.
        n_fft: STFT window (samples).
        hop_length: samples between spectrogram frames.
        n_mels: mel bands.
        duration: seconds kept per clip; shorter audio is repeated, longer is cut.

    Example:
        >>> AudioSettings(duration=3.0).shape
        (1, 128, 301)
    """

    sample_rate: int = 16000
    n_fft: int = 512
    hop_length: int = 160
    n_mels: int = 128
    duration: float = 10.0

    @property
    def samples(self) -> int:
        return round(self.sample_rate * self.duration)

    @property
    def shape(self) -> tuple[int, int, int]:
        """One clip's spectrogram ``(1, n_mels, frames)`` (centred STFT frames)."""
        return (1, self.n_mels, 1 + self.samples // self.hop_length)


@dataclass(frozen=True)
class VideoSettings:
    """How a clip's pictures are kept.

    Attributes:
        frames: frames per clip, at the centres of ``frames`` equal segments of the clip.
        size: side of the square frames: short side resized to it, then centre-cropped.
    """

    frames: int = 3
    size: int = 224

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """One clip's frames ``(frames, 3, size, size)``."""
        return (self.frames, 3, self.size, self.size)


@dataclass(frozen=True)
class PrepareConfig:
    """One ``umt prepare`` run.

    Attributes:
        dataset: a key of :data:`BENCHMARKS`.
        src: the raw data set's folder.
        out: the umt-folder to write (created; resumed if it holds an earlier run's work).
        workers: decoding processes (1: in this process).
        video: frames per clip and their size.
        audio: spectrogram settings; ``None``: the data set's default (:data:`BENCHMARKS`).
        val_fraction: share of ``train`` carved out as validation where a data set has no
            validation split (and of all clips as test for CREMA-D without split files).
        seed: seed of those carvings.
        classes: Kinetics-Sounds: the name of a class list of its manifest (``None``: the
            default), or a file of class names, one per line.
        split: the name of a split rule of the data set's manifest (``None``: the default;
            CREMA-D: ``common`` or ``speaker-independent``).
        shard: ``(i, n)``: prepare only the ``i``-th of ``n`` disjoint parts of the clips
            (0-based) into ``out``, to be merged (:func:`umt.data.prepare.merge`).
        progress: show a progress bar.
        clean: delete the work folder after a complete run (halves the disk used; a later run
            then cannot add clips without decoding everything again).
    """

    dataset: str
    src: str
    out: str
    workers: int = 1
    video: VideoSettings = field(default_factory=VideoSettings)
    audio: AudioSettings | None = None
    val_fraction: float = 0.1
    seed: int = 0
    classes: str | None = None
    split: str | None = None
    shard: tuple[int, int] | None = None
    progress: bool = True
    clean: bool = False


@dataclass(frozen=True)
class SplitCounts:
    """One split's outcome: clips in the output, decoded by this run, skipped."""

    clips: int
    new: int
    skipped: int


@dataclass(frozen=True)
class PrepareResult:
    """What ``prepare`` did."""

    out: Path
    splits: dict[str, SplitCounts]
    skipped: list[tuple[str, str, str]]  # (clip, split, reason)
    decoded: int  # clips decoded by this run (successfully or not)
    seconds: float  # time spent decoding

    @property
    def clips_per_second(self) -> float:
        return self.decoded / self.seconds if self.seconds > 0 else math.nan
