"""The comparisons a study's report draws, with 95 % intervals, and the method it recommends.

``comparisons`` adds to a summary (``umt.study.summary.summarize``'s) the differences the report reads:
UMT vs joint training (per fusion module in a sweep), the best vs the runner-up on test (among the
trained methods and UME), and each probe gap (teacher − joint encoder, UMT − joint encoder, per
modality). Each lists its per-seed differences and an interval (:mod:`umt.report.stats`): a paired
bootstrap over test samples where the stages' per-sample test outcomes are at hand, else a
Student-t interval over seeds (the probes keep one score per seed, so their gaps always use it).

``recommendation`` names the method to use: the best on validation (mean over seeds) among the
trained methods and UME (not the teachers), beside the papers' UMT/UME rule.

The per-sample outcomes are kept beside each stage's result (``write_outcomes``,
``test-outcomes.npy``) and read back by ``add_comparisons``, which adds both entries to a study's
summary.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from umt.data.base import DataBundle
from umt.engine import is_main_process
from umt.io import write_bytes
from umt.methods import stage_display_name as name
from umt.report.stats import (
    MIN_SEEDS_TO_RESAMPLE,
    Interval,
    paired_bootstrap,
    seed_interval,
    within_noise,
)
from umt.tasks import Task

#: How each kind of interval is described in ``summary.json`` and the report.
BOOTSTRAP_SAMPLES = "paired bootstrap over test samples within each seed"
BOOTSTRAP_SEEDS = "paired bootstrap over seeds, then test samples within each seed"
T_OVER_SEEDS = "Student t over the per-seed differences"

#: A stage's per-sample test outcomes (``Task.outcomes``), beside its ``result.json``.
OUTCOMES_FILE = "test-outcomes.npy"

# Outcomes per (seed, stage).
Outcomes = Mapping[tuple[int, str], np.ndarray]


def _read(path: Path) -> np.ndarray | None:
    try:
        return np.load(path) if path.is_file() else None
    except (OSError, ValueError):  # a cut-off file
        return None


def write_outcomes(
    task: Task,
    model: nn.Module,
    data: DataBundle,
    stage_dir: Path,
    device: torch.device | str = "cpu",
    *,
    fresh: bool = True,
) -> None:
    """Write ``model``'s per-sample test outcomes to ``stage_dir/test-outcomes.npy`` (main
    process only). ``fresh=False``: only where the file is missing or unreadable, e.g. a stage
    cached by a version that did not keep outcomes (its saved model gives them again)."""
    path = stage_dir / OUTCOMES_FILE
    if not is_main_process() or (not fresh and _read(path) is not None):
        return
    buf = io.BytesIO()
    np.save(buf, task.outcomes(model, data.test, data.num_classes, device=device))
    write_bytes(path, buf.getvalue())


def add_comparisons(
    summary: dict[str, Any],
    task: Task,
    run_dir: Path,
    *,
    fusion: str,
    compare: str = "joint",
    n_boot: int = 2000,
) -> None:
    """Add ``comparisons`` and ``recommendation`` to a study's ``summary`` (every other key left
    as it is), the outcomes read from the stages' directories under ``run_dir``. ``fusion``
    (``model.fusion``) and ``compare`` (``choice.compare``) name the stages the UMT/UME rule
    read in a fusion sweep."""
    methods = summary["methods"]
    outcomes = {
        (s, st): o
        for s in summary["seeds"]
        for st in methods
        if (o := _read(run_dir / f"seed{s}" / st / OUTCOMES_FILE)) is not None
    }

    def stage_of(method: str | None) -> str | None:
        for stage in (method, f"{method}-{fusion}") if method else ():
            if stage in methods:
                return stage
        return None

    choice: dict[str, Any] = summary.get("choice") or {}
    rule_pair = ("ume", choice["compare"]) if "compare" in choice else None
    summary["comparisons"] = comparisons(
        summary, task, outcomes, n_boot=n_boot, rule_pair=rule_pair
    )
    if rule_pair is not None:  # the noise on the rule's pair, for its sentence in the report
        entry = next(c for c in summary["comparisons"] if (c["a"], c["b"]) == rule_pair)
        keep = ("what", "mean_diff", "lo", "hi", "within_noise", "interval")
        choice["noise"] = {key: entry[key] for key in keep}
    summary["recommendation"] = recommendation(
        summary,
        task,
        rule_stage=stage_of((summary.get("choice") or {}).get("method")),
        compare_stage=stage_of(compare),
    )


def _fused(stage: str) -> bool:
    return not stage.startswith("teacher-")


def _pairs(methods: Mapping[str, Any], a: str, b: str) -> list[tuple[str, str]]:
    """Stages ``a`` vs ``b`` (``umt``/``joint``), or per fusion module ``a-f`` vs ``b-f``."""
    if a in methods and b in methods:
        return [(a, b)]
    out = []
    for stage in methods:
        if stage.startswith(f"{a}-") and f"{b}-{stage[len(a) + 1 :]}" in methods:
            out.append((stage, f"{b}-{stage[len(a) + 1 :]}"))
    return out


def _entry(
    name: str,
    what: str,
    a: str,
    b: str,
    per_seed: list[float],
    interval: Interval | None,
    how: str | None,
    modality: str | None = None,
) -> dict[str, Any]:
    return {
        "name": name,
        "what": what,
        "a": a,
        "b": b,
        "modality": modality,
        "per_seed": per_seed,
        "mean_diff": float(np.mean(per_seed)),
        "lo": None if interval is None else interval.lo,
        "hi": None if interval is None else interval.hi,
        "within_noise": None if interval is None else within_noise(interval),
        "interval": how,
    }


def comparisons(
    summary: Mapping[str, Any],
    task: Task,
    outcomes: Outcomes,
    *,
    n_boot: int = 2000,
    seed: int = 0,
    rule_pair: tuple[str, str] | None = None,
) -> list[dict[str, Any]]:
    """The report's comparisons of ``summary``, each with per-seed differences (A − B, in the
    task's score as a fraction) and its 95 % interval (``lo``, ``hi``; ``None`` with one seed and
    no outcomes). ``outcomes`` maps ``(seed, stage)`` to the stage's per-sample test outcomes.
    ``rule_pair``: the stages the UMT/UME rule compared (``("ume", "joint")``), compared on test
    too unless another comparison already is that pair."""
    k, seeds = task.metric, list(summary["seeds"])
    methods = summary["methods"]
    out: list[dict[str, Any]] = []

    def scores(stage: str) -> list[float]:
        return [float(v) for v in methods[stage][f"test_{k}"]["values"]]

    def stage_pair(a: str, b: str, label: str) -> None:
        diffs = [x - y for x, y in zip(scores(a), scores(b), strict=True)]
        if all((s, st) in outcomes for s in seeds for st in (a, b)):
            iv: Interval | None = paired_bootstrap(
                [outcomes[(s, a)] for s in seeds],
                [outcomes[(s, b)] for s in seeds],
                task.score_of,
                n_boot=n_boot,
                seed=seed,
            )
            how: str | None = (
                BOOTSTRAP_SEEDS if len(seeds) >= MIN_SEEDS_TO_RESAMPLE else BOOTSTRAP_SAMPLES
            )
        else:  # e.g. a run directory written before outcomes were kept
            iv = seed_interval(diffs)
            how = T_OVER_SEEDS if iv is not None else None
        out.append(_entry(label, f"test_{k}", a, b, diffs, iv, how))

    for a, b in _pairs(methods, "umt", "joint"):
        stage_pair(a, b, f"{name(a)} − {name(b)}")
    fused = sorted(
        (s for s in methods if _fused(s)), key=lambda s: -methods[s][f"test_{k}"]["mean"]
    )
    if len(fused) >= 2:
        best, second = fused[0], fused[1]
        stage_pair(best, second, f"best − runner-up on test: {name(best)} − {name(second)}")
    if rule_pair is not None and not any((c["a"], c["b"]) == rule_pair for c in out):
        a, b = rule_pair
        stage_pair(a, b, f"{name(a)} − {name(b)} (the UMT/UME rule's pair)")
    probes = summary.get("probes") or {}
    # Probe gaps against each joint encoder: the teacher's, and UMT's where UMT ran.
    joints: list[tuple[str | None, str]] = [*_pairs(methods, "umt", "joint")] or [(None, "joint")]
    for m, per in probes.items():
        for u, j in joints:
            for owner in ["teacher"] + ([u] if u is not None else []):
                if owner not in per or j not in per:
                    continue
                diffs = [
                    float(x) - float(y)
                    for x, y in zip(per[owner]["values"], per[j]["values"], strict=True)
                ]
                iv = seed_interval(diffs)
                out.append(
                    _entry(
                        f"{m} probe: {name(owner)} − {name(j)}",
                        f"probe_test_{k}",
                        owner,
                        j,
                        diffs,
                        iv,
                        T_OVER_SEEDS if iv is not None else None,
                        modality=m,
                    )
                )
    return out


def recommendation(
    summary: Mapping[str, Any],
    task: Task,
    *,
    rule_stage: str | None = None,
    compare_stage: str | None = None,
) -> dict[str, Any] | None:
    """The method to use: the best on validation (mean over seeds) among the trained methods
    and UME; beside it the papers' rule (``summary["choice"]``), the stage it picks
    (``rule_stage``) and the stage the rule compares UME with (``compare_stage``, joint).

    Example:
        >>> from umt.tasks import CLASSIFICATION
        >>> s = {"methods": {"joint": {"val_acc": {"mean": 0.8}}, "umt": {"val_acc": {"mean": 0.7}},
        ...                  "ume": {"val_acc": {"mean": 0.6}}}, "choice": {"method": "umt"}}
        >>> r = recommendation(s, CLASSIFICATION, rule_stage="umt", compare_stage="joint")
        >>> r["method"], r["runner_up"], r["rule"], r["agree"], r["rule_below_compare"]
        ('joint', 'umt', 'umt', False, True)
    """
    k = task.metric
    val = {s: e[f"val_{k}"]["mean"] for s, e in summary["methods"].items() if _fused(s)}
    if not val:
        return None
    ranked = sorted(val, key=lambda s: -val[s])  # ties keep the run order
    best = ranked[0]
    second = ranked[1] if len(ranked) > 1 else None
    choice = summary.get("choice")
    rule_val = val.get(rule_stage) if rule_stage else None
    compare_val = val.get(compare_stage) if compare_stage else None
    return {
        "method": best,
        f"val_{k}": val[best],
        "runner_up": second,
        f"runner_up_val_{k}": val[second] if second else None,
        "rule": choice["method"] if choice else None,
        "rule_stage": rule_stage,
        f"rule_val_{k}": rule_val,
        "compare_stage": compare_stage,
        f"compare_val_{k}": compare_val,
        "agree": None if rule_val is None else rule_val >= val[best],
        "rule_below_compare": (
            None if rule_val is None or compare_val is None else rule_val < compare_val
        ),
    }
