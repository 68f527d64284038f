"""Write check data sets in the umt-folder format that the defaults were never tuned on.

Three sets of different shapes and sizes, each class-conditional with noise, one modality more
informative than the other(s), and a non-linear part (random shifts of image templates, a
sign-pattern code in the tabular features) so that neither a linear model nor a single modality
is enough:

* ``twoimg``: two image-like modalities, ``a`` (1, 16, 16) and ``b`` (3, 12, 12); 10 classes;
  1,200 / 400 / 400 samples.
* ``tabimg``: a tabular modality ``tab`` (24,) and an image ``img`` (1, 20, 20); 6 classes;
  800 / 300 / 300.
* ``tri``: three modalities ``x`` (16,), ``y`` (1, 12, 12), ``z`` (32,); 5 classes;
  600 / 300 / 300.
* ``cancer``: real tabular data, scikit-learn's breast-cancer set (Wisconsin diagnostic), its 30
  features in their three natural views: ``mean`` (10,), ``error`` (10,) and ``worst`` (10,)
  of the cell nuclei's measures; 2 classes; 341 / 114 / 114 (seeded).
* ``userloop``: the user-loop example of issue 26: ``img`` (1, 8, 8), scikit-learn's real
  handwritten digits with noise and the top-left quarter blanked (the weak modality), and
  ``code`` (6,), a noisy 6-dimensional code of the class (the strong one); 10 classes;
  1,000 / 397 / 400.
* ``series``: sensor-like time series, ``acc`` (3, 64) and ``gyro`` (3, 64): per class a
  characteristic frequency and axis pattern, random phase and time shift, noise, gyro weaker;
  6 classes; 900 / 300 / 300.

Usage: ``python scripts/make_check_sets.py OUT_DIR`` (a few seconds; fixed seed).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

SPLITS = ("train", "val", "test")


def _smooth(rng: np.random.Generator, k: int, shape: tuple[int, ...]) -> np.ndarray:
    """K smooth random templates (K, C, H, W): a coarse 4x4-pixel-cell grid, blown up (so a
    shift of a pixel or two keeps most of a template)."""
    c, h, w = shape
    coarse = rng.standard_normal((k, c, -(-h // 4), -(-w // 4)))
    return np.kron(coarse, np.ones((1, 1, 4, 4)))[:, :, :h, :w]


def _image(
    rng: np.random.Generator, templates: np.ndarray, y: np.ndarray, snr: float
) -> np.ndarray:
    """Class templates (K, C, H, W), shifted by up to 2 pixels per sample, plus unit noise."""
    x = templates[y].copy()
    for i in range(len(y)):
        dy, dx = rng.integers(-2, 3, size=2)
        x[i] = np.roll(x[i], (int(dy), int(dx)), axis=(1, 2))
    return (snr * x + rng.standard_normal(x.shape)).astype(np.float32)


def _tabular(rng: np.random.Generator, codes: np.ndarray, y: np.ndarray, snr: float) -> np.ndarray:
    """A ±1 code per class (K, D), each sample's code with random sign flips of feature pairs
    (the class is in the pairs' products, not in the features' means), plus unit noise."""
    x = codes[y].copy()
    d = x.shape[1] // 2
    flip = rng.choice([-1.0, 1.0], size=(len(y), d))
    x[:, :d] *= flip
    x[:, d : 2 * d] *= flip
    return (snr * x + rng.standard_normal(x.shape)).astype(np.float32)


def _write(
    root: Path, name: str, k: int, sizes: tuple[int, int, int], mods: dict, seed: int
) -> None:
    """``mods``: name -> (kind, shape, snr); kind ``image`` or ``tabular``."""
    rng = np.random.default_rng(seed)
    protos = {
        m: _smooth(rng, k, shape) if kind == "image" else np.sign(rng.standard_normal((k, *shape)))
        for m, (kind, shape, _) in mods.items()
    }
    for split, n in zip(SPLITS, sizes, strict=True):
        y = rng.integers(0, k, size=n)
        out = root / name / split
        out.mkdir(parents=True, exist_ok=True)
        for m, (kind, _, snr) in mods.items():
            make = _image if kind == "image" else _tabular
            np.save(out / f"{m}.npy", make(rng, protos[m], y, snr))
        np.save(out / "labels.npy", y.astype(np.int64))
    what = f"check set {name}: " + ", ".join(f"{m} {s[1]}" for m, s in mods.items())
    _meta(root, name, k, {m: s[1] for m, s in mods.items()}, what)


def _meta(root: Path, name: str, k: int, mods: dict[str, tuple[int, ...]], what: str) -> None:
    meta = {
        "format": "umt-folder",
        "version": 1,
        "name": name,
        "task": "classification",
        "num_classes": k,
        "description": what,
        "modalities": {m: {"shape": list(s), "dtype": "float32"} for m, s in mods.items()},
    }
    (root / name / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")


def _split_rows(rng: np.random.Generator, y: np.ndarray, sizes: tuple[int, int, int]) -> list:
    """Seeded rows of each split (train, val, test) with these sizes."""
    order = rng.permutation(len(y))
    rows, start = [], 0
    for n in sizes:
        rows.append(np.sort(order[start : start + n]))
        start += n
    return rows


def _save(root: Path, name: str, arrays: dict[str, np.ndarray], y: np.ndarray, rows: list) -> None:
    for split, r in zip(SPLITS, rows, strict=True):
        out = root / name / split
        out.mkdir(parents=True, exist_ok=True)
        for m, x in arrays.items():
            np.save(out / f"{m}.npy", x[r].astype(np.float32))
        np.save(out / "labels.npy", y[r].astype(np.int64))


def _cancer(root: Path) -> None:
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    x, y = data.data, data.target
    x = (x - x.mean(0)) / x.std(0)  # the features' units differ by orders of magnitude
    views = {"mean": x[:, :10], "error": x[:, 10:20], "worst": x[:, 20:30]}
    _save(root, "cancer", views, y, _split_rows(np.random.default_rng(4), y, (341, 114, 114)))
    _meta(root, "cancer", 2, {m: (10,) for m in views}, "breast cancer (Wisconsin): 3 views")


def _userloop(root: Path, img_noise: float = 0.3, code_noise: float = 0.7) -> None:
    from sklearn.datasets import load_digits

    rng = np.random.default_rng(5)
    digits = load_digits()
    y = digits.target
    img = digits.images[:, None] / 16.0 + img_noise * rng.standard_normal((len(y), 1, 8, 8))
    img[:, :, :4, :4] = 0.0  # the top-left quarter blanked
    codes = rng.standard_normal((10, 6))
    code = codes[y] + code_noise * rng.standard_normal((len(y), 6))
    arrays = {"img": img, "code": code}
    _save(root, "userloop", arrays, y, _split_rows(rng, y, (1000, 397, 400)))
    what = "noisy digits with a blanked quarter (weak) + a noisy 6-d class code (strong)"
    _meta(root, "userloop", 10, {"img": (1, 8, 8), "code": (6,)}, what)


def _series(root: Path) -> None:
    rng = np.random.default_rng(6)
    k, n, t = 6, 1500, 64
    y = rng.integers(0, k, size=n)
    time = np.arange(t) / t
    freq = rng.uniform(2.0, 9.0, size=(2, k))  # per modality and class: a frequency
    axes = rng.standard_normal((2, k, 3))  # ... and how it spreads over the 3 axes
    arrays = {}
    for i, (m, snr) in enumerate((("acc", 0.9), ("gyro", 0.45))):
        phase = rng.uniform(0, 2 * np.pi, size=(n, 1))
        shift = rng.uniform(-0.1, 0.1, size=(n, 1))
        wave = np.sin(2 * np.pi * freq[i, y][:, None] * (time[None] + shift) + phase)  # (n, t)
        wave += 0.5 * np.sin(4 * np.pi * freq[i, y][:, None] * time[None] + 2 * phase)
        x = snr * axes[i, y][:, :, None] * wave[:, None, :]  # (n, 3, t)
        arrays[m] = x + rng.standard_normal((n, 3, t))
    _save(root, "series", arrays, y, _split_rows(rng, y, (900, 300, 300)))
    _meta(root, "series", k, {"acc": (3, t), "gyro": (3, t)}, "sensor-like series: acc + gyro")


def make_check_sets(root: Path) -> list[Path]:
    """Write the three sets under ``root``; their folders."""
    _write(
        root,
        "twoimg",
        10,
        (1200, 400, 400),
        {"a": ("image", (1, 16, 16), 0.6), "b": ("image", (3, 12, 12), 0.3)},
        seed=1,
    )
    _write(
        root,
        "tabimg",
        6,
        (800, 300, 300),
        {"tab": ("tabular", (24,), 1.0), "img": ("image", (1, 20, 20), 0.3)},
        seed=2,
    )
    _write(
        root,
        "tri",
        5,
        (600, 300, 300),
        {
            "x": ("tabular", (16,), 1.0),
            "y": ("image", (1, 12, 12), 0.35),
            "z": ("tabular", (32,), 0.6),
        },
        seed=3,
    )
    _cancer(root)
    _userloop(root)
    _series(root)
    return [root / n for n in ("twoimg", "tabimg", "tri", "cancer", "userloop", "series")]


if __name__ == "__main__":
    if len(sys.argv) != 2:  # no default: generated data does not belong in the repository
        sys.exit("usage: python scripts/make_check_sets.py OUT_DIR")
    for path in make_check_sets(Path(sys.argv[1])):
        print(path)
