"""Your own multi-modal data on disk: the ``umt-folder`` format, its loader, checker and exporter.

The format
==========

A data set is a folder holding ``meta.json`` and one sub-folder per split::

    my-data/
      meta.json
      train/
        audio.npy      # (N_train, 1, 40, 100) float32, one row per sample
        visual.npy     # (N_train, 3, 64, 64)  float32 (or uint8, float16, ...)
        labels.npy     # (N_train,)            integers in 0..num_classes-1
      val/
        audio.npy  visual.npy  labels.npy
      test/
        audio.npy  visual.npy  labels.npy

``meta.json`` describes the data set::

    {
      "format": "umt-folder",
      "version": 1,
      "name": "my-data",
      "task": "classification",
      "num_classes": 10,
      "class_names": ["zero", "one", ...],
      "description": "spoken and written digits",
      "modalities": {
        "audio":  {"shape": [1, 40, 100], "dtype": "float32"},
        "visual": {"shape": [3, 64, 64],  "dtype": "uint8"}
      }
    }

Keys:

* ``format`` (required): the string ``"umt-folder"``.
* ``version`` (required): the integer ``1``.
* ``name`` (required): the data set's name, shown in reports.
* ``task`` (required): ``"classification"``, or ``"segmentation"`` for per-pixel label maps.
* ``num_classes`` (required): the number of classes K (at least 2). Labels are ``0..K-1``.
* ``modalities`` (required): one entry per modality, any number of them (at least one). The name
  is the batch key and the file name (letters, digits, ``_``, ``-``, ``.``; not ``label`` or
  ``labels``). ``shape`` is the shape of *one* sample (a list of positive integers; ``[1]`` for
  one number per sample). ``dtype`` (optional) is the NumPy type the files hold; any integer or
  floating type is allowed, and samples are converted to ``float32`` batch by batch.
* ``class_names`` (optional): K strings, in label order.
* ``description`` (optional): one line for listings and reports.
* ``label_shape`` (optional, default ``[]``): the shape of one sample's label; ``[]`` means one
  class per sample, ``[H, W]`` a label map (required for ``"segmentation"``).
* ``ignore_index`` (optional, default ``null``): a label value outside ``0..K-1`` that marks
  pixels or samples to ignore (e.g. ``255``).

Each split folder holds ``<modality>.npy`` for every modality in ``meta.json`` and
``labels.npy``, written with :func:`numpy.save`. Every file of a split has the same number of rows
N (row ``i`` of every file is sample ``i``), and no split is empty. Other files are ignored (an
undeclared ``.npy`` file draws a warning from the checker).

Arrays are opened with ``np.load(..., mmap_mode="r")``: nothing is read until a batch needs it,
so a data set larger than memory works.

Loading, checking, exporting
============================

* :func:`load_folder` (``data.name: folder``, ``data.root: PATH``) checks the cheap things
  (``meta.json``, files, shapes, dtypes, sample counts, and class labels' range) and raises one
  :class:`~umt.errors.UMTError` listing every problem.
* :func:`check_folder` (``umt data check PATH``) also scans every value, in chunks, for NaN/inf
  and for labels out of range, and returns every problem it finds as a :class:`Problem`.
* :func:`export_folder` (``umt data export NAME PATH``) writes any :class:`DataBundle` in this
  format, atomically.

Example:
    >>> import tempfile
    >>> from umt.data import DataConfig, load_data
    >>> from umt.data.synthetic import SyntheticConfig
    >>> data = load_data(DataConfig("synthetic", synthetic=SyntheticConfig(n_train=8, n_val=4, n_test=4)))
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     export_folder(data, f"{tmp}/synth")
    ...     print(format_problems(check_folder(f"{tmp}/synth")))
    ...     loaded = load_folder(DataConfig(name="folder", root=f"{tmp}/synth"))
    ...     print(loaded.modalities, len(loaded.train), loaded.input_shapes == data.input_shapes)
    no problems found
    ('strong', 'weak') 8 True
"""

from __future__ import annotations

