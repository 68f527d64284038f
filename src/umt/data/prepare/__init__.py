"""``umt prepare``: raw audio-visual benchmarks on disk -> the umt-folder format.

Four benchmarks of the balancing literature, read in the layout and annotation format they are
distributed in (nothing is downloaded):

``vggsound``
    ``vggsound.csv`` (Chen et al., ICASSP 2020), one clip per line with no header:
    ``YouTube ID, start seconds, label, train/test split``. Clips are 10-second cuts, usually named
    ``<id>_<start:06d>.mp4`` (e.g. ``---g-f_I2yQ_000001.mp4``), in any sub-folder of ``--src``; a
    separate ``<id>_<start:06d>.wav`` beside them is used for the audio. An uncut ``<id>.mp4`` is
    read from ``start`` to ``start + 10``. There is no validation split: one is carved from
    ``train`` (``--val-fraction``, stratified by class, ``--seed``), never from ``test``.
``kinetics-sounds``
    Kinetics CSVs (``annotations/{train,val,test}.csv`` of the CVDF release, columns
    ``label,youtube_id,time_start,time_end,split[,is_cc]``), restricted to the Kinetics-Sounds
    classes (:data:`KINETICS_SOUNDS_CLASSES`, or ``--classes FILE``). Clips are
    ``<id>_<start:06d>_<end:06d>.mp4`` (flat, or in per-class folders); an uncut ``<id>.mp4`` is
    read from ``time_start`` to ``time_end``. Kinetics' ``val`` split is the validation split;
    where the CSVs hold no labelled ``test`` rows, ``val`` becomes the test split and validation
    is carved from ``train``.
``cremad``
    The CREMA-D repository's ``AudioWAV/<clip>.wav`` (16 kHz) and ``VideoFlash/<clip>.flv``, clips
    named ``ActorID_Sentence_Emotion_Level`` (e.g. ``1001_DFA_ANG_XX``); the label is the third
    field, one of ``ANG DIS FEA HAP NEU SAD``. CREMA-D has no official split: OGM-GE's ``train.csv``
    and ``test.csv`` (lines ``<clip>,<EMO>``) are used if they lie in ``--src``; otherwise a seeded,
    class-stratified 10 % of the clips is the test split. Validation is carved from ``train``.
``ave``
    ``Annotations.txt`` (header ``Category&VideoID&Quality&StartTime&EndTime``, ``&``-separated)
    with ``trainSet.txt``, ``valSet.txt``, ``testSet.txt`` (same rows, no header) beside it, and the
    10-second videos ``AVE/<VideoID>.mp4``; 28 classes. A sample is one annotated video, read whole
    (as in OGM-GE); a video annotated with two different events in one split is skipped as
    ambiguous.

What is stored, per clip: audio resampled to ``sample_rate`` mono, repeated if shorter than
``duration`` and cut if longer (OGM-GE's rule), as a log-mel spectrogram ``(1, n_mels, frames)``
float16 in dB (:func:`umt.data.audio.log_mel`); ``frames`` video frames sampled at the centres of
equal segments of the clip, resized (short side to ``size``) and centre-cropped to
``(frames, 3, size, size)`` uint8 RGB. Training-time augmentation and normalisation are the
loader's (``data.name: prepared``, :mod:`umt.data.prepared`).

Work is resumable: each split's results go to ``OUT/.work/<split>/{audio,visual}.npy``
(memory-mapped, one row per annotated clip) and the finished rows to ``done.txt``; a second run
decodes only the clips not finished (clips that failed are tried again). A clip that is missing or
cannot be decoded is skipped and listed in ``OUT/skipped.csv`` (``clip,split,reason``). The
umt-folder (``meta.json``, ``train/ val/ test/``) is then assembled from the finished rows;
``OUT/prepared.json`` records the settings, the audio statistics and where each split came from.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
import math
import multiprocessing as mp
import os
import re
import shutil
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from umt.data.audio import log_mel
from umt.data.base import SPLITS
from umt.data.prepared import FORMAT as PREPARED_FORMAT
from umt.data.prepared import PREPARED_FILE
from umt.errors import UMTError

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".flv", ".mov", ".m4v")
AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".m4a", ".ogg")
WORK_DIR = ".work"
SKIPPED_FILE = "skipped.csv"

#: Kinetics-Sounds: of the 34 class names of Arandjelović & Zisserman, "Look, Listen and Learn"
#: (ICCV 2017, arXiv 1705.08168; the list as reproduced in public code), 29 are Kinetics-400
#: labels verbatim, three match renamed labels ("blowing out" -> "blowing out candles",
#: "dribbling ball" -> "dribbling basketball", "mowing the lawn by pushing lawnmower" -> "mowing
#: lawn"), and "stomping" and "patting" match none. These are the 32 kept. The balancing
#: literature uses 31 (OGM-GE's split files hold labels 0..30) without naming the one left out;
#: pass ``--classes FILE`` (one name per line) to use another list.
KINETICS_SOUNDS_CLASSES = (
    "blowing nose",
    "blowing out candles",
    "bowling",
    "chopping wood",
    "dribbling basketball",
    "fingerpicking",
    "laughing",
    "mowing lawn",
    "playing accordion",
    "playing bagpipes",
    "playing bass guitar",
    "playing clarinet",
    "playing drums",
    "playing guitar",
    "playing harmonica",
    "playing keyboard",
    "playing organ",
    "playing piano",
    "playing saxophone",
    "playing trombone",
    "playing trumpet",
    "playing violin",
    "playing xylophone",
    "ripping paper",
    "shoveling snow",
    "shuffling cards",
    "singing",
    "tap dancing",
    "tapping guitar",
    "tapping pen",
    "tickling",
    "typing",
)

#: CREMA-D's emotion codes (the third field of a clip's name), in label order.
CREMAD_EMOTIONS = ("ANG", "DIS", "FEA", "HAP", "NEU", "SAD")
_CREMAD_NAME = re.compile(r"\d{4}_[A-Z]{3}_([A-Z]{3})_[A-Z]{2}")


# --------------------------------------------------------------------------------------------
# small files


def write_text(path: Path, text: str) -> None:
    """Write ``path`` atomically (a temporary name, then a rename), with the usual permissions:
    a data folder is often shared, so its files are readable by others where the umask allows."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_json(path: Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2) + "\n")


