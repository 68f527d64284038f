"""umt.io: atomic files (with the permissions open() gives, as the umask says), atomic folders, and
JSON always strict."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from umt.io import atomic_dir, read_json, save_torch, write_json, write_text, write_with


@pytest.fixture
def umask_027() -> Iterator[None]:
    old = os.umask(0o027)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_files_follow_the_umask_as_open_makes_them(tmp_path: Path, umask_027: None) -> None:
    # Results in a shared group folder must be readable by the group (issue 16).
    write_json(tmp_path / "run" / "a.json", {"x": [1, 2]})
    write_text(tmp_path / "data" / "b.txt", "b\n")
    assert read_json(tmp_path / "run" / "a.json") == {"x": [1, 2]}
    assert (tmp_path / "data" / "b.txt").read_text() == "b\n"
    assert _mode(tmp_path / "run" / "a.json") == 0o640  # 0o666 less the umask 0o027
    assert _mode(tmp_path / "data" / "b.txt") == 0o640


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    write_text(path, "old")

    def fail(f: object) -> None:
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        write_with(path, fail)
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_atomic_dir_replaces_a_folder_whole_or_not_at_all(tmp_path: Path) -> None:
    out = tmp_path / "train"
    out.mkdir()
    (out / "stale.npy").write_bytes(b"1")
    with pytest.raises(KeyboardInterrupt):
        with atomic_dir(out) as part:
            (part / "audio.npy").write_bytes(b"2")
            raise KeyboardInterrupt
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train"]  # no .train.partial
    assert sorted(p.name for p in out.iterdir()) == ["stale.npy"]
    (tmp_path / ".train.partial").mkdir()  # left by a killed process
    (tmp_path / ".train.partial" / "junk").write_bytes(b"")
    with atomic_dir(out) as part:
        assert part == tmp_path / ".train.partial" and not any(part.iterdir())
        (part / "audio.npy").write_bytes(b"2")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train"]
    assert sorted(p.name for p in out.iterdir()) == ["audio.npy"]


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
