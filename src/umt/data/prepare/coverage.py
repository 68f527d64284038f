"""What a prepared folder holds against its manifest: ``OUT/coverage.json`` and ``OUT/coverage.md``.

Per split: the clips the manifest expects, the clips the user's annotation files list, and the
clips prepared; why the others were skipped (no file, undecodable, excluded by the split rule:
each clip is in ``skipped.csv`` with its reason); which split rule and class list were used, and
how the class list differs from the manifest's; classes left with no prepared clip. The report
depends only on its inputs (no times, no paths beyond the folder), so a sharded preparation
merged writes the same bytes as one process.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from umt.data.base import SPLITS
from umt.data.prepare.clips import Clip
from umt.data.prepare.manifest import Manifest, SplitRule
from umt.io import write_json, write_text

COVERAGE_JSON = "coverage.json"
COVERAGE_MD = "coverage.md"


class SplitClips(Protocol):
    """A split's annotated clips (one row each) and the rows prepared."""

    clips: list[Clip]
    done: set[int]


def _kind(reason: str) -> str:
    """The kind of a ``skipped.csv`` reason: ``missing``, ``excluded`` (by the annotations or
    the split rule) or ``undecodable``."""
    if reason.startswith("missing"):
        return "missing"
    if reason.startswith(("ambiguous", "actor")):
        return "excluded"
    return "undecodable"


def coverage(
    manifest: Manifest,
    rule: SplitRule,
    classes: Sequence[str],
    class_list: str,
    splits: Mapping[str, SplitClips],
    skipped: Iterable[tuple[str, str, str]],
) -> dict[str, Any]:
    """The coverage report (see the module docstring) as a JSON-ready dict.

    Args:
        classes: the class names the folder was labelled with.
        class_list: where they come from (a manifest list's ``name@version``, ``file:...`` or
            ``annotations``).
        splits: each split's annotated clips and prepared rows.
        skipped: ``(clip, split, reason)`` rows, as in ``skipped.csv``.
    """
    skipped = list(skipped)
    annotated = {s: len(splits[s].clips) for s in SPLITS}
    prepared = {s: len(splits[s].done) for s in SPLITS}
    excluded = Counter(sp for _, sp, r in skipped if _kind(r) == "excluded")
    expected = rule.expected or {}
    counts: dict[str, dict[str, Any]] = {}
    for s in SPLITS:
        merged = s == rule.val_from  # val was carved from this split: count both
        counts[s] = {
            "expected": expected.get(s),
            "annotated": annotated[s] + excluded[s] + (annotated["val"] if merged else 0),
            "prepared": prepared[s] + (prepared["val"] if merged else 0),
            "includes_val": merged,
        }
    if rule.val_from is not None:
        counts["val"]["carved_from"] = rule.val_from
    counts["total"] = {
        "expected": expected.get("total"),
        "annotated": sum(annotated.values()) + sum(excluded.values()),
        "prepared": sum(prepared.values()),
    }
    reference = manifest.class_list()
    used = set(classes)
    per_split = {s: Counter(splits[s].clips[r].label for r in splits[s].done) for s in SPLITS}
    empty = {s: [c for c in classes if per_split[s][c] == 0] for s in SPLITS}
    train = per_split["train"] + per_split["val"]
    fewest = sorted(classes, key=lambda c: (train[c], c))[:5]
    return {
        "format": "umt-coverage",
        "version": 1,
        "manifest": f"{manifest.recipe}.yaml",
        "dataset": manifest.title,
        "split_rule": {
            "name": rule.name,
            "default": rule.name == manifest.default_split,
            "rule": rule.rule,
        },
        "class_list": {
            "used": class_list,
            "classes": len(classes),
            "manifest": reference.tag,
            "manifest_not_used": [c for c in reference.names if c not in used],
            "used_not_in_manifest": [c for c in classes if c not in set(reference.names)],
        },
        "counts": counts,
        "expected_source": rule.expected_source,
        "skipped": {
            s: dict(sorted(Counter(_kind(r) for _, sp, r in skipped if sp == s).items()))
            for s in SPLITS
        },
        "classes_without_prepared_clips": empty,
        "fewest_prepared_train": [[c, train[c]] for c in fewest],
    }