# --------------------------------------------------------------------------------------------
# settings


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
        classes: a file of class names, one per line (Kinetics-Sounds: replaces the shipped list).
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
    progress: bool = True
    clean: bool = False


# --------------------------------------------------------------------------------------------
# annotations


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


def _find_file(src: Path, name: str, what: str) -> Path:
    """``src/name``, else the first ``name`` below ``src`` (sorted), else a UMTError."""
    direct = src / name
    if direct.is_file():
        return direct
    found = sorted(p for p in src.rglob(name) if p.is_file())
    if not found:
        raise UMTError(f"{src}: no {name} found in it or below; expected {what}")
    return found[0]


def _carve(
    clips: Sequence[Clip], fraction: float, seed: int, into: str
) -> tuple[list[Clip], list[Clip]]:
    """Split ``clips`` in two, class-stratified and seeded: ``(kept, carved)``; ``carved`` are
    relabelled to split ``into``. At least one clip is carved when there are two or more.

    Example:
        >>> cs = [Clip(f"c{i}", "ab"[i % 2], "train", ()) for i in range(10)]
        >>> kept, val = _carve(cs, 0.2, 0, "val")
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


def read_vggsound(src: Path, cfg: PrepareConfig) -> Annotations:
    """VGGSound's ``vggsound.csv``: ``YouTube ID, start seconds, label, train/test split``."""
    path = _find_file(
        src, "vggsound.csv", "VGGSound's annotation file (YouTube ID, start, label, split)"
    )
    clips: dict[str, Clip] = {}
    with open(path, encoding="utf-8-sig", newline="") as f:
        for line_no, row in enumerate(csv.reader(f), start=1):
            if not row or row[0].lstrip().startswith("#"):
                continue
            if len(row) < 4:
                raise UMTError(
                    f"{path}, line {line_no}: expected 4 fields (YouTube ID, start seconds, label, "
                    f"train/test split); got {row!r}"
                )
            ytid, start_text, label, split = (x.strip() for x in row[:4])
            try:
                start = int(float(start_text))
            except ValueError:
                if line_no == 1:
                    continue  # a header line
                raise UMTError(
                    f"{path}, line {line_no}: start seconds {start_text!r} is not a number"
                ) from None
            if split not in ("train", "test"):
                raise UMTError(f"{path}, line {line_no}: split {split!r} is not 'train' or 'test'")
            cid = f"{ytid}_{start:06d}"
            clips.setdefault(
                cid,
                Clip(
                    cid,
                    label,
                    split,
                    stems=(cid, f"{ytid}_{start}"),
                    source=ytid,
                    window=(float(start), float(start + 10)),
                ),
            )
    all_clips = list(clips.values())
    train = [c for c in all_clips if c.split == "train"]
    train, val = _carve(train, cfg.val_fraction, cfg.seed, "val")
    test = [c for c in all_clips if c.split == "test"]
    notes = [
        f"splits from {path.name}: train and test as annotated; VGGSound has no validation "
        f"split, so val is {len(val)} clips carved from train ({cfg.val_fraction:.0%} per class, "
        f"seed {cfg.seed}); test is never touched"
    ]
    return Annotations(train + val + test, sorted({c.label for c in all_clips}), notes)


def _read_class_file(path: str) -> list[str]:
    p = Path(path).expanduser()
    try:
        names = [line.strip() for line in p.read_text(encoding="utf-8").splitlines()]
    except OSError as e:
        raise UMTError(
            f"--classes {p}: cannot read it ({e}); expected one class name per line"
        ) from e
    names = [n for n in names if n and not n.startswith("#")]
    if len(names) < 2:
        raise UMTError(
            f"--classes {p}: found {len(names)} class names; expected one per line, at least 2"
        )
    return names


_KINETICS_HEADER = ["label", "youtube_id", "time_start", "time_end"]
_KINETICS_SPLITS = {
    "train": "train",
    "val": "val",
    "validate": "val",
    "valid": "val",
    "test": "test",
}


