"""What the search tries, and how the values it chose become a study's configuration.

A *unit* of the search is ``teacher-<modality>`` (that modality's uni-modal recipe: encoder kind
where ``model.encoder.name`` is ``auto``, its width, learning rate, weight decay), or a method
(its registry entry's ``search_space`` and its learning rate; UME: its members' weights). A
space maps a key to a :class:`Choice` (values tried) or a :class:`Range` (a float interval,
sampled on a log scale). The configured value of every key is the unit's first trial.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from umt.config import from_dict, set_path, to_dict
from umt.errors import UMTError
from umt.methods import METHODS
from umt.study import StudyConfig

#: The encoders the teacher search tries where ``model.encoder.name`` is ``auto``, by the number
#: of dimensions of one sample: vectors, ``(C, T)`` series, ``(C, H, W)`` images.
KINDS = {1: ("mlp",), 2: ("mlp", "cnn1d"), 3: ("cnn", "mlp")}
#: The width key of each encoder kind and the widths tried.
WIDTHS = {"mlp": ("hidden", (64, 128, 256)), "cnn": ("channels", (8, 16, 32))}
WIDTHS["cnn1d"] = WIDTHS["cnn"]
WEIGHT_DECAYS = (0.0, 1e-5, 1e-4, 1e-3)


@dataclass(frozen=True)
class Choice:
    """One of these values."""

    values: tuple[Any, ...]


@dataclass(frozen=True)
class Range:
    """A float in ``[low, high]``, on a log scale."""

    low: float
    high: float


Space = dict[str, Choice | Range]


def _lr_range(lr: float) -> Range:
    """Learning rates around the configured one: a decade each way."""
    return Range(lr / 10, lr * 10)


def teacher_space(cfg: StudyConfig, m: str, shape: tuple[int, ...], encoders: bool) -> Space:
    """The space of ``teacher-<m>``: encoder kind (where ``auto`` chooses and ``encoders``: the
    study builds the encoder, for classification) and width, learning rate and weight decay;
    ``tune.space.teacher`` on top."""
    train = cfg.train_for(f"teacher-{m}")
    space: Space = {}
    encoder = cfg.model.encoder_of(m)
    kinds = KINDS.get(len(shape), ()) if encoder.name == "auto" and encoders else ()
    if len(kinds) > 1:
        space["encoder"] = Choice(kinds)
    if kinds:
        for kind in kinds:
            key, widths = WIDTHS[kind]
            configured = getattr(encoder, key)
            space[f"{kind}.{key}"] = Choice(tuple(sorted({configured, *widths})))
    space["lr"] = _lr_range(train.lr)
    space["weight_decay"] = Choice(tuple(sorted({train.weight_decay, *WEIGHT_DECAYS})))
    return _override(space, cfg.tune.space.get("teacher", {}), "teacher")


def teacher_first(cfg: StudyConfig, m: str, space: Space, shape: tuple[int, ...]) -> dict[str, Any]:
    """The configured values of ``teacher-<m>``'s keys: the unit's first trial."""
    train, encoder = cfg.train_for(f"teacher-{m}"), cfg.model.encoder_of(m)
    kind = (
        encoder.name if encoder.name != "auto" else {1: "mlp", 2: "mlp", 3: "cnn"}.get(len(shape))
    )
    first: dict[str, Any] = {"lr": train.lr, "weight_decay": train.weight_decay}
    if "encoder" in space:
        first["encoder"] = kind
    for key in space:
        if "." in key and key.split(".")[0] == kind:
            first[key] = getattr(encoder, key.split(".")[1])
    return first


def method_space(cfg: StudyConfig, method: str, modalities: tuple[str, ...]) -> Space:
    """The space of a method: its learning rate and its registry entry's ``search_space``
    (UME: each member's weight and the combination); ``tune.space.<method>`` on top."""
    spec = METHODS[method]
    space: Space = {}
    if spec.build is None:  # UME trains nothing: its members' weights
        space = {f"weights.{m}": Choice((0.25, 0.5, 1.0, 2.0, 4.0)) for m in modalities}
        space["combine"] = Choice(("probs", "logits"))
    else:
        space["train.lr"] = _lr_range(cfg.train_for(method).lr)
        space.update({k: Choice(tuple(v)) for k, v in spec.search_space.items() if k != "train.lr"})
    return _override(space, cfg.tune.space.get(method, {}), method)


def method_first(cfg: StudyConfig, method: str, space: Space) -> dict[str, Any]:
    """The configured values of a method's keys: the unit's first trial."""
    first: dict[str, Any] = {}
    settings = cfg.settings(method)
    for key in space:
        if key.startswith("train."):
            first[key] = getattr(cfg.train_for(method), key.removeprefix("train."))
        elif key.startswith("weights."):
            first[key] = (settings.weights or {}).get(key.removeprefix("weights."), 1.0)
        else:
            first[key] = getattr(settings, key)
    return first


def _override(space: Space, given: Mapping[str, Any], unit: str) -> Space:
    out = dict(space)
    for key, values in given.items():
        if key not in space and not (unit != "teacher" and key.startswith("train.")):
            raise UMTError(
                f"tune.space.{unit}.{key}: not a searched key of {unit}; expected one of "
                f"{sorted(space)} (or train.<field>)"
            )
        out[key] = Choice(tuple(values))
    return out


def with_teacher(cfg: StudyConfig, m: str, values: Mapping[str, Any]) -> StudyConfig:
    """``cfg`` with ``teacher-<m>``'s values: its recipe (``recipes.teacher-<m>``) and the
    encoder of modality m for every stage (``model.modality.<m>``)."""
    recipes = {k: dict(v) for k, v in cfg.recipes.items()}
    recipe = recipes.setdefault(f"teacher-{m}", {})
    for key in ("lr", "weight_decay"):
        if key in values:
            recipe[key] = values[key]
    modality = {k: dict(v) for k, v in cfg.model.modality.items()}
    kind = values.get("encoder")
    for key, value in values.items():
        if "." in key and (kind is None or key.split(".")[0] == kind):
            modality.setdefault(m, {})[key.split(".")[1]] = value
    if kind is not None:
        modality.setdefault(m, {})["name"] = kind
    model = from_dict(type(cfg.model), {**to_dict(cfg.model), "modality": modality}, prefix="model")
    return dataclasses.replace(cfg, recipes=recipes, model=model)


def with_method(cfg: StudyConfig, method: str, values: Mapping[str, Any]) -> StudyConfig:
    """``cfg`` with a method's values: ``train.<field>`` into its recipe, the rest (``weights.<m>``
    included) into its settings, each converted and checked as the YAML would be."""
    recipes = {k: dict(v) for k, v in cfg.recipes.items()}
    section = cfg.settings(method)
    plain: dict[str, Any] = to_dict(section) if section is not None else {}
    for key, value in values.items():
        if key.startswith("train."):
            recipes.setdefault(method, {})[key.removeprefix("train.")] = value
        elif section is None:
            raise UMTError(f"tune.space.{method}.{key}: {method} has only train.<field> keys")
        else:
            set_path(plain, key.split("."), value, what=f"tune.space.{method}.{key}")
    changes: dict[str, Any] = {"recipes": recipes}
    if section is not None:
        changes[method] = from_dict(type(section), plain, prefix=method)
    new = dataclasses.replace(cfg, **changes)
    new.train_for(method)  # the recipe's values checked now
    return new


def at_edge(space: Space, chosen: Mapping[str, Any]) -> list[str]:
    """The numeric keys whose chosen value lies at an end of what could be tried: the smallest or
    largest of a :class:`Choice`, or the outer tenth (on the log scale) of a :class:`Range`.

    Example:
        >>> at_edge({"w": Choice((1.0, 5.0, 20.0)), "lr": Range(1e-4, 1e-2)}, {"w": 20.0, "lr": 1e-3})
        ['w']
    """
    found = []
    for key, value in chosen.items():
        dist = space.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float) or dist is None:
            continue
        if isinstance(dist, Choice):
            numbers = [v for v in dist.values if isinstance(v, int | float)]
            if len(set(numbers)) >= 2 and value in (min(numbers), max(numbers)):
                found.append(key)
        elif value > 0:
            share = (math.log(value) - math.log(dist.low)) / (
                math.log(dist.high) - math.log(dist.low)
            )
            if share < 0.1 or share > 0.9:
                found.append(key)
    return found


