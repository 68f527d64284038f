"""An annotated clip, a benchmark's annotations, and where a clip's files lie in the raw folder."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".flv", ".mov", ".m4v")
AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".m4a", ".ogg")


@dataclass(frozen=True)
class Clip:
    """One annotated clip and where its files may lie.

    Attributes:
        id: unique within its split (and the name in ``skipped.csv``).
        label: class name.
        split: ``train``, ``val`` or ``test``.
        stems: file names (without extension) of the clip, tried in order.
        source: the file name of an uncut video holding the clip, read at ``window``.
        window: ``(start, end)`` seconds of the clip in ``source``.
    """

    id: str
    label: str
    split: str
    stems: tuple[str, ...]
    source: str | None = None
    window: tuple[float, float] | None = None


@dataclass
class Annotations:
    """What a benchmark's annotation files say: clips with their splits, the classes, and notes on
    how the splits were made (printed, and kept in ``prepared.json``)."""

    clips: list[Clip]
    classes: list[str]
    notes: list[str] = field(default_factory=list)
    rejected: list[tuple[Clip, str]] = field(default_factory=list)  # clips skipped as annotated


@dataclass
class FileIndex:
    """Every video and audio file below a folder, by file name without extension (hidden folders
    are skipped). The first found in sorted order wins when a name repeats."""

    video: dict[str, Path]
    audio: dict[str, Path]

    @classmethod
    def build(cls, root: Path) -> FileIndex:
        video: dict[str, Path] = {}
        audio: dict[str, Path] = {}
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                stem, ext = os.path.splitext(name)
                ext = ext.lower()
                if ext in VIDEO_EXTENSIONS:
                    video.setdefault(stem, Path(dirpath, name))
                elif ext in AUDIO_EXTENSIONS:
                    # the preferred extension first: .wav over .mp3 (CREMA-D ships both)
                    old = audio.get(stem)
                    if old is None or AUDIO_EXTENSIONS.index(ext) < AUDIO_EXTENSIONS.index(
                        old.suffix.lower()
                    ):
                        audio[stem] = Path(dirpath, name)
        return cls(video, audio)


@dataclass(frozen=True)
class Source:
    """Where one clip's pictures and sound are read from, and which part of them."""

    video: Path
    audio: Path
    window: tuple[float, float] | None = None


def resolve(clip: Clip, index: FileIndex) -> Source | str:
    """The clip's files, or why there are none (a reason for ``skipped.csv``)."""
    for stem in clip.stems:
        if stem in index.video:
            return Source(index.video[stem], index.audio.get(stem, index.video[stem]))
    if clip.source is not None and clip.source in index.video:
        path = index.video[clip.source]
        return Source(path, index.audio.get(clip.source, path), clip.window)
    names = [*clip.stems, *([clip.source] if clip.source else [])]
    return (
        f"missing: no video file named {' or '.join(names)} (any of {', '.join(VIDEO_EXTENSIONS)})"
    )
