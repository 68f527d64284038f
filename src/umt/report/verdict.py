"""The report's verdict: one sentence, decided on validation (``summary["verdict"]``, see
``umt.report.compare.verdict``), then the evidence under it: the papers' UMT/UME rule (a line of
evidence, never a second verdict) and the comparisons with their intervals. From the summary
alone."""

from __future__ import annotations

from typing import Any

from umt.methods import stage_display_name as _name
from umt.tasks import task_of_summary


def _pct(x: float, signed: bool = False) -> str:
    """A fraction in percentage points, two decimals, a true minus sign.

    Example:
        >>> _pct(0.02791, signed=True), _pct(-0.005)
        ('+2.79', '−0.50')
    """
    text = f"{100 * x:{'+' if signed else ''}.2f}"
    return text.replace("-", "−") if text.lstrip("+-") != "0.00" else text.lstrip("-")


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
    what = what.replace("val_", "val ")
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
    column = task_of_summary(summary).column
    return "\n".join(comparison_line(c, column) for c in summary.get("comparisons") or [])


def _interval(d: dict[str, Any]) -> str:
    """``+1.1 points [0.4, 1.9]`` (or without an interval where there is none)."""
    if d.get("lo") is None:
        return (
            f"{_signed(d['mean_diff'])} points (no interval: one seed and no per-sample outcomes)"
        )
    return f"{_signed(d['mean_diff'])} points [{_points(d['lo'])}, {_points(d['hi'])}]"


def verdict_text(summary: dict[str, Any], *, bold: bool = True) -> str:
    """The study's one verdict, as one sentence (``''`` where no method was trained).

    Example:
        >>> s = {"data": {"task": "classification"}, "seeds": [0, 1, 2], "verdict": {
        ...     "method": "umt", "runner_up": "ume", "val_acc": 0.96, "runner_up_val_acc": 0.955,
        ...     "tie": True, "tied_with": ["ume"], "cheaper": "ume", "cost": {"umt": 30, "ume": 10},
        ...     "difference": {"mean_diff": 0.005, "lo": -0.004, "hi": 0.014}}}
        >>> print(verdict_text(s, bold=False))  # doctest: +NORMALIZE_WHITESPACE
        A tie between UMT and UME: they differ by less than the noise on validation (96.0 % vs
        95.5 %, +0.5 points [−0.4, 1.4]); UME is the cheaper to train (10 s vs 30 s).
    """
    v = summary.get("verdict")
    if not v:
        return ""
    k = task_of_summary(summary).metric
    b = "**" if bold else ""
    best = _name(v["method"])
    if v.get("runner_up") is None:
        return f"{b}Use {best}{b}: the only method the study trained."
    second = _name(v["runner_up"])
    vals = f"{100 * v[f'val_{k}']:.1f} % vs {100 * v[f'runner_up_val_{k}']:.1f} %"
    diff = _interval(v["difference"])
    if v.get("tie"):
        cheap = v.get("cheaper")
        other = v["runner_up"] if cheap == v["method"] else v["method"]
        costs = v.get("cost") or {}
        tail = ""
        if cheap is not None and costs.get(cheap) is not None and costs.get(other):
            tail = (
                f"; {_name(cheap)} is the cheaper to train ({costs[cheap]:.0f} s vs "
                f"{costs[other]:.0f} s)"
            )
        return (
            f"{b}A tie between {best} and {second}{b}: they differ by less than the noise on "
            f"validation ({vals}, {diff}){tail}."
        )
    return (
        f"{b}Use {best}{b}: the best on validation ({vals} for the runner-up {second}, "
        f"{diff}, beyond the noise)."
    )


def rule_text(summary: dict[str, Any]) -> str:
    """The papers' UMT/UME rule as a line of evidence under the verdict ('' when it did not run)."""
    choice = summary.get("choice")
    if not choice:
        return ""
    if "margin" not in choice:  # a summary written before the rule's inputs were kept
        return f"Evidence, the papers' UMT/UME rule: it points to {choice['method'].upper()}."
    k = task_of_summary(summary).metric
    ume, other = choice[f"ume_{k}"], choice[f"{choice['compare']}_{k}"]
    sign = "≥" if choice["method"] == "ume" else "<"
    text = (
        f"Evidence, the papers' UMT/UME rule (Du et al. 2023): it points to "
        f"{choice['method'].upper()}, as {choice['split']} UME {100 * ume:.2f} % {sign} "
        f"{_name(choice['compare'])} {100 * other:.2f} % − margin {100 * choice['margin']:.2f}"
    )
    noise = choice.get("noise")
    if noise and noise.get("lo") is not None:
        text += f"; on {choice['split']} the pair differs by {_interval(noise)}"
        if noise["within_noise"]:
            text += ", within noise (read the rule's pointer as a tie)"
    text += "."
    if "agrees" in choice:
        text += " It agrees with the verdict." if choice["agrees"] else " The verdict differs."
    return text
