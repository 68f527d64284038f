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

The modules, in the order :func:`prepare` uses them: :mod:`~umt.data.prepare.config` (the
settings and the result), :mod:`~umt.data.prepare.readers` (the four annotation formats,
:data:`BENCHMARKS`) over :mod:`~umt.data.prepare.clips` (a clip, where its files lie),
:mod:`~umt.data.prepare.work` (the work folder, the decoding processes),
:mod:`~umt.data.prepare.decode` (PyAV), :mod:`~umt.data.prepare.assemble` (the umt-folder).
"""

from __future__ import annotations

import shutil
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from umt.data.base import SPLITS
from umt.data.prepare.assemble import SKIPPED_FILE, _assemble
from umt.data.prepare.clips import (
    AUDIO_EXTENSIONS,
    VIDEO_EXTENSIONS,
    Annotations,
    Clip,
    FileIndex,
    Source,
    resolve,
)
from umt.data.prepare.config import (
    AudioSettings,
    PrepareConfig,
    PrepareResult,
    SplitCounts,
    VideoSettings,
)
from umt.data.prepare.decode import (
    ClipError,
    _import_av,
    decode_clip,
    fit_length,
    read_audio,
    read_frames,
)
from umt.data.prepare.readers import (
    BENCHMARKS,
    CREMAD_EMOTIONS,
    KINETICS_SOUNDS_CLASSES,
    Benchmark,
    read_ave,
    read_cremad,
    read_kinetics_sounds,
    read_vggsound,
)
from umt.data.prepare.work import (
    WORK_DIR,
    _results,
    _settings,
    _SplitWork,
    _start_work,
    _Task,
)
from umt.errors import UMTError

#: The shipped training recipes, one per benchmark (``<dataset>.yaml``, ``-`` as ``_``).
RECIPES = Path(__file__).resolve().parents[2] / "configs"


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
    bench, audio, src, out = _check(cfg)
    _import_av()  # before any work: PyAV is an optional dependency

    index = FileIndex.build(src)
    ann = bench.read(src, cfg, index)
    for note in ann.notes:
        log(f"{bench.title}: {note}")
    settings = _settings(cfg, audio, ann.classes)
    finished = _start_work(out, settings, log)
    if finished is not None:
        return finished

    splits, tasks, skipped = _plan(out / WORK_DIR, ann, index, audio, cfg.video)
    annotated = sum(len(sw.clips) for sw in splits.values())
    reused = sum(len(sw.done) for sw in splits.values())
    log(
        f"{bench.title}: {annotated} annotated clips; "
        f"{reused} already prepared, {len(tasks)} to decode"
        + (f" with {cfg.workers} workers" if tasks and cfg.workers > 1 else "")
    )
    new, seconds = _decode(tasks, splits, skipped, cfg, audio)
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
    _log_result(result, cfg, log)
    if cfg.clean:
        shutil.rmtree(out / WORK_DIR)
        log(f"removed the work folder {out / WORK_DIR}")
    recipe = RECIPES / f"{cfg.dataset.replace('-', '_')}.yaml"
    log(f"wrote {out}; train with: umt run --config {recipe} --set data.root={out}")
    return result


def _check(cfg: PrepareConfig) -> tuple[Benchmark, AudioSettings, Path, Path]:
    """``cfg``'s benchmark, audio settings, source and output folders, once ``cfg`` is checked.

    Raises:
        UMTError: an unknown data set, a setting out of range, or ``src`` not a folder.
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
    src = Path(cfg.src).expanduser()
    if not src.is_dir():
        raise UMTError(
            f"--src {src}: {'not a folder' if src.exists() else 'does not exist'}; expected the raw {bench.title} folder"
        )
    return bench, cfg.audio or bench.audio, src, Path(cfg.out).expanduser()


def _plan(
    work: Path, ann: Annotations, index: FileIndex, audio: AudioSettings, video: VideoSettings
) -> tuple[dict[str, _SplitWork], list[_Task], list[tuple[str, str, str]]]:
    """Each split's work folder (rows finished by an earlier run kept), the clips left to decode,
    and the clips skipped before decoding (rejected by the annotations, or with no file):
    ``(splits, tasks, skipped)``."""
    splits = {
        s: _SplitWork(
            work / s,
            sorted((c for c in ann.clips if c.split == s), key=lambda c: c.id),
            audio,
            video,
        )
        for s in SPLITS
    }
    skipped = [(c.id, c.split, reason) for c, reason in ann.rejected]
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


def _log_result(result: PrepareResult, cfg: PrepareConfig, log: Callable[[str], None]) -> None:
    """The counts per split, the decoding throughput and where the skipped clips are listed."""
    for s, c in result.splits.items():
        log(
            f"  {s:5s} {c.clips:7d} clips ({c.new} decoded now, {c.clips - c.new} reused), {c.skipped} skipped"
        )
    if result.decoded:
        log(
            f"decoded {result.decoded} clip{'s' if result.decoded != 1 else ''} in "
            f"{result.seconds:.1f} s ({result.clips_per_second:.1f} clips/s, {cfg.workers} "
            f"worker{'s' if cfg.workers > 1 else ''})"
        )
    if result.skipped:
        log(f"skipped clips and why: {result.out / SKIPPED_FILE}")


__all__ = [
    "AUDIO_EXTENSIONS",
    "BENCHMARKS",
    "CREMAD_EMOTIONS",
    "KINETICS_SOUNDS_CLASSES",
    "RECIPES",
    "SKIPPED_FILE",
    "VIDEO_EXTENSIONS",
    "WORK_DIR",
    "Annotations",
    "AudioSettings",
    "Benchmark",
    "Clip",
    "ClipError",
    "FileIndex",
    "PrepareConfig",
    "PrepareResult",
    "Source",
    "SplitCounts",
    "VideoSettings",
    "decode_clip",
    "fit_length",
    "prepare",
    "read_audio",
    "read_ave",
    "read_cremad",
    "read_frames",
    "read_kinetics_sounds",
    "read_vggsound",
    "resolve",
]