def settings_of(chosen: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The configuration layer (as YAML would give it) that sets each unit's chosen values:
    what a built-in data set ships as its recipe (``umt/configs/recipes/``).

    Example:
        >>> settings_of({"teacher-a": {"encoder": "mlp", "mlp.hidden": 64, "lr": 0.003},
        ...              "umt": {"train.lr": 0.002, "weight": 20.0}})  # doctest: +NORMALIZE_WHITESPACE
        {'recipes': {'teacher-a': {'lr': 0.003}, 'umt': {'lr': 0.002}},
         'model': {'modality': {'a': {'name': 'mlp', 'hidden': 64}}}, 'umt': {'weight': 20.0}}
    """
    out: dict[str, Any] = {}
    for unit, values in chosen.items():
        if unit.startswith("teacher-"):
            m, kind = unit.removeprefix("teacher-"), values.get("encoder")
            recipe = {k: v for k, v in values.items() if k in ("lr", "weight_decay")}
            out.setdefault("recipes", {})[unit] = recipe
            encoder = {"name": kind} if kind is not None else {}
            for key, value in values.items():
                if "." in key and (kind is None or key.split(".")[0] == kind):
                    encoder[key.split(".")[1]] = value
            if encoder:
                out.setdefault("model", {}).setdefault("modality", {})[m] = encoder
            continue
        for key, value in values.items():
            if key.startswith("train."):
                out.setdefault("recipes", {}).setdefault(unit, {})[key[6:]] = value
            else:
                set_path(out.setdefault(unit, {}), key.split("."), value, what=f"{unit}.{key}")
    return out
