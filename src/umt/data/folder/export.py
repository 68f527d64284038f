"""Exporting any :class:`~umt.data.base.DataBundle` as a data folder, atomically."""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np

from umt.data.base import SPLITS, DataBundle
from umt.data.folder.check import _chunks
from umt.data.folder.spec import (
    _NUMBER_KINDS,
    FORMAT,
    LABELS,
    META_FILE,
    VERSION,
    PathLike,
    Problem,
    _parse_meta,
)
from umt.errors import UMTError
from umt.io import fsync_dir, write_with


def _bundle_meta(bundle: DataBundle) -> dict[str, object]:
    """``meta.json`` for a bundle, checked with the same rules the loader applies."""
    modalities: dict[str, dict[str, object]] = {}
    for name in bundle.modalities:
        shapes = {tuple(bundle.split(s).arrays[name].shape[1:]) for s in SPLITS}
        if len(shapes) != 1:
            raise UMTError(
                f"cannot export {bundle.name!r}: modality {name!r} has per-sample shapes "
                f"{sorted(shapes)} across splits; the format needs one shape per modality"
            )
        modalities[name] = {
            "shape": list(shapes.pop()),
            "dtype": _export_dtype(bundle.train.arrays[name].dtype, name).name,
        }
    for split in SPLITS:
        dtype = bundle.split(split).labels.dtype
        if dtype.kind not in "iu":
            raise UMTError(
                f"cannot export {bundle.name!r}: split {split!r} has labels of dtype {dtype}; "
                "expected integers (convert with labels.astype(np.int64))"
            )
    label_shapes = {tuple(bundle.split(s).labels.shape[1:]) for s in SPLITS}
    if len(label_shapes) != 1:
        raise UMTError(
            f"cannot export {bundle.name!r}: label shapes {sorted(label_shapes)} differ across "
            "splits"
        )
    meta: dict[str, object] = {
        "format": FORMAT,
        "version": VERSION,
        "name": bundle.name,
        "task": bundle.task,
        "num_classes": bundle.num_classes,
    }
    class_names = bundle.info.get("class_names")
    if isinstance(class_names, list | tuple) and len(class_names) == bundle.num_classes:
        meta["class_names"] = [str(c) for c in class_names]
    if bundle.description:
        meta["description"] = bundle.description
    label_shape = label_shapes.pop()
    if label_shape:
        meta["label_shape"] = list(label_shape)
    ignore_index = bundle.info.get("ignore_index")
    if isinstance(ignore_index, int) and not isinstance(ignore_index, bool):
        meta["ignore_index"] = ignore_index
    meta["modalities"] = modalities
    problems: list[Problem] = []
    _parse_meta(json.loads(json.dumps(meta)), problems)
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        raise UMTError(
            f"cannot export data set {bundle.name!r} in the umt-folder format:\n"
            + "\n".join(p.message for p in errors)
        )
    return meta


def _meta_text(meta: Mapping[str, object]) -> str:
    """``meta.json`` as people write it: a key per line, a modality per line."""
    lines = []
    for key, value in meta.items():
        if key == "modalities" and isinstance(value, dict):
            inner = ",\n".join(f"    {json.dumps(m)}: {json.dumps(v)}" for m, v in value.items())
            lines.append(f'  "modalities": {{\n{inner}\n  }}')
        else:
            lines.append(f"  {json.dumps(key)}: {json.dumps(value)}")
    return "{\n" + ",\n".join(lines) + "\n}\n"


def _meta_writer(text: str) -> Callable[[IO[bytes]], None]:
    def write(f: IO[bytes]) -> None:
        f.write(text.encode("utf-8"))

    return write


def _export_dtype(dtype: np.dtype[Any], name: str) -> np.dtype[Any]:
    if dtype.kind in _NUMBER_KINDS:
        return dtype
    if dtype.kind == "b":
        return np.dtype(np.uint8)
    raise UMTError(
        f"cannot export modality {name!r}: dtype {dtype} is not a number type; "
        "convert it to float32 (or another integer or floating type)"
    )


