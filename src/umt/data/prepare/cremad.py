"""CREMA-D's clips and its two split rules (the manifest's ``common`` and ``speaker-independent``).

Clips are named ``ActorID_Sentence_Emotion_Level`` (``1001_DFA_ANG_XX``) under ``AudioWAV/`` and
``VideoFlash/``; the emotion code is the label. CREMA-D has no official split:

``common`` (default)
    OGM-GE's ``train.csv`` / ``test.csv`` (``<clip>,<EMO>``) where they lie in ``--src``, else a
    seeded, class-stratified share of the clips as test; val carved from train. Every actor is in
    every split.
``speaker-independent``
    the manifest's fixed actor lists: no actor in two splits.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

from umt.data.prepare.clips import Annotations, Clip, FileIndex, carve, read_text
from umt.data.prepare.config import PrepareConfig
from umt.data.prepare.manifest import SplitRule, load_manifest
from umt.errors import UMTError

#: CREMA-D's emotion codes (the third field of a clip's name), in label order.
CREMAD_EMOTIONS = ("ANG", "DIS", "FEA", "HAP", "NEU", "SAD")
_CREMAD_NAME = re.compile(r"\d{4}_[A-Z]{3}_([A-Z]{3})_[A-Z]{2}")
_TAG = load_manifest("cremad").class_list().tag


def _emotion(name: str) -> str:
    """The emotion code of a CREMA-D clip name (``1001_DFA_ANG_XX`` -> ``ANG``)."""
    return name.split("_")[2]


def _read_split_file(path: Path) -> dict[str, str]:
    out = {}
    for line_no, row in enumerate(csv.reader(io.StringIO(read_text(path))), start=1):
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
    """CREMA-D's clips with the split rule ``cfg.split`` of its manifest."""
    rule = load_manifest("cremad").split_rule(cfg.split)
    names = sorted(s for s in {*index.video, *index.audio} if _CREMAD_NAME.fullmatch(s))
    split_files = [src / "train.csv", src / "test.csv"]
    if rule.actors is None and all(p.is_file() for p in split_files):
        return _check(_ogm_ge_split(split_files, cfg))
    if not names:
        raise UMTError(
            f"{src}: no CREMA-D clip found; expected AudioWAV/<clip>.wav and "
            "VideoFlash/<clip>.flv with clips named like 1001_DFA_ANG_XX"
        )
    if rule.actors is not None:
        return _check(_by_actor(names, rule))
    clips = [Clip(n, _emotion(n), "train", (n,)) for n in names]
    train, test = carve(clips, cfg.val_fraction, cfg.seed, "test")
    notes = [
        f"split rule 'common': CREMA-D has no official split, so test is {len(test)} clips "
        f"({cfg.val_fraction:.0%} per emotion, seed {cfg.seed}; actors are shared with train); "
        "put OGM-GE's train.csv and test.csv in --src to use theirs, or use --split "
        "speaker-independent"
    ]
    return _check(_carve_val(train, test, notes, cfg))


def _ogm_ge_split(split_files: list[Path], cfg: PrepareConfig) -> Annotations:
    listed = {
        split: _read_split_file(p) for split, p in zip(("train", "test"), split_files, strict=True)
    }
    clips = [
        Clip(name, _emotion(name), split, (name,))
        for split, rows in listed.items()
        for name in sorted(rows)
    ]
    notes = [
        "split rule 'common': train and test from train.csv / test.csv in --src (OGM-GE's "
        "split files; actors are shared between splits)"
    ]
    train = [c for c in clips if c.split == "train"]
    test = [c for c in clips if c.split == "test"]
    return _carve_val(train, test, notes, cfg)


def _carve_val(
    train: list[Clip], test: list[Clip], notes: list[str], cfg: PrepareConfig
) -> Annotations:
    train, val = carve(train, cfg.val_fraction, cfg.seed + 1, "val")
    notes.append(
        f"val is {len(val)} clips carved from train ({cfg.val_fraction:.0%} per emotion, "
        f"seed {cfg.seed + 1}); test is never touched"
    )
    return Annotations(train + val + test, list(CREMAD_EMOTIONS), notes, class_list=_TAG)


def _by_actor(names: list[str], rule: SplitRule) -> Annotations:
    """Each clip in the split of its actor (``rule.actors``); a clip of an unlisted actor is
    rejected."""
    assert rule.actors is not None
    split_of = {a: s for s, ids in rule.actors.items() for a in ids}
    clips, rejected = [], []
    for n in names:
        split = split_of.get(n.split("_")[0])
        clip = Clip(n, _emotion(n), split or "train", (n,))
        if split is None:
            rejected.append((clip, f"actor {n[:4]} is in none of the manifest's actor lists"))
        else:
            clips.append(clip)
    sizes = {s: len(ids) for s, ids in rule.actors.items()}
    notes = [
        f"split rule 'speaker-independent': actors disjoint across splits (the manifest's "
        f"lists: {sizes['train']} train, {sizes['val']} val, {sizes['test']} test actors); "
        "train.csv / test.csv in --src, if any, are not used"
    ]
    return Annotations(clips, list(CREMAD_EMOTIONS), notes, rejected, _TAG)


def _check(ann: Annotations) -> Annotations:
    bad = [c for c in ann.clips if c.label not in CREMAD_EMOTIONS]
    if bad:
        raise UMTError(
            f"CREMA-D clip {bad[0].id}: emotion code {bad[0].label!r} is not one of {CREMAD_EMOTIONS}"
        )
    return ann