import json
import math
import os
import re
import secrets
import shutil
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from umt.data.base import SPLITS, ArrayDataset, DataBundle
from umt.data.segmentation import IGNORE_INDEX, SegmentationDataset
from umt.errors import UMTError

if TYPE_CHECKING:  # umt.data imports this module; at run time DataConfig is only duck-typed
    from umt.data import DataConfig

FORMAT = "umt-folder"
VERSION = 1
META_FILE = "meta.json"
LABELS = "labels"
TASKS = ("classification", "segmentation")

Severity = Literal["error", "warning"]
PathLike = str | os.PathLike[str]

#: Bytes read at a time when scanning values; small enough for any machine, large enough that a
#: scan runs at disk speed.
_CHUNK_BYTES = 64 * 2**20
_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_RESERVED = ("label", LABELS)  # "label" is the batch key of the labels; "labels" their file
_NUMBER_KINDS = "fiu"  # floating, signed and unsigned integers

_REQUIRED: dict[str, str] = {
    "format": f'the string "{FORMAT}"',
    "version": f"the format version, {VERSION}",
    "name": 'the data set\'s name, e.g. "my-data"',
    "task": f"one of {list(TASKS)}",
    "num_classes": 'the number of classes K, e.g. "num_classes": 10',
    "modalities": 'one entry per modality, e.g. {"audio": {"shape": [1, 40, 100], '
    '"dtype": "float32"}}',
}
_OPTIONAL = ("class_names", "description", "label_shape", "ignore_index")
_MODALITY_KEYS = ("shape", "dtype")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a data folder.

    Attributes:
        file: the file or folder concerned, relative to the data folder (``"meta.json"``,
            ``"train/"``, ``"train/audio.npy"``); ``"."`` for the data folder itself.
        index: the first offending sample (row of the array), where the problem is in values;
            otherwise ``None``.
        message: what is wrong and what was expected.
        severity: ``"error"`` (the folder cannot be used) or ``"warning"`` (it can, but look).

    Example:
        >>> print(Problem("train/labels.npy", 17, "label 12 is outside 0..9"))
        error: train/labels.npy, sample 17: label 12 is outside 0..9
    """

    file: str
    index: int | None
    message: str
    severity: Severity = "error"

    def __str__(self) -> str:
        where = self.file if self.index is None else f"{self.file}, sample {self.index}"
        return f"{self.severity}: {where}: {self.message}"


@dataclass(frozen=True)
class ModalitySpec:
    """A modality as ``meta.json`` declares it: one sample's shape and, optionally, its dtype."""

    shape: tuple[int, ...]
    dtype: str | None = None


@dataclass(frozen=True)
class FolderMeta:
    """The contents of a valid ``meta.json`` (see the module docstring for each key)."""

    name: str
    task: str
    num_classes: int
    modalities: Mapping[str, ModalitySpec]
    class_names: tuple[str, ...] | None = None
    description: str = ""
    label_shape: tuple[int, ...] = ()
    ignore_index: int | None = None


@dataclass(frozen=True)
class _Known:
    """What could be read from ``meta.json``, field by field, even where other keys are wrong:
    the split checks use whatever is known."""

    meta: FolderMeta | None = None
    num_classes: int | None = None
    modalities: Mapping[str, ModalitySpec] | None = None
    label_shape: tuple[int, ...] | None = None
    ignore_index: int | None = None


@dataclass(frozen=True)
class _Inspection:
    """The outcome of looking at a folder: its problems and, per split, the opened arrays."""

    known: _Known
    problems: list[Problem]
    arrays: dict[str, dict[str, np.ndarray]]
    labels: dict[str, np.ndarray]


# --------------------------------------------------------------------------------------------
# meta.json


def _describe(value: object) -> str:
    """A JSON value for a message: its text (shortened) and its JSON type."""
    kinds = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
    kinds.update({list: "a list", dict: "an object", type(None): "null"})
    kind = kinds.get(type(value), type(value).__name__)
    try:
        text = json.dumps(value)
    except (TypeError, ValueError, RecursionError):
        return kind
    if len(text) > 60:
        text = text[:57] + "..."
    return text if value is None else f"{text} ({kind})"


