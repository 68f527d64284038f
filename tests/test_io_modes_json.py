"""The atomic writers (second set, from the reliability pass): files readable as the umask says, JSON always strict."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from umt.io import save_torch, write_json, write_text


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_written_files_respect_the_umask(tmp_path: Path, umask: int, mode: int) -> None:
    old = os.umask(umask)
    try:
        write_text(tmp_path / "report.md", "x")
        write_json(tmp_path / "summary.json", {"a": 1})
        save_torch(tmp_path / "model.pt", {"w": 1})
    finally:
        os.umask(old)
    for name in ("report.md", "summary.json", "model.pt"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode, name


def _strict(text: str) -> object:
    def refuse(constant: str) -> None:
        raise ValueError(f"bare {constant} in JSON")

    return json.loads(text, parse_constant=refuse)


def test_json_never_holds_a_bare_nan(tmp_path: Path) -> None:
    obj = {"val": float("nan"), "runs": [1.5, float("inf"), -float("inf")], "n": {"x": 2}}
    write_json(tmp_path / "s.json", obj)
    assert _strict((tmp_path / "s.json").read_text()) == {
        "val": None,
        "runs": [1.5, None, None],
        "n": {"x": 2},
    }
