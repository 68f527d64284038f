"""Every test in this folder is marked ``e2e``: whole studies run as a user runs them (science
claims, crash and resume, DDP, workers, the examples, the benchmark suite). They are part of the
default run; ``pytest -m "not e2e and not slow"`` is the quick run without them."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent


@pytest.hookimpl(tryfirst=True)  # before ``-m`` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.e2e)
