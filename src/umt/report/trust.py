"""Whether a study's numbers can be trusted: flags on its stages (training stopped while still
improving, a teacher whose own head is below the probe on its features), the recipe each method
ran under, and the tuning budget. Built from the per-seed results into ``summary.json``, and read
back from the summary alone by the report.
"""

from __future__ import annotations

from typing import Any

from umt.engine import is_converged
from umt.methods import METHODS

#: A teacher's validation score this far (fraction) below the linear probe on its own features
#: is an under-trained head: the yardstick of the probe gaps is itself short. The study refits
#: such a head from the probe (``umt.study.runner``), so a flag is left only where it cannot
#: (segmentation's decoder) or for a teacher loaded from a file.
HEAD_GAP = 0.03


def stage_flags(
    stage: str, rows: list[dict[str, Any]], probe_val: float | None, metric: str
) -> list[str]:
    """The warnings for one stage from its per-seed ``result.json`` rows; ``probe_val`` is the
    mean probe validation score of a teacher's own encoder (``None`` for other stages).

    Converged means that the validation score rose and then stopped improving: a best epoch at
    the cap (still improving) or at the first epoch (it never rose: nothing learned after one
    epoch) is flagged.

    Example:
        >>> rows = [{"best_epoch": 19, "epochs": 20, "val_acc": 0.41}]
        >>> stage_flags("teacher-audio", rows, 0.64, "acc")  # doctest: +NORMALIZE_WHITESPACE
        ['best epoch at the cap (epoch 20 of 20, seed(s) 1 of 1): still improving, raise
          train.epochs', "under-trained head: the teacher's head is 23.0 points below the linear
          probe on its own features on validation (41.0 vs 64.0)"]
        >>> stage_flags("joint", [{"best_epoch": 0, "stopped_epoch": 6, "epochs": 40}], None, "acc")
        ['best epoch is the first (seed(s) 1 of 1): the validation score never rose after one epoch; check train.lr']
        >>> stage_flags("umt", [{"best_epoch": 3, "epochs": 40, "declined": ["a"]}], None, "acc")
        ["distillation declined (seed(s) 1 of 1): distilling a put the val score below joint training's beyond noise, from the teachers and from joint's model; trained with nothing distilled (the attempts: umt.declined, umt.declined2)"]
    """
    flags: list[str] = []
    at_cap = [
        r
        for r in rows
        if "best_epoch" in r
        and not r.get("converged", is_converged(int(r["best_epoch"]), int(r["epochs"])))
        and (int(r["best_epoch"]) > 0 or int(r["epochs"]) == 1)  # else: "the first", below
    ]
    if at_cap:
        epochs = at_cap[0]["epochs"]
        best = max(int(r["best_epoch"]) for r in at_cap) + 1
        flags.append(
            f"best epoch at the cap (epoch {best} of {epochs}, seed(s) {len(at_cap)} of "
            f"{len(rows)}): still improving, raise train.epochs"
        )
    # A stage whose encoders started from trained ones (UMT from its teachers or joint's
    # encoders) may keep its start: an early best epoch there is not a failure to learn.
    first = [
        r
        for r in rows
        if r.get("best_epoch") == 0
        and int(r.get("stopped_epoch", 1)) > 0
        and not r.get("warm_start")
    ]
    if first:
        flags.append(
            f"best epoch is the first (seed(s) {len(first)} of {len(rows)}): the validation "
            "score never rose after one epoch; check train.lr"
        )
    restarted = [r for r in rows if r.get("restarted")]
    if restarted:
        flags.append(
            f"distillation restarted (seed(s) {len(restarted)} of {len(rows)}): started from the "
            "teachers it put the val score below joint training's beyond noise; the same "
            f"distillation started from joint's trained model (the attempt: {stage}.declined)"
        )
    declined = [r for r in rows if r.get("declined")]
    if declined:
        flags.append(
            f"distillation declined (seed(s) {len(declined)} of {len(rows)}): distilling "
            f"{', '.join(declined[0]['declined'])} put the val score below joint training's "
            "beyond noise, from the teachers and from joint's model; trained with nothing "
            f"distilled (the attempts: {stage}.declined, {stage}.declined2)"
        )
    if stage.startswith("teacher-") and probe_val is not None:
        val = sum(float(r[f"val_{metric}"]) for r in rows) / len(rows)
        if val < probe_val - HEAD_GAP:
            flags.append(
                f"under-trained head: the teacher's head is {100 * (probe_val - val):.1f} points "
                f"below the linear probe on its own features on validation ({100 * val:.1f} vs "
                f"{100 * probe_val:.1f})"
            )
    return flags


def add_flags(summary: dict[str, Any], per_seed: dict[int, dict[str, Any]], metric: str) -> None:
    """Add to each ``summary["methods"][stage]`` its ``flags``, the ``recipe`` it ran under
    (optimiser and learning rate, where ``result.json`` records them) and, for a teacher whose
    head was refit from its probe, ``head_refit`` (seeds and the head's val score before)."""
    seeds = list(per_seed)
    for stage, entry in summary["methods"].items():
        rows = [per_seed[s]["stages"][stage] for s in seeds]
        probe = None
        if stage.startswith("teacher-"):
            m = stage.removeprefix("teacher-")
            vals = [
                per_seed[s]["probes"].get(stage, {}).get(m, {}).get(f"val_{metric}") for s in seeds
            ]
            probe = sum(vals) / len(vals) if all(v is not None for v in vals) else None
        entry["flags"] = stage_flags(stage, rows, probe, metric)
        refit = {
            str(s): r["head_refit"] for s, r in zip(seeds, rows, strict=True) if "head_refit" in r
        }
        if refit:
            entry["head_refit"] = refit
        if "optimizer" in rows[0]:
            entry["recipe"] = {"optimizer": rows[0]["optimizer"], "lr": rows[0]["lr"]}


