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
    field, one of ``ANG DIS FEA HAP NEU SAD``. CREMA-D has no official split (``--split``):
    ``common``, OGM-GE's ``train.csv`` and ``test.csv`` (lines ``<clip>,<EMO>``) if they lie in
    ``--src``, otherwise a seeded, class-stratified 10 % of the clips as test, validation carved
    from ``train``; or ``speaker-independent``, the manifest's disjoint actor lists.
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
``OUT/prepared.json`` records the settings, the audio statistics and where each split came from,
and ``OUT/coverage.md`` (``coverage.json``) compares the counts with the data set's manifest
(:mod:`~umt.data.prepare.manifest`: class lists, split rules, expected counts). ``--shard i/n``
prepares one of n parts and :func:`merge` joins them (:mod:`~umt.data.prepare.shards`).

The modules, in the order :func:`prepare` uses them: :mod:`~umt.data.prepare.config` (the
settings and the result), :mod:`~umt.data.prepare.readers` (the four annotation formats,
:data:`BENCHMARKS`) over :mod:`~umt.data.prepare.clips` (a clip, where its files lie),
:mod:`~umt.data.prepare.work` (the work folder, the decoding processes),
:mod:`~umt.data.prepare.decode` (PyAV), :mod:`~umt.data.prepare.assemble` (the umt-folder).
"""

from __future__ import annotations

import math
import shutil
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
from umt.data.prepare.coverage import COVERAGE_MD
from umt.data.prepare.cremad import CREMAD_EMOTIONS, read_cremad
from umt.data.prepare.decode import (
    ClipError,
    _import_av,
    decode_clip,
    fit_length,
    read_audio,
    read_frames,
)
from umt.data.prepare.manifest import Manifest, load_manifest, recipe_name
from umt.data.prepare.merge import merge
from umt.data.prepare.readers import (
    BENCHMARKS,
    KINETICS_SOUNDS_CLASSES,
    Benchmark,
    read_ave,
    read_kinetics_sounds,
    read_vggsound,
)
from umt.data.prepare.shards import SHARD_FILE, parse_shard, write_shard_record
from umt.data.prepare.work import WORK_DIR, _decode, _plan, _settings, _start_work
from umt.errors import UMTError

#: The shipped training recipes, one per benchmark (``<dataset>.yaml``, ``-`` as ``_``).
RECIPES = Path(__file__).resolve().parents[2] / "configs"
#: Every data set ``umt prepare`` knows: the audio-visual :data:`BENCHMARKS` and ``nyuv2``
#: (:func:`umt.data.prepare.nyuv2.prepare_nyuv2`).
PREPARABLE = (*sorted(BENCHMARKS), "nyuv2")


def prepare(cfg: PrepareConfig, *, log: Callable[[str], None] = print) -> PrepareResult:
    """Prepare ``cfg.dataset`` from ``cfg.src`` into the umt-folder ``cfg.out`` (resumable); with
    ``cfg.shard``, only that part of it, into a part folder for :func:`merge`.

    Args:
        cfg: what to prepare and how.
        log: where progress lines go.

    Returns:
        The counts per split, the skipped clips and the decoding throughput.

    Raises:
        UMTError: an unknown data set, split rule or class list, a setting out of range, a
            missing folder or annotation file, a malformed or non-UTF-8 annotation file, ``out``
            started with other settings, or a split with no usable clip. Nothing is written
            before the settings and the annotations are checked.
    """
    bench, audio, src, out = _check(cfg)
    manifest = load_manifest(recipe_name(cfg.dataset))
    rule = manifest.split_rule(cfg.split)
    _import_av()  # before any work: PyAV is an optional dependency

    index = FileIndex.build(src)
    ann = bench.read(src, cfg, index)
    for note in ann.notes:
        log(f"{bench.title}: {note}")
    settings = _settings(cfg, audio, ann, rule.name)
    shard = {"shard": list(cfg.shard)} if cfg.shard is not None else {}
    finished = _start_work(out, settings | shard, log)
    if finished is not None:
        return finished

    splits, tasks, skipped = _plan(out / WORK_DIR, ann, index, audio, cfg.video, cfg.shard)
    annotated = sum(len(sw.clips) for sw in splits.values())
    reused = sum(len(sw.done) for sw in splits.values())
    part = f" (shard {cfg.shard[0]}/{cfg.shard[1]})" if cfg.shard else ""
    log(
        f"{bench.title}{part}: {annotated} annotated clips; "
        f"{reused} already prepared, {len(tasks)} to decode"
        + (f" with {cfg.workers} workers" if tasks and cfg.workers > 1 else "")
    )
    new, seconds = _decode(tasks, splits, skipped, cfg, audio)
    skipped.sort(key=lambda x: (SPLITS.index(x[1]), x[0]))
    counts = {
        s: SplitCounts(len(sw.done), new[s], sum(1 for _, sp, _ in skipped if sp == s))
        for s, sw in splits.items()
    }
    result = PrepareResult(out, counts, skipped, len(tasks), seconds)
    if cfg.shard is not None:
        write_shard_record(
            out,
            cfg.shard,
            settings,
            source=str(src.resolve()),
            notes=ann.notes,
            split_sizes=Counter(c.split for c in ann.clips),
            done={s: len(sw.done) for s, sw in splits.items()},
            skipped=skipped,
        )
        _log_result(result, cfg, log)
        log(
            f"wrote part {cfg.shard[0]}/{cfg.shard[1]} to {out} ({SHARD_FILE}); when every part "
            f"is done: umt prepare {cfg.dataset} --merge PART ... --out DATA_DIR"
        )
        return result
    for s, sw in splits.items():
        if not sw.done:
            reasons = [r for c, sp, r in skipped if sp == s][:3]
            raise UMTError(
                f"no clip of split {s!r} could be prepared ({len(sw.clips)} annotated)"
                + (f"; first reasons: {'; '.join(reasons)}" if reasons else "")
                + f". Is --src {src} the raw {bench.title} folder?"
            )
    _assemble(out, bench, cfg, audio, ann, splits, skipped, settings, log)
    _log_result(result, cfg, log)
    log(f"how the folder compares with the {bench.title} manifest: {out / COVERAGE_MD}")
    if cfg.clean:
        shutil.rmtree(out / WORK_DIR)
        log(f"removed the work folder {out / WORK_DIR}")
    recipe = RECIPES / f"{recipe_name(cfg.dataset)}.yaml"
    log(f"wrote {out}; train with: umt run --config {recipe} --set data.root={out}")
    return result


def _check(cfg: PrepareConfig) -> tuple[Benchmark, AudioSettings, Path, Path]:
    """``cfg``'s benchmark, audio settings, source and output folders, once ``cfg`` is checked.

    Raises:
        UMTError: an unknown data set, a setting out of range (one line naming the value and
            what to give instead), or ``src`` not a folder.
    """
    if cfg.dataset not in BENCHMARKS:
        hint = (
            "; nyuv2 is prepared by umt prepare nyuv2 (umt.data.prepare.nyuv2.prepare_nyuv2)"
            if cfg.dataset == "nyuv2"
            else ""
        )
        raise UMTError(
            f"unknown data set {cfg.dataset!r}; umt prepare knows {', '.join(PREPARABLE)}{hint}"
        )
    bench = BENCHMARKS[cfg.dataset]
    audio = cfg.audio or bench.audio
    checks = [
        ("--workers", cfg.workers, cfg.workers >= 1, "a number of processes, 1 or more"),
        (
            "--frames",
            cfg.video.frames,
            cfg.video.frames >= 1,
            "frames per clip, 1 or more (default 3)",
        ),
        ("--size", cfg.video.size, cfg.video.size >= 8, "a frame side of 8 or more (default 224)"),
        (
            "--duration",
            audio.duration,
            math.isfinite(audio.duration) and 0 < audio.duration <= 3600,
            f"seconds of audio per clip, above 0 and at most 3600 (default {bench.audio.duration:g})",
        ),
        (
            "--hop-length",
            audio.hop_length,
            audio.hop_length >= 1,
            "STFT hop in samples, 1 or more (default 160)",
        ),
        ("--n-mels", audio.n_mels, audio.n_mels >= 1, "mel bands, 1 or more (default 128)"),
        (
            "--val-fraction",
            cfg.val_fraction,
            0.0 <= cfg.val_fraction < 1.0,
            "a share in [0, 1) (default 0.1)",
        ),
    ]
    for flag, value, ok, expected in checks:
        if not ok:
            raise UMTError(f"{flag} {value}: expected {expected}; run again with such a value")
    if audio.n_fft < 2 or audio.sample_rate < 1:
        raise UMTError(f"audio settings {audio}: n_fft must be >= 2 and sample_rate >= 1")
    if cfg.shard is not None:
        i, n = cfg.shard
        if not 0 <= i < n:
            raise UMTError(f"--shard {i}/{n}: expected i/n with 0 <= i < n")
        if cfg.clean:
            raise UMTError("--clean with --shard: a part's work folder is what the merge reads")
    src = Path(cfg.src).expanduser()
    if not src.is_dir():
        raise UMTError(
            f"--src {src}: {'not a folder' if src.exists() else 'does not exist'}; expected the raw {bench.title} folder"
        )
    return bench, audio, src, Path(cfg.out).expanduser()


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
        log(f"skipped clips and why: {result.out / (SHARD_FILE if cfg.shard else SKIPPED_FILE)}")


__all__ = [
    "AUDIO_EXTENSIONS",
    "BENCHMARKS",
    "CREMAD_EMOTIONS",
    "KINETICS_SOUNDS_CLASSES",
    "PREPARABLE",
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
    "Manifest",
    "PrepareConfig",
    "PrepareResult",
    "Source",
    "SplitCounts",
    "VideoSettings",
    "decode_clip",
    "fit_length",
    "load_manifest",
    "merge",
    "parse_shard",
    "prepare",
    "read_audio",
    "read_ave",
    "read_cremad",
    "read_frames",
    "read_kinetics_sounds",
    "read_vggsound",
    "resolve",
]