def read_kinetics_sounds(src: Path, cfg: PrepareConfig) -> Annotations:
    """Kinetics CSVs (``label,youtube_id,time_start,time_end,split``) restricted to the
    Kinetics-Sounds classes."""
    classes = _read_class_file(cfg.classes) if cfg.classes else list(KINETICS_SOUNDS_CLASSES)
    wanted = {c.lower(): c for c in classes}
    csvs = []
    for p in sorted(src.rglob("*.csv")):
        if any(part.startswith(".") for part in p.relative_to(src).parts):
            continue
        with open(p, encoding="utf-8-sig", newline="") as f:
            header = next(csv.reader(f), [])
        if [h.strip() for h in header[:4]] == _KINETICS_HEADER:
            csvs.append(p)
    if not csvs:
        raise UMTError(
            f"{src}: no Kinetics annotation CSV found in it or below; expected files such as "
            "annotations/train.csv with the header label,youtube_id,time_start,time_end,split"
        )
    clips: dict[tuple[str, str], Clip] = {}
    for path in csvs:
        with open(path, encoding="utf-8-sig", newline="") as f:
            reader = csv.DictReader(f)
            for line_no, row in enumerate(reader, start=2):
                label = (row.get("label") or "").strip()
                if label.lower() not in wanted:
                    continue  # another Kinetics class, or a test row with its label held out
                split_text = (row.get("split") or path.stem).strip().lower()
                split = _KINETICS_SPLITS.get(split_text)
                if split is None:
                    raise UMTError(
                        f"{path}, line {line_no}: split {split_text!r} is not one of "
                        f"{sorted(_KINETICS_SPLITS)}"
                    )
                try:
                    start = int(float(row["time_start"]))
                    end = int(float(row["time_end"]))
                except (TypeError, ValueError):
                    raise UMTError(
                        f"{path}, line {line_no}: time_start/time_end are not numbers: {row!r}"
                    ) from None
                ytid = row["youtube_id"].strip()
                cid = f"{ytid}_{start:06d}_{end:06d}"
                clips.setdefault(
                    (split, cid),
                    Clip(
                        cid, wanted[label.lower()], split, (cid,), ytid, (float(start), float(end))
                    ),
                )
    by_split: dict[str, list[Clip]] = defaultdict(list)
    for c in clips.values():
        by_split[c.split].append(c)
    found = sorted({c.label for c in clips.values()})
    missing = [c for c in classes if c not in found]
    notes = [
        f"annotations: {', '.join(p.name for p in csvs)}; {len(found)} of {len(classes)} classes found"
    ]
    if missing:
        notes.append(f"classes with no annotated clip: {', '.join(missing)}")
    train, val, test = by_split["train"], by_split["val"], by_split["test"]
    if not test:
        test = [replace(c, split="test") for c in val]
        train, val = _carve(train, cfg.val_fraction, cfg.seed, "val")
        notes.append(
            f"no labelled test rows: Kinetics' val split is the test split, and val is {len(val)} "
            f"clips carved from train ({cfg.val_fraction:.0%} per class, seed {cfg.seed})"
        )
    else:
        notes.append("splits as annotated: Kinetics' train, val and test")
    return Annotations(train + val + test, classes, notes)


def _emotion(name: str) -> str:
    """The emotion code of a CREMA-D clip name (``1001_DFA_ANG_XX`` -> ``ANG``)."""
    return name.split("_")[2]


def _read_cremad_split(path: Path) -> dict[str, str]:
    out = {}
    with open(path, encoding="utf-8-sig", newline="") as f:
        for line_no, row in enumerate(csv.reader(f), start=1):
            if not row:
                continue
            if len(row) < 2 or not _CREMAD_NAME.fullmatch(row[0].strip()):
                raise UMTError(
                    f"{path}, line {line_no}: expected '<clip>,<EMO>' such as "
                    f"'1001_DFA_ANG_XX,ANG'; got {row!r}"
                )
            out[row[0].strip()] = row[1].strip()
    return out


def read_cremad(src: Path, cfg: PrepareConfig, index: FileIndex) -> Annotations:
    """CREMA-D: clips named ``ActorID_Sentence_Emotion_Level`` under ``AudioWAV/`` and
    ``VideoFlash/``; the emotion code is the label."""
    names = {s for s in (*index.video, *index.audio) if _CREMAD_NAME.fullmatch(s)}
    split_files = [src / "train.csv", src / "test.csv"]
    notes = []
    if all(p.is_file() for p in split_files):
        listed = {
            split: _read_cremad_split(p)
            for split, p in zip(("train", "test"), split_files, strict=True)
        }
        clips = [
            Clip(name, _emotion(name), split, (name,))
            for split, rows in listed.items()
            for name in sorted(rows)
        ]
        train = [c for c in clips if c.split == "train"]
        test = [c for c in clips if c.split == "test"]
        notes.append("train and test from train.csv / test.csv in --src (OGM-GE's split files)")
    else:
        if not names:
            raise UMTError(
                f"{src}: no CREMA-D clip found; expected AudioWAV/<clip>.wav and "
                "VideoFlash/<clip>.flv with clips named like 1001_DFA_ANG_XX"
            )
        clips = [Clip(n, _emotion(n), "train", (n,)) for n in sorted(names)]
        train, test = _carve(clips, cfg.val_fraction, cfg.seed, "test")
        notes.append(
            f"CREMA-D has no official split: test is {len(test)} clips ({cfg.val_fraction:.0%} per "
            f"emotion, seed {cfg.seed}; speakers are shared with train); put OGM-GE's train.csv "
            "and test.csv in --src to use theirs"
        )
    bad = [c for c in train + test if c.label not in CREMAD_EMOTIONS]
    if bad:
        raise UMTError(
            f"CREMA-D clip {bad[0].id}: emotion code {bad[0].label!r} is not one of {CREMAD_EMOTIONS}"
        )
    train, val = _carve(train, cfg.val_fraction, cfg.seed + 1, "val")
    notes.append(
        f"val is {len(val)} clips carved from train ({cfg.val_fraction:.0%} per emotion, "
        f"seed {cfg.seed + 1}); test is never touched"
    )
    return Annotations(train + val + test, list(CREMAD_EMOTIONS), notes)


