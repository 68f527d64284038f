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
    meta = {
        "format": "umt-folder",
        "version": 1,
        "name": name,
        "task": "classification",
        "num_classes": k,
        "description": f"check set {name}: " + ", ".join(f"{m} {s[1]}" for m, s in mods.items()),
        "modalities": {m: {"shape": list(s[1]), "dtype": "float32"} for m, s in mods.items()},
    }
    (root / name / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")


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
    return [root / n for n in ("twoimg", "tabimg", "tri")]


if __name__ == "__main__":
    if len(sys.argv) != 2:  # no default: generated data does not belong in the repository
        sys.exit("usage: python scripts/make_check_sets.py OUT_DIR")
    for path in make_check_sets(Path(sys.argv[1])):
        print(path)
