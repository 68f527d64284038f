"""`umt prepare` on tiny clips written in each benchmark's real layout and annotation format,
the `prepared` loader, the shipped recipes, and a one-epoch study on prepared data."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import ROOT

av = pytest.importorskip("av")  # the optional `video` extra (in the `test` extra for CI)

from umt.cli import main  # noqa: E402
from umt.data import DataConfig, load_data  # noqa: E402
from umt.data import prepare as prep  # noqa: E402
from umt.data.folder import check_folder, export_folder, format_problems  # noqa: E402
from umt.data.prepare import (  # noqa: E402
    AudioSettings,
    PrepareConfig,
    VideoSettings,
    decode_clip,
    prepare,
)
from umt.data.prepared import PreparedConfig, load_prepared  # noqa: E402
from umt.data.synthetic import SyntheticConfig  # noqa: E402
from umt.errors import UMTError  # noqa: E402
from umt.study import load_config, run_study  # noqa: E402

CONFIGS = ROOT / "src" / "umt" / "configs"
SIZE = 16  # stored frame side in the tests
FRAMES = 2
AUDIO = {  # tiny spectrograms: 0.5 s, 32 mels
    name: AudioSettings(n_mels=32, duration=0.5) for name in prep.BENCHMARKS
}

# --------------------------------------------------------------------------------------------
# writing clips with PyAV


def _audio_array(wave: np.ndarray, fmt: str) -> np.ndarray:
    if fmt.startswith("s16"):
        return (wave * 32767).astype(np.int16)[None]
    if fmt.startswith("s32"):
        return (wave * 2**31 * 0.99).astype(np.int32)[None]
    return wave.astype(np.float32)[None]


def write_clip(
    path: Path,
    *,
    seconds: float = 1.0,
    fps: int = 8,
    hz: float = 440.0,
    shade: int = 0,
    corner_step: int = 20,
    ramp: bool = False,
    video: str | None = "libx264",
    audio: str | None = "aac",
    sample_rate: int = 16000,
) -> None:
    """A moving bar over a background of grey level ``shade`` (frame i also brightens its top-left
    corner to ``corner_step * i``) and a ``hz`` tone (its amplitude rising linearly from 0 with
    ``ramp``); ``video``/``audio`` name the codecs (None: none)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = 40, 32
    with av.open(str(path), "w") as c:
        vs = c.add_stream(video, rate=fps) if video else None
        if vs is not None:
            vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        aus = c.add_stream(audio, rate=sample_rate) if audio else None
        if aus is not None:
            aus.layout = "mono"
        if vs is not None:
            for i in range(round(seconds * fps)):
                img = np.full((h, w, 3), shade, np.uint8)
                x = (i * 5) % (w - 6)
                img[8:, x : x + 6] = (255, 160, 0)
                img[:8, :8] = min(255, corner_step * i)
                for packet in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                    c.mux(packet)
            for packet in vs.encode():
                c.mux(packet)
        if aus is not None:
            t = np.arange(round(seconds * sample_rate)) / sample_rate
            wave = 0.3 * np.sin(2 * np.pi * hz * t) * (t / seconds if ramp else 1.0)
            size = aus.codec_context.frame_size or 1024
            fmt = aus.codec_context.format.name
            for pts in range(0, len(wave), size):
                frame = av.AudioFrame.from_ndarray(
                    _audio_array(wave[pts : pts + size], fmt), format=fmt, layout="mono"
                )
                frame.sample_rate, frame.pts = sample_rate, pts
                for packet in aus.encode(frame):
                    c.mux(packet)
            for packet in aus.encode():
                c.mux(packet)