def _read_ave_rows(path: Path) -> list[tuple[str, str, int]]:
    rows = []
    for line_no, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        if not line.strip():
            continue
        fields = [x.strip() for x in line.split("&")]
        if len(fields) != 5:
            raise UMTError(
                f"{path}, line {line_no}: expected 5 '&'-separated fields "
                f"(Category&VideoID&Quality&StartTime&EndTime); got {line!r}"
            )
        if line_no == 1 and fields[0] == "Category":
            continue  # the header of Annotations.txt
        rows.append((fields[0], fields[1], line_no))
    return rows


def read_ave(src: Path, cfg: PrepareConfig) -> Annotations:
    """AVE: ``Annotations.txt`` and ``{train,val,test}Set.txt`` (``Category&VideoID&Quality&
    StartTime&EndTime``); one sample per annotated video."""
    annotations = _find_file(src, "Annotations.txt", "AVE's Annotations.txt")
    classes = sorted({cat for cat, _, _ in _read_ave_rows(annotations)})
    clips: list[Clip] = []
    rejected: list[tuple[Clip, str]] = []
    for split, name in (("train", "trainSet.txt"), ("val", "valSet.txt"), ("test", "testSet.txt")):
        path = annotations.parent / name
        if not path.is_file():
            raise UMTError(
                f"{path} is missing; AVE's split files trainSet.txt, valSet.txt and testSet.txt "
                f"are expected beside {annotations.name}"
            )
        labels: dict[str, list[str]] = defaultdict(list)
        for category, vid, line_no in _read_ave_rows(path):
            if category not in classes:
                raise UMTError(
                    f"{path}, line {line_no}: category {category!r} is not in {annotations.name}"
                )
            labels[vid].append(category)
        for vid, cats in labels.items():
            clip = Clip(vid, cats[0], split, (vid,))
            if len(set(cats)) > 1:
                rejected.append(
                    (
                        clip,
                        f"ambiguous: annotated with {len(set(cats))} events of different categories ({', '.join(sorted(set(cats)))})",
                    )
                )
            else:
                clips.append(clip)
    notes = [
        f"splits from trainSet.txt / valSet.txt / testSet.txt beside {annotations}; each video "
        "is read whole"
    ]
    return Annotations(clips, classes, notes, rejected)


@dataclass(frozen=True)
class Benchmark:
    """A data set ``umt prepare`` knows: its title, how to read its annotations, its audio."""

    title: str
    audio: AudioSettings
    read: Callable[[Path, PrepareConfig, FileIndex], Annotations]


def _ignore_index(
    read: Callable[[Path, PrepareConfig], Annotations],
) -> Callable[[Path, PrepareConfig, FileIndex], Annotations]:
    return lambda src, cfg, index: read(src, cfg)


BENCHMARKS: dict[str, Benchmark] = {
    "vggsound": Benchmark("VGGSound", AudioSettings(duration=10.0), _ignore_index(read_vggsound)),
    "kinetics-sounds": Benchmark(
        "Kinetics-Sounds", AudioSettings(duration=10.0), _ignore_index(read_kinetics_sounds)
    ),
    "cremad": Benchmark("CREMA-D", AudioSettings(duration=3.0), read_cremad),
    "ave": Benchmark("AVE", AudioSettings(duration=10.0), _ignore_index(read_ave)),
}


# --------------------------------------------------------------------------------------------
# files


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


# --------------------------------------------------------------------------------------------
# decoding


class ClipError(Exception):
    """A clip that cannot be used (skipped, with this message as the reason)."""


def _import_av() -> Any:
    try:
        import av
    except ImportError:  # pragma: no cover - depends on the environment
        raise UMTError(
            "umt prepare decodes videos with PyAV, which is not installed; install it with "
            "pip install 'unimodal-teacher[video]' (or pip install av)"
        ) from None
    return av


def _duration(container: Any, stream: Any) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return float(container.duration) / 1_000_000  # AV_TIME_BASE
    return None


def _to_square(frame: Any, size: int) -> np.ndarray:
    """A decoded frame, short side resized to ``size`` and centre-cropped: ``(3, size, size)``."""
    w, h = frame.width, frame.height
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    rgb = frame.to_ndarray(width=nw, height=nh, format="rgb24", interpolation="AREA")  # (H, W, 3)
    y0, x0 = (nh - size) // 2, (nw - size) // 2
    return np.ascontiguousarray(rgb[y0 : y0 + size, x0 : x0 + size].transpose(2, 0, 1))


