"""Raw benchmark folders in each data set's real on-disk layout, written with real codecs (PyAV),
for the rehearsal (:mod:`benchmarks.rehearsal`) and, at tiny sizes, for the tests.

- VGGSound: ``vggsound.csv`` (no header: ``id,start,label,split``), ``video/<id>_<start:06d>.mp4``
  (H.264 + AAC);
- Kinetics-Sounds: ``annotations/{train,val}.csv`` (``label,youtube_id,time_start,time_end,
  split,is_cc``), ``train/<label>/<id>_<start:06d>_<end:06d>.mp4`` and ``val/...``;
- CREMA-D: ``AudioWAV/<actor>_<sentence>_<emotion>_<level>.wav`` (16 kHz PCM) and
  ``VideoFlash/<same>.flv`` (FLV1 video + MP3 audio), ``VideoDemographics.csv``;
- AVE: ``AVE_Dataset/Annotations.txt`` (``Category&VideoID&Quality&StartTime&EndTime``),
  ``trainSet.txt``, ``valSet.txt``, ``testSet.txt``, ``AVE/<VideoID>.mp4``;
- NYU Depth V2: ``nyu_depth_v2_labeled.mat`` (HDF5, MATLAB v7.3 column-major layout),
  ``splits.mat``, ``classMapping40.mat`` (MATLAB v5).

A clip's picture and sound depend on its class (the colour of a moving disc, a tone's pitch) and
on a variant (texture, motion phase, noise), so a model trained on the prepared data learns
something only if labels and rows stayed aligned through ``umt prepare``. To write thousands of
clips quickly, ``unique`` distinct clips per class are encoded and the others are hard links to
them (the decoder still reads and decodes every file).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

SPLIT_FILES = ("trainSet.txt", "valSet.txt", "testSet.txt")


@dataclass(frozen=True)
class ClipSpec:
    """How a clip is encoded: length, picture size, frame rate, sound, codecs and quality."""

    seconds: float = 10.0
    width: int = 480
    height: int = 360
    fps: int = 25
    sample_rate: int = 44100
    channels: int = 2
    video_codec: str = "libx264"
    audio_codec: str = "aac"
    crf: int = 28
    preset: str = "veryfast"


#: YouTube-like 10-second clips: 480x360 at 25 fps, H.264 (CRF 28) + AAC 44.1 kHz stereo.
REAL = ClipSpec()
#: Tiny clips for the tests.
TINY = ClipSpec(seconds=1.0, width=40, height=32, fps=8, sample_rate=16000, channels=1, crf=32)


def _frames(spec: ClipSpec, label: int, variant: int) -> np.ndarray:
    """``(T, H, W, 3)`` uint8: a panned blocky texture and a disc of the class's colour."""
    rng = np.random.default_rng(1000 * label + variant)
    h, w, n = spec.height, spec.width, max(1, round(spec.seconds * spec.fps))
    cell = max(2, min(h, w) // 12)
    small = rng.integers(40, 200, (h // cell + 2, w // cell + 10, 3)).astype(np.uint8)
    texture = np.repeat(np.repeat(small, cell, 0), cell, 1)
    colour = np.array([(label * 67) % 256, (label * 131 + 80) % 256, (label * 29 + 160) % 256])
    yy, xx = np.mgrid[0:h, 0:w]
    out = np.empty((n, h, w, 3), np.uint8)
    for i in range(n):
        dx = (i * 2 + variant) % (texture.shape[1] - w)
        img = texture[:h, dx : dx + w]
        t = i / spec.fps + variant
        cx, cy = w / 2 + w / 3 * np.sin(t * 1.7), h / 2 + h / 4 * np.cos(t * 2.3)
        disc = (xx - cx) ** 2 + (yy - cy) ** 2 < (min(h, w) / 5) ** 2
        out[i] = np.where(disc[..., None], colour, img)
    return out


def _wave(spec: ClipSpec, label: int, variant: int) -> np.ndarray:
    """``(channels, samples)`` float32: the class's tone and a little noise."""
    rng = np.random.default_rng(7 + 1000 * label + variant)
    t = np.arange(round(spec.seconds * spec.sample_rate)) / spec.sample_rate
    hz = 220.0 * 2 ** ((label % 24) / 6)  # classes a third of an octave apart
    wave = 0.3 * np.sin(2 * np.pi * hz * t) + 0.03 * rng.standard_normal(len(t))
    return np.repeat(wave[None].astype(np.float32), spec.channels, 0)


def _samples(frame: np.ndarray, fmt: str) -> np.ndarray:
    if fmt.startswith("s16"):
        return (np.clip(frame, -1, 1) * 32767).astype(np.int16)
    if fmt.startswith("s32"):
        return (np.clip(frame, -1, 1) * 2**31 * 0.99).astype(np.int32)
    return frame.astype(np.float32)


def write_clip(path: Path, spec: ClipSpec, label: int, variant: int = 0) -> None:
    """One clip at ``path`` (its container from the suffix); ``spec.video_codec`` or
    ``spec.audio_codec`` empty: no such stream (a ``.wav`` of ``pcm_s16le`` audio only)."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as c:
        vs = aus = None  # both streams before the first packet: the header is written then
        if spec.video_codec:
            opts = (
                {"crf": str(spec.crf), "preset": spec.preset} if "264" in spec.video_codec else {}
            )
            vs = c.add_stream(spec.video_codec, rate=spec.fps, options=opts)
            vs.width, vs.height, vs.pix_fmt = spec.width, spec.height, "yuv420p"
        layout = "mono" if spec.channels == 1 else "stereo"
        if spec.audio_codec:
            aus = c.add_stream(spec.audio_codec, rate=spec.sample_rate, layout=layout)
        if vs is not None:
            for img in _frames(spec, label, variant):
                for packet in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                    c.mux(packet)
            for packet in vs.encode():
                c.mux(packet)
        if aus is not None:
            size = aus.codec_context.frame_size or 1024
            fmt = aus.codec_context.format
            wave = _wave(spec, label, variant)
            for pts in range(0, wave.shape[1], size):
                chunk = _samples(wave[:, pts : pts + size], fmt.name)
                if not fmt.is_planar:
                    chunk = chunk.T.reshape(1, -1)
                frame = av.AudioFrame.from_ndarray(chunk, format=fmt.name, layout=layout)
                frame.sample_rate, frame.pts = spec.sample_rate, pts
                for packet in aus.encode(frame):
                    c.mux(packet)
            for packet in aus.encode():
                c.mux(packet)


def _write_job(job: tuple[Path, ClipSpec, int, int]) -> None:
    write_clip(*job)


class ClipPool:
    """``unique`` distinct clips per class, encoded once (in ``workers`` processes), then hard-
    linked under every name that needs one."""

    def __init__(self, root: Path, spec: ClipSpec, unique: int, suffix: str = ".mp4") -> None:
        self.root, self.spec, self.unique, self.suffix = root, spec, max(1, unique), suffix
        self.written: set[tuple[int, int]] = set()

    def path(self, label: int, variant: int) -> Path:
        return self.root / f"c{label:03d}_v{variant:03d}{self.suffix}"

    def ensure(self, keys: Sequence[tuple[int, int]], workers: int) -> None:
        jobs = [(self.path(*k), self.spec, *k) for k in sorted(set(keys) - self.written)]
        if workers > 1 and len(jobs) > 1:
            with ProcessPoolExecutor(workers) as pool:
                list(pool.map(_write_job, jobs))
        else:
            for job in jobs:
                _write_job(job)
        self.written.update((label, variant) for _, _, label, variant in jobs)

    def link(self, target: Path, label: int, index: int) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(self.path(label, index % self.unique), target)


def _corrupt(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video" * 20)


@dataclass
class Written:
    """What a layout writer wrote: clips named in the annotations, and those it left without a
    file (``missing``) or with a broken one (``corrupt``)."""

    annotated: int
    missing: list[str]
    corrupt: list[str]


def _plan(n: int, classes: int, unique: int) -> list[tuple[int, int]]:
    """``(label, variant)`` of clip ``i``: classes in turn, variants cycling within a class."""
    return [(i % classes, (i // classes) % max(1, unique)) for i in range(n)]


def write_vggsound(
    root: Path,
    n: int,
    classes: Sequence[str],
    spec: ClipSpec = REAL,
    *,
    unique: int = 4,
    missing: int = 0,
    corrupt: int = 0,
    workers: int = 1,
) -> Written:
    """VGGSound: every 10th clip is a test clip; the last ``missing`` rows have no file and the
    ``corrupt`` before them a broken one."""
    pool = ClipPool(root / ".pool", spec, unique)
    plan = _plan(n, len(classes), unique)
    pool.ensure(plan, workers)
    rows, gone, bad = [], [], []
    for i, (label, variant) in enumerate(plan):
        ytid, start = f"v{i:07d}abc"[:11], 10 * (i % 30)
        split = "test" if i % 10 == 9 else "train"
        rows.append(f"{ytid},{start},{_csv(classes[label])},{split}\n")
        target = root / "video" / f"{ytid}_{start:06d}.mp4"
        if i >= n - missing:
            gone.append(target.stem)
        elif i >= n - missing - corrupt:
            _corrupt(target)
            bad.append(target.stem)
        else:
            pool.link(target, label, variant)
    (root / "vggsound.csv").write_text("".join(rows), encoding="utf-8")
    return Written(n, gone, bad)


def _csv(text: str) -> str:
    return f'"{text}"' if "," in text else text


def write_kinetics(
    root: Path,
    n: int,
    classes: Sequence[str],
    spec: ClipSpec = REAL,
    *,
    unique: int = 2,
    missing: int = 0,
    workers: int = 1,
) -> Written:
    """The CVDF layout: ``annotations/{train,val}.csv`` (Kinetics' val is the test split then),
    clips under ``train/<label>/`` and ``val/``; a few rows of another Kinetics class."""
    pool = ClipPool(root / ".pool", spec, unique)
    plan = _plan(n, len(classes), unique)
    pool.ensure(plan, workers)
    header = "label,youtube_id,time_start,time_end,split,is_cc\n"
    csvs: dict[str, list[str]] = {"train": [header], "val": [header]}
    gone = []
    for i, (label, variant) in enumerate(plan):
        ytid, start = f"k{i:07d}xyz"[:11], i % 50
        split = "val" if i % 8 == 7 else "train"
        name = f"{ytid}_{start:06d}_{start + 10:06d}.mp4"
        csvs[split].append(f"{_csv(classes[label])},{ytid},{start},{start + 10},{split},0\n")
        folder = root / "train" / classes[label] if split == "train" else root / "val"
        if i >= n - missing:
            gone.append(name[:-4])
        else:
            pool.link(folder / name, label, variant)
    csvs["train"].append("abseiling,notKSclip01,0,10,train,0\n")  # not a Kinetics-Sounds class
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    for split, lines in csvs.items():
        (root / "annotations" / f"{split}.csv").write_text("".join(lines), encoding="utf-8")
    return Written(n, gone, [])


CREMAD_SENTENCES = ("IEO", "TIE", "IOM", "IWW", "TAI", "MTI", "IWL", "ITH", "DFA", "ITS", "TSI")
CREMAD_EMOTIONS = ("ANG", "DIS", "FEA", "HAP", "NEU", "SAD")


def write_cremad(
    root: Path,
    actors: Sequence[int],
    per_actor: int,
    spec: ClipSpec = REAL,
    *,
    workers: int = 1,
) -> Written:
    """The CREMA-D repository: ``per_actor`` clips of each actor (sentences x emotions in turn),
    its sound as ``AudioWAV/<clip>.wav`` (16 kHz PCM) and ``VideoFlash/<clip>.flv`` (FLV1 +
    MP3 22.05 kHz); one audio-visual pair per emotion is encoded and linked."""
    video = replace(spec, video_codec="flv", audio_codec="mp3", sample_rate=22050, channels=1)
    audio = replace(spec, video_codec="", audio_codec="pcm_s16le", sample_rate=16000, channels=1)
    pools = (ClipPool(root / ".pool", video, 1, ".flv"), ClipPool(root / ".pool", audio, 1, ".wav"))
    keys = [(e, 0) for e in range(len(CREMAD_EMOTIONS))]
    for p in pools:
        p.ensure(keys, workers)
    n = 0
    for actor in actors:
        for k in range(per_actor):
            e = k % len(CREMAD_EMOTIONS)
            sentence = CREMAD_SENTENCES[(k // len(CREMAD_EMOTIONS)) % len(CREMAD_SENTENCES)]
            name = f"{actor}_{sentence}_{CREMAD_EMOTIONS[e]}_XX"
            pools[0].link(root / "VideoFlash" / f"{name}.flv", e, 0)
            pools[1].link(root / "AudioWAV" / f"{name}.wav", e, 0)
            n += 1
    demo = ['"ActorID","Age","Sex","Race","Ethnicity"\n']
    demo += [f'{a},30,"{"Male" if a % 2 else "Female"}","Unknown","Unknown"\n' for a in actors]
    (root / "VideoDemographics.csv").write_text("".join(demo), encoding="utf-8")
    return Written(n, [], [])


def write_ave(
    root: Path,
    n: int,
    classes: Sequence[str],
    spec: ClipSpec = REAL,
    *,
    unique: int = 2,
    workers: int = 1,
) -> Written:
    """``AVE_Dataset/``: every 10th video is in valSet.txt, the next in testSet.txt; one more
    video is annotated with two categories (skipped as ambiguous)."""
    base = root / "AVE_Dataset"
    pool = ClipPool(root / ".pool", spec, unique)
    plan = _plan(n, len(classes), unique)
    pool.ensure(plan, workers)
    rows: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for i, (label, variant) in enumerate(plan):
        vid = f"a{i:07d}AVE"[:11]
        split = {0: "val", 1: "test"}.get(i % 10, "train")
        rows[split].append(f"{classes[label]}&{vid}&good&{i % 4}&{i % 4 + 6}\n")
        pool.link(base / "AVE" / f"{vid}.mp4", label, variant)
    rows["train"] += [
        f"{classes[0]}&twoEvents01&good&0&4\n",
        f"{classes[1]}&twoEvents01&good&5&9\n",
    ]
    pool.link(base / "AVE" / "twoEvents01.mp4", 0, 0)
    header = "Category&VideoID&Quality&StartTime&EndTime\n"
    everything = header + "".join(r for rs in rows.values() for r in rs)
    (base / "Annotations.txt").write_text(everything, encoding="utf-8")
    for split, name in zip(("train", "val", "test"), SPLIT_FILES, strict=True):
        (base / name).write_text("".join(rows[split]), encoding="utf-8")
    return Written(n + 1, [], [])


def write_nyuv2(root: Path, n: int, height: int, width: int, *, n_test: int) -> Written:
    """The NYU Depth V2 labelled file (HDF5 as MATLAB v7.3 writes it: arrays column-major, so
    ``images`` is ``(N, 3, W, H)``), ``splits.mat`` (1-based, the last ``n_test`` images are
    test) and ``classMapping40.mat`` (894 raw classes onto 40), written a chunk at a time."""
    import h5py
    from scipy.io import savemat

    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    with h5py.File(root / "nyu_depth_v2_labeled.mat", "w") as f:
        images = f.create_dataset("images", (n, 3, width, height), np.uint8, chunks=True)
        depths = f.create_dataset("depths", (n, width, height), np.float32, chunks=True)
        labels = f.create_dataset("labels", (n, width, height), np.uint16, chunks=True)
        for start in range(0, n, 64):
            k = min(64, n - start)
            images[start : start + k] = rng.integers(0, 256, (k, 3, width, height), np.uint8)
            depths[start : start + k] = rng.uniform(0.5, 8.0, (k, width, height)).astype(np.float32)
            labels[start : start + k] = rng.integers(0, 895, (k, width, height)).astype(np.uint16)
    idx = np.arange(1, n + 1, dtype=float)
    savemat(
        root / "splits.mat", {"trainNdxs": idx[:-n_test, None], "testNdxs": idx[-n_test:, None]}
    )
    from umt.data.prepare import load_manifest

    names = np.array(load_manifest("nyuv2").class_list().names, dtype=object)[None]
    mapping = (np.arange(894) % 40 + 1).astype(np.float64)[None]
    savemat(root / "classMapping40.mat", {"mapClass": mapping, "className": names})
    return Written(n, [], [])
