"""Shared test settings: one CPU thread (tiny models train fastest so, and runs are repeatable),
and the tiny studies' overrides. Shared functions that are not fixtures: ``tests/helpers/``."""

from __future__ import annotations

import pytest
import torch
from helpers.runs import TINY

torch.set_num_threads(1)


@pytest.fixture
def tiny_overrides() -> list[str]:
    """A study that trains in seconds: small synthetic data, two epochs, one seed."""
    return [o for o in TINY if o != "jobs=1"]  # jobs: the study's default


@pytest.fixture
def easy_overrides(tiny_overrides: list[str]) -> list[str]:
    """The tiny study on data it learns in two epochs: 4 classes, one prototype each (chance
    0.25). Measured over training seeds 0-4 with ``methods`` at the default: every stage's test
    accuracy 0.50-1.00, the strong teacher's probe 0.93-1.00 (the ten-class default of
    ``tiny_overrides`` stays at 0.10-0.30, too close to chance to tell learning from noise)."""
    return [*tiny_overrides, "data.synthetic.clusters=1", "data.synthetic.num_classes=4"]
