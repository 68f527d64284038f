"""The report of a study: ``report.md`` and ``report.html`` with their figures, and the text the CLI
prints at the end of a study, all built from the summary alone (but for a task's examples figure,
which needs the models: the study draws it with its task)."""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path
from typing import Any

from umt.io import write_bytes, write_text
from umt.methods import stage_display_name as _name
from umt.report.figures import curves_caption, draw_curves, draw_probes, probe_caption, render
from umt.report.runs import earlier_runs_text
from umt.report.tables import (
    accuracy_table,
    class_iou_table,
    failed_text,
    fusion_rows,
    fusion_table,
    missing_table,
    probe_table,
)
from umt.report.trust import flags_text, recipe_text, sensitivity_figure, tune_text
from umt.report.verdict import choice_text, comparisons_text, recommendation_text
from umt.tasks import task_of_summary


def tables(summary: dict[str, Any]) -> str:
    """The text the CLI prints at the end of a study."""
    n = len(summary["seeds"])
    what = task_of_summary(summary).metric_name
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
    text = task_of_summary(summary).report
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


def provenance_text(p: dict[str, Any]) -> str:
    """The provenance as the report's closing paragraph (Markdown).

    Example:
        >>> p = {"versions": {"umt": "0.1.0", "torch": "2.13.0"}, "git_commit": None,
        ...      "date": "2026-01-01 00:00:00 UTC", "host": "h", "threads": 2, "gpu": None,
        ...      "settings": {"epochs": 3, "lr": 0.001}}
        >>> print(provenance_text(p))
        umt 0.1.0, torch 2.13.0; not a git checkout; 2026-01-01 00:00:00 UTC on h, 2 CPU threads, no GPU. Settings: epochs 3, lr 0.001.
    """
    versions = ", ".join(f"{k} {v}" for k, v in p["versions"].items())
    commit = f"git commit `{p['git_commit']}`" if p.get("git_commit") else "not a git checkout"
    gpu = f"GPU {p['gpu']}" if p.get("gpu") else "no GPU"
    settings = ", ".join(f"{k} {v}" for k, v in p["settings"].items())
    return (
        f"{versions}; {commit}; {p['date']} on {p['host']}, {p['threads']} CPU threads, {gpu}. "
        f"Settings: {settings}.{earlier_runs_text(p.get('runs') or {})}"
    )
