"""NYU Depth V2 (Silberman et al., ECCV 2012), prepared: ``umt prepare nyuv2 --src DIR --out DIR``
reads, from ``DIR``:

* ``nyu_depth_v2_labeled.mat``: the official labelled file (HDF5, MATLAB v7.3). MATLAB stores
  arrays column-major, so h5py sees ``images`` as ``(N, 3, W, H)`` uint8, ``depths`` as
  ``(N, W, H)`` float metres (in-painted, no holes) and ``labels`` as ``(N, W, H)`` uint16 with
  894 classes, 0 = unlabelled; each image is transposed to ``(3, H, W)`` = ``(3, 480, 640)``.
* ``splits.mat``: the standard split, ``trainNdxs`` (795) and ``testNdxs`` (654), 1-based.
* ``classMapping40.mat``: ``mapClass`` ``(1, 894)``, the 894 classes -> 1..40 (and
  ``className``, the 40 names), as in the commonly used ``nyuv2-meta-data`` files.
* optionally ``class13Mapping.mat``: the struct ``classMapping13`` whose first field maps the 40
  classes -> 1..13 (and whose ``labelName`` field names them).

``.mat`` files of MATLAB v5 (what ``splits.mat`` and the mapping files usually are) are read with
SciPy, v7.3 ones with h5py. A fixed share of the training images (``--val-fraction``, seeded by
``--seed``) becomes the validation split: checkpoints and the probes' L2 are chosen on it, never on
the test split.

The output is a umt-folder (``task: segmentation``): ``rgb.npy`` ``(N, 3, H, W)`` uint8,
``depth.npy`` ``(N, 1, H, W)`` float16 metres, ``labels.npy`` ``(N, H, W)`` uint8 in 0..39 with 255
for unlabelled pixels (``labels13/<split>.npy`` likewise for 13 classes), optionally resized
(``--height/--width``: bilinear images, nearest labels), plus ``nyuv2.json``: the training split's
per-channel statistics and where everything came from.

The folder is read by ``umt.data.nyuv2`` (``data.name: nyuv2``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from umt.data.folder import FORMAT, VERSION
from umt.data.nyuv2 import INFO_FILE, MAPPING13_FILE, STORED_IGNORE
from umt.data.prepare.coverage import image_coverage, write_coverage
from umt.data.prepare.manifest import load_manifest
from umt.errors import UMTError
from umt.io import atomic_dir

LABELLED_FILE = "nyu_depth_v2_labeled.mat"
SPLITS_FILE = "splits.mat"
MAPPING40_FILE = "classMapping40.mat"
RAW_CLASSES = 894


# -- reading the official files ---------------------------------------------------------------


def read_mat(path: Path) -> dict[str, Any]:
    """The variables of a ``.mat`` file: MATLAB v5 via SciPy, v7.3 (HDF5) via h5py (as h5py
    datasets, read lazily).

    Raises:
        UMTError: the file is missing or is not a MATLAB file.
    """
    if not path.is_file():
        raise UMTError(f"{path} does not exist")
    import h5py

    if h5py.is_hdf5(path):
        f = h5py.File(path, "r")
        return {k: f[k] for k in f.keys() if not k.startswith("#")}
    from scipy.io import loadmat

    try:
        return {k: v for k, v in loadmat(path).items() if not k.startswith("__")}
    except Exception as e:  # SciPy raises ValueError, TypeError, ... on a non-MATLAB file
        raise UMTError(f"{path} is not a readable MATLAB .mat file ({e})") from e


def _need(variables: dict[str, Any], path: Path, *keys: str) -> None:
    missing = [k for k in keys if k not in variables]
    if missing:
        raise UMTError(
            f"{path}: no variable {missing}; expected {list(keys)} (found {sorted(variables)})"
        )


def read_splits(path: Path, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The standard split from ``splits.mat``: 0-based train and test indices into ``n`` images.

    Raises:
        UMTError: a variable is missing, an index is out of ``1..n``, or the splits overlap.
    """
    v = read_mat(path)
    _need(v, path, "trainNdxs", "testNdxs")
    out = []
    for key in ("trainNdxs", "testNdxs"):
        idx = np.asarray(v[key]).astype(np.int64).ravel()
        if idx.size == 0 or idx.min() < 1 or idx.max() > n:
            raise UMTError(
                f"{path}: {key} holds indices {idx.min() if idx.size else None}.."
                f"{idx.max() if idx.size else None}; expected 1-based indices in 1..{n} (the "
                f"images of {LABELLED_FILE})"
            )
        out.append(idx - 1)
    if np.intersect1d(out[0], out[1]).size:
        raise UMTError(f"{path}: trainNdxs and testNdxs share images; expected disjoint splits")
    return out[0], out[1]