def read_frames(path: Path, window: tuple[float, float] | None, video: VideoSettings) -> np.ndarray:
    """``video.frames`` frames at the centres of equal segments of the clip (or of ``window``),
    as ``(frames, 3, size, size)`` uint8 RGB. A frame is the first one shown at or after its
    target time (the last frame if the video ends first).

    Raises:
        ClipError: no video stream, or no frame could be decoded.
    """
    av = _import_av()
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise ClipError("no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        start, end = window if window is not None else (0.0, _duration(container, stream))
        if end is None:  # length unknown: decode everything, then pick
            decoded = [(f.time or 0.0, f) for f in container.decode(stream)]
            if not decoded:
                raise ClipError("no video frame could be decoded")
            start, end = decoded[0][0], decoded[-1][0]
            frames: Iterable[Any] = (f for _, f in decoded)
        else:
            if start > 1.0:
                container.seek(int(start / stream.time_base), stream=stream)  # the keyframe before
            frames = container.decode(stream)
        span = max(end - start, 0.0)
        targets = [start + (k + 0.5) * span / video.frames for k in range(video.frames)]
        picked: list[np.ndarray] = []
        last = None
        for frame in frames:
            last = frame
            t = frame.time if frame.time is not None else start
            while len(picked) < video.frames and t >= targets[len(picked)]:
                picked.append(_to_square(frame, video.size))
            if len(picked) == video.frames:
                break
        if last is None:
            raise ClipError("no video frame could be decoded")
        while len(picked) < video.frames:  # the video ends before the last target
            picked.append(_to_square(last, video.size))
    return np.stack(picked)


def read_audio(path: Path, window: tuple[float, float] | None, sample_rate: int) -> np.ndarray:
    """The sound of a file (or of ``window`` of it), mono at ``sample_rate``, float32 ``(n,)``.

    Raises:
        ClipError: no audio stream, or no sample could be decoded.
    """
    av = _import_av()
    with av.open(str(path)) as container:
        if not container.streams.audio:
            raise ClipError("no audio stream")
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="fltp", layout="mono", rate=sample_rate)
        start, end = window if window is not None else (0.0, None)
        if start > 1.0:
            container.seek(int(start * 1_000_000))  # AV_TIME_BASE; lands at or before start
        chunks: list[np.ndarray] = []
        first: float | None = None
        for frame in container.decode(stream):
            if first is None:
                first = frame.time if frame.time is not None else 0.0
            chunks.extend(out.to_ndarray()[0] for out in resampler.resample(frame))
            if end is not None and frame.time is not None and frame.time > end:
                break
        chunks.extend(out.to_ndarray()[0] for out in resampler.resample(None))
    wave = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    if window is not None and first is not None:
        lo = max(0, round((start - first) * sample_rate))
        hi = round((end - first) * sample_rate) if end is not None else len(wave)
        wave = wave[lo:hi]
    if wave.size == 0:
        raise ClipError("no audio sample could be decoded")
    return wave


