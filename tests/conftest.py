"""Shared test settings: one CPU thread (tiny models train fastest so, and runs are repeatable)."""

from __future__ import annotations

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture
def tiny_overrides() -> list[str]:
    """A study that trains in seconds: small synthetic data, two epochs, one seed."""
    return [
        "seeds=[0]",
        "data.name=synthetic",
        "train.epochs=2",
        "train.lr=0.01",
        "train.progress=false",
        "train.threads=1",
        "data.synthetic.n_train=200",
        "data.synthetic.n_val=100",
        "data.synthetic.n_test=100",
        "model.encoder.hidden=32",
        "model.encoder.feature_dim=16",
        "model.head_hidden=16",
        "probe.max_iter=20",
    ]
