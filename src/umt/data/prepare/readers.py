"""The four benchmarks' annotation formats (VGGSound, Kinetics-Sounds, CREMA-D, AVE) read into
:class:`~umt.data.prepare.clips.Annotations`, and :data:`BENCHMARKS`, the data sets
``umt prepare`` knows."""

from __future__ import annotations

import csv
import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from umt.data.prepare.clips import Annotations, Clip, FileIndex
from umt.data.prepare.config import AudioSettings, PrepareConfig
from umt.errors import UMTError

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
