"""``python -m benchmarks.check_sets OUT [--sets a b ...] [--set k=v ...] [--seeds "[0, 1, 2]"]``: the
study with its defaults on data sets they were never tuned on (``scripts/make_check_sets.py``:
vectors, small images, ``(C, T)`` series, three modalities, a real tabular set and issue 26's
user-loop example; plus the built-in ``paired`` preset), against the plain-script yardstick
(``benchmarks/yardstick.py``): the bar is its fused model at its own ``--bar-seeds`` seeds (20),
with a Welch interval for the study's best fused model − the bar; it is also shown at the study's
seeds, as are the uni-modal yardsticks.

Per set, one line of the table of issue 26: the yardstick (fused and per modality), the study's
teachers (head and the probe on their own features, on validation), joint, UMT and UME on test,
each encoder's probe (teacher / joint / UMT), the share of each probe gap (>= 2 points, beyond
noise) that UMT closes, the recommendation, the wall time and the search's
trials. ``OUT/table.md`` and ``OUT/table.json`` hold it; the studies' run directories are under
``OUT/runs`` (cached: a rerun only trains what changed).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "scripts")]

from make_check_sets import make_check_sets  # noqa: E402

from benchmarks.yardstick import yardstick  # noqa: E402
from umt import load_config, run_study  # noqa: E402

BUILT_IN = {"paired": ["data.name=synthetic", "data.synthetic.preset=paired"]}


def _mean(entry: dict[str, Any] | None) -> float:
    return float("nan") if entry is None else 100 * entry["mean"]


def _cached(path: Path, compute: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """``path``'s JSON; computed by ``compute(*args)`` and written first where it is missing."""
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(compute(*args), indent=1))
    return dict(json.loads(path.read_text()))


def _yardsticks(root: Path, mods: list[str], seeds: list[int]) -> dict[str, Any]:
    """The fused yardstick and each modality's, at the study's seeds."""
    return {"fused": yardstick(root, mods, seeds), **{m: yardstick(root, [m], seeds) for m in mods}}


def _bar(root: Path, mods: list[str], n: int) -> dict[str, Any]:
    """The fused yardstick at its own seeds ``0 .. n-1``: the bar."""
    return {"seeds": n, **yardstick(root, mods, list(range(n)))}


def versus(ours: dict[str, Any], bar: dict[str, Any]) -> dict[str, float]:
    """Ours (the study's per-seed test scores) − the yardstick (mean and std over its own
    seeds), points, with a 95 % Welch interval: two independent sets of seeds.

    Example:
        >>> ours = {"values": [0.97, 0.97, 0.96]}
        >>> versus(ours, {"seeds": 20, "test": 0.98, "test_std": 0.01})
        {'diff': -1.3, 'lo': -2.4, 'hi': -0.2}
    """
    from scipy.stats import t

    a, n_a = np.asarray(ours["values"], dtype=float), len(ours["values"])
    n_b, sd_b = int(bar["seeds"]), float(bar["test_std"])
    va, vb = (a.var(ddof=1) if n_a > 1 else 0.0) / n_a, sd_b**2 / n_b
    df = (va + vb) ** 2 / max(va**2 / max(n_a - 1, 1) + vb**2 / max(n_b - 1, 1), 1e-300)
    diff, half = a.mean() - float(bar["test"]), float(t.ppf(0.975, df)) * np.sqrt(va + vb)
    return {
        k: round(100 * float(v), 1)
        for k, v in (("diff", diff), ("lo", diff - half), ("hi", diff + half))
    }


def row(name: str, s: dict[str, Any], yard: dict[str, Any] | None, wall: float) -> dict[str, Any]:
    """The table's line for one study's summary."""
    methods, probes = s["methods"], s["probes"]
    out: dict[str, Any] = {"set": name, "wall_s": round(wall), "yardstick": None}
    for stage in ("joint", "umt", "ume"):
        out[stage] = round(_mean(methods.get(stage, {}).get("test_acc")), 1)
    out["fused_best"] = max(out["joint"], out["umt"])
    if yard is not None:
        out["yardstick"] = round(100 * yard["bar"]["test"], 1)  # at its own many seeds
        out["yardstick_at_study_seeds"] = round(100 * yard["fused"]["test"], 1)
        best = "umt" if out["umt"] >= out["joint"] else "joint"
        out["vs_yardstick"] = versus(methods[best]["test_acc"], yard["bar"])
    out["teachers"] = {}
    for m in s["data"]["modalities"]:
        t = methods.get(f"teacher-{m}", {})
        p = probes.get(m, {})
        out["teachers"][m] = {
            "test": round(_mean(t.get("test_acc")), 1),
            "val_head": round(_mean(t.get("val_acc")), 1),
            "probe": {k: round(_mean(v), 1) for k, v in p.items()},
            "yardstick": round(100 * yard[m]["test"], 1) if yard is not None else None,
            "flags": t.get("flags", []),
        }
    out["closure"] = closure(s.get("comparisons", []))
    rec = s.get("verdict") or s.get("recommendation") or {}
    out["recommended"] = rec.get("method") or rec.get("text")
    out["trials"] = (s.get("search") or {}).get("trials_spent")
    return out