def write_corrupt(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video" * 20)


# --------------------------------------------------------------------------------------------
# each benchmark's raw layout: (write the raw folder) -> (ids expected in skipped.csv)


def raw_vggsound(root: Path) -> set[str]:
    """``vggsound.csv`` (no header: id, start, label, split) and ``video/<id>_<start:06d>.mp4``."""
    rows, labels = [], ["dog barking", "people marching"]
    for i in range(10):
        ytid = f"vid{i:03d}abcdX"[:11]
        label, split = labels[i % 2], "test" if i >= 8 else "train"
        rows.append(f"{ytid},{i + 1},{label},{split}\n")
        write_clip(
            root / "video" / f"{ytid}_{i + 1:06d}.mp4", hz=300 + 400 * (i % 2), shade=60 * (i % 2)
        )
    # an uncut video holding its clip from second 2 to 12: read through the window
    rows.append("uncutVideo1,2,dog barking,train\n")
    write_clip(root / "raw_videos" / "uncutVideo1.mp4", seconds=3.0)
    rows.append("missingClip,5,people marching,train\n")
    rows.append("corruptClip,7,dog barking,train\n")
    write_corrupt(root / "video" / "corruptClip_000007.mp4")
    (root / "vggsound.csv").write_text("".join(rows))
    return {"missingClip_000005", "corruptClip_000007"}


def raw_kinetics(root: Path) -> set[str]:
    """CVDF layout: ``annotations/{train,val}.csv`` and ``train/<label>/``, ``val/`` clips."""
    header = "label,youtube_id,time_start,time_end,split,is_cc\n"
    labels = ["playing drums", "singing"]
    train, val = [header], [header]
    for i in range(12):
        ytid = f"k{i:02d}_abcdefgh"[:11]
        label = labels[i % 2]
        split = "val" if i >= 9 else "train"
        (val if split == "val" else train).append(f"{label},{ytid},{i},{i + 10},{split},0\n")
        name = f"{ytid}_{i:06d}_{i + 10:06d}.mp4"
        folder = root / "train" / label if split == "train" else root / "val"
        write_clip(folder / name, hz=500 + 300 * (i % 2), shade=80 * (i % 2))
    # as many training clips as the 32 Kinetics-Sounds classes, or the folder's num_classes
    # would exceed its training split (an error of `umt data check`): copies, hard-linked
    for j in range(45):  # a quarter of train is carved as val
        label, ytid = labels[j % 2], f"x{j:02d}_linked0"[:11]
        train.append(f"{label},{ytid},0,10,train,0\n")
        first = root / "train" / label / f"k{j % 2:02d}_abcdefgh"[:11]
        os.link(f"{first}_{j % 2:06d}_{j % 2 + 10:06d}.mp4",
                root / "train" / label / f"{ytid}_000000_000010.mp4")  # fmt: skip
    train.append("abseiling,notKSclip01,0,10,train,0\n")  # not a Kinetics-Sounds class
    train.append('"singing",missingClp1,3,13,train,0\n')
    train.append("playing drums,corruptClp1,4,14,train,0\n")
    write_corrupt(root / "train" / "playing drums" / "corruptClp1_000004_000014.mp4")
    (root / "annotations").mkdir(parents=True)
    (root / "annotations" / "train.csv").write_text("".join(train))
    (root / "annotations" / "val.csv").write_text("".join(val))
    return {"missingClp1_000003_000013", "corruptClp1_000004_000014"}


def raw_cremad(root: Path) -> set[str]:
    """The CREMA-D repository: ``AudioWAV/<clip>.wav`` (16 kHz) and ``VideoFlash/<clip>.flv``."""
    emotions = ["ANG", "HAP", "SAD"]
    for i in range(12):
        clip = f"10{i // 6 + 1:02d}_{['DFA', 'IEO', 'TIE'][i % 3]}_{emotions[i % 3]}_XX"
        if i % 3 == 1:
            clip = clip.replace("_XX", "_HI") if i < 6 else clip.replace("_XX", "_LO")
        write_clip(
            root / "AudioWAV" / f"{clip}.wav", video=None, audio="pcm_s16le", hz=200 + 200 * (i % 3)
        )
        write_clip(
            root / "VideoFlash" / f"{clip}.flv",
            video="flv",
            audio="mp3",
            sample_rate=22050,
            shade=70 * (i % 3),
        )
    # more actors (hard-linked copies of actor 1001's clips), so that the training split holds
    # at least as many clips as the 6 classes
    for actor in (1003, 1004, 1005, 1006):
        for sentence, emotion, level in (
            ("DFA", "ANG", "XX"),
            ("IEO", "HAP", "HI"),
            ("TIE", "SAD", "XX"),
        ):
            for folder, ext in (("AudioWAV", "wav"), ("VideoFlash", "flv")):
                src = root / folder / f"1001_{sentence}_{emotion}_{level}.{ext}"
                os.link(src, root / folder / f"{actor}_{sentence}_{emotion}_XX.{ext}")
    write_clip(root / "AudioWAV" / "1091_WSI_SAD_XX.wav", video=None, audio="pcm_s16le")  # no video
    write_corrupt(root / "VideoFlash" / "1091_ITS_ANG_XX.flv")
    write_clip(root / "AudioWAV" / "1091_ITS_ANG_XX.wav", video=None, audio="pcm_s16le")
    return {"1091_WSI_SAD_XX", "1091_ITS_ANG_XX"}


def raw_ave(root: Path) -> set[str]:
    """``AVE_Dataset/``: ``Annotations.txt`` (with header), ``{train,val,test}Set.txt``, ``AVE/*.mp4``."""
    base = root / "AVE_Dataset"
    cats = ["Church bell", "Male speech, man speaking", "Bark"]
    rows: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for i in range(12):
        vid = f"ave{i:02d}xyzABC"[:11]
        split = "train" if i < 6 else ("val" if i < 9 else "test")
        rows[split].append(f"{cats[i % 3]}&{vid}&good&{i % 4}&{i % 4 + 5}\n")
        write_clip(base / "AVE" / f"{vid}.mp4", hz=250 + 250 * (i % 3), shade=50 * (i % 3))
    rows["train"].append("Bark&missingAVE1&good&0&10\n")
    rows["train"].append("Church bell&corruptAVE1&good&0&10\n")
    write_corrupt(base / "AVE" / "corruptAVE1.mp4")
    # one video annotated with two different events: ambiguous for classification
    rows["train"] += ["Bark&twoEvents01&good&0&4\n", "Church bell&twoEvents01&good&5&9\n"]
    write_clip(base / "AVE" / "twoEvents01.mp4")
    header = "Category&VideoID&Quality&StartTime&EndTime\n"
    (base / "Annotations.txt").write_text(header + "".join(r for rs in rows.values() for r in rs))
    for split, name in (("train", "trainSet.txt"), ("val", "valSet.txt"), ("test", "testSet.txt")):
        (base / name).write_text("".join(rows[split]))
    return {"missingAVE1", "corruptAVE1", "twoEvents01"}


RAW: dict[str, Callable[[Path], set[str]]] = {
    "vggsound": raw_vggsound,
    "kinetics-sounds": raw_kinetics,
    "cremad": raw_cremad,
    "ave": raw_ave,
}


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, set[str]]]:
    """Each benchmark's raw folder (written once for the module) and the clips it must skip."""
    out = {}
    for name, write in RAW.items():
        root = tmp_path_factory.mktemp(f"raw-{name}")
        out[name] = (root, write(root))
    return out


