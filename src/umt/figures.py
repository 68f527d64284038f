"""The report's figures, drawn from a study's summary (and, for the training curves, its run
directory): matplotlib, headless (Agg)."""

from __future__ import annotations

from typing import Any

from umt.methods import stage_display_name as _name
from umt.tasks import task_named


def probe_figure(summary: dict[str, Any]) -> bytes:
    """A PNG: grouped bars of probe accuracy per modality (teacher / joint / UMT), error bars."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    probes = summary["probes"]
    mods = list(probes)
    owners: list[str] = []
    for per in probes.values():
        owners += [o for o in per if o not in owners]
    fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(mods), 3.6), dpi=120)
    width = 0.8 / max(1, len(owners))
    for i, owner in enumerate(owners):
        xs = [j + (i - (len(owners) - 1) / 2) * width for j in range(len(mods))]
        means = [100 * probes[m][owner]["mean"] if owner in probes[m] else 0 for m in mods]
        stds = [100 * probes[m][owner]["std"] if owner in probes[m] else 0 for m in mods]
        ax.bar(xs, means, width, yerr=stds, capsize=3, label=_name(owner))
    ax.set_xticks(range(len(mods)), mods)
    ax.set_ylabel(
        f"linear-probe test {task_named(summary['data'].get('task', 'classification'), what='the study').metric_name} (%)"
    )
    ax.set_title(f"Encoders of {summary['data']['name']}: modality failure and its fix")
    ax.legend(fontsize=8, loc="lower right")
    lo = min(100 * probes[m][o]["mean"] for m in mods for o in probes[m])
    ax.set_ylim(max(0.0, lo - 15), 100)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
