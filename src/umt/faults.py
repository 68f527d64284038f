"""Fault injection for the crash-and-resume tests: kill this process at a named point.

Set ``UMT_FAULT`` to a comma-separated list of points, e.g.
``UMT_FAULT=step:seed0/joint:30`` (at training step 30 of that stage),
``checkpoint:seed0/joint:2`` (while the checkpoint of epoch 2 is being written) or
``done:seed0/teacher-weak`` (right after that stage is marked finished); ``nan:seed0/joint:30``
makes that step's loss NaN instead (divergence). ``UMT_FAULT_SIGNAL`` is
``KILL`` (default) or ``TERM``. Unset, these calls cost one dictionary lookup.
"""

from __future__ import annotations

import os
import signal


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
