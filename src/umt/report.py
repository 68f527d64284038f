"""Tables, figures and the report of a study, built from its summary alone (but for a task's
examples figure, which needs the models: the study draws it with its task)."""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path
from typing import Any

from umt.figures import curves_caption, draw_curves, draw_probes, probe_caption, render
from umt.io import write_bytes, write_text
from umt.methods import stage_display_name
from umt.provenance import provenance_text
from umt.tasks import Task, task_named
from umt.trust import flags_text, recipe_text, sensitivity_figure, tune_text

_name = stage_display_name


def _task(summary: dict[str, Any]) -> Task:
    return task_named(summary["data"].get("task", "classification"), what="the study")


def _metric(summary: dict[str, Any]) -> tuple[str, str]:
    """The key suffix and the column name of the score of the study's task (``acc``/``miou``)."""
    task = _task(summary)
    return task.metric, task.column


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
    k, name = _metric(summary)
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
    k, _ = _metric(summary)
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


def choice_text(summary: dict[str, Any]) -> str:
    """The papers' UMT/UME rule: its pick, the comparison it made (in %) and, where the summary
    has the interval of that difference, whether it is within noise. The rule's reading of the
    comparison (paired features or not) is named as the rule's, not stated as a finding."""
    choice = summary.get("choice")
    if not choice:
        return "No choice: the rule needs both `ume` and the compared method in `methods`."
    head = f"**Chosen: {choice['method'].upper()}.**"
    if "margin" not in choice:  # a summary written before the rule's inputs were kept
        return f"{head} {choice['reason']}."
    k, _ = _metric(summary)
    ume, other = choice[f"ume_{k}"], choice[f"{choice['compare']}_{k}"]
    sign = "≥" if choice["method"] == "ume" else "<"
    text = (
        f"{head} The papers' UMT/UME rule (Du et al. 2023) picks UME when the uni-modal ensemble "
        f"scores at least as well as joint training, less a margin, and UMT otherwise: here "
        f"{choice['split']} {_task(summary).metric_name} UME {100 * ume:.2f} % {sign} "
        f"{_name(choice['compare'])} {100 * other:.2f} % − margin {100 * choice['margin']:.2f} "
        f"points. The rule reads {'this' if choice['method'] == 'ume' else 'a joint lead'} as "
        f"{'little gained from' if choice['method'] == 'ume' else 'evidence of'} cross-modal "
        "(paired) features; the comparison alone does not show it."
    )
    return text + _rule_noise(choice.get("noise"))


def _pct(x: float, signed: bool = False) -> str:
    """A fraction in percentage points, two decimals, a true minus sign.

    Example:
        >>> _pct(0.02791, signed=True), _pct(-0.005)
        ('+2.79', '−0.50')
    """
    text = f"{100 * x:{'+' if signed else ''}.2f}"
    return text.replace("-", "−") if text.lstrip("+-") != "0.00" else text.lstrip("-")


def _rule_noise(noise: dict[str, Any] | None) -> str:
    """The sentence on the noise of the rule's difference (test split), or nothing."""
    if not noise:
        return ""
    what = noise["what"].replace("_", " ")
    text = (
        f" On the {what.split()[0]} split the same pair differs by {_pct(noise['mean_diff'], True)}"
    )
    if noise.get("lo") is None:
        return text + (
            " points, with no interval (one seed and no per-sample outcomes): whether the rule's "
            "inputs differ by more than the noise is unknown."
        )
    text += (
        f" points, 95 % interval [{_pct(noise['lo'])}, {_pct(noise['hi'])}] ({noise['interval']})"
    )
    if noise["within_noise"]:
        return text + ": the rule's inputs differ by less than the noise: read its choice as a tie."
    return text + ": the difference is beyond the noise (the interval excludes 0)."


def _points(x: float) -> str:
    """A fraction as percentage points, one decimal, a true minus sign.

    Example:
        >>> _points(-0.0114), _points(0.0)
        ('−1.1', '0.0')
    """
    text = f"{100 * x:.1f}"
    return "0.0" if text == "-0.0" else text.replace("-", "−")


def _signed(x: float) -> str:
    """Percentage points with their sign (``+0.0`` for a difference that rounds to 0)."""
    text = _points(x)
    return text if text.startswith("−") else f"+{text}"


