"""Shared test settings: one CPU thread (tiny models train fastest so, and runs are repeatable)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from umt.models.encoders import MLPEncoder
from umt.models.fusion import build_fusion
from umt.models.multimodal import MultimodalModel

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


@pytest.fixture
def easy_overrides(tiny_overrides: list[str]) -> list[str]:
    """The tiny study on data it learns in two epochs: 4 classes, one prototype each (chance
    0.25). Measured over training seeds 0-4 with ``methods`` at the default: every stage's test
    accuracy 0.50-1.00, the strong teacher's probe 0.93-1.00 (the ten-class default of
    ``tiny_overrides`` stays at 0.10-0.30, too close to chance to tell learning from noise)."""
    return [*tiny_overrides, "data.synthetic.clusters=1", "data.synthetic.num_classes=4"]


def assert_summary_is_the_stage_results(run_dir: Path, summary: dict[str, Any]) -> None:
    """``summary.json``'s numbers are the stage directories' own, recomputed.

    For every method and seed: the per-sample test outcomes (``test-outcomes.npy``) average to the
    stage's ``result.json`` test accuracy, which is the summary's per-seed value; the summary's
    mean (and std) are those values'; the per-modality accuracies and the probes' test accuracies
    (``probe.json``) likewise.
    """
    seeds = list(summary["per_seed"])
    assert seeds, "no seed in the summary"

    def check(entry: dict[str, Any], values: list[float], what: str) -> None:
        assert entry["values"] == pytest.approx(values, abs=1e-9), what
        assert entry["mean"] == pytest.approx(statistics.fmean(values), abs=1e-9), what
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        assert entry["std"] == pytest.approx(std, abs=1e-9), what

    for method, entry in summary["methods"].items():
        results = [
            json.loads((run_dir / f"seed{s}" / method / "result.json").read_text()) for s in seeds
        ]
        for s, result in zip(seeds, results, strict=True):
            outcomes = np.load(run_dir / f"seed{s}" / method / "test-outcomes.npy")
            assert outcomes.ndim == 1 and set(np.unique(outcomes)) <= {0, 1}, method
            assert float(outcomes.mean()) == pytest.approx(result["test_acc"], abs=1e-6), method
            assert summary["per_seed"][s]["stages"][method]["test_acc"] == result["test_acc"]
        check(entry["test_acc"], [r["test_acc"] for r in results], f"{method} test_acc")
        check(entry["val_acc"], [r["val_acc"] for r in results], f"{method} val_acc")
        for m, per_modality in entry.get("modality_test_acc", {}).items():
            values = [r["modality_test_acc"][m] for r in results]
            check(per_modality, values, f"{method} modality_test_acc {m}")
    for m, owners in summary["probes"].items():
        for owner, entry in owners.items():
            stage = f"teacher-{m}" if owner == "teacher" else owner
            probes = [
                json.loads((run_dir / f"seed{s}" / stage / "probe.json").read_text()) for s in seeds
            ]
            check(entry, [p["encoders"][m]["test_acc"] for p in probes], f"probe {m} {stage}")


#: Input sizes of the tiny vector modalities of the peers' unit tests.
DIMS = {"a": 5, "v": 6, "t": 4}


def tiny_fusion_model(
    modalities: tuple[str, ...] = ("a", "v"), feature_dim: int = 4
) -> MultimodalModel:
    """A seeded MLP-encoder concat-fusion model over :data:`DIMS`' modalities, 3 classes."""
    torch.manual_seed(0)
    encoders = nn.ModuleDict(
        {m: MLPEncoder((DIMS[m],), feature_dim=feature_dim, hidden=8) for m in modalities}
    )
    fusion = build_fusion("concat", {m: feature_dim for m in modalities})
    return MultimodalModel(encoders, fusion, nn.Linear(feature_dim * len(modalities), 3))
