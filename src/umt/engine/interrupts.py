"""Ctrl-C and SIGTERM inside training reach the caller.

Lightning catches a ``KeyboardInterrupt`` inside ``trainer.fit``, shuts down, and calls
``sys.exit(1)``: the ``umt`` command's own handling (exit 130 or 143, "run the same command again
to resume") never sees it, and the process ends with status 1 and nothing said. It also leaves
Ctrl-C ignored for the rest of the process. :func:`passing_interrupts` undoes both.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def passing_interrupts() -> Iterator[None]:
    """Run a Lightning call so that an interrupt inside it is raised again to the caller as the
    ``KeyboardInterrupt`` it was (a SIGTERM handler's subclass included), not ``SystemExit(1)``;
    the Ctrl-C handler is restored afterwards.

    Example:
        >>> import sys
        >>> try:
        ...     with passing_interrupts():
        ...         try:
        ...             raise KeyboardInterrupt
        ...         except KeyboardInterrupt:
        ...             sys.exit(1)  # what Lightning does
        ... except KeyboardInterrupt:
        ...     print("interrupted")
        interrupted
    """
    main = threading.current_thread() is threading.main_thread()
    sigint = signal.getsignal(signal.SIGINT) if main else None
    try:
        yield
    except SystemExit as e:
        if isinstance(e.__context__, KeyboardInterrupt):
            raise e.__context__ from None
        raise
    finally:
        if main and sigint is not None:
            signal.signal(signal.SIGINT, sigint)  # Lightning leaves Ctrl-C ignored (SIG_IGN)
