"""The report's figures, drawn from a study's summary (and, for the training curves, its run
directory's ``metrics.csv`` files): matplotlib, headless (Agg), each kept as PNG and SVG.

Example:
    >>> fig = draw_probes({"data": {"name": "toy"}, "seeds": [0, 1],
    ...                    "probes": {"a": {"teacher": {"mean": 0.9, "std": 0.01}}}})
    >>> tuple(float(y) for y in fig.axes[0].get_ylim())
    (0.0, 100.0)
    >>> files = render(fig)
    >>> files["png"][:4], files["svg"].lstrip()[:5]
    (b'\\x89PNG', b'<?xml')
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

from umt.engine.checkpoints import metric_rows
from umt.methods import stage_display_name as _name
from umt.tasks import task_of_summary

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the file-only Agg backend (no screen needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def render(fig: Figure) -> dict[str, bytes]:
    """``{"png": ..., "svg": ...}`` of ``fig`` (the whole figure, an outside legend included),
    then the figure is closed."""
    plt = pyplot()
    out = {}
    for fmt in ("png", "svg"):
        buf = io.BytesIO()
        # The SVG without a date, so that an unchanged figure gives the same file.
        meta = {"Date": None} if fmt == "svg" else None
        fig.savefig(buf, format=fmt, bbox_inches="tight", metadata=meta)
        out[fmt] = buf.getvalue()
    plt.close(fig)
    return out


def probe_caption(summary: dict[str, Any]) -> str:
    """What the probe figure's bars and error bars are.

    Example:
        >>> probe_caption({"seeds": [0, 1, 2], "data": {}})[:62]
        'Bars: linear-probe test accuracy (%) of each frozen encoder, m'
    """
    n = len(summary["seeds"])
    bars = (
        f"Bars: linear-probe test {task_of_summary(summary).metric_name} (%) of each frozen encoder, mean "
        f"over {n} seed(s); y-axis from 0. "
    )
    if n < 2:
        return bars + "No error bars: one seed."
    return bars + f"Error bars: ± one standard deviation (sample, n − 1) over the {n} seeds."


def draw_probes(summary: dict[str, Any]) -> Figure:
    """Grouped bars of probe accuracy per modality (teacher / joint / UMT ...), error bars of
    one standard deviation over seeds, the y-axis from 0 to 100, the legend right of the axes
    (never over a bar)."""
    plt = pyplot()
    probes = summary["probes"]
    mods = list(probes)
    owners: list[str] = []
    for per in probes.values():
        owners += [o for o in per if o not in owners]
    fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(mods), 3.6), dpi=120)
    width = 0.8 / max(1, len(owners))
    for i, owner in enumerate(owners):
        js = [j for j, m in enumerate(mods) if owner in probes[m]]  # no bar where none ran
        xs = [j + (i - (len(owners) - 1) / 2) * width for j in js]
        means = [100 * probes[mods[j]][owner]["mean"] for j in js]
        stds = [100 * probes[mods[j]][owner]["std"] for j in js]
        ax.bar(xs, means, width, yerr=stds, capsize=3, label=_name(owner))
    ax.set_xticks(range(len(mods)), mods)
    ax.set_ylabel(f"linear-probe test {task_of_summary(summary).metric_name} (%)")
    ax.set_title(f"Encoders of {summary['data']['name']}: modality failure and its fix")
    # Outside the axes, right of them: bars of any height stay visible.
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    ax.set_ylim(0.0, 100.0)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def probe_figure(summary: dict[str, Any]) -> bytes:
    """A PNG of :func:`draw_probes`."""
    return render(draw_probes(summary))["png"]


def _column(rows: list[dict[str, str]], key: str) -> tuple[list[int], list[float]]:
    """The epochs (from 1) and values of ``key`` in ``metrics.csv`` rows (Lightning writes the
    train and the val values of an epoch on separate rows; empty cells are skipped).

    Example:
        >>> _column([{"epoch": "0", "val/acc": "0.5"}, {"epoch": "0", "val/acc": ""}], "val/acc")
        ([1], [0.5])
    """
    epochs, values = [], []
    for r in rows:
        if r.get(key) and r.get("epoch", "").isdigit():
            epochs.append(int(r["epoch"]) + 1)  # Lightning counts from 0; the report from 1
            values.append(float(r[key]))
    return epochs, values


def stage_curves(
    summary: dict[str, Any], run_dir: Path
) -> dict[int, dict[str, list[dict[str, str]]]]:
    """Per seed, per stage with a ``metrics.csv`` (UME and loaded teachers have none), its rows."""
    out: dict[int, dict[str, list[dict[str, str]]]] = {}
    for seed in summary["seeds"]:
        rows = {
            st: r
            for st in summary["methods"]
            if (r := metric_rows(Path(run_dir) / f"seed{seed}" / st / "metrics.csv"))
        }
        if rows:
            out[seed] = rows
    return out


def curves_caption(summary: dict[str, Any]) -> str:
    """What the training-curve figure shows."""
    return (
        f"Training curves, one column per seed: top, the validation {task_of_summary(summary).metric_name}"
        " (%) after each epoch; bottom, the training loss (mean over the epoch's batches; each "
        "method's own loss, so methods' levels differ). One line per stage; UME and loaded "
        "teachers train nothing and have no curve."
    )


def draw_curves(summary: dict[str, Any], run_dir: Path) -> Figure | None:
    """Val score and train loss per epoch of every stage that logged ``metrics.csv``; one column
    per seed; ``None`` where no stage logged one."""
    curves = stage_curves(summary, run_dir)
    if not curves:
        return None
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    k = f"val/{task_of_summary(summary).metric}"
    order = list(summary["methods"])
    fig, axes = plt.subplots(
        2, len(curves), figsize=(1.0 + 3.2 * len(curves), 5.2), dpi=120, squeeze=False
    )
    for col, (seed, stages) in enumerate(curves.items()):
        top, bottom = axes[0][col], axes[1][col]
        for stage, rows in stages.items():
            color = f"C{order.index(stage) % 10}"  # a stage's colour is the same in every column
            epochs, val = _column(rows, k)
            top.plot(epochs, [100 * v for v in val], marker=".", color=color, label=_name(stage))
            epochs, loss = _column(rows, "train/loss")
            bottom.plot(epochs, loss, marker=".", color=color)
        top.set_title(f"seed {seed}")
        top.set_ylim(0.0, 100.0)
        top.set_ylabel(f"val {task_of_summary(summary).metric_name} (%)")
        bottom.set_ylabel("train loss")
        bottom.set_xlabel("epoch")
        for ax in (top, bottom):
            ax.grid(alpha=0.3)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    handles, labels = axes[0][0].get_legend_handles_labels()
    for ax in axes[0][1:]:  # stages only some seeds logged
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.legend(handles, labels, fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 0.95))
    fig.tight_layout()
    return fig
