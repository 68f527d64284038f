"""``rgbd``: an embedded RGB-D semantic segmentation set, generated on the fly (a NYU Depth V2
stand-in that trains on a CPU in minutes).

Each scene is a wall (a sloping depth plane, a dim low-saturation textured colour) with objects
drawn far to near (nearer ones occlude). Six classes, each object class at its own depth band:

====  ==============  ===========================  ================================
 id    class           colour                       depth / shape
====  ==============  ===========================  ================================
 0     wall            grey-beige, textured         far plane (4-5 m)
 1     red block       red                          1.0-1.5 m, rectangle
 2     blue ball       blue                         1.7-2.2 m, disc
 3     green near      green                        2.4-2.9 m, rectangle or disc
 4     green far       green                        3.1-3.6 m, rectangle or disc
 5     poster          red, blue or green           flat on the wall, rectangle
====  ==============  ===========================  ================================

So colour tells the wall, red, blue and green apart, but *only depth* tells a poster from the
object of its colour, and green near from green far (their sizes are drawn independently of
depth); *only colour* tells a poster from the wall. Depth alone also separates the object classes
(their bands), but from noisy pixels: an encoder must pool over an object to read its band.
Neither modality is perfect alone: RGB has per-image illumination, per-object colour jitter and
pixel noise; depth has noise (0.25 m: about the gap between bands) and missing pixels (0, as a
Kinect's holes).

Colour is the easy path to most classes, and the bands of red and blue objects are redundant with
their colours: the fused model needs depth only for posters and green near/far, so its depth
encoder need not learn the red/blue bands the depth teacher must learn: the setting of modality
failure. Generation is vectorised NumPy, deterministic by ``seed`` (about 0.5 s for 1,000 scenes
of 32x32).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from umt.data.base import DataBundle
from umt.data.segmentation import SegmentationDataset
from umt.errors import UMTError

CLASS_NAMES = ("wall", "red block", "blue ball", "green near", "green far", "poster")
_COLOURS = {"red": (0.85, 0.2, 0.15), "blue": (0.15, 0.25, 0.85), "green": (0.2, 0.75, 0.25)}
_BANDS = {1: (1.0, 1.5), 2: (1.7, 2.2), 3: (2.4, 2.9), 4: (3.1, 3.6)}  # metres, per class
_WALL = (4.0, 5.0)
# Fixed normalisation (the generator's ranges): rgb in [0, 1] -> about N(0, 1); depth in metres.
_RGB_MEAN, _RGB_STD = 0.45, 0.25
_DEPTH_MEAN, _DEPTH_STD = 3.5, 1.2


@dataclass(frozen=True)
class RGBDConfig:
    """Settings of the embedded ``rgbd`` set (``data.rgbd``).

    Attributes:
        size: side of the square images.
        n_train, n_val, n_test: scenes per split.
        objects: range of objects per scene (posters included).
        rgb_noise: standard deviation of the RGB pixel noise (colours are in 0..1).
        depth_noise: standard deviation of the depth noise, in metres.
        holes: share of depth pixels missing (set to 0).
        seed: the data's own seed.
    """

    size: int = 32
    n_train: int = 600
    n_val: int = 200
    n_test: int = 200
    objects: tuple[int, int] = (2, 5)
    rgb_noise: float = 0.12
    depth_noise: float = 0.25
    holes: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.size < 8:
            raise UMTError(f"data.rgbd.size: expected at least 8, got {self.size}")
        if min(self.n_train, self.n_val, self.n_test) < 1:
            raise UMTError("data.rgbd.n_train, n_val and n_test must each be at least 1")
        lo, hi = self.objects
        if not 1 <= lo <= hi:
            raise UMTError(f"data.rgbd.objects: expected 1 <= min <= max, got {self.objects}")
        if not 0 <= self.holes < 1:
            raise UMTError(f"data.rgbd.holes: expected a share in [0, 1), got {self.holes}")


def generate_rgbd(
    n: int, cfg: RGBDConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` scenes: rgb ``(n, 3, S, S)`` in 0..1, depth ``(n, 1, S, S)`` in metres (0: hole),
    labels ``(n, S, S)`` int64.

    Example:
        >>> rgb, depth, y = generate_rgbd(2, RGBDConfig(size=16), np.random.default_rng(0))
        >>> rgb.shape, depth.shape, y.shape, int(y.max()) < len(CLASS_NAMES)
        ((2, 3, 16, 16), (2, 1, 16, 16), (2, 16, 16), True)
    """
    s = cfg.size
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
    rgb = np.empty((n, 3, s, s), dtype=np.float32)
    depth = np.empty((n, 1, s, s), dtype=np.float32)
    labels = np.zeros((n, s, s), dtype=np.int64)
    colours = list(_COLOURS)
    for i in range(n):
        # The wall: a dim, low-saturation colour with a coarse texture, on a sloping plane.
        base = rng.uniform(0.35, 0.6) + rng.uniform(-0.06, 0.06, size=3)
        texture = rng.normal(0, 0.05, size=(3, s // 4 + 1, s // 4 + 1)).repeat(4, 1).repeat(4, 2)
        img = base[:, None, None] + texture[:, :s, :s]
        d0, gy, gx = rng.uniform(*_WALL), rng.uniform(-0.5, 0.5), rng.uniform(-0.3, 0.3)
        dep = d0 + (gy * (yy - s / 2) + gx * (xx - s / 2)) / s
        lab = np.zeros((s, s), dtype=np.int64)
        items = []
        for _ in range(int(rng.integers(cfg.objects[0], cfg.objects[1] + 1))):
            kind = int(rng.choice([1, 2, 3, 4, 5], p=[0.2, 0.2, 0.2, 0.2, 0.2]))
            colour = {1: "red", 2: "blue", 3: "green", 4: "green"}.get(kind) or colours[
                int(rng.integers(3))
            ]
            shape = {1: "rect", 2: "disc", 5: "rect"}.get(kind) or ("rect", "disc")[
                int(rng.integers(2))
            ]
            z = rng.uniform(*_BANDS[kind]) if kind in _BANDS else 0.0
            items.append((kind, colour, shape, float(z)))
        # Far to near; posters (z = 0: on the wall) first.
        items.sort(key=lambda t: -np.inf if t[0] == 5 else -t[3])
        for kind, colour, shape, z in items:
            cy, cx = rng.uniform(0.15 * s, 0.85 * s, size=2)
            if shape == "rect":
                hh, hw = rng.uniform(0.1 * s, 0.25 * s, size=2)
                mask = (np.abs(yy - cy) <= hh) & (np.abs(xx - cx) <= hw)
            else:
                r = rng.uniform(0.1 * s, 0.22 * s)
                mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
            jitter = rng.uniform(-0.08, 0.08, size=3)
            c = np.clip(np.asarray(_COLOURS[colour]) + jitter, 0, 1)
            img[:, mask] = c[:, None]
            lab[mask] = kind
            if kind != 5:  # a poster is flat on the wall: the depth stays the wall's
                dep[mask] = z
        img = img * rng.uniform(0.7, 1.3) + rng.normal(0, cfg.rgb_noise, size=img.shape)
        dep = dep + rng.normal(0, cfg.depth_noise, size=dep.shape)
        dep[rng.random(dep.shape) < cfg.holes] = 0.0
        rgb[i], depth[i, 0], labels[i] = img, np.maximum(dep, 0.0), lab
    return rgb, depth, labels


def load_rgbd(cfg: RGBDConfig) -> DataBundle:
    """The ``rgbd`` data set (see the module docstring), normalised: rgb ``(x - 0.45) / 0.25``,
    depth ``(d - 3.5) / 1.2`` (holes stay at the normalised 0 m)."""
    rng = np.random.default_rng(cfg.seed)
    splits = {}
    for name, n in (("train", cfg.n_train), ("val", cfg.n_val), ("test", cfg.n_test)):
        rgb, depth, labels = generate_rgbd(n, cfg, rng)
        arrays = {"rgb": (rgb - _RGB_MEAN) / _RGB_STD, "depth": (depth - _DEPTH_MEAN) / _DEPTH_STD}
        splits[name] = SegmentationDataset(arrays, labels)
    return DataBundle(
        name="rgbd",
        train=splits["train"],
        val=splits["val"],
        test=splits["test"],
        num_classes=len(CLASS_NAMES),
        task="segmentation",
        description=(
            f"embedded procedural RGB-D scenes, {cfg.size}x{cfg.size}: colour separates most "
            "classes; only depth tells posters from objects and green near from far"
        ),
        info={"class_names": list(CLASS_NAMES), "ignore_index": None, "seed": cfg.seed},
    )


__all__ = ["CLASS_NAMES", "RGBDConfig", "generate_rgbd", "load_rgbd"]