def fit_length(wave: np.ndarray, n: int) -> np.ndarray:
    """Cut ``wave`` to ``n`` samples, or repeat it until it is that long (OGM-GE's rule).

    Example:
        >>> fit_length(np.arange(3.0), 7).tolist(), fit_length(np.arange(5.0), 2).tolist()
        ([0.0, 1.0, 2.0, 0.0, 1.0, 2.0, 0.0], [0.0, 1.0])
    """
    if len(wave) >= n:
        return wave[:n]
    return np.tile(wave, -(-n // len(wave)))[:n]


def decode_clip(
    source: Source, audio: AudioSettings, video: VideoSettings
) -> tuple[np.ndarray, np.ndarray]:
    """One clip's ``(spectrogram (1, n_mels, frames) float16, frames (T, 3, S, S) uint8)``.

    Raises:
        ClipError: the clip cannot be used (no stream, nothing decodable, a corrupt file).
    """
    av = _import_av()
    try:
        frames = read_frames(source.video, source.window, video)
        wave = fit_length(read_audio(source.audio, source.window, audio.sample_rate), audio.samples)
    except (av.FFmpegError, OSError, EOFError, ValueError) as e:
        message = str(e).splitlines()[0] if str(e) else ""
        raise ClipError(f"cannot decode: {type(e).__name__}: {message}"[:300]) from e
    spec = log_mel(
        torch.from_numpy(wave),
        sample_rate=audio.sample_rate,
        n_fft=audio.n_fft,
        hop_length=audio.hop_length,
        n_mels=audio.n_mels,
    )  # (n_mels, frames) dB
    return spec[None].numpy().astype(np.float16), frames


@dataclass(frozen=True)
class _Task:
    split: str
    row: int
    source: Source


@dataclass(frozen=True)
class _Done:
    split: str
    row: int
    audio: np.ndarray | None
    visual: np.ndarray | None
    reason: str | None = None


def _run_task(task: _Task, audio: AudioSettings, video: VideoSettings) -> _Done:
    try:
        a, v = decode_clip(task.source, audio, video)
    except ClipError as e:
        return _Done(task.split, task.row, None, None, str(e))
    return _Done(task.split, task.row, a, v)


def _worker_init() -> None:
    torch.set_num_threads(1)  # one decoding process per core


def _results(
    tasks: list[_Task], audio: AudioSettings, video: VideoSettings, workers: int
) -> Iterator[_Done]:
    run = partial(_run_task, audio=audio, video=video)
    if workers <= 1:
        yield from map(run, tasks)
        return
    methods = mp.get_all_start_methods()
    ctx = mp.get_context("fork" if "fork" in methods else "spawn")
    # A bounded number of clips in flight, results as they finish. Unlike multiprocessing.Pool,
    # the executor notices a worker that died (FFmpeg crashing on a file) instead of waiting for
    # its result forever.
    pending = iter(tasks)
    executor = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init)
    try:
        running = {executor.submit(run, t): t for t in itertools.islice(pending, 4 * workers)}
        while running:
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                task = running.pop(future)
                try:
                    yield future.result()
                except BrokenProcessPool:
                    suspects = [task, *running.values()]
                    raise UMTError(
                        "a decoding process died (FFmpeg crashed on a file?) while one of these "
                        f"was being decoded: {', '.join(str(t.source.video) for t in suspects)}; "
                        "move the culprit out of --src (try --workers 1 to find it), then run the "
                        "same command again to resume"
                    ) from None
                nxt = next(pending, None)
                if nxt is not None:
                    running[executor.submit(run, nxt)] = nxt
    finally:
        executor.shutdown(wait=False, cancel_futures=True)


# --------------------------------------------------------------------------------------------
# the work folder


class _SplitWork:
    """One split's work: its candidate clips (a row each), the result arrays, the finished rows."""

    def __init__(
        self, folder: Path, clips: list[Clip], audio: AudioSettings, video: VideoSettings
    ) -> None:
        self.folder, self.clips = folder, clips
        folder.mkdir(parents=True, exist_ok=True)
        listing = "".join(f"{i}\t{c.id}\t{c.label}\n" for i, c in enumerate(clips))
        clips_file = folder / "clips.tsv"
        if clips_file.is_file():
            if clips_file.read_text(encoding="utf-8") != listing:
                raise UMTError(
                    f"{clips_file}: the annotations changed since this folder was started (other "
                    "clips or labels); prepare into a new --out, or delete this one to start again"
                )
        else:
            write_text(clips_file, listing)
        n = len(clips)
        self.audio = self._open(folder / "audio.npy", np.float16, (n, *audio.shape))
        self.visual = self._open(folder / "visual.npy", np.uint8, (n, *video.shape))
        self.done_file = folder / "done.txt"
        self.done: set[int] = set()
        if self.done_file.is_file():
            for line in self.done_file.read_text().split():
                self.done.add(int(line))
        self.pending: list[int] = []

    @staticmethod
    def _open(path: Path, dtype: Any, shape: tuple[int, ...]) -> np.ndarray:
        if path.is_file():
            mm = np.load(path, mmap_mode="r+")
            if mm.shape == shape and mm.dtype == np.dtype(dtype):
                return mm
            raise UMTError(
                f"{path}: holds {mm.shape} {mm.dtype}, expected {shape}; delete the work folder to start again"
            )
        if math.prod(shape) == 0:
            return np.zeros(shape, dtype)
        return np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)

    def put(self, row: int, audio: np.ndarray, visual: np.ndarray) -> None:
        self.audio[row] = audio
        self.visual[row] = visual
        self.pending.append(row)

    def commit(self) -> None:
        """Make the rows written so far durable, then record them as finished."""
        if not self.pending:
            return
        for arr in (self.audio, self.visual):
            if isinstance(arr, np.memmap):
                arr.flush()
        with open(self.done_file, "a") as f:
            f.write("".join(f"{r}\n" for r in self.pending))
            f.flush()
            os.fsync(f.fileno())
        self.done.update(self.pending)
        self.pending = []


# --------------------------------------------------------------------------------------------
# assembling the umt-folder


