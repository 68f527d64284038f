"""Atomic writes: a file is either absent or complete, never half-written."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch


def _atomic(path: str | Path, write: Callable[[IO[bytes]], None]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # atomic on POSIX within one file system
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_bytes(path: str | Path, data: bytes) -> None:
    _atomic(path, lambda f: f.write(data))  # type: ignore[arg-type, return-value]


def write_text(path: str | Path, text: str) -> None:
    write_bytes(path, text.encode())


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def save_torch(path: str | Path, obj: Any) -> None:
    _atomic(path, lambda f: torch.save(obj, f))


# --------------------------------------------------------------------------------------------
# Files others read (a data folder is often shared): open()'s permissions, durable renames.


def write_shared(path: str | Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write ``path`` atomically through ``write(f)``, with the permissions ``open`` gives a new
    file (``0o666`` less the umask) rather than the temporary file's ``0o600``.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     write_shared(f"{tmp}/a.txt", lambda f: None)
        ...     os.stat(f"{tmp}/a.txt").st_mode & 0o777 == 0o666 & ~_umask()
        True
    """

    def shared(f: IO[bytes]) -> None:
        if os.name == "posix":
            os.fchmod(f.fileno(), 0o666 & ~_umask())
        write(f)

    _atomic(path, shared)


def _umask() -> int:
    # os.umask can only be read by setting it; set it straight back (process-wide, for an instant).
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def fsync_dir(path: str | Path) -> None:
    """Make the entries of the folder ``path`` (files created or renamed in it) durable; a no-op
    where the file system cannot sync a folder."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot sync a directory
    finally:
        os.close(fd)