def image_coverage(
    manifest: Manifest, class_names: Sequence[str] | None, sizes: Mapping[str, int]
) -> dict[str, Any]:
    """The coverage report of a segmentation set (NYU Depth V2): images per split against the
    manifest's default split rule, and the class names against its default list."""

    class _Split:
        def __init__(self, n: int) -> None:
            self.clips = [Clip(str(i), "", "", ()) for i in range(n)]
            self.done = set(range(n))

    reference = manifest.class_list()
    names = list(class_names) if class_names else list(reference.names)
    origin = "the class-mapping file" if class_names else f"{reference.tag} (the file names none)"
    report = coverage(
        manifest,
        manifest.split_rule(),
        names,
        origin,
        {s: _Split(sizes[s]) for s in SPLITS},
        [],
    )
    report["classes_without_prepared_clips"] = {s: [] for s in SPLITS}  # per pixel, not per image
    report["skipped"] = None  # every image of the labelled file is converted
    report["fewest_prepared_train"] = []
    return report


def _n(x: int | None) -> str:
    return "n/a" if x is None else f"{x:,}"


def render(report: dict[str, Any]) -> str:
    """The report as Markdown (``coverage.md``)."""
    rule, cls, counts = report["split_rule"], report["class_list"], report["counts"]
    lines = [
        f"# Coverage against the {report['dataset']} manifest ({report['manifest']})",
        "",
        f"Split rule: **{rule['name']}**{' (the default)' if rule['default'] else ''}: "
        f"{rule['rule']}",
        "",
        f"Classes: {cls['classes']} ({cls['used']}); the manifest's list is {cls['manifest']}.",
    ]
    for key, text in (
        ("manifest_not_used", "In the manifest's list but not used"),
        ("used_not_in_manifest", "Used but not in the manifest's list"),
    ):
        if cls[key]:
            more = (
                f" ... and {len(cls[key]) - 12} more ({COVERAGE_JSON})"
                if len(cls[key]) > 12
                else ""
            )
            lines.append(f"{text} ({len(cls[key])}): {', '.join(cls[key][:12])}{more}.")
    lines += [
        "",
        "| split | expected | annotated | prepared | prepared / expected |",
        "|---|---|---|---|---|",
    ]
    for s in (*SPLITS, "total"):
        c = counts[s]
        name = s + (" (with the val carved from it)" if c.get("includes_val") else "")
        if "carved_from" in c:
            name += f" (carved from {c['carved_from']})"
        share = f"{100 * c['prepared'] / c['expected']:.3g} %" if c["expected"] else ""
        lines.append(
            f"| {name} | {_n(c['expected'])} | {_n(c['annotated'])} | {_n(c['prepared'])} | {share} |"
        )
    lines += ["", f"Expected counts: {report['expected_source'] or 'n/a'}", ""]
    skipped = Counter[str]()
    for per in (report["skipped"] or {}).values():
        skipped.update(per)
    if report["skipped"] is not None:
        lines.append(
            f"Skipped: {skipped['missing']:,} missing (no file), {skipped['undecodable']:,} "
            f"undecodable, {skipped['excluded']:,} excluded by the annotations or the split "
            "rule; skipped.csv lists each clip with its reason."
        )
    for s, names in report["classes_without_prepared_clips"].items():
        if names:
            lines.append(f"Classes with no prepared {s} clip ({len(names)}): {', '.join(names)}.")
    fewest = ", ".join(f"{c} ({n})" for c, n in report["fewest_prepared_train"])
    if fewest:
        lines.append(f"Fewest prepared training clips (train + val): {fewest}.")
    return "\n".join(lines) + "\n"


def write_coverage(out: Path, report: dict[str, Any]) -> None:
    """``out/coverage.json`` and ``out/coverage.md``."""
    write_json(out / COVERAGE_JSON, report)
    write_text(out / COVERAGE_MD, render(report))
