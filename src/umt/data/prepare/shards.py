"""Preparing in parts: ``umt prepare DATASET --shard i/n`` on each of n machines (or processes),
each into its own folder, then ``umt prepare DATASET --merge PART ... --out DIR`` on one.

Every part reads the same annotations and numbers the clips the same way (splits in order, clips
by id); clip ``k`` belongs to shard ``k % n``. A part's folder is an ordinary work folder
(``PART/.work``, resumable: run the same command again) holding only its clips, each under its
row in the whole split, and, once the part is finished, ``PART/shard.json``: the settings, the
notes of the annotations, the size of each split and the clips this part skipped. The merge
(:mod:`umt.data.prepare.merge`) writes the folder one process would have written, byte for byte.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

from umt.data.base import SPLITS
from umt.errors import UMTError
from umt.io import write_json

SHARD_FILE = "shard.json"
SHARD_FORMAT = "umt-prepare-shard"


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` (0-based ``i``) as ``(i, n)``.

    Example:
        >>> parse_shard("3/16")
        (3, 16)

    Raises:
        UMTError: not ``i/n`` with ``0 <= i < n``.
    """
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if m is None or not int(m[1]) < int(m[2]):
        raise UMTError(
            f"--shard {text}: expected i/n with 0 <= i < n (0-based: --shard 0/4 ... 3/4 for "
            "four parts)"
        )
    return int(m[1]), int(m[2])


def in_shard(k: int, shard: tuple[int, int] | None) -> bool:
    """Whether clip ``k`` (its place in the whole data set) belongs to ``shard`` (``None``: all).

    Example:
        >>> [k for k in range(7) if in_shard(k, (1, 3))]
        [1, 4]
    """
    return shard is None or k % shard[1] == shard[0]


def write_shard_record(
    out: Path,
    shard: tuple[int, int],
    settings: dict[str, Any],
    *,
    source: str,
    notes: list[str],
    split_sizes: Counter[str],
    done: dict[str, int],
    skipped: list[tuple[str, str, str]],
) -> None:
    """``out/shard.json``: what the merge needs besides the part's work folder."""
    write_json(
        out / SHARD_FILE,
        {
            "format": SHARD_FORMAT,
            "version": 1,
            "shard": list(shard),
            "settings": settings,
            "source": source,
            "notes": notes,
            "split_sizes": {s: split_sizes[s] for s in SPLITS},
            "done": done,
            "skipped": [list(x) for x in skipped],
        },
    )


def read_shard_record(part: Path) -> dict[str, Any]:
    """A finished part's ``shard.json``.

    Raises:
        UMTError: the part does not exist, or has not finished (no ``shard.json``).
    """
    import json

    path = part / SHARD_FILE
    if not path.is_file():
        what = "does not exist" if not part.exists() else f"has no {SHARD_FILE}"
        raise UMTError(
            f"--merge {part}: {what}; it is not a finished part of umt prepare --shard i/n (run "
            "that part's command again: it resumes, then writes shard.json)"
        )
    record: dict[str, Any] = json.loads(path.read_text())
    if record.get("format") != SHARD_FORMAT:
        raise UMTError(f"{path}: not a shard record of umt prepare")
    return record