def config(name: str, src: Path, out: Path, **kw: object) -> PrepareConfig:
    base = PrepareConfig(
        dataset=name,
        src=str(src),
        out=str(out),
        video=VideoSettings(frames=FRAMES, size=SIZE),
        audio=AUDIO[name],
        val_fraction=0.25,
        progress=False,
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def quiet(_: str) -> None:
    pass


def read_skipped(out: Path) -> list[dict[str, str]]:
    with open(out / "skipped.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def prepared(
    raw: dict[str, tuple[Path, set[str]]], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """Each benchmark prepared once (one worker), shared by the tests below."""
    outs = {}
    for name, (src, _) in raw.items():
        out = tmp_path_factory.mktemp(f"prepared-{name}") / "data"
        prepare(config(name, src, out), log=quiet)
        outs[name] = out
    return outs


# --------------------------------------------------------------------------------------------
# preparing


@pytest.mark.parametrize("name", list(RAW))
def test_prepare_writes_a_valid_folder_and_lists_the_bad_clips(
    name: str, raw: dict[str, tuple[Path, set[str]]], prepared: dict[str, Path]
) -> None:
    out = prepared[name]
    assert format_problems(check_folder(out)) == "no problems found"
    meta = json.loads((out / "meta.json").read_text())
    assert meta["modalities"] == {
        "audio": {"shape": [1, 32, 51], "dtype": "float16"},  # 0.5 s at hop 160: 51 frames
        "visual": {"shape": [FRAMES, 3, SIZE, SIZE], "dtype": "uint8"},
    }
    skipped = read_skipped(out)
    assert {r["clip"] for r in skipped} == raw[name][1]
    reasons = " ".join(r["reason"] for r in skipped)
    assert "missing" in reasons and "cannot decode" in reasons
    info = json.loads((out / "prepared.json").read_text())
    sizes = {s: len(np.load(out / s / "labels.npy")) for s in ("train", "val", "test")}
    assert {s: info["splits"][s]["clips"] for s in sizes} == sizes
    assert all(n > 0 for n in sizes.values())
    clips = {s: (out / s / "clips.txt").read_text().split() for s in sizes}
    assert not set(clips["test"]) & (set(clips["train"]) | set(clips["val"]))


def test_annotations_follow_each_data_set(prepared: dict[str, Path]) -> None:
    def meta(name: str) -> dict[str, object]:
        result: dict[str, object] = json.loads((prepared[name] / "meta.json").read_text())
        return result

    assert meta("vggsound")["class_names"] == ["dog barking", "people marching"]
    # Kinetics: only Kinetics-Sounds classes; with no labelled test rows, val is the test split
    ks = meta("kinetics-sounds")
    assert len(ks["class_names"]) == 32 and "abseiling" not in ks["class_names"]  # type: ignore[arg-type]
    ks_test = (prepared["kinetics-sounds"] / "test" / "clips.txt").read_text().split()
    assert sorted(ks_test) == sorted(
        f"k{i:02d}_abcdefgh"[:11] + f"_{i:06d}_{i + 10:06d}" for i in (9, 10, 11)
    )
    assert meta("cremad")["class_names"] == ["ANG", "DIS", "FEA", "HAP", "NEU", "SAD"]
    cremad_labels = np.load(prepared["cremad"] / "train" / "labels.npy")
    assert set(cremad_labels.tolist()) <= {0, 3, 5}  # ANG, HAP, SAD only were generated
    assert meta("ave")["class_names"] == ["Bark", "Church bell", "Male speech, man speaking"]
    ave_val = (prepared["ave"] / "val" / "clips.txt").read_text().split()
    assert sorted(ave_val) == [f"ave{i:02d}xyzABC"[:11] for i in (6, 7, 8)]  # valSet.txt as given
    # VGGSound: the uncut video was read through its window and kept
    vgg = [(prepared["vggsound"] / s / "clips.txt").read_text().split() for s in ("train", "val")]
    assert "uncutVideo1_000002" in vgg[0] + vgg[1]


def test_second_run_reuses_every_prepared_clip_and_workers_agree(
    raw: dict[str, tuple[Path, set[str]]], prepared: dict[str, Path], tmp_path: Path
) -> None:
    src, bad = raw["vggsound"]
    again = prepare(config("vggsound", src, prepared["vggsound"]), log=quiet)
    assert all(c.new == 0 for c in again.splits.values())
    assert again.decoded == 1  # only the corrupt clip is tried again (the missing one has no file)
    # two workers write the same bytes as one
    two = prepare(config("vggsound", src, tmp_path / "two", workers=2), log=quiet)
    assert two.decoded == sum(c.clips for c in two.splits.values()) + 1
    for split in ("train", "val", "test"):
        for f in ("audio.npy", "visual.npy", "labels.npy"):
            a, b = np.load(prepared["vggsound"] / split / f), np.load(tmp_path / "two" / split / f)
            assert np.array_equal(a, b), (split, f)


def test_an_interrupted_run_resumes(
    raw: dict[str, tuple[Path, set[str]]],
    prepared: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    src, _ = raw["ave"]
    calls = {"n": 0}
    real = prep.work._run_task

    def flaky(*args: object, **kwargs: object) -> object:
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt  # Ctrl-C after four clips
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(prep.work, "_run_task", flaky)
    with pytest.raises(KeyboardInterrupt):
        prepare(config("ave", src, tmp_path / "ave"), log=quiet)
    monkeypatch.setattr(prep.work, "_run_task", real)
    resumed = prepare(config("ave", src, tmp_path / "ave"), log=quiet)
    assert sum(c.clips - c.new for c in resumed.splits.values()) == 4  # reused
    for split in ("train", "val", "test"):
        for f in ("audio.npy", "visual.npy", "labels.npy"):
            assert np.array_equal(
                np.load(prepared["ave"] / split / f), np.load(tmp_path / "ave" / split / f)
            )


def test_changed_settings_or_missing_inputs_are_errors(
    raw: dict[str, tuple[Path, set[str]]], prepared: dict[str, Path], tmp_path: Path
) -> None:
    src, _ = raw["ave"]
    with pytest.raises(UMTError, match="other settings .*video"):
        prepare(
            config("ave", src, prepared["ave"], video=VideoSettings(frames=1, size=SIZE)), log=quiet
        )
    with pytest.raises(UMTError, match="Annotations.txt"):
        prepare(config("ave", tmp_path, tmp_path / "o"), log=quiet)
    with pytest.raises(UMTError, match="unknown data set 'ucf'"):
        prepare(config("ave", src, tmp_path / "o", dataset="ucf"), log=quiet)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "vggsound.csv").write_text("abc,12,dog,validation\n")
    with pytest.raises(UMTError, match=r"vggsound.csv, line 1: split 'validation'"):
        prepare(config("vggsound", bad, tmp_path / "o"), log=quiet)
    (bad / "vggsound.csv").write_text("abc,12,dog,train\nabd,13,cat,test\n")
    with pytest.raises(UMTError, match="no clip of split 'train' could be prepared"):
        prepare(config("vggsound", bad, tmp_path / "o2"), log=quiet)


def test_frames_are_sampled_at_segment_centres_and_audio_is_repeated(tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    write_clip(path, seconds=1.0, fps=8, hz=1000.0)
    audio = AudioSettings(n_mels=40, duration=2.0)  # twice the clip: the sound is repeated
    spec, frames = decode_clip(prep.Source(path, path), audio, VideoSettings(frames=4, size=16))
    assert spec.shape == (1, 40, 201) and spec.dtype == np.float16
    assert frames.shape == (4, 3, 16, 16) and frames.dtype == np.uint8
    # 4 segments of 8 frames: centres at 0.125, 0.375, ... s -> frames 1, 3, 5, 7 (corner 20 i)
    corner = frames[:, :, :2, :2].astype(float).mean(axis=(1, 2, 3))
    assert np.allclose(corner, [20, 60, 100, 140], atol=12)
    band = spec[0].astype(np.float32).mean(-1).argmax()
    from umt.data.audio import hz_to_mel, mel_to_hz

    edges = mel_to_hz(torch.linspace(0, float(hz_to_mel(torch.tensor(8000.0))), 42))[1:-1]
    assert abs(float(edges[band]) - 1000) < 150
    # the repeated second half equals the first (the tone is periodic in the clip)
    half = spec[0, :, 20:80].astype(np.float32), spec[0, :, 120:180].astype(np.float32)
    assert np.abs(half[0] - half[1]).mean() < 3.0


def test_windows_of_uncut_videos_are_read_after_seeking(tmp_path: Path) -> None:
    path = tmp_path / "uncut.mp4"
    write_clip(path, seconds=4.0, fps=8, corner_step=8, ramp=True)
    # 2 frames of the window 2..3 s: targets 2.25 s and 2.75 s -> frames 18 and 22
    frames = prep.read_frames(path, (2.0, 3.0), VideoSettings(frames=2, size=16))
    corner = frames[:, :, :2, :2].astype(float).mean(axis=(1, 2, 3))
    assert np.allclose(corner, [144, 176], atol=12)
    wave = prep.read_audio(path, (2.0, 3.0), 16000)
    assert abs(len(wave) - 16000) <= 1
    rms = float(np.sqrt(np.mean(wave**2)))  # amplitude 0.3 t / 4: 2..3 s has RMS ~0.133
    assert 0.11 < rms < 0.16, rms


def test_cli_prepare(
    raw: dict[str, tuple[Path, set[str]]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src, _ = raw["cremad"]
    out = tmp_path / "cremad"
    argv = [
        "prepare",
        "cremad",
        "--src",
        str(src),
        "--out",
        str(out),
        "--frames",
        "1",
        "--size",
        "16",
        "--duration",
        "0.5",
        "--n-mels",
        "24",
        "--no-progress",
        "--clean",
    ]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "skipped" in text and "clips/s" in text and "cremad.yaml --set data.root=" in text
    assert not (out / ".work").exists()
    assert main(argv) == 0  # prepared already: nothing to do
    assert "nothing to do" in capsys.readouterr().out
    assert main(["prepare", "ucf", "--src", str(src), "--out", str(tmp_path / "x")]) == 2
    assert "unknown data set 'ucf'" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# loading


def test_prepared_loader_augments_training_only(prepared: dict[str, Path]) -> None:
    root = str(prepared["vggsound"])
    cfg = DataConfig(
        name="prepared", root=root, prepared=PreparedConfig(frames=1, crop=12, time_mask=10)
    )
    data = load_data(cfg)
    assert data.input_shapes == {"audio": (1, 32, 51), "visual": (1, 3, 12, 12)}
    assert data.train.augmented and not data.val.augmented
    assert data.restrict(["visual"]).train.augmented  # teachers see augmented inputs too
    rows = list(range(len(data.train)))
    torch.manual_seed(0)
    a, b = data.train[rows], data.train[rows]
    assert a["visual"].shape == (len(rows), 1, 3, 12, 12) and not torch.equal(
        a["visual"], b["visual"]
    )
    assert (a["audio"] == 0).any()  # a SpecAugment mask
    v1, v2 = data.val[[0, 1]], data.val[[0, 1]]
    assert torch.equal(v1["visual"], v2["visual"]) and torch.equal(v1["audio"], v2["audio"])
    # standardised audio on train; ImageNet-normalised frames
    plain = load_data(
        DataConfig(name="prepared", root=root, prepared=PreparedConfig(augment=False))
    )
    audio = plain.train[rows]["audio"]
    assert abs(float(audio.mean())) < 0.05 and abs(float(audio.std()) - 1) < 0.05
    assert data.train.indexed()[[0]]["index"].tolist() == [0]
    # frames: uint8 -> float, ImageNet mean and std per channel
    stored = np.load(prepared["vggsound"] / "val" / "visual.npy")[0, :, :, 2:14, 2:14]
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    expected = (stored[1:] / 255.0 - mean[:, None, None]) / std[:, None, None]  # centre: 1 of 0, 1
    assert np.allclose(data.val[[0]]["visual"][0].numpy(), expected, atol=1e-5)
    with pytest.raises(UMTError, match=r"data.prepared.frames=5: the folder stores 2 frames"):
        load_prepared(DataConfig(name="prepared", root=root, prepared=PreparedConfig(frames=5)))
    plain_folder = prepared["vggsound"].parent / "plain"
    export_folder(
        load_data(
            DataConfig("synthetic", synthetic=SyntheticConfig(n_train=12, n_val=4, n_test=4))
        ),
        plain_folder,
    )
    with pytest.raises(
        UMTError, match="has no prepared.json, so it was not written by `umt prepare`"
    ):
        load_prepared(replace(cfg, root=str(plain_folder)))


@pytest.mark.parametrize("workers", [0, 1, 2])
def test_loader_workers(prepared: dict[str, Path], workers: int) -> None:
    from umt.data import make_loader

    data = load_data(DataConfig(name="prepared", root=str(prepared["kinetics-sounds"])))
    n = sum(
        len(b["label"])
        for b in make_loader(data.train, batch_size=4, shuffle=True, num_workers=workers)
    )
    assert n == len(data.train)


# --------------------------------------------------------------------------------------------
# recipes and a study


def test_every_shipped_recipe_loads() -> None:
    recipes = sorted(CONFIGS.glob("*.yaml"))
    assert {p.stem for p in recipes} >= {"vggsound", "kinetics_sounds", "cremad", "ave"}
    for path in recipes:
        cfg = load_config(path)  # unknown keys would fail here
        if cfg.data.name in ("rgbd", "nyuv2"):  # segmentation: tests/test_segmentation*.py
            continue
        assert cfg.data.name == "prepared" and cfg.data.root is None
        assert cfg.model.encoder.name == "resnet18" and cfg.train.optimizer == "sgd"
        assert set(cfg.methods) >= {"joint", "umt", "ume"}
    with pytest.raises(UMTError, match="data.root is not set"):
        load_data(load_config(CONFIGS / "cremad.yaml").data)


def test_a_shipped_recipe_runs_on_prepared_data(prepared: dict[str, Path], tmp_path: Path) -> None:
    cfg = load_config(
        CONFIGS / "cremad.yaml",
        [
            f"data.root={prepared['cremad']}",
            "seeds=[0]",
            "train.epochs=1",
            "train.batch_size=8",
            "train.num_workers=0",
            "train.progress=false",
            "train.threads=1",
            "model.encoder.width=0.0625",  # a 4-channel ResNet-18
            "probe.max_iter=5",
        ],
    )
    result = run_study(cfg, tmp_path, log=quiet, report=False)
    methods = result.summary["methods"]
    assert {"teacher-audio", "teacher-visual", "joint", "umt", "ume"} <= set(methods)
    assert result.summary["probes"]["visual"].keys() >= {"teacher", "joint", "umt"}
