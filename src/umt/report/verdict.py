"""The report's verdict texts: the recommendation, the papers' UMT/UME rule and the comparisons
with their intervals, each from the summary alone."""

from __future__ import annotations

from typing import Any

from umt.methods import stage_display_name as _name
from umt.tasks import task_of_summary


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
    k = task_of_summary(summary).metric
    ume, other = choice[f"ume_{k}"], choice[f"{choice['compare']}_{k}"]
    sign = "≥" if choice["method"] == "ume" else "<"
    text = (
        f"{head} The papers' UMT/UME rule (Du et al. 2023) picks UME when the uni-modal ensemble "
        f"scores at least as well as joint training, less a margin, and UMT otherwise: here "
        f"{choice['split']} {task_of_summary(summary).metric_name} UME {100 * ume:.2f} % {sign} "
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
    column = task_of_summary(summary).column
    return "\n".join(comparison_line(c, column) for c in summary.get("comparisons") or [])


def recommendation_text(summary: dict[str, Any]) -> str:
    """The method to use (the best on validation among those trained), the papers' rule beside
    it, and one sentence where the two disagree."""
    rec = summary.get("recommendation")
    if not rec:
        return ""
    k = task_of_summary(summary).metric
    n = len(summary["seeds"])
    text = (
        f"**Recommended: {_name(rec['method'])}**, the best on validation among the trained "
        f"methods and UME (val {task_of_summary(summary).metric_name} {100 * rec[f'val_{k}']:.2f} %, mean "
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