def flags_text(summary: dict[str, Any], name: Any = str) -> str:
    """The flags of every stage, as a list under the main table ('' when none)."""
    lines = [
        f"- {name(stage)}: {flag}"
        for stage, entry in summary["methods"].items()
        for flag in entry.get("flags", ())
    ]
    return "**Flags:**\n" + "\n".join(lines) if lines else ""


def recipe_text(summary: dict[str, Any], name: Any = str) -> str:
    """The optimiser each trained method ran under, and a warning where a method ran under
    another optimiser than its mechanism assumes (``MethodSpec.optimizer``: e.g. OGM-GE and
    MMPareto scale per-encoder gradients, which an adaptive optimiser largely undoes)."""
    recipes = {s: e["recipe"] for s, e in summary["methods"].items() if "recipe" in e}
    if not recipes:
        return ""
    parts = [f"{name(s)} {r['optimizer']} (lr {r['lr']:g})" for s, r in recipes.items()]
    text = "Optimiser per stage: " + "; ".join(parts) + "."
    adaptive = [
        name(s)
        for s, r in recipes.items()
        if _assumed(s) is not None and r["optimizer"] != _assumed(s)
    ]
    if adaptive:
        text += (
            f" {', '.join(adaptive)} scale(s) per-encoder gradients, which their papers apply "
            f"under SGD; here they ran under an adaptive optimiser, whose per-parameter "
            "normalisation largely undoes that scaling (set `<method>.train.optimizer: sgd`)."
        )
    return text


def _assumed(stage: str) -> str | None:
    """The optimiser the mechanism of ``stage``'s method assumes (``None``: any)."""
    spec = METHODS.get(stage.split("-")[0])
    return spec.optimizer if spec is not None else None


def search_text(summary: dict[str, Any], name: Any = str, *, short: bool = False) -> str:
    """Where the study's recipe came from (``summary["search"]``): the search's trials and
    choices, a shipped recipe, or the configured one ('' for a summary without the entry)."""
    search = summary.get("search")
    if not search:
        return ""
    how = search.get("source")
    if how == "shipped":
        return (
            f"Recipe: umt's shipped recipe for this data set (`{search.get('recipe')}`, found by "
            "the recipe search; umt/configs/recipes), not searched in this run: "
            "`--set tune.enabled=true` searches it again."
        )
    if how in ("configured", "off"):
        why = "tune.enabled=false" if how == "off" else "a built-in set without a shipped recipe"
        return (
            f"Recipe: as configured, not searched ({why}); `--set tune.enabled=true` searches it "
            "on validation."
        )
    units = search.get("units", {})
    head = (
        f"Recipe searched on validation: {search['trials_spent']} trial(s) ({search['pruned']} "
        f"pruned) in {search['seconds']:.0f} s at training seed {search['seed']}; the study then "
        "retrained the chosen values at its own seeds."
    )
    if short:
        chosen = "; ".join(f"{name(u)}: {values_text(e['chosen'])}" for u, e in units.items())
        return f"{head} Chosen: {chosen}."
    lines = [
        head + f" Budget: {search['teacher_budget']} trial(s) per teacher, {search['budget']} per "
        "method (the same for every method), the configured values first."
    ]
    for unit, entry in units.items():
        done = [t for t in entry["trials"] if t["val"] is not None]
        best = max((t["val"] for t in done), default=None)
        kept = next((t["val"] for t in done if t["values"] == entry["chosen"]), best)
        score = f" (val {100 * kept:.2f} %)" if kept is not None else ""
        if kept is not None and best is not None and kept < best:
            rule = "the cheapest" if unit.startswith("teacher-") else "the configured values"
            score += f", {rule} within one standard error of the best (val {100 * best:.2f} %)"
        lines.append(
            f"- {name(unit)}: chose {values_text(entry['chosen'])}{score}, from "
            f"{len(entry['trials'])} trial(s)" + _edge_text(entry, f"tune.space.{unit}")
        )
    return "\n".join(lines)


def _edge_text(entry: dict[str, Any], space: str) -> str:
    """The warning for chosen values at the edge of what could be tried ('' when none)."""
    keys = entry.get("edge", [])
    if not keys:
        return ""
    return (
        f". **At the edge of its space** ({', '.join(keys)}): the best value may lie beyond; "
        f"widen {space}"
    )


def values_text(values: dict[str, Any]) -> str:
    """``key=value, ...`` of a trial's settings."""
    return ", ".join(
        f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items()
    )


def sensitivity_figure(summary: dict[str, Any], name: Any = str) -> bytes:
    """A PNG: each search unit's trials, validation score against the learning rate tried (or
    the trial's number where the unit has none); pruned trials marked at their last score."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    units = summary["search"]["units"]
    fig, axes = plt.subplots(1, len(units), figsize=(3.2 * len(units), 3.0), dpi=110, squeeze=False)
    for ax, (unit, entry) in zip(axes[0], units.items(), strict=True):
        key = next((k for k in ("lr", "train.lr") if k in entry["space"]), None)
        for t in entry["trials"]:
            if t["val"] is None:
                continue
            x = t["values"].get(key, t["number"]) if key else t["number"]
            ax.plot(x, 100 * t["val"], "o", color="C0")
        if key:
            ax.set_xscale("log")
        ax.set_xlabel(key or "trial")
        ax.set_title(str(name(unit)), fontsize=9)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("val score (%)")
    fig.suptitle("The search's trials: validation score per value tried", fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
