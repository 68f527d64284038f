"""Each recipe's manifest: its class lists (named, versioned, with where each comes from), its
split rules, and the clip counts they should give, as data (``umt/configs/manifests/<recipe>.yaml``).

``umt prepare`` takes the class list and the split rule from here (``--classes NAME``,
``--split NAME``; each manifest states its default) and compares what it prepared against the
expected counts (:mod:`umt.data.prepare.coverage`).

Example:
    >>> m = load_manifest("cremad")
    >>> m.default_split, sorted(m.splits), len(m.class_list().names)
    ('common', ['common', 'speaker-independent'], 6)
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from umt.errors import UMTError

#: Where the manifests lie: one ``<recipe>.yaml`` per shipped recipe (``umt/configs/*.yaml``).
MANIFESTS = Path(__file__).resolve().parents[2] / "configs" / "manifests"
SCHEMA = 1


@dataclass(frozen=True)
class ClassList:
    """A named, versioned list of class names in label order, and where it comes from."""

    name: str
    version: int
    source: str
    names: tuple[str, ...]

    @property
    def tag(self) -> str:
        """``name@version``, as ``prepared.json`` and the coverage report record it."""
        return f"{self.name}@{self.version}"


@dataclass(frozen=True)
class SplitRule:
    """How a data set's clips become train / val / test, and how many each should hold.

    Attributes:
        expected: clips per split as the source distributes them (``train`` / ``val`` /
            ``test`` / ``total``); ``None`` where the count is not fixed.
        val_from: the split val is carved from (its expected count then covers both).
        actors: speaker-independent splits: the actor ids of each split.
    """

    name: str
    rule: str
    expected: dict[str, int] | None
    expected_source: str
    val_from: str | None = None
    actors: dict[str, tuple[str, ...]] | None = None


@dataclass(frozen=True)
class Manifest:
    recipe: str
    dataset: str | None
    title: str
    source: str
    classes: dict[str, ClassList]
    default_classes: str
    splits: dict[str, SplitRule]
    default_split: str

    def class_list(self, name: str | None = None) -> ClassList:
        """The class list ``name`` (``None``: the default).

        Raises:
            UMTError: no list of that name.
        """
        key = self.default_classes if name is None else name
        if key not in self.classes:
            raise UMTError(
                f"--classes {name}: {self.title} has no class list of that name (and no such "
                f"file); the named lists are {sorted(self.classes)} (default "
                f"{self.default_classes}), or give a file of names, one per line"
            )
        return self.classes[key]

    def split_rule(self, name: str | None = None) -> SplitRule:
        """The split rule ``name`` (``None``: the default).

        Raises:
            UMTError: no rule of that name.
        """
        key = self.default_split if name is None else name
        if key not in self.splits:
            raise UMTError(
                f"--split {name}: {self.title} has no split rule of that name; it has "
                f"{sorted(self.splits)} (default {self.default_split})"
            )
        return self.splits[key]


def recipe_name(dataset: str) -> str:
    """The recipe (and manifest) of a ``umt prepare`` data set: ``kinetics-sounds`` ->
    ``kinetics_sounds``."""
    return dataset.replace("-", "_")


@cache
def load_manifest(recipe: str) -> Manifest:
    """The manifest of ``recipe`` (``vggsound``, ``kinetics_sounds`` ...), checked.

    Raises:
        UMTError: no manifest, or one that breaks its schema (a message naming the key).
    """
    path = MANIFESTS / f"{recipe}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in MANIFESTS.glob("*.yaml"))
        raise UMTError(f"no manifest for {recipe!r} in {MANIFESTS}; there are {known}")
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    try:
        return _parse(raw, recipe)
    except (KeyError, TypeError, ValueError) as e:
        raise UMTError(f"{path}: malformed manifest ({type(e).__name__}: {e})") from e


def _parse(raw: dict[str, Any], recipe: str) -> Manifest:
    if raw["manifest"] != SCHEMA or raw["recipe"] != recipe:
        raise ValueError(f"expected manifest: {SCHEMA} and recipe: {recipe}")
    lists = {
        name: ClassList(name, int(c["version"]), str(c["source"]), tuple(map(str, c["names"])))
        for name, c in raw["classes"]["lists"].items()
    }
    for c in lists.values():
        if len(set(c.names)) != len(c.names) or len(c.names) < 2:
            raise ValueError(f"class list {c.name}: names must be unique, at least 2")
    rules = {name: _rule(name, r) for name, r in raw["splits"]["rules"].items()}
    m = Manifest(
        recipe=recipe,
        dataset=raw["dataset"],
        title=str(raw["title"]),
        source=str(raw["source"]),
        classes=lists,
        default_classes=str(raw["classes"]["default"]),
        splits=rules,
        default_split=str(raw["splits"]["default"]),
    )
    if m.default_classes not in lists or m.default_split not in rules:
        raise ValueError("classes.default and splits.default must name a list and a rule")
    return m


def _rule(name: str, r: dict[str, Any]) -> SplitRule:
    expected = r.get("expected")
    if expected is not None:
        expected = {str(k): int(v) for k, v in expected.items()}
        unknown = set(expected) - {"train", "val", "test", "total"}
        parts = sum(v for k, v in expected.items() if k != "total")
        if unknown or ("total" in expected and parts and parts != expected["total"]):
            raise ValueError(f"split rule {name}: expected counts {expected} do not add up")
    actors = r.get("actors")
    if actors is not None:
        actors = {str(s): tuple(str(a) for a in ids) for s, ids in actors.items()}
        seen = [a for ids in actors.values() for a in ids]
        if len(seen) != len(set(seen)) or set(actors) != {"train", "val", "test"}:
            raise ValueError(f"split rule {name}: an actor is in two splits, or a split is missing")
    return SplitRule(
        name,
        " ".join(str(r["rule"]).split()),
        expected,
        " ".join(str(r.get("expected_source", "")).split()),
        r.get("val_from"),
        actors,
    )
