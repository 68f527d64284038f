"""Assembling the umt-folder (``meta.json``, ``train/ val/ test/``, ``prepared.json``,
``skipped.csv``) from the finished rows of the work folder."""

from __future__ import annotations

import csv
import hashlib
import json
import math
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from umt.data.prepare.clips import Annotations, Clip
from umt.data.prepare.config import AudioSettings, PrepareConfig
from umt.data.prepare.coverage import coverage, write_coverage
from umt.data.prepare.manifest import load_manifest, recipe_name
from umt.data.prepare.readers import Benchmark
from umt.data.prepare.work import release_pages
from umt.data.prepared import FORMAT as PREPARED_FORMAT
from umt.data.prepared import PREPARED_FILE
from umt.io import atomic_dir, write_json, write_text

SKIPPED_FILE = "skipped.csv"


class SplitRows(Protocol):
    """A split's annotated clips (one row each), the rows finished, and their arrays
    (``audio[rows]``, ``visual[rows]``): a work folder's split, or the parts' merged."""

    clips: list[Clip]
    done: set[int]
    audio: Any
    visual: Any


def _assemble(
    out: Path,
    bench: Benchmark,
    cfg: PrepareConfig,
    audio: AudioSettings,
    ann: Annotations,
    splits: Mapping[str, SplitRows],
    skipped: list[tuple[str, str, str]],
    settings: dict[str, Any],
    log: Callable[[str], None],
) -> None:
    """Write the umt-folder (``meta.json`` last) from the finished rows, unless it is up to date,
    with the coverage report against the data set's manifest."""
    fingerprints = {s: _fingerprint(sw.done) for s, sw in splits.items()}
    prepared_file = out / PREPARED_FILE
    if prepared_file.is_file() and (out / "meta.json").is_file():
        old = json.loads(prepared_file.read_text())
        if old.get("settings") == settings and old.get("rows") == fingerprints:
            log(f"{out}: the output is up to date")
            return
    (out / "meta.json").unlink(missing_ok=True)  # the folder is incomplete until it is rewritten
    for s, sw in splits.items():
        _write_split(out / s, sw, ann.classes)
    with open(out / SKIPPED_FILE, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["clip", "split", "reason"])
        writer.writerows(skipped)
    manifest = load_manifest(recipe_name(cfg.dataset))
    rule = manifest.split_rule(settings["split"])
    write_coverage(out, coverage(manifest, rule, ann.classes, ann.class_list, splits, skipped))
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
    write_json(out / "meta.json", _meta(bench, cfg, audio, ann.classes))


def _write_split(folder: Path, work: SplitRows, classes: list[str]) -> None:
    """One split's folder of the umt-folder (``audio.npy visual.npy labels.npy clips.txt``) from
    the finished rows of its work, written whole before it replaces the one there."""
    class_index = {c: i for i, c in enumerate(classes)}
    rows = np.array(sorted(work.done), dtype=np.int64)
    with atomic_dir(folder) as tmp:
        _copy_rows(work.audio, rows, tmp / "audio.npy")
        _copy_rows(work.visual, rows, tmp / "visual.npy")
        labels = np.array([class_index[work.clips[r].label] for r in rows], dtype=np.int64)
        np.save(tmp / "labels.npy", labels)
        write_text(tmp / "clips.txt", "".join(f"{work.clips[r].id}\n" for r in rows))


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
        release_pages(out)  # the process's memory stays flat, however large the split
        release_pages(src)
    del out


def _mean_std(arr: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation of every value of ``arr``, summed in float64 about 64 MB at a
    time (a memory-mapped array is never read whole).

    Example:
        >>> _mean_std(np.array([[1.0, 3.0], [5.0, 7.0]], dtype=np.float16))
        (4.0, 2.23606797749979)
    """
    total, total_sq, count = 0.0, 0.0, 0
    step = max(1, (64 << 20) // max(1, 8 * math.prod(arr.shape[1:])))  # 64 MB of float64
    for i in range(0, len(arr), step):
        chunk = np.array(arr[i : i + step], dtype=np.float64)  # a copy: squared in place
        total += float(chunk.sum())
        total_sq += float(np.square(chunk, out=chunk).sum())
        count += chunk.size
        release_pages(arr)
    mean = total / count
    return mean, math.sqrt(max(total_sq / count - mean * mean, 0.0))


def _fingerprint(rows: Iterable[int]) -> str:
    """A short hash of a split's finished rows: ``prepared.json`` keeps it, so that a run that
    finished no new row sees that the output is up to date."""
    return hashlib.sha256(",".join(map(str, sorted(rows))).encode()).hexdigest()[:16]


def _meta(
    bench: Benchmark, cfg: PrepareConfig, audio: AudioSettings, classes: list[str]
) -> dict[str, Any]:
    """The umt-folder's ``meta.json``."""
    n_frames, _, size, _ = cfg.video.shape
    return {
        "format": "umt-folder",
        "version": 1,
        "name": cfg.dataset,
        "task": "classification",
        "num_classes": len(classes),
        "class_names": classes,
        "description": (
            f"{bench.title} prepared by umt prepare: log-mel audio {list(audio.shape)} "
            f"({audio.duration:g} s at {audio.sample_rate} Hz), {n_frames} frames of {size}x{size}"
        ),
        "modalities": {
            "audio": {"shape": list(audio.shape), "dtype": "float16"},
            "visual": {"shape": list(cfg.video.shape), "dtype": "uint8"},
        },
    }
