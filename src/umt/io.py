"""Atomic writes: a file (or a folder) is either absent or complete, never half-written.

Example:
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     write_json(Path(tmp) / "a" / "b.json", {"x": 1})
    ...     with atomic_dir(Path(tmp) / "c") as part:
    ...         write_text(part / "d.txt", "hi\\n", shared=True)
    ...     sorted(p.relative_to(tmp).as_posix() for p in Path(tmp).rglob("*"))
    ['a', 'a/b.json', 'c', 'c/d.txt']
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import torch

# O_EXCL: never write into a file someone else created; the rest as tempfile.mkstemp opens.
_FLAGS = (
    os.O_WRONLY
    | os.O_CREAT
    | os.O_EXCL
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_BINARY", 0)
)


def _atomic(path: str | Path, write: Callable[[IO[bytes]], None], *, shared: bool = False) -> None:
    """Write ``path`` through ``write`` into a temporary file beside it, flushed to disk, then
    renamed over ``path``. ``shared``: see :func:`write_bytes`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    # The mode is reduced by the umask, as for open(): 0o600 is mkstemp's private file, 0o666 an
    # ordinary one (readable by others where the umask allows).
    fd = os.open(tmp, _FLAGS, 0o666 if shared else 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # atomic on POSIX within one file system
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes(path: str | Path, data: bytes, *, shared: bool = False) -> None:
    """Write ``data`` to ``path`` atomically (parent folders are created).

    Args:
        path: the file to write.
        data: its whole content.
        shared: give the file the permissions an ordinary ``open()`` gives (readable by others
            where the umask allows), as a data folder is often shared; by default it is private
            to its owner (mode 0o600), as run directories' files are.
    """
    _atomic(path, lambda f: f.write(data), shared=shared)  # type: ignore[arg-type, return-value]


def write_text(path: str | Path, text: str, *, shared: bool = False) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically; ``shared`` as in :func:`write_bytes`."""
    write_bytes(path, text.encode(), shared=shared)


def write_json(path: str | Path, obj: Any, *, shared: bool = False) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically; ``shared`` as in
    :func:`write_bytes`."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n", shared=shared)


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def save_torch(path: str | Path, obj: Any) -> None:
    _atomic(path, lambda f: torch.save(obj, f))


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """A folder written under a temporary name beside ``path`` (``.<name>.partial``) and renamed
    to ``path`` when the block ends without an error, replacing a folder already there: ``path``
    is never half-written (it is the previous folder, absent for a moment, or the complete new
    one). An error removes the temporary folder; one left by a killed process is removed the next
    time.

    Yields:
        The temporary folder to write into (created, empty).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if path.exists():
        shutil.rmtree(path)
    os.rename(tmp, path)
