"""Atomic writes: a file (or a folder) is either absent or complete, never half-written; and the
fault points the crash-and-resume tests kill a process at (``UMT_FAULT``, at the end).

Example:
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     write_json(Path(tmp) / "a" / "b.json", {"x": 1})
    ...     with atomic_dir(Path(tmp) / "c") as part:
    ...         write_text(part / "d.txt", "hi\\n")
    ...     sorted(p.relative_to(tmp).as_posix() for p in Path(tmp).rglob("*"))
    ['a', 'a/b.json', 'c', 'c/d.txt']
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import secrets
import shutil
import signal
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


#: The temporary files :func:`write_with` writes beside their target: ``.<name>.<8 hex>.tmp``.
TEMP_NAME = re.compile(r"\..+\.[0-9a-f]{8}\.tmp")


def _temp_path(path: Path) -> Path:
    """A fresh temporary name beside ``path`` (matches :data:`TEMP_NAME`).

    Example:
        >>> bool(TEMP_NAME.fullmatch(_temp_path(Path("run/summary.json")).name))
        True
    """
    return path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")


def remove_stale_temps(root: str | Path) -> list[Path]:
    """Delete the temporary files :func:`write_with` left under ``root`` when its process was
    killed mid-write (``kill -9``: no ``except`` ran). Only regular files named as the writer
    names them (:data:`TEMP_NAME`) go; every other file stays. Call it only where no writer can be
    running (e.g. holding the study's lock).

    Returns:
        The files removed.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     for name in (".a.json.0123abcd.tmp", ".a.json.0123ABCD.tmp", "a.json.0123abcd.tmp"):
        ...         _ = Path(tmp, name).write_text("")
        ...     [p.name for p in remove_stale_temps(tmp)], sorted(os.listdir(tmp))
        (['.a.json.0123abcd.tmp'], ['.a.json.0123ABCD.tmp', 'a.json.0123abcd.tmp'])
    """
    removed = []
    for folder, _, files in os.walk(root):  # symlinked folders are not followed
        for name in files:
            path = Path(folder, name)
            if TEMP_NAME.fullmatch(name) and path.is_file() and not path.is_symlink():
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed


def write_with(path: str | Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write ``path`` through ``write(f)`` into a temporary file beside it, flushed to disk,
    then renamed over ``path`` (parent folders are created).

    The file gets the permissions an ordinary ``open()`` gives (``0o666`` less the umask), so a
    shared run directory or data folder is readable by the group where the umask allows.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    number = _next_write()
    tmp = _temp_path(path)
    try:
        fd = os.open(tmp, _FLAGS, 0o666)  # reduced by the umask, as for open()
    except OSError as e:
        raise OSError(e.errno, e.strerror, str(path)) from e  # the file meant, not its temporary
    try:
        with os.fdopen(fd, "wb") as f:
            watched = _Watched(f, f"write:{number}", str(path))
            try:
                write(watched)  # type: ignore[arg-type]  # a file object in all that is used
            except Exception as e:
                if watched.error is None or watched.error is e:
                    raise
                raise watched.error from e  # e.g. torch's "unexpected pos" on a full disk
            disk_full_point(path, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # atomic on POSIX within one file system
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError) and e.errno is not None and e.filename is None:
            raise OSError(e.errno, e.strerror, str(path)) from e  # name the file being written
        raise
    fault_point(f"written:{number}", str(path))


class _Watched:
    """The file a writer (``torch.save``, ``np.save``, ``f.write``) writes into: it keeps the
    ``OSError`` of a failed write (a full disk: ``torch.save`` turns it into a ``RuntimeError``,
    "unexpected pos", that names neither the cause nor the file), and it is where the fault
    point ``write:<n>`` kills the process, inside the writer, after its first bytes."""

    def __init__(self, f: IO[bytes], point: str, path: str) -> None:
        self.f, self.point, self.path, self.error = f, point, path, None
        self.started = False

    def write(self, data: bytes) -> int:
        try:
            n = self.f.write(data)
        except OSError as e:
            self.error = e  # type: ignore[assignment]
            raise
        if not self.started:
            self.started = True
            if fault_active(self.point):
                self.f.flush()  # the first bytes reach the temporary file: killed mid-write
            fault_point(self.point, self.path)
        return n

    def __getattr__(self, name: str) -> Any:
        return getattr(self.f, name)


def write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`write_with`)."""
    write_with(path, lambda f: f.write(data))  # type: ignore[arg-type, return-value]


def write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    write_bytes(path, text.encode())


def write_json(path: str | Path, obj: Any) -> None:
    """``obj`` as strict JSON: a NaN or infinite number (no JSON value) is written as ``null``."""
    text = json.dumps(finite_json(obj), indent=2, sort_keys=False, allow_nan=False)
    write_text(path, text + "\n")


def finite_json(obj: Any) -> Any:
    """``obj`` with every NaN or infinite float replaced by ``None`` (JSON ``null``).

    Example:
        >>> finite_json({"a": float("nan"), "b": [1.5, float("inf")]})
        {'a': None, 'b': [1.5, None]}
    """
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite_json(v) for v in obj]
    return obj


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def save_torch(path: str | Path, obj: Any) -> None:
    write_with(path, lambda f: torch.save(obj, f))


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