def comparison_line(c: dict[str, Any], column: str = "acc") -> str:
    """One comparison: ``+2.3 points [0.8, 3.9]``, or ``…, within noise`` where the interval
    covers 0, then the per-seed differences and how the interval was made. ``column``: the
    task's score as table headers name it (``acc``, ``mIoU``).

    Example:
        >>> c = {"name": "UMT − joint", "what": "test_acc", "mean_diff": 0.004, "lo": -0.011,
        ...      "hi": 0.019, "within_noise": True, "per_seed": [0.002, 0.006],
        ...      "interval": "paired bootstrap over test samples within each seed"}
        >>> comparison_line(c)  # doctest: +NORMALIZE_WHITESPACE
        '- UMT − joint (test acc): +0.4 points [−1.1, 1.9], within noise; per seed +0.2, +0.6
        (paired bootstrap over test samples within each seed)'
    """
    what = c["what"].replace("probe_test_", "probe test ").replace("test_", "test ")
    what = what.rsplit(" ", 1)[0] + f" {column}"
    text = f"- {c['name']} ({what}): {_signed(c['mean_diff'])} points"
    if c.get("lo") is None:
        text += " (no interval: one seed and no per-sample outcomes)"
    else:
        text += f" [{_points(c['lo'])}, {_points(c['hi'])}]"
        if c["within_noise"]:
            text += ", within noise"
    seeds = ", ".join(_signed(d) for d in c["per_seed"])
    text += f"; per seed {seeds}"
    return text + (f" ({c['interval']})" if c.get("interval") else "")


def comparisons_text(summary: dict[str, Any]) -> str:
    """The comparisons' lines (empty for a summary written before they were kept)."""
    _, column = _metric(summary)
    return "\n".join(comparison_line(c, column) for c in summary.get("comparisons") or [])


def recommendation_text(summary: dict[str, Any]) -> str:
    """The method to use (the best on validation among those trained), the papers' rule beside
    it, and one sentence where the two disagree."""
    rec = summary.get("recommendation")
    if not rec:
        return ""
    k, _ = _metric(summary)
    n = len(summary["seeds"])
    text = (
        f"**Recommended: {_name(rec['method'])}**, the best on validation among the trained "
        f"methods and UME (val {_task(summary).metric_name} {100 * rec[f'val_{k}']:.2f} %, mean "
        f"over {n} seed(s)"
    )
    if rec.get("runner_up"):
        text += f"; runner-up {_name(rec['runner_up'])} {100 * rec[f'runner_up_val_{k}']:.2f} %"
    text += ")."
    rule = rec.get("rule")
    if rule is None:
        return text + " The papers' UMT/UME rule did not run (it needs UME and joint training)."
    text += f" The papers' UMT/UME rule picks {rule.upper()}"
    rule_val, compare_val = rec.get(f"rule_val_{k}"), rec.get(f"compare_val_{k}")
    if rule_val is None:
        return text + ", which this study did not train."
    if rule == "umt" and rec.get("rule_below_compare"):
        return text + (
            f", but UMT validates below {_name(rec['compare_stage'])} "
            f"({100 * rule_val:.2f} % vs {100 * compare_val:.2f} %): the rule's pick is not the "
            "method to use here."
        )
    if not rec.get("agree"):
        return text + (
            f", which is not the best on validation ({100 * rule_val:.2f} % vs "
            f"{_name(rec['method'])} {100 * rec[f'val_{k}']:.2f} %)."
        )
    return text + ", in agreement."


def tables(summary: dict[str, Any]) -> str:
    """The text the CLI prints at the end of a study."""
    n = len(summary["seeds"])
    what = _task(summary).metric_name
    return "\n\n".join(
        [
            f"Test {what} (%), mean ± std over {n} seed(s):",
            accuracy_table(summary),
            *[t for t in [flags_text(summary, _name)] if t],
            f"Linear-probe test {what} (%) of each frozen encoder:",
            probe_table(summary),
            *(
                ["UMT across fusion modules (%):", fusion_table(summary)]
                if fusion_rows(summary)
                else []
            ),
            *(
                ["Comparisons (95 % intervals):", comparisons_text(summary)]
                if summary.get("comparisons")
                else []
            ),
            *([recommendation_text(summary)] if summary.get("recommendation") else []),
            choice_text(summary),
            failed_text(summary),
        ]
    ).rstrip()


