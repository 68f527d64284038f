"""The umt-folder format's vocabulary and ``meta.json``: the constants, :class:`Problem`,
:class:`ModalitySpec`, :class:`FolderMeta`, and parsing ``meta.json`` into them, one problem per
wrong key (the format itself is described in :mod:`umt.data.folder`)."""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

FORMAT = "umt-folder"
VERSION = 1
META_FILE = "meta.json"
LABELS = "labels"
TASKS = ("classification", "segmentation")

Severity = Literal["error", "warning"]
PathLike = str | os.PathLike[str]

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