def _write_npy(path: Path, arr: np.ndarray, dtype: np.dtype[Any]) -> None:
    """Save ``arr`` as ``dtype``, byte for byte what :func:`numpy.save` writes, atomically and a
    chunk of rows at a time: a memory-mapped or computed-on-read source is never loaded whole."""
    header = {
        "descr": np.lib.format.dtype_to_descr(dtype),
        "fortran_order": False,
        "shape": tuple(arr.shape),
    }

    def write(f: IO[bytes]) -> None:
        np.lib.format.write_array_header_1_0(f, header)  # <= 64 dims of a number type: it fits
        for _, chunk in _chunks(arr):
            f.write(np.ascontiguousarray(chunk, dtype=dtype).tobytes())

    write_with(path, write)


def _is_umt_folder(path: Path) -> bool:
    try:
        raw = json.loads((path / META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(raw, dict) and raw.get("format") == FORMAT


def export_folder(bundle: DataBundle, path: PathLike, *, overwrite: bool = False) -> None:
    """Write a data set in the umt-folder format, atomically.

    The folder is written beside ``path`` under a hidden temporary name (``meta.json`` last) and
    renamed into place, so ``path`` is either absent or complete: an interrupted export leaves no
    folder that looks valid. Arrays are copied in chunks, so a memory-mapped data set larger than
    memory exports too. Boolean arrays are stored as ``uint8``.

    Args:
        bundle: the data set.
        path: the folder to create; its parent is created if needed.
        overwrite: replace ``path`` if it is an existing umt-folder data set. (An empty folder
            is always replaced; any other existing path is refused.)

    Raises:
        UMTError: ``path`` exists, or the bundle cannot be stored in the format (e.g. a modality
            name that is not a valid file name, a non-numeric dtype).

    Example:
        >>> import tempfile
        >>> from umt.data.synthetic import SyntheticConfig, load_synthetic
        >>> data = load_synthetic(SyntheticConfig(n_train=8, n_val=4, n_test=4))
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     export_folder(data, f"{tmp}/synth")
        ...     sorted(p.name for p in Path(tmp, "synth", "train").iterdir())
        ['labels.npy', 'strong.npy', 'weak.npy']
    """
    target = Path(path).expanduser()
    replace_old = False
    if target.exists() or target.is_symlink():
        if target.is_dir() and not target.is_symlink() and not any(target.iterdir()):
            pass  # an empty folder: rename over it
        elif not overwrite:
            raise UMTError(
                f"cannot export to {target}: it already exists; choose a new path or remove it "
                "(or pass overwrite=True to replace an umt-folder data set)"
            )
        elif target.is_symlink() or not target.is_dir() or not _is_umt_folder(target):
            raise UMTError(
                f"cannot export to {target}: it exists and is not an umt-folder data set "
                f"(no meta.json with format {FORMAT!r}); refusing to replace it"
            )
        else:
            replace_old = True
    meta = _bundle_meta(bundle)

    target.parent.mkdir(parents=True, exist_ok=True)
    token = f"{os.getpid()}-{secrets.token_hex(4)}"
    tmp = target.parent / f".{target.name}.partial-{token}"
    old = target.parent / f".{target.name}.old-{token}"
    tmp.mkdir()
    try:
        for split in SPLITS:
            ds = bundle.split(split)
            (tmp / split).mkdir()
            for name, arr in ds.arrays.items():
                _write_npy(tmp / split / f"{name}.npy", arr, _export_dtype(arr.dtype, name))
            _write_npy(tmp / split / f"{LABELS}.npy", ds.labels, ds.labels.dtype)
            fsync_dir(tmp / split)
        write_with(tmp / META_FILE, _meta_writer(_meta_text(meta)))  # last: marks it whole
        fsync_dir(tmp)
        if replace_old:
            os.rename(target, old)
            try:
                os.rename(tmp, target)
            except BaseException:
                os.rename(old, target)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            if target.is_dir():
                target.rmdir()  # empty, checked above
            os.rename(tmp, target)
        fsync_dir(target.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