def markdown(summary: dict[str, Any], *, curves: bool = False) -> str:
    """The report of a study, from its summary alone (the task decides the texts); ``curves``:
    link the training-curve figure (``figures/curves.png``, drawn from the run directory)."""
    d = summary["data"]
    text = _task(summary).report
    sizes = ", ".join(f"{k} {v}" for k, v in d["sizes"].items())
    return "\n\n".join(
        block
        for block in [
            f"# Study `{summary['study']}`",
            f"Data: **{d['name']}** ({d['description']}); modalities {', '.join(d['modalities'])}; "
            f"{d['num_classes']} classes; {sizes}{text.sizes_unit}. Seeds: {summary['seeds']}. "
            + text.selection,
            f"## {text.score_heading}",
            accuracy_table(summary),
            *[t for t in (flags_text(summary, _name), recipe_text(summary, _name)) if t],
            *(
                ["## Tuning", tune_text(summary, _name)]
                + ([_SENSITIVITY] if summary["tune"]["methods"] else [])
                if summary.get("tune")
                else []
            ),
            *(["## Per-class IoU (test, %)", class_iou_table(summary)] if text.class_table else []),
            "## Modality failure: linear probes of the frozen encoders",
            text.probe,
            probe_table(summary),
            "![probe accuracies](figures/probes.png)",
            f"{probe_caption(summary)} Vector version: [figures/probes.svg](figures/probes.svg).",
            *(
                [
                    "## Examples (test images of the first seed)",
                    "![examples](figures/examples.png)",
                ]
                if text.examples
                else []
            ),
            *(
                [
                    "## UMT across fusion modules",
                    "Test accuracy (%) of joint training and UMT with each fusion module, and the "
                    "linear-probe accuracy (%) of each encoder."
                    + (
                        " UME does not depend on the fusion module: it is the one row `UME` above."
                        if "ume" in summary["methods"]
                        else ""
                    ),
                    fusion_table(summary),
                ]
                if fusion_rows(summary)
                else []
            ),
            *(
                [
                    "## Training curves",
                    "![training curves](figures/curves.png)",
                    f"{curves_caption(summary)} Vector version: "
                    "[figures/curves.svg](figures/curves.svg).",
                ]
                if curves
                else []
            ),
            "## Missing modalities at test time",
            f"Each modality in turn is removed (inputs set to {summary.get('mask_fill', 'zero')} "
            f"value) from the test split; the drop is against the full {text.score}.",
            missing_table(summary),
            *(
                [
                    "## Comparisons (95 % intervals)",
                    "Differences A − B in points (test split), averaged over seeds, with a 95 % "
                    "interval; one that covers 0 is within noise. Stages are compared by a paired "
                    "bootstrap of their per-sample test outcomes; probe gaps, kept as one score "
                    "per seed, by a Student-t interval over the seeds' differences.",
                    comparisons_text(summary),
                ]
                if summary.get("comparisons")
                else []
            ),
            *(
                ["## Recommendation", recommendation_text(summary)]
                if summary.get("recommendation")
                else []
            ),
            "## UMT or UME",
            choice_text(summary),
            failed_text(summary),
            *(
                ["## Provenance", provenance_text(summary["provenance"])]
                if "provenance" in summary
                else []
            ),
        ]
        if block  # no blank block (e.g. no failed stages) before the provenance
    ).rstrip()


_SENSITIVITY = "![sensitivity](figures/sensitivity.png)"


def write_report(summary: dict[str, Any], run_dir: Path) -> None:
    """``report.md``, ``report.html`` (figures inlined), ``figures/probes.{png,svg}``,
    ``figures/curves.{png,svg}`` where a stage logged ``metrics.csv``, and
    ``figures/sensitivity.png`` for a tuned study."""
    figures: dict[str, bytes] = {}
    drawn = {"probes": draw_probes(summary), "curves": draw_curves(summary, run_dir)}
    for name, fig in drawn.items():
        if fig is None:
            continue
        for fmt, data in render(fig).items():
            write_bytes(run_dir / "figures" / f"{name}.{fmt}", data)
            figures[f"figures/{name}.{fmt}"] = data
    md = markdown(summary, curves=drawn["curves"] is not None)
    write_text(run_dir / "report.md", md + "\n")
    if summary.get("tune", {}).get("methods"):
        figures["figures/sensitivity.png"] = sensitivity_figure(summary, _name)
        write_bytes(run_dir / "figures" / "sensitivity.png", figures["figures/sensitivity.png"])
    examples = run_dir / "figures" / "examples.png"
    if examples.is_file():
        figures["figures/examples.png"] = examples.read_bytes()
    write_text(run_dir / "report.html", html_page(md, figures))


def html_page(md: str, figures: dict[str, bytes]) -> str:
    """A self-contained page from our own small Markdown (headings, tables, paragraphs)."""
    parts = []
    for block in md.split("\n\n"):
        if block.startswith("!["):
            alt, _, path = block[2:].rstrip(")").partition("](")
            if path in figures:
                data = base64.b64encode(figures[path]).decode()
                parts.append(f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">')
        elif block.startswith("#"):
            level = len(block) - len(block.lstrip("#"))
            parts.append(f"<h{level}>{_inline(block.lstrip('# '))}</h{level}>")
        elif block.startswith("|"):
            lines = [ln for ln in block.splitlines() if not ln.startswith("|---")]
            cells = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines]
            head = "".join(f"<th>{_inline(c)}</th>" for c in cells[0])
            body = "".join(
                "<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>"
                for row in cells[1:]
            )
            parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        else:
            parts.append(f"<p>{_inline(block)}</p>")
    style = (
        "body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3em .6em}"
        "img{max-width:100%}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>umt report</title>"
        f"<style>{style}</style></head><body>{''.join(parts)}</body></html>\n"
    )


def _inline(text: str) -> str:
    out = html.escape(text)
    # [text](path): a link, e.g. to a figure's vector version beside the page.
    out = re.sub(r"\[([^\]]+)\]\(([^)\s]+)\)", r'<a href="\2">\1</a>', out)
    while "**" in out:
        out = out.replace("**", "<b>", 1).replace("**", "</b>", 1)
    while out.count("`") >= 2:
        out = out.replace("`", "<code>", 1).replace("`", "</code>", 1)
    return out
