"""An annotated clip, a benchmark's annotations, where a clip's files lie in the raw folder, and
the helpers every annotation reader shares (reading a text file, carving a split)."""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from umt.errors import UMTError

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
    class_list: str = "annotations"  # where ``classes`` come from: a manifest list, a file


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


def read_text(path: Path) -> str:
    """The text of an annotation file, read as UTF-8 (a byte-order mark is dropped).

    Raises:
        UMTError: the file cannot be read, or is not UTF-8 (naming the line and the byte, and
            how to convert it).
    """
    try:
        data = path.read_bytes()
    except OSError as e:
        raise UMTError(f"{path}: cannot read it ({e.strerror or e})") from e
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise UMTError(
            f"{path}, line {line}: not UTF-8 text (byte 0x{data[e.start]:02x} at offset "
            f"{e.start}); save it as UTF-8 (e.g. iconv -f latin1 -t utf-8 {path.name} > "
            f"{path.stem}.utf8{path.suffix}) and run the same command again"
        ) from None


def carve(
    clips: Sequence[Clip], fraction: float, seed: int, into: str
) -> tuple[list[Clip], list[Clip]]:
    """Split ``clips`` in two, class-stratified and seeded: ``(kept, carved)``; ``carved`` are
    relabelled to split ``into``. At least one clip is carved when there are two or more.

    Example:
        >>> cs = [Clip(f"c{i}", "ab"[i % 2], "train", ()) for i in range(10)]
        >>> kept, val = carve(cs, 0.2, 0, "val")
        >>> len(kept), len(val), sorted(c.label for c in val), {c.split for c in val}
        (8, 2, ['a', 'b'], {'val'})
    """
    rng = np.random.default_rng(seed)
    by_label: dict[str, list[Clip]] = defaultdict(list)
    for c in sorted(clips, key=lambda c: c.id):
        by_label[c.label].append(c)
    carved_ids: set[str] = set()
    for label in sorted(by_label):
        group = by_label[label]
        n = int(round(fraction * len(group)))
        carved_ids.update(group[i].id for i in rng.permutation(len(group))[:n])
    if not carved_ids and len(clips) >= 2 and fraction > 0:
        largest = max(sorted(by_label), key=lambda lab: len(by_label[lab]))
        carved_ids.add(by_label[largest][int(rng.integers(len(by_label[largest])))].id)
    kept = [c for c in clips if c.id not in carved_ids]
    carved = [replace(c, split=into) for c in clips if c.id in carved_ids]
    return kept, carved
