"""What tests in several folders share: the repository's root, a silent study log, random
batches, and the check that a study's summary is its stage directories' results.

Importable as ``helpers`` from every folder of ``tests/`` (``pythonpath = ["tests"]`` in
pyproject's pytest settings); fixtures live in the ``conftest.py`` files.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

#: The repository: ``src/``, ``docs/``, ``examples/``, ``benchmarks/``.
ROOT = Path(__file__).resolve().parents[2]


def quiet(_: str) -> None:
    """A study's ``log`` that prints nothing."""


def random_batch(
    shapes: Mapping[str, tuple[int, ...]],
    n: int,
    seed: int | None = 0,
    *,
    num_classes: int = 3,
    label_shape: tuple[int, ...] = (),
) -> dict[str, torch.Tensor]:
    """``n`` samples: standard-normal inputs of ``shapes`` (drawn in their order), then integer
    labels below ``num_classes`` (one per sample, or one per pixel of ``label_shape``).

    Drawn from a generator seeded with ``seed``, or, with ``seed=None``, from torch's global
    generator (as the test seeded it).
    """
    g = None if seed is None else torch.Generator().manual_seed(seed)
    batch = {m: torch.randn(n, *s, generator=g) for m, s in shapes.items()}
    batch["label"] = torch.randint(0, num_classes, (n, *label_shape), generator=g)
    return batch


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