def closure(comparisons: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per modality whose probe gap (teacher − joint) is at least 2 points and beyond noise: the
    gap (mean and 95 % interval, points) and the share of it UMT closes (UMT − joint over the
    gap, from the means over seeds)."""
    diffs = {(c["modality"], c["a"]): c for c in comparisons if c.get("what") == "probe_test_acc"}
    out = {}
    for (m, a), gap in diffs.items():
        umt = diffs.get((m, "umt"))
        if a != "teacher" or umt is None or gap["within_noise"] or gap["mean_diff"] < 0.02:
            continue
        out[m] = {
            "gap": round(100 * gap["mean_diff"], 1),
            "lo": round(100 * gap["lo"], 1),
            "hi": round(100 * gap["hi"], 1),
            "closed": round(100 * umt["mean_diff"] / gap["mean_diff"]),
        }
    return out


def markdown(rows: list[dict[str, Any]]) -> str:
    head = (
        "| set | yardstick (its seeds; the study's) | joint | UMT | UME | best fused − yardstick "
        "(95 %) | teachers (test; probe: teacher / joint / UMT) | gaps ≥ 2 beyond noise: closed "
        "by UMT | recommended | wall | trials |\n|---|---|---|---|---|---|---|---|---|---|---|"
    )
    lines = [head]
    for r in rows:
        teachers = "; ".join(
            f"{m} {t['test']:.1f} ({t['probe'].get('teacher', float('nan')):.1f} / "
            f"{t['probe'].get('joint', float('nan')):.1f} / {t['probe'].get('umt', float('nan')):.1f})"
            for m, t in r["teachers"].items()
        )
        v, yard = r.get("vs_yardstick"), "—"
        gap = "" if v is None else f"{v['diff']:+.1f} [{v['lo']:+.1f}, {v['hi']:+.1f}]"
        if r["yardstick"] is not None:
            yard = f"{r['yardstick']} ({r['yardstick_at_study_seeds']})"
        closed = "; ".join(
            f"{m} {c['gap']:+.1f} [{c['lo']:.1f}, {c['hi']:.1f}]: {c['closed']} %"
            for m, c in r.get("closure", {}).items()
        )
        lines.append(
            f"| {r['set']} | {yard} | {r['joint']} | {r['umt']} | {r['ume']} | "
            f"{gap} | {teachers} | {closed or '—'} | {r['recommended']} | {r['wall_s']} s | {r['trials'] or 0} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path)
    p.add_argument("--sets", nargs="+", help="the sets to run (default: all)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--seeds", default="[0, 1, 2]", help="the study's seeds (YAML list)")
    p.add_argument("--name", default="", help="a suffix of the run names (a variant's runs)")
    p.add_argument("--tag", default="", help="a suffix of the table's file names")
    p.add_argument(
        "--bar-seeds",
        type=int,
        default=20,
        help="the fused yardstick's own seeds (0 .. N-1), the bar: at the study's few seeds alone "
        "it moves by its seeds' luck (cancer: 99.3 %% at seeds 0-5, 97.7 %% at 6-11)",
    )
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    roots = {r.name: r for r in make_check_sets(args.out / "data")}
    wanted = args.sets or [*roots, *BUILT_IN]
    seeds = [int(x) for x in yaml.safe_load(args.seeds)]  # the yardstick's too
    rows = []
    for name in wanted:
        start = time.perf_counter()
        if name in BUILT_IN:
            data, yard = BUILT_IN[name], None
        else:
            root = roots[name]
            data = ["data.name=folder", f"data.root={root}"]
            suffix = "" if seeds == [0, 1, 2] else "-" + "-".join(map(str, seeds))
            mods = list(json.loads((root / "meta.json").read_text())["modalities"])
            cache = args.out / "yardstick"
            yard = _cached(cache / f"{name}{suffix}.json", _yardsticks, root, mods, seeds)
            bar_file = cache / f"{name}-fused-{args.bar_seeds}seeds.json"
            yard["bar"] = _cached(bar_file, _bar, root, mods, args.bar_seeds)
        overrides = [
            f"seeds={args.seeds}",
            "train.progress=false",
            f"name={name}{args.name}",
            *data,
            *args.overrides,
        ]
        cfg = load_config(overrides=overrides)
        t0 = time.perf_counter()
        summary = run_study(cfg, args.out / "runs", log=lambda _: None).summary
        rows.append(row(name, summary, yard, time.perf_counter() - t0))
        print(markdown(rows[-1:]).splitlines()[-1], f"({time.perf_counter() - start:.0f} s)")
        sys.stdout.flush()
    tag = args.tag or args.name
    (args.out / f"table{tag}.md").write_text(markdown(rows) + "\n")
    (args.out / f"table{tag}.json").write_text(json.dumps(rows, indent=1))
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
