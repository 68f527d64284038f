"""Typed configuration: YAML and ``key=value`` overrides in, frozen dataclasses out.

The dataclasses live beside their consumers (``StudyConfig`` in ``study.py``, ``ModelConfig`` in
``models/``...); this module only turns plain data into them, checking every key and type, and back.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import hashlib
import json
import math
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar, Union

import yaml

from umt.errors import UMTError

T = TypeVar("T")


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, key: str) -> Any:
    """``value`` as type ``tp``, or a UMTError naming ``key``."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, key)
            except UMTError:
                continue
        raise UMTError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise UMTError(f"{key}: expected a mapping of {_type_name(tp)} settings, got {value!r}")
        return from_dict(tp, value, prefix=key)  # type: ignore[arg-type]
    if origin is tuple:
        args = typing.get_args(tp)
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            value = [value]  # a single value where a list is expected
        if not isinstance(value, list | tuple):
            raise UMTError(f"{key}: expected a list, got {value!r}")
        item = args[0] if args else Any
        return tuple(_convert(v, item, f"{key}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        kt, vt = typing.get_args(tp)
        if not isinstance(value, Mapping):
            raise UMTError(f"{key}: expected a mapping, got {value!r}")
        return {_convert(k, kt, key): _convert(v, vt, f"{key}.{k}") for k, v in value.items()}
    if typing.get_origin(tp) is typing.Literal:
        if value not in typing.get_args(tp):
            raise UMTError(f"{key}: expected one of {list(typing.get_args(tp))}, got {value!r}")
        return value
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise UMTError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UMTError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise UMTError(f"{key}: expected a number, got {value!r}")
        if not math.isfinite(value):  # no setting means NaN or infinity (NaN compares false)
            raise UMTError(f"{key}: expected a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise UMTError(f"{key}: expected a string, got {value!r}")
        return value
    raise TypeError(f"unsupported config type {tp!r} for {key}")  # a bug in a dataclass


def from_dict(cls: type[T], data: Mapping[str, Any], *, prefix: str = "") -> T:
    """Build the dataclass ``cls`` from plain data, rejecting unknown keys and wrong types.

    Example:
        >>> @dataclasses.dataclass(frozen=True)
        ... class Opt:
        ...     lr: float = 0.1
        ...     epochs: int = 3
        >>> from_dict(Opt, {"lr": 1})
        Opt(lr=1.0, epochs=3)
        >>> from_dict(Opt, {"epoch": 2})
        Traceback (most recent call last):
        umt.errors.UMTError: unknown key 'epoch'; did you mean 'epochs'? Valid keys: epochs, lr
    """
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    kwargs = {}
    for key, value in data.items():
        full = f"{prefix}.{key}" if prefix else str(key)
        if key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=1)
            hint = (
                f"; did you mean {(prefix + '.' if prefix else '') + close[0]!r}?" if close else ""
            )
            raise UMTError(f"unknown key {full!r}{hint} Valid keys: {', '.join(sorted(fields))}")
        kwargs[key] = _convert(value, hints[key], full)
    try:
        return cls(**kwargs)
    except UMTError:
        raise
    except (TypeError, ValueError) as e:
        raise UMTError(f"{prefix or cls.__name__}: {e}") from e


def to_dict(obj: Any) -> Any:
    """Plain data (dicts, lists, scalars) from a dataclass, ready for YAML or JSON."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, list | tuple):
        return [to_dict(v) for v in obj]
    if isinstance(obj, Mapping):
        return {str(k): to_dict(v) for k, v in obj.items()}
    return obj


#: ``dataclasses.field(metadata=KEY_OMITS_DEFAULT)`` marks a setting added after the stages that
#: read it were first cached: :func:`key_dict` leaves it out while at its default, so the keys
#: (and cached results) of those stages stay valid.
KEY_OMITS_DEFAULT: Mapping[str, bool] = {"key_omits_default": True}


def key_omits(value: Any) -> Mapping[str, Any]:
    """``field(metadata=key_omits(v))``: like :data:`KEY_OMITS_DEFAULT` for a setting whose
    default has changed since: it is left out of keys while equal to ``v``, the value that
    stages cached before it existed were trained with."""
    return {"key_omits_default": True, "key_omits_value": value}


def key_dict(obj: Any) -> Any:
    """:func:`to_dict` of a dataclass for a cache key: fields marked :data:`KEY_OMITS_DEFAULT`
    are left out while equal to their default (:func:`key_omits`: to the value given there).

    Example:
        >>> @dataclasses.dataclass
        ... class C:
        ...     a: int = 1
        ...     b: str = dataclasses.field(default="x", metadata=KEY_OMITS_DEFAULT)
        >>> key_dict(C()), key_dict(C(b="y"))
        ({'a': 1}, {'a': 1, 'b': 'y'})
    """
    d = to_dict(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for f in dataclasses.fields(obj):
            omitted = f.metadata.get("key_omits_value", f.default)
            if f.metadata.get("key_omits_default") and getattr(obj, f.name) == omitted:
                d.pop(f.name)
    return d


def config_hash(*parts: Any) -> str:
    """A short stable hash of plain data or dataclasses (the key of a cached stage)."""
    text = json.dumps([to_dict(p) for p in parts], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"a.b=3"`` -> ``(["a", "b"], 3)``; the value is read as YAML (lists, numbers, null).

    Example:
        >>> parse_override("train.lr=1e-3")
        (['train', 'lr'], 0.001)
        >>> parse_override("methods=[joint, umt]")
        (['methods'], ['joint', 'umt'])
    """
    if "=" not in text:
        raise UMTError(f"override {text!r} is not of the form key=value (e.g. train.epochs=5)")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise UMTError(f"override {text!r}: the key {key!r} is empty or has an empty part")
    try:
        value = yaml.load(raw, Loader=UniqueKeyLoader) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    if isinstance(value, str) and _looks_numeric(raw):
        value = float(raw)  # YAML 1.1 reads "1e-3" as a string
    return key.split("."), value


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """A copy of ``raw`` with each ``key=value`` override set (nested keys by dots)."""
    out = copy.deepcopy(raw)  # YAML may hold dates etc.: no JSON round trip
    for text in overrides:
        path, value = parse_override(text)
        set_path(out, path, value, what=f"override {text!r}")
    return out


def set_path(raw: dict[str, Any], path: Sequence[str], value: Any, *, what: str) -> None:
    """Set ``raw[path[0]][path[1]]... = value`` in place, making missing sections; ``what``
    names the setting in the error when a step of the path is a value, not a section."""
    node = raw
    for part in path[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise UMTError(f"{what}: {part!r} is a value, not a section")
        node = child
    node[path[-1]] = value


class UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.safe_load``'s loader, refusing a mapping that gives a key twice (YAML keeps the
    last silently: two ``train:`` sections in a file would drop the first one's settings).

    Example:
        >>> text = "train: {lr: 1}\\ntrain: {epochs: 2}"
        >>> try:
        ...     yaml.load(text, Loader=UniqueKeyLoader)
        ... except yaml.YAMLError as e:
        ...     print(e.problem)
        found key 'train' a second time (first on line 1); keep one (merge the two)
    """

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":  # ``<<: *base``: meant to repeat
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    again = key in seen
                except TypeError:  # an unhashable key: the base loader says so
                    continue
                first = seen.setdefault(key, key_node.start_mark.line)
                if again:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping",
                        node.start_mark,
                        f"found key {key!r} a second time (first on line {first + 1}); keep one "
                        "(merge the two)",
                        key_node.start_mark,
                    )
        return super().construct_mapping(node, deep=deep)  # type: ignore[arg-type]


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML mapping from ``path`` (or a shipped recipe's name), with errors that name the
    file."""
    p = config_path(path)  # a path, or the name of a shipped recipe
    if not p.is_file():
        raise UMTError(f"config file {str(p)!r} does not exist")
    try:
        with p.open(encoding="utf-8") as f:  # read from the file, YAML's messages name it
            data = yaml.load(f, Loader=UniqueKeyLoader)  # safe_load, and no key given twice
    except UnicodeDecodeError as e:
        raise UMTError(f"config file {str(p)!r} is not UTF-8 text: {e}") from e
    except yaml.YAMLError as e:
        raise UMTError(f"config file {str(p)!r} is not valid YAML: {e}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UMTError(
            f"config file {str(p)!r} must hold a mapping of keys, got {type(data).__name__}"
        )
    return data


def recipe_file(name: str) -> Path:
    """A built-in data set's shipped recipe (``umt/configs/recipes/<name>.yaml``)."""
    return Path(__file__).resolve().parent / "configs" / "recipes" / f"{name}.yaml"


def recipe_names() -> list[str]:
    """The study recipes shipped with the package (``umt/configs/<name>.yaml``)."""
    configs = Path(__file__).resolve().parent / "configs"
    return sorted(p.stem for p in configs.glob("*.yaml"))


def config_path(name: str | Path) -> Path:
    """A ``--config`` argument as a file: a path, or the name of a shipped recipe.

    Example:
        >>> config_path("vggsound").name
        'vggsound.yaml'
    """
    p = Path(name)
    if p.is_file() or p.parent != Path(".") or p.suffix not in ("", ".yaml"):
        return p  # a path: read_yaml names it if it does not exist
    recipe = Path(__file__).resolve().parent / "configs" / f"{p.stem}.yaml"
    if recipe.is_file():
        return recipe
    raise UMTError(
        f"--config {str(name)!r}: no such file, nor a recipe; the recipes are "
        f"{', '.join(recipe_names())} (or give the path of a YAML file)"
    )