def _names(cell: Any) -> list[str]:
    """Strings from a MATLAB cell array as SciPy reads it."""
    return [str(np.asarray(c).ravel()[0]) for c in np.asarray(cell, dtype=object).ravel()]


def read_mapping40(path: Path) -> tuple[np.ndarray, list[str] | None]:
    """``(lookup, names)``: ``lookup[raw]`` maps raw labels 0..894 to 0..40 (0: unlabelled),
    from ``mapClass``; ``names`` from ``className`` if present.

    Raises:
        UMTError: ``mapClass`` is missing, not 894 long, or maps outside 1..40.
    """
    v = read_mat(path)
    _need(v, path, "mapClass")
    m = np.asarray(v["mapClass"]).astype(np.int64).ravel()
    if m.size != RAW_CLASSES or m.min() < 1 or m.max() > 40:
        raise UMTError(
            f"{path}: mapClass has {m.size} entries in {m.min()}..{m.max()}; expected "
            f"{RAW_CLASSES} entries (one per class of {LABELLED_FILE}) in 1..40"
        )
    names = _names(v["className"]) if "className" in v else None
    return np.concatenate([[0], m]), names if names and len(names) == 40 else None


def read_mapping13(path: Path) -> tuple[np.ndarray, list[str] | None]:
    """``(lookup, names)``: ``lookup[c40]`` maps 0..40 to 0..13 (0: unlabelled), from the struct
    ``classMapping13`` (its numeric field of 40 entries; names from its 13 strings).

    Raises:
        UMTError: ``classMapping13`` is missing or holds no 40-entry mapping into 1..13.
    """
    v = read_mat(path)
    _need(v, path, "classMapping13")
    struct = np.asarray(v["classMapping13"]).ravel()[0]
    fields = [struct[name] for name in struct.dtype.names] if struct.dtype.names else [struct]
    lookup, names = None, None
    for f in fields:
        arr = np.asarray(f)
        if arr.dtype.kind in "iuf" and arr.size == 40:
            lookup = arr.astype(np.int64).ravel()
        elif arr.dtype == object and arr.size == 13:
            names = _names(arr)
    if lookup is None or lookup.min() < 1 or lookup.max() > 13:
        raise UMTError(
            f"{path}: classMapping13 has no field mapping the 40 classes into 1..13; expected "
            "the struct of the commonly used class13Mapping.mat"
        )
    return np.concatenate([[0], lookup]), names


def read_labelled(path: Path) -> dict[str, Any]:
    """The h5py datasets ``images``, ``depths``, ``labels`` of the official labelled file, checked
    for shapes ``(N, 3, W, H)``, ``(N, W, H)``, ``(N, W, H)``.

    Raises:
        UMTError: the file is not HDF5 (v7.3), a dataset is missing or has another shape.
    """
    import h5py

    if not path.is_file():
        raise UMTError(
            f"{path} does not exist; download {LABELLED_FILE} from the NYU Depth V2 page and put "
            "it in --src"
        )
    if not h5py.is_hdf5(path):
        raise UMTError(f"{path} is not an HDF5 (MATLAB v7.3) file, as {LABELLED_FILE} is")
    v = read_mat(path)
    _need(v, path, "images", "depths", "labels")
    images, depths, labels = v["images"], v["depths"], v["labels"]
    if images.ndim != 4 or images.shape[1] != 3:
        raise UMTError(f"{path}: images has shape {images.shape}; expected (N, 3, W, H)")
    n, _, w, h = images.shape
    for key, arr in (("depths", depths), ("labels", labels)):
        if tuple(arr.shape) != (n, w, h):
            raise UMTError(
                f"{path}: {key} has shape {arr.shape}; expected {(n, w, h)} like images (N, W, H)"
            )
    return {"images": images, "depths": depths, "labels": labels}