# -- Fault injection, for the crash-and-resume tests: kill this process at a named point. -------
#
# Set ``UMT_FAULT`` to a comma-separated list of points, e.g.
# ``UMT_FAULT=step:seed0/joint:30`` (at training step 30 of that stage),
# ``checkpoint:seed0/joint:2`` (while the checkpoint of epoch 2 is being written) or
# ``done:seed0/teacher-weak`` (right after that stage is marked finished), ``write:12`` (inside
# the process's 12th atomic write, after its first bytes: e.g. inside ``torch.save``) or
# ``written:12`` (right after it is renamed into place); ``nan:seed0/joint:30`` makes that step's
# loss NaN instead (divergence). ``UMT_FAULT_SIGNAL`` is ``KILL`` (default), ``TERM`` or ``INT``
# (Ctrl-C). ``diskfull:best.ckpt`` makes the atomic writer (``umt.io``) fail as a full disk would,
# half-way through every file of that name (``OSError`` ENOSPC). ``UMT_FAULT_TRACE=FILE`` lists
# every point reached in FILE. Unset, these calls cost two dictionary lookups.


def fault_active(point: str) -> bool:
    """Whether ``point`` is listed in ``UMT_FAULT``."""
    wanted = os.environ.get("UMT_FAULT")
    return bool(wanted) and point in wanted.split(",")  # type: ignore[union-attr]


_SIGNALS = {"TERM": signal.SIGTERM, "INT": signal.SIGINT}
_writes = 0  # atomic writes so far in this process (the fault points write:<n>, written:<n>)


def _next_write() -> int:
    global _writes
    _writes += 1
    return _writes


def fault_point(point: str, detail: str = "") -> None:
    """Kill the process with the configured signal if ``point`` is listed in ``UMT_FAULT``.

    With ``UMT_FAULT_TRACE`` set to a file, every point reached is appended to it, one a line
    with its ``detail`` (e.g. the file being written): the tests read it to kill a run at each."""
    trace = os.environ.get("UMT_FAULT_TRACE")
    if trace:
        with open(trace, "a") as f:
            f.write(f"{point} {detail}".rstrip() + "\n")
    if not fault_active(point):
        return
    os.kill(os.getpid(), _SIGNALS.get(os.environ.get("UMT_FAULT_SIGNAL", ""), signal.SIGKILL))


def disk_full_point(path: Path, f: IO[bytes]) -> None:
    """Fail like a full disk, half-way through ``f`` (being written as ``path``), if
    ``diskfull:<file name>`` is listed in ``UMT_FAULT``."""
    if not fault_active(f"diskfull:{path.name}"):
        return
    f.truncate(f.tell() // 2)
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