def _copy_rows(src: np.ndarray, rows: np.ndarray, path: Path) -> None:
    """``src[rows]`` to a new ``.npy`` at ``path``, about 64 MB at a time."""
    out = np.lib.format.open_memmap(
        path, mode="w+", dtype=src.dtype, shape=(len(rows), *src.shape[1:])
    )
    row_bytes = max(1, src.dtype.itemsize * math.prod(src.shape[1:]))
    step = max(1, (64 << 20) // row_bytes)
    for i in range(0, len(rows), step):
        out[i : i + step] = src[rows[i : i + step]]
    out.flush()
    del out


def _mean_std(arr: np.ndarray) -> tuple[float, float]:
    total, total_sq, count = 0.0, 0.0, 0
    step = max(1, (64 << 20) // max(1, arr.dtype.itemsize * math.prod(arr.shape[1:])))
    for i in range(0, len(arr), step):
        chunk = np.asarray(arr[i : i + step], dtype=np.float64)
        total += float(chunk.sum())
        total_sq += float(np.square(chunk).sum())
        count += chunk.size
    mean = total / count
    return mean, math.sqrt(max(total_sq / count - mean * mean, 0.0))


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


def _settings(cfg: PrepareConfig, audio: AudioSettings, classes: list[str]) -> dict[str, Any]:
    return {
        "dataset": cfg.dataset,
        "audio": asdict(audio),
        "video": asdict(cfg.video),
        "val_fraction": cfg.val_fraction,
        "seed": cfg.seed,
        "classes": classes,
    }


def _fingerprint(rows: Iterable[int]) -> str:
    return hashlib.sha256(",".join(map(str, sorted(rows))).encode()).hexdigest()[:16]


def _start_work(
    out: Path, settings: dict[str, Any], log: Callable[[str], None]
) -> PrepareResult | None:
    """Create or resume the work folder of ``out``; a result if there is nothing left to do.

    Raises:
        UMTError: ``out`` was started or prepared with other settings, or is another folder.
    """
    work = out / WORK_DIR
    settings_file = work / "settings.json"
    prepared_file = out / PREPARED_FILE
    if settings_file.is_file():
        old = json.loads(settings_file.read_text())
        if old != settings:
            changed = sorted(k for k in settings if old.get(k) != settings[k])
            raise UMTError(
                f"{out} was started with other settings ({', '.join(changed)} differ); prepare "
                "into a new --out, or delete it to start again"
            )
        return None
    if prepared_file.is_file():
        before = json.loads(prepared_file.read_text())
        if before.get("settings") != settings:
            raise UMTError(
                f"{out} holds a data set prepared with other settings; prepare into a new --out, "
                "or delete it"
            )
        log(f"{out} is already prepared with these settings (work folder removed): nothing to do")
        splits = before["splits"]
        counts = {s: SplitCounts(splits[s]["clips"], 0, splits[s]["skipped"]) for s in SPLITS}
        return PrepareResult(out, counts, [], 0, 0.0)
    if out.exists() and any(out.iterdir()):
        raise UMTError(f"--out {out} exists and is not an umt prepare folder; choose a new path")
    work.mkdir(parents=True, exist_ok=True)
    write_json(settings_file, settings)
    return None


def prepare(cfg: PrepareConfig, *, log: Callable[[str], None] = print) -> PrepareResult:
    """Prepare ``cfg.dataset`` from ``cfg.src`` into the umt-folder ``cfg.out`` (resumable).

    Args:
        cfg: what to prepare and how.
        log: where progress lines go.

    Returns:
        The counts per split, the skipped clips and the decoding throughput.

    Raises:
        UMTError: an unknown data set, a missing folder or annotation file, a malformed
            annotation line, ``out`` started with other settings, or a split with no usable clip.
    """
    if cfg.dataset not in BENCHMARKS:
        raise UMTError(f"unknown data set {cfg.dataset!r}; umt prepare knows {sorted(BENCHMARKS)}")
    if cfg.workers < 1:
        raise UMTError(f"--workers must be at least 1; got {cfg.workers}")
    if cfg.video.frames < 1 or cfg.video.size < 8:
        raise UMTError(
            f"--frames must be >= 1 and --size >= 8; got {cfg.video.frames}, {cfg.video.size}"
        )
    if not 0.0 <= cfg.val_fraction < 1.0:
        raise UMTError(f"--val-fraction must be in [0, 1); got {cfg.val_fraction}")
    bench = BENCHMARKS[cfg.dataset]
    audio = cfg.audio or bench.audio
    src = Path(cfg.src).expanduser()
    if not src.is_dir():
        raise UMTError(
            f"--src {src}: {'not a folder' if src.exists() else 'does not exist'}; expected the raw {bench.title} folder"
        )
    out = Path(cfg.out).expanduser()
    _import_av()

    index = FileIndex.build(src)
    ann = bench.read(src, cfg, index)
    for note in ann.notes:
        log(f"{bench.title}: {note}")
    settings = _settings(cfg, audio, ann.classes)
    work = out / WORK_DIR
    finished = _start_work(out, settings, log)
    if finished is not None:
        return finished

    by_split: dict[str, list[Clip]] = {
        s: sorted((c for c in ann.clips if c.split == s), key=lambda c: c.id) for s in SPLITS
    }
    splits = {s: _SplitWork(work / s, by_split[s], audio, cfg.video) for s in SPLITS}
    skipped: list[tuple[str, str, str]] = [(c.id, c.split, reason) for c, reason in ann.rejected]
    tasks: list[_Task] = []
    for s, sw in splits.items():
        for row, clip in enumerate(sw.clips):
            if row in sw.done:
                continue
            found = resolve(clip, index)
            if isinstance(found, str):
                skipped.append((clip.id, s, found))
            else:
                tasks.append(_Task(s, row, found))
    reused = {s: len(sw.done) for s, sw in splits.items()}
    log(
        f"{bench.title}: {sum(len(c) for c in by_split.values())} annotated clips; "
        f"{sum(reused.values())} already prepared, {len(tasks)} to decode"
        + (f" with {cfg.workers} workers" if tasks and cfg.workers > 1 else "")
    )

    start = time.perf_counter()
    last_commit = start
    new: Counter[str] = Counter()
    try:
        from tqdm import tqdm

        results = tqdm(
            _results(tasks, audio, cfg.video, cfg.workers),
            total=len(tasks),
            unit="clip",
            disable=not cfg.progress or not tasks,
            desc=f"prepare {cfg.dataset}",
        )
        for done in results:
            sw = splits[done.split]
            if done.reason is not None or done.audio is None or done.visual is None:
                skipped.append((sw.clips[done.row].id, done.split, done.reason or "unknown"))
                continue
            sw.put(done.row, done.audio, done.visual)
            new[done.split] += 1
            now = time.perf_counter()
            if now - last_commit > 2.0:  # durable progress every few seconds
                for w in splits.values():
                    w.commit()
                last_commit = now
    finally:
        for w in splits.values():
            w.commit()  # an interrupted run keeps what it finished
    seconds = time.perf_counter() - start

    for s, sw in splits.items():
        if not sw.done:
            reasons = [r for c, sp, r in skipped if sp == s][:3]
            raise UMTError(
                f"no clip of split {s!r} could be prepared ({len(sw.clips)} annotated)"
                + (f"; first reasons: {'; '.join(reasons)}" if reasons else "")
                + f". Is --src {src} the raw {bench.title} folder?"
            )
    skipped.sort(key=lambda x: (SPLITS.index(x[1]), x[0]))
    _assemble(out, bench, cfg, audio, ann, splits, skipped, settings, log)
    counts = {
        s: SplitCounts(len(sw.done), new[s], sum(1 for _, sp, _ in skipped if sp == s))
        for s, sw in splits.items()
    }
    result = PrepareResult(out, counts, skipped, len(tasks), seconds)
    for s, c in counts.items():
        log(
            f"  {s:5s} {c.clips:7d} clips ({c.new} decoded now, {c.clips - c.new} reused), {c.skipped} skipped"
        )
    if tasks:
        log(
            f"decoded {len(tasks)} clip{'s' if len(tasks) != 1 else ''} in {seconds:.1f} s "
            f"({result.clips_per_second:.1f} clips/s, {cfg.workers} "
            f"worker{'s' if cfg.workers > 1 else ''})"
        )
    if skipped:
        log(f"skipped clips and why: {out / SKIPPED_FILE}")
    if cfg.clean:
        shutil.rmtree(work)
        log(f"removed the work folder {work}")
    recipe = (
        Path(__file__).resolve().parents[1] / "configs" / f"{cfg.dataset.replace('-', '_')}.yaml"
    )
    log(f"wrote {out}; train with: umt run --config {recipe} --set data.root={out}")
    return result


def _assemble(
    out: Path,
    bench: Benchmark,
    cfg: PrepareConfig,
    audio: AudioSettings,
    ann: Annotations,
    splits: dict[str, _SplitWork],
    skipped: list[tuple[str, str, str]],
    settings: dict[str, Any],
    log: Callable[[str], None],
) -> None:
    """Write the umt-folder (``meta.json`` last) from the finished rows, unless it is up to date."""
    fingerprints = {s: _fingerprint(sw.done) for s, sw in splits.items()}
    prepared_file = out / PREPARED_FILE
    if prepared_file.is_file() and (out / "meta.json").is_file():
        old = json.loads(prepared_file.read_text())
        if old.get("settings") == settings and old.get("rows") == fingerprints:
            log(f"{out}: the output is up to date")
            return
    (out / "meta.json").unlink(missing_ok=True)  # the folder is incomplete until it is rewritten
    class_index = {c: i for i, c in enumerate(ann.classes)}
    for s, sw in splits.items():
        rows = np.array(sorted(sw.done), dtype=np.int64)
        tmp = out / f".{s}.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        _copy_rows(sw.audio, rows, tmp / "audio.npy")
        _copy_rows(sw.visual, rows, tmp / "visual.npy")
        labels = np.array([class_index[sw.clips[r].label] for r in rows], dtype=np.int64)
        np.save(tmp / "labels.npy", labels)
        write_text(tmp / "clips.txt", "".join(f"{sw.clips[r].id}\n" for r in rows))
        shutil.rmtree(out / s, ignore_errors=True)
        os.rename(tmp, out / s)
    with open(out / SKIPPED_FILE, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["clip", "split", "reason"])
        writer.writerows(skipped)
    train_audio = np.load(out / "train" / "audio.npy", mmap_mode="r")
    mean, std = _mean_std(train_audio)
    prepared = {
        "format": PREPARED_FORMAT,
        "version": 1,
        "dataset": cfg.dataset,
        "source": str(Path(cfg.src).expanduser().resolve()),
        "settings": settings,
        "audio_stats": {"mean": mean, "std": std},
        "notes": ann.notes,
        "splits": {
            s: {"clips": len(sw.done), "skipped": sum(1 for _, sp, _ in skipped if sp == s)}
            for s, sw in splits.items()
        },
        "rows": fingerprints,
    }
    write_json(prepared_file, prepared)
    n_frames, _, size, _ = cfg.video.shape
    meta = {
        "format": "umt-folder",
        "version": 1,
        "name": cfg.dataset,
        "task": "classification",
        "num_classes": len(ann.classes),
        "class_names": ann.classes,
        "description": (
            f"{bench.title} prepared by umt prepare: log-mel audio {list(audio.shape)} "
            f"({audio.duration:g} s at {audio.sample_rate} Hz), {n_frames} frames of {size}x{size}"
        ),
        "modalities": {
            "audio": {"shape": list(audio.shape), "dtype": "float16"},
            "visual": {"shape": list(cfg.video.shape), "dtype": "uint8"},
        },
    }
    write_json(out / "meta.json", meta)


__all__ = [
    "BENCHMARKS",
    "CREMAD_EMOTIONS",
    "KINETICS_SOUNDS_CLASSES",
    "AudioSettings",
    "Clip",
    "PrepareConfig",
    "PrepareResult",
    "VideoSettings",
    "decode_clip",
    "prepare",
]