def _as_int(value: object) -> int | None:
    """``value`` if it is a JSON integer (not a boolean), else ``None``."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _as_shape(value: object, *, allow_empty: bool) -> tuple[int, ...] | None:
    """``value`` as a shape if it is a list of positive integers, else ``None``."""
    if not isinstance(value, list) or (not value and not allow_empty):
        return None
    dims = [_as_int(v) for v in value]
    if any(d is None or d < 1 for d in dims):
        return None
    return tuple(d for d in dims if d is not None)


def _number_dtype(value: object) -> tuple[np.dtype[Any] | None, str]:
    """Parse a declared dtype: ``(dtype, "")`` if it names a number type, else ``(None, why)``."""
    if not isinstance(value, str):
        return None, f'must be a string such as "float32"; got {_describe(value)}'
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dtype = np.dtype(value)
    except Exception:  # np.dtype raises TypeError, ValueError, ... for a name it does not know
        return None, f'{value!r} is not a NumPy dtype; expected e.g. "float32", "uint8"'
    if dtype.kind not in _NUMBER_KINDS:
        return None, (
            f"{value!r} is not a number type; expected an integer or floating type "
            'such as "float32", "float16", "uint8", "int16"'
        )
    return dtype, ""


def _parse_meta(raw: object, problems: list[Problem]) -> _Known:
    """Check a parsed ``meta.json``, appending a problem for every wrong key."""
    errors_before = sum(p.severity == "error" for p in problems)

    def error(message: str) -> None:
        problems.append(Problem(META_FILE, None, message))

    if not isinstance(raw, dict):
        error(f"must hold a JSON object with the keys {list(_REQUIRED)}; got {_describe(raw)}")
        return _Known()
    for key, help_text in _REQUIRED.items():
        if key not in raw:
            error(f"key {key!r} is missing; expected {help_text}")
    for key in raw:
        if key not in _REQUIRED and key not in _OPTIONAL:
            problems.append(
                Problem(
                    META_FILE,
                    None,
                    f"key {key!r} is not part of the format and is ignored; "
                    f"known keys: {[*_REQUIRED, *_OPTIONAL]}",
                    "warning",
                )
            )

    if "format" in raw and raw["format"] != FORMAT:
        error(f"key 'format' must be \"{FORMAT}\"; got {_describe(raw['format'])}")
    if "version" in raw:
        version = _as_int(raw["version"])
        if version is not None and version > VERSION:
            error(
                f"key 'version' is {version} but this umt reads version {VERSION}; "
                "upgrade umt or export the data again"
            )
        elif version != VERSION:
            error(f"key 'version' must be the integer {VERSION}; got {_describe(raw['version'])}")
    name = raw.get("name")
    if "name" in raw and (not isinstance(name, str) or not name.strip()):
        error(f"key 'name' must be a non-empty string; got {_describe(name)}")
    task = raw.get("task")
    if "task" in raw and task not in TASKS:
        error(f"key 'task' must be one of {list(TASKS)}; got {_describe(task)}")

    num_classes = _as_int(raw.get("num_classes"))
    if num_classes is not None and num_classes < 2:
        num_classes = None
    if "num_classes" in raw and num_classes is None:
        error(f"key 'num_classes' must be an integer >= 2; got {_describe(raw['num_classes'])}")

    class_names = raw.get("class_names")
    if class_names is not None:
        if not isinstance(class_names, list) or not all(isinstance(c, str) for c in class_names):
            error(f"key 'class_names' must be a list of strings; got {_describe(class_names)}")
            class_names = None
        elif num_classes is not None and len(class_names) != num_classes:
            error(
                f"key 'class_names' has {len(class_names)} names but num_classes is "
                f"{num_classes}; give one name per class, in label order"
            )
            class_names = None
    description = raw.get("description", "")
    if not isinstance(description, str):
        error(f"key 'description' must be a string; got {_describe(description)}")
        description = ""

    label_shape = _as_shape(raw.get("label_shape", []), allow_empty=True)
    if label_shape is None:
        error(
            "key 'label_shape' must be a list of positive integers ([] for one class per "
            f"sample, [H, W] for label maps); got {_describe(raw['label_shape'])}"
        )
    elif task == "segmentation" and not label_shape:
        error(
            "task 'segmentation' needs key 'label_shape', the shape of a label map, e.g. [64, 64]"
        )
    ignore_index = _as_int(raw.get("ignore_index"))
    if raw.get("ignore_index") is not None and ignore_index is None:
        error(
            f"key 'ignore_index' must be an integer or null; got {_describe(raw['ignore_index'])}"
        )

    modalities = _parse_modalities(raw["modalities"], problems) if "modalities" in raw else None

    errors_now = sum(p.severity == "error" for p in problems)
    meta = None
    if errors_now == errors_before:  # every key is valid: the checks above narrowed them
        assert isinstance(name, str) and isinstance(task, str)
        assert num_classes is not None and modalities is not None and label_shape is not None
        meta = FolderMeta(
            name=name,
            task=task,
            num_classes=num_classes,
            modalities=modalities,
            class_names=tuple(class_names) if class_names is not None else None,
            description=description,
            label_shape=label_shape,
            ignore_index=ignore_index,
        )
    return _Known(meta, num_classes, modalities, label_shape, ignore_index)


def _parse_modalities(raw: object, problems: list[Problem]) -> dict[str, ModalitySpec] | None:
    """Check the ``modalities`` object; ``None`` unless every entry is valid."""

    def error(message: str) -> None:
        problems.append(Problem(META_FILE, None, message))

    if not isinstance(raw, dict) or not raw:
        error(
            "key 'modalities' must be a non-empty object, e.g. "
            f'{{"audio": {{"shape": [1, 40, 100], "dtype": "float32"}}}}; got {_describe(raw)}'
        )
        return None
    specs: dict[str, ModalitySpec] = {}
    valid = True
    for name, entry in raw.items():
        where = f"modalities.{name}"
        if name in _RESERVED or not _NAME_RE.fullmatch(name):
            error(
                f"modality name {name!r} cannot be used: a name is also a file name and a batch "
                "key, so use letters, digits, '_', '-', '.' (not starting with '.' or '-'), "
                f"and not {list(_RESERVED)}"
            )
            valid = False
        if not isinstance(entry, dict):
            error(f'{where} must be an object such as {{"shape": [32]}}; got {_describe(entry)}')
            valid = False
            continue
        for key in entry:
            if key not in _MODALITY_KEYS:
                problems.append(
                    Problem(
                        META_FILE,
                        None,
                        f"{where}.{key} is not part of the format and is ignored; "
                        f"known keys: {list(_MODALITY_KEYS)}",
                        "warning",
                    )
                )
        shape = _as_shape(entry.get("shape"), allow_empty=False)
        if shape is None:
            got = _describe(entry["shape"]) if "shape" in entry else "nothing"
            error(
                f"{where}.shape must be the shape of one sample, a non-empty list of positive "
                f"integers such as [1, 40, 100] ([1] for one number per sample); got {got}"
            )
            valid = False
        dtype = entry.get("dtype")
        if dtype is not None:
            parsed, why = _number_dtype(dtype)
            if parsed is None:
                error(f"{where}.dtype {why}")
                valid = False
        if shape is not None:
            specs[name] = ModalitySpec(shape, dtype if isinstance(dtype, str) else None)
    return specs if valid else None


def _read_meta(root: Path, problems: list[Problem]) -> _Known:
    path = root / META_FILE
    if not path.exists():
        problems.append(
            Problem(
                META_FILE,
                None,
                "file is missing; every data folder needs a meta.json naming its format, classes "
                "and modalities (see `umt data export` for an example)",
            )
        )
        return _Known()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(Problem(META_FILE, None, f"cannot be read as UTF-8 text: {exc}"))
        return _Known()
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        problems.append(
            Problem(
                META_FILE,
                None,
                f"is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}",
            )
        )
        return _Known()
    except (ValueError, RecursionError) as exc:  # e.g. a number with too many digits
        problems.append(Problem(META_FILE, None, f"is not valid JSON: {exc}"))
        return _Known()
    return _parse_meta(raw, problems)


# --------------------------------------------------------------------------------------------
# split folders


def _open_npy(path: Path, rel: str, problems: list[Problem], missing: str) -> np.ndarray | None:
    """Memory-map one ``.npy`` file; on failure append a problem and return ``None``."""
    if not path.exists():
        problems.append(Problem(rel, None, missing))
        return None
    if not path.is_file():
        problems.append(
            Problem(rel, None, "is not a file; expected an array saved with numpy.save")
        )
        return None
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as exc:  # np.load raises many types (ValueError, OSError, EOFError, ...)
        reason = f"{type(exc).__name__}: {exc}"
        if len(reason) > 200:
            reason = reason[:197] + "..."
        problems.append(
            Problem(
                rel,
                None,
                f"cannot be read as a .npy array ({reason}); write it with numpy.save from an "
                "array of numbers (object arrays and pickles are not supported)",
            )
        )
        return None
    if not isinstance(arr, np.ndarray):  # an .npz archive under a .npy name
        close = getattr(arr, "close", None)
        if close is not None:
            close()
        problems.append(
            Problem(rel, None, "is an .npz archive; expected one array saved with numpy.save")
        )
        return None
    if arr.ndim == 0:
        problems.append(
            Problem(rel, None, "holds one value (shape ()); expected (N, ...), one row per sample")
        )
        return None
    return arr


def _check_modality(
    arr: np.ndarray, name: str, spec: ModalitySpec | None, rel: str, problems: list[Problem]
) -> bool:
    """Check one modality array's dtype and per-sample shape against ``meta.json``."""
    ok = True
    if arr.dtype.kind not in _NUMBER_KINDS:
        problems.append(
            Problem(
                rel,
                None,
                f"dtype {arr.dtype} is not a number type; store an integer or floating type "
                "such as float32, float16 or uint8",
            )
        )
        ok = False
    elif spec is not None and spec.dtype is not None and arr.dtype != np.dtype(spec.dtype):
        problems.append(
            Problem(
                rel,
                None,
                f"dtype is {arr.dtype} but meta.json declares modalities.{name}.dtype "
                f"{spec.dtype!r}; convert the array or change the declaration",
            )
        )
        ok = False
    if spec is not None and arr.shape[1:] != spec.shape:
        expected = ", ".join(["N", *map(str, spec.shape)])
        problems.append(
            Problem(
                rel,
                None,
                f"per-sample shape {list(arr.shape[1:])} differs from meta.json's "
                f"modalities.{name}.shape {list(spec.shape)} (array shape {arr.shape}; "
                f"expected ({expected}))",
            )
        )
        ok = False
    return ok


