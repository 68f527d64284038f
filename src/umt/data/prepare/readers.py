"""The four benchmarks' annotation formats (VGGSound, Kinetics-Sounds, CREMA-D, AVE) read into
:class:`~umt.data.prepare.clips.Annotations`, and :data:`BENCHMARKS`, the data sets
``umt prepare`` knows."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from umt.data.prepare.clips import Annotations, Clip, FileIndex, carve, read_text
from umt.data.prepare.config import AudioSettings, PrepareConfig
from umt.data.prepare.cremad import read_cremad
from umt.data.prepare.manifest import load_manifest
from umt.errors import UMTError

#: Kinetics-Sounds' default class list (32 Kinetics-400 labels; the manifest
#: ``configs/manifests/kinetics_sounds.yaml`` names the others and where each comes from).
KINETICS_SOUNDS_CLASSES = load_manifest("kinetics_sounds").class_list().names


def _find_file(src: Path, name: str, what: str) -> Path:
    """``src/name``, else the first ``name`` below ``src`` (sorted), else a UMTError."""
    direct = src / name
    if direct.is_file():
        return direct
    found = sorted(p for p in src.rglob(name) if p.is_file())
    if not found:
        raise UMTError(f"{src}: no {name} found in it or below; expected {what}")
    return found[0]


def read_vggsound(src: Path, cfg: PrepareConfig) -> Annotations:
    """VGGSound's ``vggsound.csv``: ``YouTube ID, start seconds, label, train/test split``."""
    path = _find_file(
        src, "vggsound.csv", "VGGSound's annotation file (YouTube ID, start, label, split)"
    )
    clips: dict[str, Clip] = {}
    for line_no, row in enumerate(csv.reader(io.StringIO(read_text(path))), start=1):
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
        window = (float(start), float(start + 10))
        clips.setdefault(cid, Clip(cid, label, split, (cid, f"{ytid}_{start}"), ytid, window))
    all_clips = list(clips.values())
    train = [c for c in all_clips if c.split == "train"]
    train, val = carve(train, cfg.val_fraction, cfg.seed, "val")
    test = [c for c in all_clips if c.split == "test"]
    notes = [
        f"splits from {path.name}: train and test as annotated; VGGSound has no validation "
        f"split, so val is {len(val)} clips carved from train ({cfg.val_fraction:.0%} per class, "
        f"seed {cfg.seed}); test is never touched"
    ]
    return Annotations(train + val + test, sorted({c.label for c in all_clips}), notes)


def kinetics_sounds_classes(choice: str | None) -> tuple[list[str], str]:
    """The Kinetics-Sounds classes to keep and where they come from (``name@version`` of the
    manifest's list, or ``file:<path>``): ``choice`` is a list's name, a file of names (one a
    line), or ``None`` (the manifest's default).

    Raises:
        UMTError: neither a list's name nor a readable file of at least 2 names.
    """
    p = Path(choice).expanduser() if choice else None
    if p is None or not p.is_file():
        named = load_manifest("kinetics_sounds").class_list(choice)
        return list(named.names), named.tag
    names = [line.strip() for line in read_text(p).splitlines()]
    names = [n for n in names if n and not n.startswith("#")]
    if len(names) < 2:
        raise UMTError(
            f"--classes {p}: found {len(names)} class names; expected one per line, at least 2"
        )
    return names, f"file:{p.resolve()}"


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
    classes, origin = kinetics_sounds_classes(cfg.classes)
    wanted = {c.lower(): c for c in classes}
    csvs = []
    for p in sorted(src.rglob("*.csv")):
        if any(part.startswith(".") for part in p.relative_to(src).parts):
            continue
        with open(p, "rb") as f:  # the header only: any other CSV may lie here, in any encoding
            first = f.readline().decode("utf-8-sig", errors="replace")
        if [h.strip() for h in next(csv.reader([first]), [])[:4]] == _KINETICS_HEADER:
            csvs.append(p)
    if not csvs:
        raise UMTError(
            f"{src}: no Kinetics annotation CSV found in it or below; expected files such as "
            "annotations/train.csv with the header label,youtube_id,time_start,time_end,split"
        )
    clips: dict[tuple[str, str], Clip] = {}
    for path in csvs:
        reader = csv.DictReader(io.StringIO(read_text(path)))
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
                Clip(cid, wanted[label.lower()], split, (cid,), ytid, (float(start), float(end))),
            )
    by_split: dict[str, list[Clip]] = defaultdict(list)
    for c in clips.values():
        by_split[c.split].append(c)
    found = sorted({c.label for c in clips.values()})
    missing = [c for c in classes if c not in found]
    notes = [
        f"class list {origin}; annotations: {', '.join(p.name for p in csvs)}; {len(found)} of "
        f"{len(classes)} classes found"
    ]
    if missing:
        notes.append(f"classes with no annotated clip: {', '.join(missing)}")
    train, val, test = by_split["train"], by_split["val"], by_split["test"]
    if not test:
        test = [replace(c, split="test") for c in val]
        train, val = carve(train, cfg.val_fraction, cfg.seed, "val")
        notes.append(
            f"no labelled test rows: Kinetics' val split is the test split, and val is {len(val)} "
            f"clips carved from train ({cfg.val_fraction:.0%} per class, seed {cfg.seed})"
        )
    else:
        notes.append("splits as annotated: Kinetics' train, val and test")
    return Annotations(train + val + test, classes, notes, class_list=origin)


def _read_ave_rows(path: Path) -> list[tuple[str, str, int]]:
    rows = []
    for line_no, line in enumerate(read_text(path).splitlines(), start=1):
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
