"""The project's one exception type: a message a user can act on."""

from __future__ import annotations


class UMTError(Exception):
    """An error with a message meant for the user: what was wrong, where, and what was expected.

    The CLI prints it without a traceback (unless ``--debug``).
    """
