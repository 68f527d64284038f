"""The resumable work folder (``OUT/.work``) and the pool of decoding processes."""

from __future__ import annotations

import itertools
import json
import math
import mmap
import multiprocessing as mp
import os
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from umt.data.base import SPLITS
from umt.data.prepare.clips import Annotations, Clip, FileIndex, Source, resolve
from umt.data.prepare.config import (
    AudioSettings,
    PrepareConfig,
    PrepareResult,
    SplitCounts,
    VideoSettings,
)
from umt.data.prepare.decode import ClipError, decode_clip
from umt.data.prepare.shards import in_shard
from umt.data.prepared import PREPARED_FILE
from umt.errors import UMTError
from umt.io import write_json, write_text

WORK_DIR = ".work"


def release_pages(arr: Any) -> None:
    """Drop the pages of a flushed memory map (or of each of ``arr.arrays``) from this process's
    resident set: the file keeps them, and the process's memory stays flat however many rows it
    writes or reads (without this, every row written shows in its RSS as file pages)."""
    for a in getattr(arr, "arrays", [arr]):
        m = getattr(a, "_mmap", None)
        if m is not None and hasattr(mmap, "MADV_DONTNEED"):
            m.madvise(mmap.MADV_DONTNEED)


# --------------------------------------------------------------------------------------------
# the work folder


def _settings(
    cfg: PrepareConfig, audio: AudioSettings, ann: Annotations, split_rule: str
) -> dict[str, Any]:
    """What must match for a run to resume the work folder (``.work/settings.json``) or to reuse
    the output (``prepared.json``)."""
    return {
        "dataset": cfg.dataset,
        "audio": asdict(audio),
        "video": asdict(cfg.video),
        "val_fraction": cfg.val_fraction,
        "seed": cfg.seed,
        "split": split_rule,
        "class_list": ann.class_list,
        "classes": ann.classes,
    }


def _has_finished_rows(work: Path) -> bool:
    """Whether a work folder holds a clip an earlier run finished (``done.txt`` not empty)."""
    return any(f.stat().st_size > 0 for f in work.glob("*/done.txt"))


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
        try:
            old = json.loads(settings_file.read_text())
        except (OSError, ValueError):
            old = None
        if old == settings:
            return None
        if _has_finished_rows(work):
            changed = sorted(k for k in settings if (old or {}).get(k) != settings[k])
            raise UMTError(
                f"{out} was started with other settings ({', '.join(changed)} differ); prepare "
                "into a new --out, or delete it to start again"
            )
        # an earlier start that finished no clip (it failed, or was stopped): nothing to keep
        log(f"{out}: the work folder holds no finished clip; starting again with these settings")
        shutil.rmtree(work)
    elif work.is_dir() and not prepared_file.is_file() and not _has_finished_rows(work):
        shutil.rmtree(work)  # a start that stopped before it wrote its settings
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


class _SplitWork:
    """One split's work: its candidate clips (a row each), the result arrays, the finished rows."""

    def __init__(
        self,
        folder: Path,
        clips: list[Clip],
        audio: AudioSettings,
        video: VideoSettings,
        rows: list[int] | None = None,
    ) -> None:
        self.folder, self.clips = folder, clips
        folder.mkdir(parents=True, exist_ok=True)
        # the row of each clip in its split (a shard holds some rows of it; see shards.py)
        self.rows = list(range(len(clips))) if rows is None else rows
        listing = "".join(
            f"{i}\t{c.id}\t{c.label}\n" for i, c in zip(self.rows, clips, strict=True)
        )
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
                release_pages(arr)
        with open(self.done_file, "a") as f:
            f.write("".join(f"{r}\n" for r in self.pending))
            f.flush()
            os.fsync(f.fileno())
        self.done.update(self.pending)
        self.pending = []


# --------------------------------------------------------------------------------------------
# planning and decoding


def _plan(
    work: Path,
    ann: Annotations,
    index: FileIndex,
    audio: AudioSettings,
    video: VideoSettings,
    shard: tuple[int, int] | None = None,
) -> tuple[dict[str, _SplitWork], list[_Task], list[tuple[str, str, str]]]:
    """Each split's work folder (rows finished by an earlier run kept), the clips left to decode,
    and the clips skipped before decoding (rejected by the annotations, or with no file):
    ``(splits, tasks, skipped)``. With ``shard``, only that shard's clips (and, in shard 0, the
    clips the annotations rejected)."""
    splits = {}
    k = 0  # a clip's place in the whole data set (splits in order, clips by id): its shard
    for s in SPLITS:
        clips = sorted((c for c in ann.clips if c.split == s), key=lambda c: c.id)
        mine = [(row, c) for row, c in enumerate(clips) if in_shard(k + row, shard)]
        k += len(clips)
        rows = [row for row, _ in mine] if shard is not None else None
        splits[s] = _SplitWork(work / s, [c for _, c in mine], audio, video, rows)
    skipped = [(c.id, c.split, r) for c, r in ann.rejected if shard is None or shard[0] == 0]
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
    return splits, tasks, skipped


def _decode(
    tasks: list[_Task],
    splits: dict[str, _SplitWork],
    skipped: list[tuple[str, str, str]],
    cfg: PrepareConfig,
    audio: AudioSettings,
) -> tuple[Counter[str], float]:
    """Decode ``tasks`` into their splits' work, committing every few seconds and on the way out
    (an interrupted run keeps what it finished); the clips that fail join ``skipped``.

    Returns:
        The clips decoded per split, and the seconds spent.
    """
    from tqdm import tqdm

    start = time.perf_counter()
    last_commit = start
    new: Counter[str] = Counter()
    try:
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
    return new, time.perf_counter() - start


# --------------------------------------------------------------------------------------------
# the pool of decoding processes


@dataclass(frozen=True)
class _Task:
    """One clip to decode: the row of its split's work that its arrays go to."""

    split: str
    row: int
    source: Source


@dataclass(frozen=True)
class _Done:
    """A decoded clip's arrays, or why it could not be decoded (``reason``)."""

    split: str
    row: int
    audio: np.ndarray | None
    visual: np.ndarray | None
    reason: str | None = None


def _results(
    tasks: list[_Task], audio: AudioSettings, video: VideoSettings, workers: int
) -> Iterator[_Done]:
    """Decode ``tasks`` in this process (``workers`` 1) or in ``workers`` processes, yielding each
    result as it finishes (in that order, not the tasks').

    Raises:
        UMTError: a decoding process died.
    """
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


def _run_task(task: _Task, audio: AudioSettings, video: VideoSettings) -> _Done:
    try:
        a, v = decode_clip(task.source, audio, video)
    except ClipError as e:
        return _Done(task.split, task.row, None, None, str(e))
    return _Done(task.split, task.row, a, v)


def _worker_init() -> None:
    torch.set_num_threads(1)  # one decoding process per core
