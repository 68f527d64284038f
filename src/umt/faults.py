"""Fault injection for the crash-and-resume tests: kill this process at a named point.

Set ``UMT_FAULT`` to a comma-separated list of points, e.g.
``UMT_FAULT=step:seed0/joint:30`` (at training step 30 of that stage),
``checkpoint:seed0/joint:2`` (while the checkpoint of epoch 2 is being written) or
``done:seed0/teacher-weak`` (right after that stage is marked finished); ``nan:seed0/joint:30``
makes that step's loss NaN instead (divergence). ``UMT_FAULT_SIGNAL`` is
``KILL`` (default) or ``TERM``. ``diskfull:best.ckpt`` makes the atomic writer (``umt.io``) fail
as a full disk would, half-way through every file of that name (``OSError`` ENOSPC). Unset, these
calls cost one dictionary lookup.
"""

from __future__ import annotations

import errno
import os
import signal
from pathlib import Path
from typing import IO


def fault_active(point: str) -> bool:
    """Whether ``point`` is listed in ``UMT_FAULT``."""
    wanted = os.environ.get("UMT_FAULT")
    return bool(wanted) and point in wanted.split(",")  # type: ignore[union-attr]


def fault_point(point: str) -> None:
    """Kill the process with the configured signal if ``point`` is listed in ``UMT_FAULT``."""
    if not fault_active(point):
        return
    sig = signal.SIGTERM if os.environ.get("UMT_FAULT_SIGNAL") == "TERM" else signal.SIGKILL
    os.kill(os.getpid(), sig)


def disk_full_point(path: Path, f: IO[bytes]) -> None:
    """Fail like a full disk, half-way through ``f`` (being written as ``path``), if
    ``diskfull:<file name>`` is listed in ``UMT_FAULT``."""
    if not fault_active(f"diskfull:{path.name}"):
        return
    f.truncate(f.tell() // 2)
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
