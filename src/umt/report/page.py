"""The report of a study: ``report.md`` and ``report.html`` with their figures, and the text the CLI
prints at the end of a study, all built from the summary alone (but for a task's examples figure,
which needs the models: the study draws it with its task)."""

from __future__ import annotations

import base64
import html
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
from umt.report.trust import flags_text, recipe_text, search_text, sensitivity_figure
from umt.report.verdict import comparisons_text, rule_text, verdict_text
from umt.tasks import task_of_summary


def tables(summary: dict[str, Any], *, verdict: bool = True) -> str:
    """The text the CLI prints at the end of a study: the tables, the evidence, and last the
    one verdict (``verdict=False``: without it, for a caller that prints it last itself)."""
    n = len(summary["seeds"])
    what = task_of_summary(summary).metric_name
    return "\n\n".join(
        t
        for t in [
            f"Test {what} (%), mean ± std over {n} seed(s):",
            accuracy_table(summary),
            flags_text(summary, _name),
            f"Linear-probe test {what} (%) of each frozen encoder:",
            probe_table(summary),
            *(
                ["UMT across fusion modules (%):", fusion_table(summary)]
                if fusion_rows(summary)
                else []
            ),
            *(
                ["Comparisons on test (95 % intervals):", comparisons_text(summary)]
                if summary.get("comparisons")
                else []
            ),
            search_text(summary, _name, short=True),
            rule_text(summary),
            failed_text(summary),
            verdict_text(summary, bold=False) if verdict else "",
        ]
        if t
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
            *(
                ["## Verdict", verdict_text(summary), rule_text(summary)]
                if summary.get("verdict")
                else []
            ),
            f"## {text.score_heading}",
            accuracy_table(summary),
            *[t for t in (flags_text(summary, _name), recipe_text(summary, _name)) if t],
            *(
                ["## Recipe", search_text(summary, _name)]
                + ([_SENSITIVITY] if (summary.get("search") or {}).get("units") else [])
                if summary.get("search")
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
                    "## Comparisons on test (95 % intervals)",
                    "Differences A − B in points (test split), averaged over seeds, with a 95 % "
                    "interval; one that covers 0 is within noise. Stages: a Student-t interval "
                    "over the seeds whose standard error also holds the test samples' variance "
                    "(with fewer than 3 seeds, the samples' alone: the seed-to-seed variance is "
                    "then not measured); probe gaps, kept as one score per seed: Student-t over "
                    "the seeds' differences. The pairs are fixed before looking at test: UMT − "
                    "joint, the verdict's pair (chosen on validation), the probe gaps.",
                    comparisons_text(summary),
                ]
                if summary.get("comparisons")
                else []
            ),
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
    if (summary.get("search") or {}).get("units"):
        figures["figures/sensitivity.png"] = sensitivity_figure(summary, _name)
        write_bytes(run_dir / "figures" / "sensitivity.png", figures["figures/sensitivity.png"])
    examples = run_dir / "figures" / "examples.png"
    if examples.is_file():
        figures["figures/examples.png"] = examples.read_bytes()
    write_text(run_dir / "report.html", html_page(md, figures))


def html_page(md: str, figures: dict[str, bytes]) -> str:
    """A self-contained page from the report's Markdown, rendered by markdown-it-py (CommonMark
    with tables); each figure the Markdown shows is inlined as a data URI.

    Example:
        >>> page = html_page("# T\\n\\n- a\\n- b\\n\\n| x |\\n|---|\\n| 1 |", {})
        >>> "<ul>" in page and "<li>b</li>" in page and "<table>" in page
        True
    """
    from markdown_it import MarkdownIt

    renderer = MarkdownIt("commonmark", {"html": False}).enable("table")
    body = renderer.render(md)
    for path, data in figures.items():
        if path.endswith(".png"):
            uri = "data:image/png;base64," + base64.b64encode(data).decode()
            body = body.replace(f'src="{html.escape(path)}"', f'src="{uri}"')
    style = (
        "body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3em .6em}"
        "img{max-width:100%}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>umt report</title>"
        f"<style>{style}</style></head><body>{body}</body></html>\n"
    )


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