# -- preparation ------------------------------------------------------------------------------


def _resize(x: np.ndarray, size: tuple[int, int] | None, mode: str) -> np.ndarray:
    """``(B, C, H, W)`` resized (``bilinear`` with antialias, or ``nearest``); ``None``: as is."""
    if size is None or tuple(x.shape[-2:]) == size:
        return x
    t = torch.from_numpy(np.ascontiguousarray(x)).float()
    if mode == "nearest":
        out = F.interpolate(t, size=size, mode="nearest-exact")  # centres, as bilinear
    else:
        out = F.interpolate(t, size=size, mode="bilinear", antialias=True, align_corners=False)
    return out.numpy()


def carve_val(train: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(train, val)``: a seeded share ``fraction`` of the training indices becomes val.

    Example:
        >>> tr, va = carve_val(np.arange(10), 0.2, 0)
        >>> len(tr), len(va), sorted(set(tr) | set(va)) == list(range(10))
        (8, 2, True)
    """
    if not 0 <= fraction < 1:
        raise UMTError(f"--val-fraction: expected a share in [0, 1), got {fraction}")
    n_val = max(1, int(round(fraction * len(train)))) if fraction > 0 else 0
    perm = np.random.default_rng(seed).permutation(len(train))
    val = np.sort(train[perm[:n_val]])
    return np.sort(train[perm[n_val:]]), val


def prepare_nyuv2(
    src: str | Path,
    out: str | Path,
    *,
    size: tuple[int, int] | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    chunk: int = 32,
    log: Any = print,
) -> Path:
    """Convert the official NYU Depth V2 files in ``src`` into a umt-folder at ``out`` (see the
    module docstring), atomically: ``out`` appears complete or not at all.

    Args:
        src: folder with ``nyu_depth_v2_labeled.mat``, ``splits.mat``, ``classMapping40.mat``
            and optionally ``class13Mapping.mat``.
        out: the folder to write (must not exist).
        size: ``(H, W)`` to resize to; ``None`` keeps 480x640.
        val_fraction, seed: the share of train carved as val, and its seed.
        chunk: images read at a time (bounds memory).

    Raises:
        UMTError: a file is missing or malformed, ``out`` exists, or labels are out of range.
    """
    src, out = Path(src).expanduser(), Path(out).expanduser()
    if out.exists():
        raise UMTError(f"--out: {out} exists; remove it or choose another folder")
    for name in (LABELLED_FILE, SPLITS_FILE, MAPPING40_FILE):
        if not (src / name).is_file():
            raise UMTError(f"--src: {src} has no {name}; NYU Depth V2 preparation needs it")
    data = read_labelled(src / LABELLED_FILE)
    n = data["images"].shape[0]
    train, test = read_splits(src / SPLITS_FILE, n)
    train, val = carve_val(train, val_fraction, seed)
    map40, names40 = read_mapping40(src / MAPPING40_FILE)
    map13, names13 = None, None
    if (src / MAPPING13_FILE).is_file():
        map13, names13 = read_mapping13(src / MAPPING13_FILE)
    h, w = size if size is not None else (data["images"].shape[3], data["images"].shape[2])
    with atomic_dir(out) as tmp:
        stats = {"rgb": [np.zeros(3), np.zeros(3)], "depth": [np.zeros(1), np.zeros(1)]}
        pixels = 0
        for split, idx in (("train", train), ("val", val), ("test", test)):
            d = tmp / split
            d.mkdir()
            files = {
                "rgb": np.lib.format.open_memmap(
                    d / "rgb.npy", "w+", np.uint8, (len(idx), 3, h, w)
                ),
                "depth": np.lib.format.open_memmap(
                    d / "depth.npy", "w+", np.float16, (len(idx), 1, h, w)
                ),
                "labels": np.lib.format.open_memmap(
                    d / "labels.npy", "w+", np.uint8, (len(idx), h, w)
                ),
            }
            if map13 is not None:  # beside the splits: a split folder holds modalities and labels
                (tmp / "labels13").mkdir(exist_ok=True)
                files["labels13"] = np.lib.format.open_memmap(
                    tmp / "labels13" / f"{split}.npy", "w+", np.uint8, (len(idx), h, w)
                )
            for start in range(0, len(idx), chunk):
                rows = idx[start : start + chunk]
                order = np.argsort(rows)  # h5py reads need increasing indices
                back = np.argsort(order)
                rgb = np.asarray(data["images"][rows[order].tolist()])[back].transpose(0, 1, 3, 2)
                dep = np.asarray(data["depths"][rows[order].tolist()])[back].transpose(0, 2, 1)
                raw = np.asarray(data["labels"][rows[order].tolist()])[back].transpose(0, 2, 1)
                if raw.max() > RAW_CLASSES:
                    bad = int(rows[int(np.argwhere(raw > RAW_CLASSES)[0][0])])
                    raise UMTError(
                        f"{src / LABELLED_FILE}: labels of image {bad + 1} (1-based) hold "
                        f"{int(raw.max())}; expected 0..{RAW_CLASSES} (0: unlabelled)"
                    )
                c40 = map40[raw.astype(np.int64)]  # 0..40, 0 unlabelled
                rgb = np.clip(np.rint(_resize(rgb, (h, w), "bilinear")), 0, 255).astype(np.uint8)
                dep = _resize(dep[:, None], (h, w), "bilinear").astype(np.float32)
                c40 = _resize(c40[:, None], (h, w), "nearest")[:, 0].astype(np.int64)
                sl = slice(start, start + len(rows))
                files["rgb"][sl] = rgb
                files["depth"][sl] = dep.astype(np.float16)
                files["labels"][sl] = np.where(c40 == 0, STORED_IGNORE, c40 - 1).astype(np.uint8)
                if map13 is not None:
                    c13 = map13[c40]
                    files["labels13"][sl] = np.where(c13 == 0, STORED_IGNORE, c13 - 1).astype(
                        np.uint8
                    )
                if split == "train":
                    for key, x in (
                        ("rgb", rgb.astype(np.float64)),
                        ("depth", dep.astype(np.float64)),
                    ):
                        stats[key][0] += x.sum(axis=(0, 2, 3))
                        stats[key][1] += (x**2).sum(axis=(0, 2, 3))
                    pixels += len(rows) * h * w
            for f in files.values():
                f.flush()
            del files
            log(f"nyuv2: {split}: {len(idx)} images")
        moments = {
            k: {
                "mean": (s / pixels).tolist(),
                "std": np.sqrt(np.maximum(q / pixels - (s / pixels) ** 2, 0)).tolist(),
            }
            for k, (s, q) in stats.items()
        }
        meta = {
            "format": FORMAT,
            "version": VERSION,
            "name": "nyuv2",
            "task": "segmentation",
            "num_classes": 40,
            **({"class_names": names40} if names40 else {}),
            "description": f"NYU Depth V2, 40 classes, {h}x{w}, standard split (val carved from train)",
            "label_shape": [h, w],
            "ignore_index": STORED_IGNORE,
            "modalities": {
                "rgb": {"shape": [3, h, w], "dtype": "uint8"},
                "depth": {"shape": [1, h, w], "dtype": "float16"},
            },
        }
        info = {
            "format": "umt-nyuv2",
            "source": str(src),
            "size": [h, w],
            "val_fraction": val_fraction,
            "seed": seed,
            "sizes": {"train": len(train), "val": len(val), "test": len(test)},
            "val_indices": (val + 1).tolist(),  # 1-based, as splits.mat
            "stats": moments,
            "classes13": map13 is not None,
            "class_names13": names13,
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
        (tmp / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
        sizes = {"train": len(train), "val": len(val), "test": len(test)}
        write_coverage(tmp, image_coverage(load_manifest("nyuv2"), names40, sizes))
    log(f"nyuv2: wrote {out} (train {len(train)}, val {len(val)}, test {len(test)})")
    return out


__all__ = [
    "carve_val",
    "prepare_nyuv2",
    "read_labelled",
    "read_mapping13",
    "read_mapping40",
    "read_mat",
    "read_splits",
]