def _check_labels(
    arr: np.ndarray, label_shape: tuple[int, ...] | None, rel: str, problems: list[Problem]
) -> bool:
    ok = True
    if arr.dtype.kind not in "iu":
        problems.append(
            Problem(
                rel,
                None,
                f"labels have dtype {arr.dtype}; expected integers (int64, int32, uint8, ...): "
                "save labels.astype(np.int64)",
            )
        )
        ok = False
    if label_shape is not None and arr.shape[1:] != label_shape:
        if label_shape:
            expected = f"per-sample label shape {list(label_shape)} (meta.json's label_shape)"
        else:
            expected = "shape (N,), one class per sample"
        problems.append(Problem(rel, None, f"labels have shape {arr.shape}; expected {expected}"))
        ok = False
    return ok


def _chunks(arr: np.ndarray) -> Iterable[tuple[int, np.ndarray]]:
    """``(start, rows)`` over the first axis, about ``_CHUNK_BYTES`` at a time (memmap-friendly)."""
    row_bytes = max(1, arr.itemsize * math.prod(arr.shape[1:]))
    step = max(1, _CHUNK_BYTES // row_bytes)
    for start in range(0, len(arr), step):
        yield start, np.asarray(arr[start : start + step])


def _scan_finite(arr: np.ndarray, rel: str, problems: list[Problem]) -> None:
    """Report the first sample holding NaN or inf, and how many samples do."""
    if arr.dtype.kind != "f" or arr.size == 0:
        return
    first: int | None = None
    what = ""
    count = 0
    for start, chunk in _chunks(arr):
        bad = ~np.isfinite(chunk.reshape(len(chunk), -1)).all(axis=1)
        n_bad = int(bad.sum())
        if n_bad and first is None:
            i = int(np.flatnonzero(bad)[0])
            first = start + i
            what = "NaN" if np.isnan(chunk[i]).any() else "inf"
        count += n_bad
    if first is not None:
        problems.append(
            Problem(
                rel,
                first,
                f"holds {what} (the first sample that does); {count} of {len(arr)} samples hold "
                "NaN or inf values, which poison training: fix or drop them",
            )
        )


def _scan_label_range(
    arr: np.ndarray, num_classes: int, ignore_index: int | None, rel: str, problems: list[Problem]
) -> None:
    """Report the first sample whose label is outside ``0..num_classes-1`` (bar ignore_index)."""
    if arr.dtype.kind not in "iu" or arr.size == 0:
        return
    first: int | None = None
    value = 0
    count = 0
    for start, chunk in _chunks(arr):
        flat = chunk.reshape(len(chunk), -1)
        wrong = (flat < 0) | (flat >= num_classes)
        if ignore_index is not None:
            wrong &= flat != ignore_index
        bad = wrong.any(axis=1)
        n_bad = int(bad.sum())
        if n_bad and first is None:
            i = int(np.flatnonzero(bad)[0])
            first = start + i
            value = int(flat[i][wrong[i]][0])
        count += n_bad
    if first is not None:
        allowed = f"0..{num_classes - 1}"
        if ignore_index is not None:
            allowed += f" or ignore_index {ignore_index}"
        problems.append(
            Problem(
                rel,
                first,
                f"label {value} is outside {allowed} "
                f"(num_classes is {num_classes} in meta.json); {count} of {len(arr)} samples "
                "have labels out of range",
            )
        )


def _check_split(
    root: Path, split: str, known: _Known, problems: list[Problem], *, scan_values: bool
) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """Check one split folder; return its valid modality arrays and its labels (if valid)."""
    folder = root / split
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "split folder is missing"
        problems.append(
            Problem(
                f"{split}/",
                None,
                f"{what}; expected a folder {split}/ holding labels.npy and one <modality>.npy "
                "per modality of meta.json",
            )
        )
        return {}, None
    try:
        npy_files = sorted(p.name[:-4] for p in folder.iterdir() if p.name.endswith(".npy"))
    except OSError as exc:
        problems.append(Problem(f"{split}/", None, f"cannot be listed: {exc}"))
        return {}, None
    found = f" (.npy files here: {[f + '.npy' for f in npy_files]})" if npy_files else ""

    declared = known.modalities
    if declared is not None:
        names = list(declared)
        for extra in npy_files:
            if extra not in declared and extra != LABELS:
                problems.append(
                    Problem(
                        f"{split}/{extra}.npy",
                        None,
                        f"modality {extra!r} is not declared in meta.json (which declares "
                        f"{list(declared)}); the file is ignored",
                        "warning",
                    )
                )
    else:  # meta.json could not tell: check whichever arrays are there
        names = [f for f in npy_files if f != LABELS]

    opened: dict[str, np.ndarray] = {}  # every readable array, for the sample counts
    valid: dict[str, np.ndarray] = {}
    for name in names:
        rel = f"{split}/{name}.npy"
        arr = _open_npy(
            folder / f"{name}.npy",
            rel,
            problems,
            f"file is missing: meta.json declares modality {name!r}, so every split needs "
            f"{split}/{name}.npy{found}",
        )
        if arr is None:
            continue
        opened[rel] = arr
        spec = declared.get(name) if declared is not None else None
        if _check_modality(arr, name, spec, rel, problems):
            valid[name] = arr
    labels_rel = f"{split}/{LABELS}.npy"
    labels = _open_npy(
        folder / f"{LABELS}.npy",
        labels_rel,
        problems,
        f"file is missing; every split needs {labels_rel}, the (N,) integer class of each "
        f"sample{found}",
    )
    labels_ok = labels is not None and _check_labels(
        labels, known.label_shape, labels_rel, problems
    )

    # Sample counts: every file against the labels (or, without labels, the first modality).
    counted = ({labels_rel: labels} if labels is not None else {}) | opened
    if counted:
        ref_file, ref = next(iter(counted.items()))
        for rel, arr in counted.items():
            if len(arr) != len(ref):
                problems.append(
                    Problem(
                        rel,
                        None,
                        f"has {len(arr)} samples but {ref_file} has {len(ref)}; every file of a "
                        "split needs one row per sample, in the same order",
                    )
                )
        if len(ref) == 0:
            problems.append(
                Problem(f"{split}/", None, "split is empty (0 samples); every split needs samples")
            )

    if scan_values:
        for rel, arr in opened.items():
            _scan_finite(arr, rel, problems)
    if labels is not None and labels_ok and known.num_classes is not None:
        if scan_values or labels.ndim == 1:  # class labels are cheap; label maps wait for check
            _scan_label_range(labels, known.num_classes, known.ignore_index, labels_rel, problems)
    return valid, labels if labels_ok else None


def _inspect(root: Path, *, scan_values: bool) -> _Inspection:
    problems: list[Problem] = []
    if not root.is_dir():
        what = "is not a folder" if root.exists() else "does not exist"
        problems.append(Problem(".", None, f"data folder {root} {what}"))
        return _Inspection(_Known(), problems, {}, {})
    known = _read_meta(root, problems)
    arrays: dict[str, dict[str, np.ndarray]] = {}
    labels: dict[str, np.ndarray] = {}
    for split in SPLITS:
        split_arrays, split_labels = _check_split(
            root, split, known, problems, scan_values=scan_values
        )
        arrays[split] = split_arrays
        if split_labels is not None:
            labels[split] = split_labels
    return _Inspection(known, problems, arrays, labels)


# --------------------------------------------------------------------------------------------
# public API


def check_folder(path: PathLike) -> list[Problem]:
    """Every problem with a data folder: its ``meta.json``, files, shapes, dtypes, counts, values.

    Unlike :func:`load_folder` this reads every value (in chunks of about 64 MB, through memory
    maps), to find NaN/inf and labels out of range. It never stops at the first problem and never
    raises for a broken folder.

    Args:
        path: the data folder.

    Returns:
        The problems, errors and warnings, in the order ``meta.json``, ``train``, ``val``,
        ``test``; an empty list for a valid folder.

    Example:
        >>> [str(p) for p in check_folder("/no/such/folder")]
        ['error: .: data folder /no/such/folder does not exist']
    """
    return _inspect(Path(path).expanduser(), scan_values=True).problems


def format_problems(problems: Iterable[Problem]) -> str:
    """A readable report: one line per problem, then a count.

    Example:
        >>> print(format_problems([
        ...     Problem("meta.json", None, "key 'name' is missing"),
        ...     Problem("train/x.npy", None, "not declared", "warning"),
        ...     Problem("val/labels.npy", 3, "label 12 is outside 0..9"),
        ... ]))
        error:   meta.json: key 'name' is missing
        warning: train/x.npy: not declared
        error:   val/labels.npy, sample 3: label 12 is outside 0..9
        2 errors, 1 warning
        >>> format_problems([])
        'no problems found'
    """
    problems = list(problems)
    if not problems:
        return "no problems found"
    lines = []
    for p in problems:
        where = p.file if p.index is None else f"{p.file}, sample {p.index}"
        lines.append(f"{p.severity + ':':<8} {where}: {p.message}")
    n_err = sum(p.severity == "error" for p in problems)
    n_warn = len(problems) - n_err
    lines.append(
        f"{n_err} error{'s' if n_err != 1 else ''}, {n_warn} warning{'s' if n_warn != 1 else ''}"
    )
    return "\n".join(lines)


def load_folder(cfg: DataConfig) -> DataBundle:
    """Open the data folder ``cfg.root`` (the ``folder`` data set), memory-mapped.

    Checks ``meta.json``, the files, per-sample shapes, dtypes, sample counts and class labels'
    range; values (NaN/inf) are left to :func:`check_folder`. Warnings (e.g. undeclared files)
    are issued with :func:`warnings.warn`.

    Args:
        cfg: the data configuration; only ``root`` is read.

    Returns:
        The data set, its arrays ``np.memmap`` instances read batch by batch. ``info`` holds
        ``root``, ``class_names`` (or ``None``), ``label_shape`` and ``ignore_index``.

    Raises:
        UMTError: ``data.root`` is unset or missing, or the folder has problems (all listed).

    Example:
        >>> from umt.data import DataConfig
        >>> load_folder(DataConfig(name="folder"))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        umt.errors.UMTError: data.root is not set; ... set data.root to its path
    """
    if cfg.root is None:
        raise UMTError(
            "data.root is not set; the 'folder' data set reads a folder in the umt-folder "
            "format: set data.root to its path"
        )
    root = Path(cfg.root).expanduser()
    if not root.is_dir():
        what = "is not a folder" if root.exists() else "does not exist"
        raise UMTError(f"data.root: {root} {what}; expected a folder in the umt-folder format")
    found = _inspect(root, scan_values=False)
    errors = [p for p in found.problems if p.severity == "error"]
    if errors:
        raise UMTError(
            f"data.root: {root} is not a valid umt-folder data set "
            f"({len(errors)} error{'s' if len(errors) != 1 else ''}):\n"
            f"{format_problems(errors)}\n"
            f"`umt data check {root}` reports every problem, values included"
        )
    for p in found.problems:
        warnings.warn(f"{root}: {p}", stacklevel=2)
    meta = found.known.meta
    assert meta is not None  # no errors: meta.json is valid

    ignore = meta.ignore_index

    def to_batch_labels(y: np.ndarray) -> np.ndarray:
        # Segmentation batches mark unlabelled pixels with IGNORE_INDEX, whatever is stored.
        return np.where(y == ignore, IGNORE_INDEX, y.astype(np.int64))

    def split(name: str) -> ArrayDataset:
        arrays = {m: found.arrays[name][m] for m in meta.modalities}
        if meta.task == "segmentation":
            mapping = to_batch_labels if ignore is not None and ignore != IGNORE_INDEX else None
            return SegmentationDataset(arrays, found.labels[name], label_map=mapping)
        return ArrayDataset(arrays, found.labels[name])

    return DataBundle(
        name=meta.name,
        train=split("train"),
        val=split("val"),
        test=split("test"),
        num_classes=meta.num_classes,
        task=meta.task,
        description=meta.description or f"umt-folder data set at {root}",
        info={
            "root": str(root),
            "class_names": list(meta.class_names) if meta.class_names is not None else None,
            "label_shape": list(meta.label_shape),
            "ignore_index": meta.ignore_index,
        },
    )


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
    """Save ``arr`` as ``dtype`` chunk by chunk: a memory-mapped source is never loaded whole."""
    if arr.size == 0:
        np.save(path, np.asarray(arr, dtype=dtype))
        return
    out = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=arr.shape)
    for start, chunk in _chunks(arr):
        out[start : start + len(chunk)] = chunk
    out.flush()
    del out


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot sync a directory
    finally:
        os.close(fd)


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
            _fsync_dir(tmp / split)
        with open(tmp / META_FILE, "w", encoding="utf-8") as f:
            f.write(_meta_text(meta))
            f.flush()
            os.fsync(f.fileno())
        _fsync_dir(tmp)
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
        _fsync_dir(target.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


__all__ = [
    "FORMAT",
    "VERSION",
    "FolderMeta",
    "ModalitySpec",
    "Problem",
    "check_folder",
    "export_folder",
    "format_problems",
    "load_folder",
]
