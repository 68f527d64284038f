"""The study's one verdict and the comparisons its report draws, each with a 95 % interval.

``verdict`` names the method to use, decided on validation: the best of the trained methods and
UME (not the teachers), and its difference from the runner-up with an interval; within noise, a
tie naming both and the cheaper one. ``comparisons`` are the differences the report shows on the
test split: UMT − joint (per fusion module in a sweep), the verdict's pair (chosen on validation,
never on test), and each probe gap (teacher − joint encoder, UMT − joint encoder, per modality).
Intervals come from :mod:`umt.report.stats`: over seeds and samples where the stages' per-sample
outcomes are at hand (``write_outcomes``: ``val-outcomes.npy``, ``test-outcomes.npy`` beside each
stage's result), else a Student-t over seeds (the probes keep one score per seed).
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
from umt.methods import METHODS
from umt.methods import stage_display_name as name
from umt.report.stats import MIN_SEEDS, Interval, paired_interval, seed_interval, within_noise
from umt.tasks import Task

#: How each kind of interval is described in ``summary.json`` and the report.
SEEDS_AND_SAMPLES = "Student t over seeds, with the test samples' variance"
SAMPLES_ONLY = "test samples only: seed-to-seed variance not measured (fewer than 3 seeds)"
T_OVER_SEEDS = "Student t over the per-seed differences"

#: A stage's per-sample outcomes (``Task.outcomes``) of a split, beside its ``result.json``.
OUTCOMES_FILE = "{split}-outcomes.npy"

# Outcomes per (seed, stage).
Outcomes = Mapping[tuple[str, int, str], np.ndarray]


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
    """Write ``model``'s per-sample validation and test outcomes to ``stage_dir`` (main process
    only): ``val-outcomes.npy``, ``test-outcomes.npy``. ``fresh=False``: only where a file is
    missing or unreadable, e.g. a stage cached by a version that did not keep them (its saved
    model gives them again)."""
    if not is_main_process():
        return
    for split in ("val", "test"):
        path = stage_dir / OUTCOMES_FILE.format(split=split)
        if not fresh and _read(path) is not None:
            continue
        buf = io.BytesIO()
        np.save(buf, task.outcomes(model, data.split(split), data.num_classes, device=device))
        write_bytes(path, buf.getvalue())


def add_comparisons(
    summary: dict[str, Any],
    task: Task,
    run_dir: Path,
    *,
    fusion: str,
    compare: str = "joint",
    n_boot: int = 400,
) -> None:
    """Add ``verdict`` and ``comparisons`` to a study's ``summary`` (every other key left as it
    is), the per-sample outcomes read from the stages' directories under ``run_dir``. ``fusion``
    (``model.fusion``) and ``compare`` (``choice.compare``) name the stages the UMT/UME rule
    read in a fusion sweep."""
    methods = summary["methods"]
    outcomes = {
        (split, s, st): o
        for split in ("val", "test")
        for s in summary["seeds"]
        for st in methods
        if (o := _read(run_dir / f"seed{s}" / st / OUTCOMES_FILE.format(split=split))) is not None
    }

    def stage_of(method: str | None) -> str | None:
        for stage in (method, f"{method}-{fusion}") if method else ():
            if stage in methods:
                return stage
        return None

    summary["verdict"] = verdict(summary, task, outcomes, n_boot=n_boot)
    choice: dict[str, Any] = summary.get("choice") or {}
    if "compare" in choice:  # the noise on the rule's pair, on the split the rule decides on
        pair = ("ume", choice["compare"])
        entry = _difference(summary, task, outcomes, pair, choice.get("split", "val"), n_boot)
        keep = ("what", "mean_diff", "lo", "hi", "within_noise", "interval")
        choice["noise"] = {key: entry[key] for key in keep}
        rule_stage = stage_of(choice.get("method"))
        best = (summary["verdict"] or {}).get("method")
        choice["agrees"] = rule_stage is not None and rule_stage in (
            best,
            *((summary["verdict"] or {}).get("tied_with") or []),
        )
    pair = summary["verdict"] and summary["verdict"].get("runner_up")
    summary["comparisons"] = comparisons(
        summary,
        task,
        outcomes,
        n_boot=n_boot,
        verdict_pair=(summary["verdict"]["method"], pair) if pair else None,
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


def _difference(
    summary: Mapping[str, Any],
    task: Task,
    outcomes: Outcomes,
    pair: tuple[str, str],
    split: str,
    n_boot: int,
    label: str | None = None,
) -> dict[str, Any]:
    """``pair[0] − pair[1]`` on ``split``: per-seed differences and a 95 % interval (over seeds
    and samples where the per-sample outcomes are at hand, else a Student-t over seeds)."""
    k, seeds = task.metric, list(summary["seeds"])
    methods = summary["methods"]
    a, b = pair

    def scores(stage: str) -> list[float]:
        return [float(v) for v in methods[stage][f"{split}_{k}"]["values"]]

    diffs = [x - y for x, y in zip(scores(a), scores(b), strict=True)]
    if all((split, s, st) in outcomes for s in seeds for st in (a, b)):
        iv: Interval | None = paired_interval(
            [outcomes[(split, s, a)] for s in seeds],
            [outcomes[(split, s, b)] for s in seeds],
            task.score_of,
            n_boot=n_boot,
            additive=task.additive,
        )
        how: str | None = (SEEDS_AND_SAMPLES if len(seeds) >= MIN_SEEDS else SAMPLES_ONLY).replace(
            "test", split
        )
    else:  # e.g. a run directory written before outcomes were kept
        iv = seed_interval(diffs)
        how = T_OVER_SEEDS if iv is not None else None
    return _entry(label or f"{name(a)} − {name(b)}", f"{split}_{k}", a, b, diffs, iv, how)


def comparisons(
    summary: Mapping[str, Any],
    task: Task,
    outcomes: Outcomes,
    *,
    n_boot: int = 400,
    verdict_pair: tuple[str, str] | None = None,
) -> list[dict[str, Any]]:
    """The report's comparisons on the test split, each with per-seed differences (A − B, in the
    task's score as a fraction) and its 95 % interval (``lo``, ``hi``; ``None`` with one seed and
    no outcomes): UMT − joint (per fusion module), the verdict's pair (chosen on validation, never
    on test), and each probe gap. ``outcomes`` maps ``(split, seed, stage)`` to the stage's
    per-sample outcomes."""
    methods = summary["methods"]
    out: list[dict[str, Any]] = []
    pairs = _pairs(methods, "umt", "joint")
    if verdict_pair is not None and verdict_pair not in pairs and verdict_pair[::-1] not in pairs:
        pairs.append(verdict_pair)
    for a, b in pairs:
        label = f"{name(a)} − {name(b)}"
        if (a, b) == verdict_pair:
            label += " (the verdict's pair, chosen on validation)"
        out.append(_difference(summary, task, outcomes, (a, b), "test", n_boot, label))
    k = task.metric
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


def cost(summary: Mapping[str, Any], stage: str) -> float:
    """A stage's training time (mean over seeds), its teachers' included where it needs them."""
    methods = summary["methods"]

    def own(s: str) -> float:
        return float(methods.get(s, {}).get("train_seconds", {}).get("mean", 0.0))

    method = stage.split("-")[0]
    teachers = METHODS[method].uses_teachers if method in METHODS else False
    return own(stage) + (
        sum(own(s) for s in methods if s.startswith("teacher-")) if teachers else 0.0
    )


def verdict(
    summary: Mapping[str, Any], task: Task, outcomes: Outcomes, *, n_boot: int = 400
) -> dict[str, Any] | None:
    """The study's one verdict, decided on validation: the best of the trained methods and UME
    (mean over seeds), and its difference from the runner-up with a 95 % interval. Within noise,
    the two are a tie (``tied_with``) and ``cheaper`` names the one that costs less to train.

    Example:
        >>> from umt.tasks import CLASSIFICATION
        >>> def s(v): return {"mean": v, "values": [v]}
        >>> summary = {"seeds": [0], "methods": {"joint": {"val_acc": s(0.8)},
        ...     "umt": {"val_acc": s(0.7)}, "ume": {"val_acc": s(0.6)}}}
        >>> v = verdict(summary, CLASSIFICATION, {})
        >>> v["method"], v["runner_up"], v["tie"]
        ('joint', 'umt', None)
    """
    k = task.metric
    methods = summary["methods"]
    val = {s: e[f"val_{k}"]["mean"] for s, e in methods.items() if _fused(s)}
    if not val:
        return None
    ranked = sorted(val, key=lambda s: (-val[s], cost(summary, s), s))  # a tie: the cheaper first
    best = ranked[0]
    out: dict[str, Any] = {"method": best, "split": "val", f"val_{k}": val[best]}
    if len(ranked) == 1:
        return {**out, "runner_up": None, "tie": None, "tied_with": []}
    second = ranked[1]
    diff = _difference(summary, task, outcomes, (best, second), "val", n_boot)
    tied = [best, second] if diff["within_noise"] else []
    out.update(
        runner_up=second,
        **{f"runner_up_val_{k}": val[second]},
        difference=diff,
        tie=diff["within_noise"],
        tied_with=[second] if diff["within_noise"] else [],
        cheaper=min(tied, key=lambda s: cost(summary, s)) if tied else None,
        cost={s: round(cost(summary, s), 1) for s in (best, second)},
    )
    return out
