"""Generate ``src/umt/data/avdigits.npz``: spoken digits paired with degraded handwritten digits.

An AV-MNIST-like stand-in for VGGSound that fits in the package: audio is the strong modality and
vision the weak one, so that naive joint training shows modality failure.

* **Audio.** The words "zero".."nine" spoken by espeak-ng (deterministic) in English accents x
  voice variants x speeds x pitches, resampled to 16 kHz, trimmed, placed at a random offset in a
  0.8 s clip, mixed with white Gaussian noise at a random SNR, and turned into log-mel dB with
  :func:`umt.data.audio.log_mel`, stored as uint8 in steps of 0.5 dB (the scale is in the
  metadata).
* **Visual.** scikit-learn's 1,797 real 8x8 handwritten digits, each placed at a random position
  of a 16x16 canvas, with halved contrast and Gaussian pixel noise, stored as uint8. The random
  position is what makes vision need a *learned* encoder: a linear read-out of the pixels does
  barely better than chance, so a probe can tell a well-trained visual encoder from a lazy one.
* **Splits.** Images are split per class into train / val / test; voice *variants* (the speaker)
  are split too, so no image and no (voice, speed, pitch) utterance is in two splits. Each training
  image is paired with ``train_pairs`` utterances of its digit; val / test images with one.

Run it from the repository root (espeak-ng must be on the PATH: ``apt-get install espeak-ng``)::

    PYTHONPATH=src python scripts/make_avdigits.py

Everything is seeded; espeak-ng output is bit-for-bit reproducible for a given espeak-ng version
(recorded in the metadata).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.signal import resample_poly
from sklearn.datasets import load_digits

from umt.data.audio import log_mel

SCRIPT_VERSION = "1"
OUTPUT = Path(__file__).resolve().parents[1] / "src" / "umt" / "data" / "avdigits.npz"
WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
ESPEAK_RATE = 22050  # espeak-ng's output sampling rate

ACCENTS = (
    "en-us",
    "en-gb",
    "en-gb-scotland",
    "en-gb-x-rp",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
    "en-029",
    "en-us-nyc",
)
# espeak-ng 1.51's voice variants (``espeak-ng --voices=variant``): the "speakers".
VARIANTS = (
    "adam", "Alex", "Alicia", "Andrea", "Andy", "Annie", "antonio", "aunty", "belinda",
    "benjamin", "boris", "caleb", "david", "Demonic", "Denis", "Diogo", "ed", "edward",
    "edward2", "Gene", "Gene2", "gustave", "announcer", "Henrique", "Hugo", "iven", "iven2",
    "iven3", "iven4", "Jacky", "john", "kaukovalta", "Lee", "linda", "marcelo", "Marco", "Mario",
    "max", "Michael", "michel", "miguel", "Mike", "Mr", "Nguyen", "pablo", "paul", "pedro",
    "quincy", "RicishayMax", "RicishayMax2", "RicishayMax3", "rob", "robert", "robosoft",
    "robosoft2", "robosoft3", "robosoft4", "robosoft5", "robosoft6", "robosoft7", "robosoft8",
    "steph", "steph2", "steph3", "Storm", "Tweaky", "UniRobot", "zac", "anika", "anikaRobot",
    "AnxiousAndy", "fast", "f1", "f2", "f3", "f4", "f5", "whisperf", "grandpa", "grandma",
    "klatt", "klatt2", "klatt3", "klatt4", "klatt5", "klatt6", "m1", "m2", "m3", "m4", "m5",
    "m6", "m7", "m8", "norbert", "sandro", "shelby", "travis", "victor", "whisper", "croak",
)  # fmt: skip


@dataclass(frozen=True)
class AVDigitsSpec:
    """Everything that decides the generated file (recorded in its metadata).

    Attributes:
        seed: seed of the NumPy generators behind every random choice (two streams: one for
            the splits and utterances, one for the noise and degradation).
        val_share, test_share: share of each class's images (and of the voice variants) held out.
        train_pairs: utterances paired with each training image.
        speeds: espeak-ng speeds (words per minute) to draw from.
        pitches: espeak-ng pitches (0..99) to draw from.
        sample_rate, duration_s: the clip's sampling rate (Hz) and length (s).
        snr_db: range of the speech-to-noise ratio (dB, over the speech's active part).
        n_fft, hop_length, n_mels, top_db: the log-mel front end.
        db_min, db_max: the uint8 range of the stored dB values (clipped).
        canvas: side (pixels) of the square image each 8x8 digit is placed in at random.
        contrast: the images' ink is scaled by this (1 keeps it).
        pixel_noise: std of the Gaussian noise added to the images, on a 0..1 scale.
    """

    seed: int = 0
    val_share: float = 0.22
    test_share: float = 0.22
    train_pairs: int = 3
    speeds: tuple[int, ...] = (140, 165, 190, 215, 240)
    pitches: tuple[int, ...] = (20, 35, 50, 65, 80)
    sample_rate: int = 16000
    duration_s: float = 0.8
    snr_db: tuple[float, float] = (10.0, 25.0)
    n_fft: int = 512
    hop_length: int = 320
    n_mels: int = 32
    top_db: float = 80.0
    db_min: float = -45.0
    db_max: float = 82.5  # with db_min: steps of 0.5 dB
    canvas: int = 16
    contrast: float = 0.5
    pixel_noise: float = 0.15


def espeak_version() -> str:
    """``espeak-ng --version``, or a message saying how to install it."""
    try:
        out = subprocess.run(["espeak-ng", "--version"], capture_output=True, check=True, text=True)
    except FileNotFoundError:
        sys.exit("espeak-ng is not on the PATH: apt-get update && apt-get install -y espeak-ng")
    return out.stdout.strip()


def speak(word: str, accent: str, variant: str, speed: int, pitch: int) -> np.ndarray:
    """One utterance from espeak-ng as float32 samples in [-1, 1] at ``ESPEAK_RATE``."""
    cmd = ["espeak-ng", "-v", f"{accent}+{variant}", "-s", str(speed), "-p", str(pitch)]
    wav = subprocess.run([*cmd, "--stdout", word], capture_output=True, check=True).stdout
    if wav[:4] != b"RIFF" or wav[36:40] != b"data":
        raise RuntimeError(f"espeak-ng gave no plain 16-bit WAV for {cmd} {word!r}")
    return np.frombuffer(wav[44:], dtype="<i2").astype(np.float32) / 32768.0


def to_clip(x: np.ndarray, spec: AVDigitsSpec, rng: np.random.Generator) -> np.ndarray:
    """Resample to ``spec.sample_rate``, trim silence, unit RMS, random offset in a fixed clip."""
    x = resample_poly(x, spec.sample_rate, ESPEAK_RATE).astype(np.float32)
    loud = np.flatnonzero(np.abs(x) > 0.02 * np.abs(x).max())
    x = x[loud[0] : loud[-1] + 1]
    x = x / np.sqrt(np.mean(x**2))
    n = round(spec.sample_rate * spec.duration_s)
    if len(x) > n:  # rare (slowest speeds): keep the middle
        start = (len(x) - n) // 2
        x = x[start : start + n]
    clip = np.zeros(n, dtype=np.float32)
    offset = int(rng.integers(0, n - len(x) + 1))
    clip[offset : offset + len(x)] = x
    return clip


def add_noise(
    clips: np.ndarray, snr_db: np.ndarray, active: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """White Gaussian noise at the given SNR; speech power is measured over ``active`` samples."""
    power = (clips**2).sum(1) / active  # (N,) mean power of the speech where it is
    std = np.sqrt(power / 10.0 ** (snr_db / 10.0))
    return clips + std[:, None] * rng.standard_normal(clips.shape).astype(np.float32)


def degrade(images: np.ndarray, spec: AVDigitsSpec, rng: np.random.Generator) -> np.ndarray:
    """Place, fade and add noise: ``(N, 8, 8)`` digits 0..16 in, uint8 canvases out.

    Each digit lands at a random position of a ``spec.canvas`` square of blank paper, so that a
    linear read-out of the pixels does poorly and an encoder has to learn shift-invariant strokes.
    """
    n, h, w = images.shape
    size = spec.canvas
    x = np.zeros((n, size, size))
    rows = rng.integers(0, size - h + 1, n)
    cols = rng.integers(0, size - w + 1, n)
    for i in range(n):
        x[i, rows[i] : rows[i] + h, cols[i] : cols[i] + w] = images[i] / 16.0
    x = 0.5 + spec.contrast * (x - 0.5)  # ink and paper move towards grey
    x = x + spec.pixel_noise * rng.standard_normal(x.shape)
    return np.round(np.clip(x, 0.0, 1.0) * 255).astype(np.uint8)


def split_indices(
    labels: np.ndarray, spec: AVDigitsSpec, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Per class, shuffle and cut into train / val / test (stratified); sorted indices."""
    out: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_val, n_test = round(spec.val_share * len(idx)), round(spec.test_share * len(idx))
        out["val"] += idx[:n_val].tolist()
        out["test"] += idx[n_val : n_val + n_test].tolist()
        out["train"] += idx[n_val + n_test :].tolist()
    return {k: np.sort(np.array(v)) for k, v in out.items()}


@dataclass(frozen=True)
class Spoken:
    """One split before noise and degradation: which image and utterance each sample pairs."""

    image_index: np.ndarray  # (N,) rows of sklearn's load_digits
    labels: np.ndarray  # (N,) digits
    voice: np.ndarray  # (N, 4) accent index, variant index, speed, pitch
    clips: np.ndarray  # (N, samples) clean speech, unit RMS over its active part
    active: np.ndarray  # (N,) samples of speech in the clip


def speak_all(spec: AVDigitsSpec) -> tuple[dict[str, Spoken], dict[str, np.ndarray]]:
    """Split images and voice variants, pair each image with utterances, synthesise them.

    Uses its own random stream, so the noise and degradation settings can change (``finish``)
    without changing which utterances are spoken.

    Returns:
        Per split its :class:`Spoken`, and per split the indices of its voice variants.
    """
    rng = np.random.default_rng([spec.seed, 0])
    targets = load_digits().target
    image_split = split_indices(targets, spec, rng)
    variants = rng.permutation(len(VARIANTS))
    n_val, n_test = round(spec.val_share * len(variants)), round(spec.test_share * len(variants))
    variant_split = {
        "train": np.sort(variants[n_val + n_test :]),
        "val": np.sort(variants[:n_val]),
        "test": np.sort(variants[n_val : n_val + n_test]),
    }
    spoken = {}
    for split, src in image_split.items():
        if split == "train":
            src = np.repeat(src, spec.train_pairs)
        labels = targets[src]
        # Utterances: per digit, distinct (accent, variant, speed, pitch) from this split's voices.
        grid = np.meshgrid(
            np.arange(len(ACCENTS)), variant_split[split], spec.speeds, spec.pitches, indexing="ij"
        )
        pool = np.stack(grid, axis=-1).reshape(-1, 4)
        voice = np.zeros((len(src), 4), dtype=np.int16)
        for c in range(len(WORDS)):
            rows = np.flatnonzero(labels == c)
            voice[rows] = pool[rng.choice(len(pool), size=len(rows), replace=False)]
        clips = [
            to_clip(speak(WORDS[c], ACCENTS[a], VARIANTS[v], s, p), spec, rng)
            for (a, v, s, p), c in zip(voice.tolist(), labels.tolist(), strict=True)
        ]
        stacked = np.stack(clips)
        active = np.count_nonzero(stacked, axis=1)
        spoken[split] = Spoken(src, labels, voice, stacked, active)
    return spoken, variant_split


def finish(spec: AVDigitsSpec, spoken: dict[str, Spoken]) -> dict[str, np.ndarray]:
    """Noise, log-mel and uint8 audio; degraded uint8 images; the per-split arrays of the file."""
    rng = np.random.default_rng([spec.seed, 1])
    images = load_digits().images
    step = (spec.db_max - spec.db_min) / 255.0
    out: dict[str, np.ndarray] = {}
    for split, sp in spoken.items():
        snr = rng.uniform(*spec.snr_db, size=len(sp.labels))
        noisy = add_noise(sp.clips, snr, sp.active, rng)
        db = log_mel(
            torch.from_numpy(noisy),
            sample_rate=spec.sample_rate,
            n_fft=spec.n_fft,
            hop_length=spec.hop_length,
            n_mels=spec.n_mels,
            top_db=spec.top_db,
        ).numpy()
        q = np.round((np.clip(db, spec.db_min, spec.db_max) - spec.db_min) / step)
        out[f"{split}_audio"] = q.astype(np.uint8)  # (N, n_mels, frames)
        out[f"{split}_visual"] = degrade(images[sp.image_index], spec, rng)  # (N, canvas, canvas)
        out[f"{split}_label"] = sp.labels.astype(np.uint8)
        out[f"{split}_image_index"] = sp.image_index.astype(np.int16)
        out[f"{split}_voice"] = sp.voice
        out[f"{split}_snr_db"] = snr.astype(np.float16)
    return out


def metadata(spec: AVDigitsSpec, variant_split: dict[str, np.ndarray]) -> str:
    """The JSON string stored under ``meta``: how the file was made and how to read it."""
    meta = {
        "script": "scripts/make_avdigits.py",
        "script_version": SCRIPT_VERSION,
        "espeak_ng": espeak_version(),
        "spec": asdict(spec),
        "audio_db_min": spec.db_min,
        "audio_db_step": (spec.db_max - spec.db_min) / 255.0,
        "visual_scale": 1.0 / 255.0,
        "words": list(WORDS),
        "accents": list(ACCENTS),
        "variants": list(VARIANTS),
        "voice_columns": ["accent", "variant", "speed", "pitch"],
        "variant_split": {k: v.tolist() for k, v in variant_split.items()},
        "image_source": "sklearn.datasets.load_digits (UCI optical recognition of digits, 8x8)",
    }
    return json.dumps(meta, sort_keys=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUTPUT, help=f"output file ({OUTPUT})")
    args = parser.parse_args()
    espeak_version()
    torch.set_num_threads(1)
    start = time.perf_counter()
    spec = AVDigitsSpec()
    spoken, variant_split = speak_all(spec)
    arrays = finish(spec, spoken)
    arrays["meta"] = np.array(metadata(spec, variant_split))
    np.savez_compressed(args.out, **arrays)  # type: ignore[arg-type]
    sizes = {k: v.shape for k, v in arrays.items() if k.endswith(("_audio", "_visual"))}
    print(
        f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB) in "
        f"{time.perf_counter() - start:.0f} s: {sizes}"
    )


if __name__ == "__main__":
    main()
