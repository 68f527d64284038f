"""The ``umt`` command (``umt = "umt.cli:main"``): thin; it parses arguments and calls the
Python API. ``umt config --describe`` reads each key's documentation from the config
dataclasses' docstrings (``umt.cli.describe``)."""

from umt.cli.main import main

__all__ = ["main"]
