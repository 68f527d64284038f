"""The report's tables, each built from a study's summary alone: scores per stage, probes per
encoder, fusion modules, missing modalities, per-class IoU, failed stages."""

from __future__ import annotations

from typing import Any

from umt.methods import stage_display_name as _name
from umt.tasks import task_of_summary


def pm(stats: dict[str, Any], scale: float = 100.0) -> str:
    """``mean ± std`` in percent.

    Example:
        >>> pm({"mean": 0.5, "std": 0.01})
        '50.00 ± 1.00'
    """
    return f"{scale * stats['mean']:.2f} ± {scale * stats['std']:.2f}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def accuracy_table(summary: dict[str, Any]) -> str:
    """One row per stage: val and test accuracy (%), each modality alone (others masked), and
    training time relative to joint training's."""
    mods = summary["data"]["modalities"]
    task = task_of_summary(summary)
    k, name = task.metric, task.column
    header = ["method", f"val {name}", f"test {name}"] + [f"test {name}, {m} only" for m in mods]
    if "test_pixel_acc" in next(iter(summary["methods"].values()), {}):
        header.insert(3, "test pixel acc")
    joint = next((e for s, e in summary["methods"].items() if s.split("-")[0] == "joint"), None)
    base = joint["train_seconds"]["mean"] if joint and "train_seconds" in joint else None
    if base:
        header.append("train time vs joint")
    rows = []
    for stage, entry in summary["methods"].items():
        per = entry.get(f"modality_test_{k}", {})
        shown = _name(stage) + (" (loaded)" if "source" in entry else "")  # teachers: {m: PATH}
        row = [shown, pm(entry[f"val_{k}"]), pm(entry[f"test_{k}"])]
        if "test_pixel_acc" in entry:
            row.append(pm(entry["test_pixel_acc"]))
        row += [pm(per[m]) if m in per else "" for m in mods]
        if base:
            t = entry.get("train_seconds")
            row.append(f"{t['mean'] / base:.2f}×" if t else "—")
        rows.append(row)
    return _table(header, rows)


def fusion_rows(summary: dict[str, Any]) -> list[str]:
    """The fusion modules of a sweep (stages ``joint-<f>``/``umt-<f>``), in run order."""
    return [s.split("-", 1)[1] for s in summary["methods"] if s.startswith("joint-")]


def fusion_table(summary: dict[str, Any]) -> str:
    """One row per fusion module: joint vs UMT test accuracy, the gain, and encoder probes."""
    mods = summary["data"]["modalities"]
    header = ["fusion", "joint", "UMT", "gain"]
    header += [f"{m} probe: joint / UMT" for m in mods]
    rows = []
    for f in fusion_rows(summary):
        j, u = summary["methods"].get(f"joint-{f}"), summary["methods"].get(f"umt-{f}")
        if j is None or u is None:
            continue
        gain = 100 * (u["test_acc"]["mean"] - j["test_acc"]["mean"])
        cells = [f, pm(j["test_acc"]), pm(u["test_acc"]), f"{gain:+.2f}"]
        for m in mods:
            pj = summary["probes"][m].get(f"joint-{f}")
            pu = summary["probes"][m].get(f"umt-{f}")
            cells.append(f"{pm(pj)} / {pm(pu)}" if pj and pu else "")
        rows.append(cells)
    return _table(header, rows)


def missing_table(summary: dict[str, Any]) -> str:
    """One row per fused model: test accuracy (%) with each modality missing, and the drop."""
    mods = summary["data"]["modalities"]
    k = task_of_summary(summary).metric
    header = ["method", "all modalities"] + [f"without {m} (drop)" for m in mods]
    rows = []
    for stage, entry in summary["methods"].items():
        if f"missing_test_{k}" not in entry:
            continue
        full = entry[f"test_{k}"]["mean"]
        cells = []
        for m in mods:
            miss = entry[f"missing_test_{k}"][m]
            cells.append(f"{pm(miss)} ({100 * (miss['mean'] - full):+.2f})")
        rows.append([_name(stage), pm(entry[f"test_{k}"]), *cells])
    return _table(header, rows)


def class_iou_table(summary: dict[str, Any]) -> str:
    """Segmentation: one row per class, the test IoU (%) of each stage."""
    stages = [s for s, e in summary["methods"].items() if "test_iou" in e]
    names = summary["data"].get("class_names") or []
    k = summary["data"]["num_classes"]
    header = ["class"] + [_name(s) for s in stages]
    rows = []
    for c in range(k):
        label = f"{c} {names[c]}" if c < len(names) else str(c)
        rows.append([label] + [pm(summary["methods"][s]["test_iou"][c]) for s in stages])
    return _table(header, rows)


def probe_table(summary: dict[str, Any]) -> str:
    """One row per modality: linear-probe test accuracy (%) of each model's encoder."""
    owners: list[str] = []
    for per in summary["probes"].values():
        owners += [o for o in per if o not in owners]
    header = ["encoder"] + [_name(o) for o in owners]
    if "teacher" in owners:
        header += [f"{_name(o)} − teacher" for o in owners if o != "teacher"]
    rows = []
    for m, per in summary["probes"].items():
        row = [m] + [pm(per[o]) if o in per else "" for o in owners]
        if "teacher" in per:
            t = per["teacher"]["mean"]
            row += [
                f"{100 * (per[o]['mean'] - t):+.2f}" for o in owners if o != "teacher" and o in per
            ]
        rows.append(row)
    return _table(header, rows)


def failed_text(summary: dict[str, Any]) -> str:
    failed = summary.get("failed") or {}
    if not failed:
        return ""
    lines = [f"- `{stage}`: {msg}" for stage, msg in failed.items()]
    return "**Failed stages** (left out of every table):\n" + "\n".join(lines)
