"""Checking a data folder: its split folders' files, dtypes, shapes and sample counts, and (for
:func:`check_folder`) every value, scanned in chunks through memory maps."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from umt.data.base import SPLITS
from umt.data.folder.classes import check_class_counts
from umt.data.folder.spec import (
    _NUMBER_KINDS,
    LABELS,
    ModalitySpec,
    PathLike,
    Problem,
    _Known,
    _read_meta,
)

#: Bytes read at a time when scanning values; small enough for any machine, large enough that a
#: scan runs at disk speed.
_CHUNK_BYTES = 64 * 2**20


@dataclass(frozen=True)
class _Inspection:
    """The outcome of looking at a folder: its problems and, per split, the opened arrays."""

    known: _Known
    problems: list[Problem]
    arrays: dict[str, dict[str, np.ndarray]]
    labels: dict[str, np.ndarray]


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
    if known.label_shape == ():  # one class per sample: cheap to count
        problems += check_class_counts(known.num_classes, labels.get("train"))
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
