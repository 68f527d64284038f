"""Merging the parts of a sharded ``umt prepare`` (:mod:`umt.data.prepare.shards`) into the folder
one process would have written: the same ``meta.json``, ``prepared.json``, ``skipped.csv``,
``coverage.*`` and split arrays, byte for byte (as a one-process run with ``--clean``)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from umt.data.base import SPLITS
from umt.data.prepare.assemble import _assemble
from umt.data.prepare.clips import Annotations, Clip
from umt.data.prepare.config import (
    AudioSettings,
    PrepareConfig,
    PrepareResult,
    SplitCounts,
    VideoSettings,
)
from umt.data.prepare.readers import BENCHMARKS
from umt.data.prepare.shards import read_shard_record
from umt.data.prepare.work import WORK_DIR
from umt.data.prepared import PREPARED_FILE
from umt.errors import UMTError


class _Gather:
    """Rows of a split spread over the parts' arrays, read as one array: ``view[rows]``."""

    def __init__(self, arrays: list[np.ndarray], where: dict[int, tuple[int, int]], n: int):
        self.arrays, self.where = arrays, where
        self.dtype = arrays[0].dtype
        self.shape = (n, *arrays[0].shape[1:])

    def __getitem__(self, rows: np.ndarray) -> np.ndarray:
        picked = [self.where[int(g)] for g in rows]
        return np.stack([self.arrays[p][r] for p, r in picked])


class _MergedSplit:
    """One split of the whole data set, from the parts: every annotated clip (by its row), the
    rows prepared, and their arrays."""

    def __init__(
        self, split: str, parts: list[Path], size: int, audio: AudioSettings, video: VideoSettings
    ) -> None:
        clips: dict[int, Clip] = {}
        where: dict[int, tuple[int, int]] = {}
        self.done: set[int] = set()
        arrays: dict[str, list[np.ndarray]] = {"audio": [], "visual": []}
        shapes = {"audio": (np.float16, audio.shape), "visual": (np.uint8, video.shape)}
        for p, part in enumerate(parts):
            folder = part / WORK_DIR / split
            listing = (folder / "clips.tsv").read_text(encoding="utf-8").splitlines()
            rows = []
            for line in listing:
                row, cid, label = line.split("\t")
                if int(row) in clips:
                    raise UMTError(f"--merge: clip row {row} of {split} is in two parts")
                clips[int(row)] = Clip(cid, label, split, (cid,))
                rows.append(int(row))
            done_file = folder / "done.txt"
            local = [int(x) for x in done_file.read_text().split()] if done_file.is_file() else []
            for r in local:
                where[rows[r]] = (p, r)
                self.done.add(rows[r])
            for key, (dtype, shape) in shapes.items():
                f = folder / f"{key}.npy"
                arr = np.load(f, mmap_mode="r") if f.is_file() else np.zeros((0, *shape), dtype)
                arrays[key].append(arr)
        if sorted(clips) != list(range(size)):
            raise UMTError(
                f"--merge: the parts hold {len(clips)} clips of {split}, not the {size} its "
                "annotations list; were they prepared from the same annotations?"
            )
        self.clips = [clips[r] for r in range(size)]
        self.audio = _Gather(arrays["audio"], where, size)
        self.visual = _Gather(arrays["visual"], where, size)


def merge(
    parts: Sequence[str | Path],
    out: str | Path,
    *,
    dataset: str | None = None,
    log: Callable[[str], None] = print,
) -> PrepareResult:
    """Merge the finished parts of ``umt prepare --shard i/n`` (one folder each) into ``out``.

    Args:
        parts: the parts' folders, every shard ``0..n-1`` once, in any order.
        out: the umt-folder to write (new, or an earlier merge of these parts).
        dataset: the data set the parts must be of (``None``: whichever they are).

    Raises:
        UMTError: a part missing, unfinished, duplicated or of other settings; ``out`` holds
            another folder; a split with no prepared clip.
    """
    folders = [Path(p).expanduser() for p in parts]
    if not folders:
        raise UMTError("--merge: name the parts' folders (every shard 0..n-1 once)")
    records = [read_shard_record(p) for p in folders]
    first = records[0]
    settings: dict[str, Any] = first["settings"]
    name = settings["dataset"]
    if dataset is not None and dataset != name:
        raise UMTError(f"--merge: the parts are of {name!r}, not {dataset!r}")
    n = first["shard"][1]
    for part, rec in zip(folders, records, strict=True):
        if rec["settings"] != first["settings"] or rec["shard"][1] != n:
            raise UMTError(
                f"--merge: {part} was prepared with other settings than {folders[0]} (or as a "
                "part of another number of shards); merge parts of one run only"
            )
    have = sorted(rec["shard"][0] for rec in records)
    if have != list(range(n)):
        missing = sorted(set(range(n)) - set(have))
        twice = sorted({i for i in have if have.count(i) > 1})
        raise UMTError(
            f"--merge: expected the {n} parts 0/{n} ... {n - 1}/{n} once each; "
            + (f"missing {', '.join(f'{i}/{n}' for i in missing)}" if missing else "")
            + ("; " if missing and twice else "")
            + (f"given twice: {', '.join(f'{i}/{n}' for i in twice)}" if twice else "")
        )
    order = sorted(range(len(folders)), key=lambda k: records[k]["shard"][0])
    folders, records = [folders[k] for k in order], [records[k] for k in order]
    audio, video = AudioSettings(**settings["audio"]), VideoSettings(**settings["video"])
    out = Path(out).expanduser()
    _check_out(out, settings)
    splits = {s: _MergedSplit(s, folders, first["split_sizes"][s], audio, video) for s in SPLITS}
    skipped = sorted(
        {tuple(x) for rec in records for x in rec["skipped"]},
        key=lambda x: (SPLITS.index(x[1]), x[0]),
    )
    for s, sw in splits.items():
        if not sw.done:
            raise UMTError(
                f"--merge: no clip of split {s!r} was prepared by any part ({len(sw.clips)} "
                "annotated); see the parts' logs"
            )
    bench = BENCHMARKS[name]
    cfg = PrepareConfig(
        dataset=name,
        src=first["source"],
        out=str(out),
        video=video,
        audio=audio,
        val_fraction=settings["val_fraction"],
        seed=settings["seed"],
        split=settings["split"],
        progress=False,
    )
    ann = Annotations([], settings["classes"], first["notes"], class_list=settings["class_list"])
    out.mkdir(parents=True, exist_ok=True)
    triples: list[tuple[str, str, str]] = [(a, b, c) for a, b, c in skipped]
    _assemble(out, bench, cfg, audio, ann, splits, triples, settings, log)
    counts = {
        s: SplitCounts(len(sw.done), 0, sum(1 for _, sp, _ in triples if sp == s))
        for s, sw in splits.items()
    }
    log(
        f"merged {n} parts into {out}: "
        + ", ".join(f"{s} {c.clips}" for s, c in counts.items())
        + f" clips; {len(triples)} skipped (skipped.csv, coverage.md)"
    )
    return PrepareResult(out, counts, triples, 0, 0.0)


def _check_out(out: Path, settings: dict[str, Any]) -> None:
    """``out`` must be new or empty, or an earlier merge (or preparation) with these settings."""
    prepared = out / PREPARED_FILE
    if prepared.is_file():
        if json.loads(prepared.read_text()).get("settings") != settings:
            raise UMTError(
                f"--out {out} holds a data set prepared with other settings; merge into a new "
                "--out, or delete it"
            )
        return
    if out.exists() and any(out.iterdir()):
        raise UMTError(f"--out {out} exists and is not an umt prepare folder; choose a new path")
