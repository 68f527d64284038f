"""A study's summary: every stage's numbers aggregated over seeds, the probes, the UMT/UME choice.

``summarize`` turns the per-seed results of a study into what ``summary.json`` holds and the
report reads; the study's task adds its own entries (e.g. pixel accuracy, per-class IoU).
"""

from __future__ import annotations

from typing import Any

from umt.data.base import DataBundle
from umt.data.user import user_data_summary
from umt.methods import choose
from umt.report.trust import add_flags
from umt.study.config import StudyConfig
from umt.tasks import Task, mean_std


def summarize(
    cfg: StudyConfig, data: DataBundle, task: Task, per_seed: dict[int, dict[str, Any]]
) -> dict[str, Any]:
    """Aggregate the seeds: the task's score per stage (and its extras), probe per encoder, the
    UMT/UME choice."""
    seeds = list(per_seed)
    k = task.metric
    # A stage counts where it finished in every seed; failures are listed, never averaged in.
    stages = [
        st for st in per_seed[seeds[0]]["stages"] if all(st in per_seed[s]["stages"] for s in seeds)
    ]
    failed = {f"seed{s}/{st}": msg for s in seeds for st, msg in per_seed[s]["failed"].items()}
    methods: dict[str, Any] = {}
    for stage in stages:
        rows = [per_seed[s]["stages"][stage] for s in seeds]
        entry: dict[str, Any] = {
            f"val_{k}": mean_std([r[f"val_{k}"] for r in rows]),
            f"test_{k}": mean_std([r[f"test_{k}"] for r in rows]),
            **task.summary_extras(rows),
        }
        for key in (f"modality_test_{k}", f"missing_test_{k}"):
            if key in rows[0]:
                entry[key] = {m: mean_std([r[key][m] for r in rows]) for m in data.modalities}
        if "train_seconds" in rows[0]:
            entry["train_seconds"] = mean_std([r["train_seconds"] for r in rows])
        if "source" in rows[0]:  # a teacher loaded from a file (``teachers: {m: PATH}``)
            entry["source"] = rows[0]["source"]
        methods[stage] = entry
    summary = {
        "study": cfg.name,
        "data": {
            "name": data.name,
            "description": data.description,
            "modalities": list(data.modalities),
            "num_classes": data.num_classes,
            "sizes": {s: len(data.split(s)) for s in ("train", "val", "test")},
            "task": data.task,
            **task.data_extras(data),
            **user_data_summary(data),  # "source": "user" for run_study(data=...)
        },
        "seeds": seeds,
        "mask_fill": cfg.mask_fill,
        "methods": methods,
        "probes": _probes(data, task, stages, per_seed),
        "choice": _choice(cfg, task, methods),
        "failed": failed,
        "per_seed": {str(s): per_seed[s] for s in seeds},
    }
    add_flags(summary, per_seed, k)  # each stage's flags and recipe
    return summary


def _probes(
    data: DataBundle, task: Task, stages: list[str], per_seed: dict[int, dict[str, Any]]
) -> dict[str, Any]:
    """Per modality, the probe's test score of each model's encoder (``teacher`` for the
    modality's own teacher)."""
    seeds = list(per_seed)
    probes: dict[str, Any] = {}
    for m in data.modalities:
        probes[m] = {}
        for stage in stages:
            if stage not in per_seed[seeds[0]]["probes"]:
                continue
            if stage.startswith("teacher-") and stage != f"teacher-{m}":
                continue
            owner = "teacher" if stage.startswith("teacher-") else stage
            scores = [per_seed[s]["probes"][stage][m][f"test_{task.metric}"] for s in seeds]
            probes[m][owner] = mean_std(scores)
    return probes


def _choice(cfg: StudyConfig, task: Task, methods: dict[str, Any]) -> dict[str, Any] | None:
    """The papers' UMT/UME rule on the ``choice.split`` scores, if both ran."""
    k, split, compare = task.metric, cfg.choice.split, cfg.choice.compare
    if compare not in methods and f"{compare}-{cfg.model.fusion}" in methods:
        compare = f"{compare}-{cfg.model.fusion}"  # in a fusion sweep: the model.fusion one
    if "ume" not in methods or compare not in methods:
        return None
    ume_score = methods["ume"][f"{split}_{k}"]["mean"]
    other = methods[compare][f"{split}_{k}"]["mean"]
    c = choose(ume_score, other, margin=cfg.choice.margin, label=split, metric=task.metric_name)
    return {
        "method": c.method,
        "reason": c.reason,
        f"ume_{k}": ume_score,
        f"{compare}_{k}": other,
        "split": split,
        "margin": cfg.choice.margin,
        "compare": compare,  # the stage UME was compared with (``joint``, ``joint-<fusion>``)
    }
