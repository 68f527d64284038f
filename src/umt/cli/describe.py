"""What each configuration key means, read from the config dataclasses' docstrings (their
Google-style ``Attributes:`` or ``Args:`` sections), and the configuration as YAML with a
``# comment`` above every key (``umt config --describe``).

Example:
    >>> @dataclasses.dataclass
    ... class Inner:
    ...     '''Inner settings.
    ...
    ...     Attributes:
    ...         lr: the learning rate.
    ...         step_size, gamma: the step schedule
    ...             (decay ``gamma`` every ``step_size`` epochs).
    ...     '''
    ...     lr: float = 0.1
    ...     step_size: int = 2
    ...     gamma: float = 0.5
    >>> @dataclasses.dataclass
    ... class Outer:
    ...     inner: Inner = dataclasses.field(default_factory=Inner)
    >>> describe(Outer)["inner.gamma"]
    'the step schedule (decay ``gamma`` every ``step_size`` epochs).'
    >>> print(described_yaml(Outer()))
    # Inner settings.
    inner:
      # the learning rate.
      lr: 0.1
      # the step schedule (decay ``gamma`` every ``step_size`` epochs).
      step_size: 2
      # the step schedule (decay ``gamma`` every ``step_size`` epochs).
      gamma: 0.5
    <BLANKLINE>
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import textwrap
import typing
from typing import Any

import yaml

from umt.config import to_dict

_SECTION = re.compile(r"^(?:Attributes|Args):[ \t]*$")
_ENTRY = re.compile(r"^    ([A-Za-z_][\w]*(?:, *(?:[A-Za-z_]\w*|\.\.\.))*):\s*(.*)$")


def _summary_line(cls: type) -> str:
    """The first paragraph of ``cls``'s docstring, on one line."""
    doc = inspect.getdoc(cls) or ""
    return " ".join(doc.split("\n\n", 1)[0].split())


def attribute_docs(cls: type) -> dict[str, str]:
    """Field name -> its one-line description in ``cls``'s docstring (and its bases'):
    ``name: text`` entries of the ``Attributes:``/``Args:`` section, continuation lines
    joined; ``a, b: text`` describes both fields."""
    out: dict[str, str] = {}
    for klass in reversed(cls.__mro__):  # a subclass's entry wins over its base's
        lines = (inspect.getdoc(klass) or "").splitlines() if "__doc__" in vars(klass) else []
        names: list[str] = []
        inside = False
        for line in lines:
            if _SECTION.match(line):
                inside, names = True, []
                continue
            if not inside:
                continue
            if line and not line.startswith(" "):  # the next section (``Example:``)
                inside = False
                continue
            entry = _ENTRY.match(line)
            if entry:
                names = [n.strip() for n in entry.group(1).split(",") if n.strip() != "..."]
                for n in names:
                    out[n] = entry.group(2).strip()
            elif line.startswith("        ") and names:
                for n in names:
                    out[n] = f"{out[n]} {line.strip()}"
    return out


def _hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except Exception:  # an annotation that does not resolve: the field is then a leaf
        return {}


def describe(cls: type, prefix: str = "") -> dict[str, str]:
    """Dotted key -> description for every field of the dataclass ``cls``, nested sections
    included. A field without an entry of its own is described by its section's class
    summary (a dataclass), or by the entry that names it in double backquotes; otherwise ""."""
    docs = attribute_docs(cls)
    hints = _hints(cls)
    out: dict[str, str] = {}
    for f in dataclasses.fields(cls):
        key = prefix + f.name
        tp = hints.get(f.name)
        if not dataclasses.is_dataclass(tp) and dataclasses.is_dataclass(f.default_factory):
            tp = f.default_factory  # a section whose annotation did not resolve
        text = docs.get(f.name, "")
        if not text and dataclasses.is_dataclass(tp):
            text = _summary_line(tp)  # type: ignore[arg-type]
        if not text:
            text = next((f"see ``{n}``: {t}" for n, t in docs.items() if f"``{f.name}``" in t), "")
        out[key] = text
        if dataclasses.is_dataclass(tp):
            out.update(describe(tp, key + "."))  # type: ignore[arg-type]
    return out


def leaf_keys(obj: Any, prefix: str = "") -> list[str]:
    """Dotted keys of the settings of the dataclass instance ``obj`` (not its sections)."""
    keys = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            keys += leaf_keys(value, f"{prefix}{f.name}.")
        else:
            keys.append(prefix + f.name)
    return keys


def described_yaml(obj: Any, width: int = 100) -> str:
    """``obj`` (a config dataclass instance) as YAML, each key preceded by ``# description``
    (wrapped at ``width``): ``yaml.safe_load`` of the text gives ``to_dict(obj)``."""
    docs = describe(type(obj))
    lines: list[str] = []

    def emit(value: Any, prefix: str, indent: str) -> None:
        for f in dataclasses.fields(value):
            key, item = prefix + f.name, getattr(value, f.name)
            text = docs.get(key) or "(no description)"
            wrap = textwrap.wrap(text, width=max(40, width - len(indent) - 2))
            lines.extend(f"{indent}# {w}" for w in wrap)
            if dataclasses.is_dataclass(item):
                lines.append(f"{indent}{f.name}:")
                emit(item, key + ".", indent + "  ")
            else:
                # A free-form value (a mapping of modality or method names) on one line: its
                # keys are data, not settings with a description of their own.
                plain = to_dict(item)
                if isinstance(plain, dict | list):
                    flow = yaml.safe_dump(
                        plain, sort_keys=False, default_flow_style=True, width=10**6
                    )
                    dumped = f"{f.name}: {flow.strip()}"
                else:
                    dumped = yaml.safe_dump({f.name: plain}, sort_keys=False)
                lines.extend(indent + ln for ln in dumped.rstrip("\n").splitlines())

    emit(obj, "", "")
    return "\n".join(lines) + "\n"
