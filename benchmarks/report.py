"""The results as Markdown tables (what ``results.md`` holds and ``python -m benchmarks`` prints)."""

from __future__ import annotations

from typing import Any


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _rate(x: float) -> str:
    return f"{x:,.0f}"


def _x(x: float) -> str:
    return f"{x:.2f}x"


def _ms(seconds: float) -> str:
    return f"{1e3 * seconds:.1f} ms"


def to_markdown(results: dict[str, Any], command: str = "python -m benchmarks") -> str:
    meta = results["meta"]
    lines = [
        "# umt benchmarks",
        "",
        f"`{command}` — {meta['date']}, commit {meta['commit']}; torch {meta['torch']}, "
        f"Lightning {meta['lightning']}, Python {meta['python']}; {meta['cpus']} CPUs, "
        f"**{meta['threads']} thread(s)**, device {meta['device']}; batch {meta['batch_size']}, "
        f"{meta['epochs']} epochs per run; load average (1 min) "
        f"{meta['load_avg_before'][0]:.2f} before, {meta['load_avg_after'][0]:.2f} after; "
        f"{meta['wall_s']:.0f} s in all.",
        "",
        "Every number is the median of repeated runs after a warm-up; the variants compared in "
        "one table ran interleaved in one process, on the same data, model, batch size and "
        "threads.",
        "",
        "Setups: " + "; ".join(f"**{k}**: {v}" for k, v in results["setups"].items()) + ".",
        "",
        "## 1. Framework overhead: `umt.engine.fit` vs a bare PyTorch loop (joint training)",
        "",
        "Training samples/s over whole runs (each epoch: training + a validation pass). "
        "Ratios are time over the bare loop's (1.00x: no overhead). Variants of `fit` change one "
        "part: *epoch logging* sums the metrics in tensors and calls `self.log` once per epoch "
        "instead of once per training step and twice per validation batch; *ckpt at end* writes `best`/`last` at the final epoch "
        "instead of every epoch.",
        "",
    ]
    rows = []
    for name, r in results["overhead"].items():
        ratio = r["ratio"]
        rows.append(
            [
                name,
                _rate(r["bare"]["per_s"]),
                _rate(r["fit"]["per_s"]),
                _x(ratio["fit"]),
                f"{r['overhead_pct']:+.0f} %",
                _x(ratio["fit_epoch_logging"]),
                _x(ratio["fit_checkpoint_at_end"]),
                _x(ratio["fit_both"]),
            ]
        )
    header = ["setup", "bare samples/s", "fit samples/s", "fit / bare", "overhead"]
    lines += _table(header + ["epoch logging", "ckpt at end", "both"], rows)
    lines += ["", "Where the extra time goes (differences of the medians above):", ""]
    rows = []
    for name, r in results["overhead"].items():
        c = r["cost"]
        step_ms = 1e3 * r["bare"]["median_s"] / (r["steps_per_epoch"] * meta["epochs"])
        rows.append(
            [
                name,
                str(r["steps_per_epoch"]),
                f"{step_ms:.2f}",
                f"{c['engine_ms_per_step']:.2f}",
                f"{c['step_logging_ms_per_step']:.2f}",
                f"{c['checkpoints_ms_per_epoch']:.1f}",
            ]
        )
    header = ["setup", "steps/epoch", "bare ms/step (incl. val)", "fit extra ms/step"]
    lines += _table(header + ["of which logging ms/step", "checkpoints ms/epoch"], rows)
    model = results["overhead_model"]["mlp"]
    lines += [
        "",
        "The same at several batch sizes (mlp): fit's extra time per epoch = "
        f"**{_ms(model['per_step_s'])} per training step + {_ms(model['per_epoch_s'])} per "
        "epoch** (least squares; the per-epoch part includes the per-fit costs spread over the "
        "epochs):",
        "",
    ]
    rows = []
    for bs, b in model["batches"].items():
        rows.append(
            [
                bs,
                str(b["steps_per_epoch"]),
                _rate(b["bare"]["per_s"]),
                _rate(b["fit"]["per_s"]),
                _x(b["ratio"]),
                _ms(b["extra_s_per_epoch"]),
            ]
        )
    header = ["batch", "steps/epoch", "bare samples/s", "fit samples/s", "fit / bare"]
    lines += _table(header + ["fit extra /epoch"], rows)
    lines += [
        "",
        "cProfile of one `fit` call: self time by package (sums to the call) and named parts "
        "(cumulative, may nest). cProfile slows Python more than native code, so Lightning's "
        "share reads high here; the table above says how much.",
        "",
    ]
    prof = results["profile"]
    names = list(prof)
    packages = list(next(iter(prof.values()))["self_s_by_package"])
    parts = list(next(iter(prof.values()))["parts_s"])
    rows = []
    for label, key in [(p, "self_s_by_package") for p in packages] + [
        (p, "parts_s") for p in parts
    ]:
        cells = []
        for n in names:
            total = prof[n]["total_s"]
            cells.append(f"{100 * prof[n][key][label] / total:.0f} %")
        rows.append([("self: " if key == "self_s_by_package" else "") + label, *cells])
    total_row = ["profiled call", *(f"{prof[n]['total_s']:.2f} s" for n in names)]
    lines += _table(["", *names], [total_row, *rows])

    lines += [
        "",
        "## 2. UMT cost: epoch time over joint training's (same model)",
        "",
        "UMT online runs each frozen teacher encoder on every batch; cached looks their features "
        "up (`umt.cache_teachers`, built once before training: *cache build*). Loops: `fit`, "
        "`fit` with epoch logging (section 1), the bare loop. UMT's step returns five logged "
        "values to joint's one.",
        "",
    ]
    rows = []
    for name, r in results["umt"].items():
        for loop in ("fit", "fit_epoch_logging", "bare"):
            e, ratio = r[loop]["epoch_s"], r[loop]["ratio"]
            rows.append(
                [
                    name,
                    loop.replace("_", " "),
                    _ms(e["joint"]["median_s"]),
                    _ms(e["umt_online"]["median_s"]),
                    _x(ratio["umt_online"]),
                    _ms(e["umt_cached"]["median_s"]),
                    _x(ratio["umt_cached"]),
                    _ms(r["cache_build_s"]),
                ]
            )
    header = ["setup", "loop", "joint /epoch", "UMT online /epoch", "online / joint"]
    lines += _table(header + ["UMT cached /epoch", "cached / joint", "cache build"], rows)

    lines += [
        "",
        "## 3. Data loading: `make_loader` alone vs the training step",
        "",
        "Samples/s of iterating the training split (after a warm-up epoch that starts the "
        "workers), and of the training step alone (forward, backward, Adam on batches already "
        "in memory). loader / step > 1: the loader keeps up.",
        "",
    ]
    rows = []
    workers = list(next(iter(results["loading"].values()))["loader"])
    for name, r in results["loading"].items():
        cells = [_rate(r["loader"][w]["per_s"]) for w in workers]
        cells += [_rate(r["train_step"]["per_s"])]
        cells += [_x(r["loader_over_step"][w]) for w in workers]
        rows.append([name, *cells])
    header = ["setup", *(f"loader, {w} workers" for w in workers), "train step"]
    lines += _table(header + [f"loader/step ({w} w.)" for w in workers], rows)

    lines += [
        "",
        "## 4. Scaling with data size (MLP setup, joint): epoch time",
        "",
        "Train and validation splits both scaled. Ratio to 1x: 2.00x and 4.00x is linear; less "
        "means a fixed per-epoch cost (checkpoints, loop start-up) is being amortised.",
        "",
    ]
    sc = results["scaling"]["mlp"]
    rows = []
    for k, n in sc["train_samples"].items():
        rows.append(
            [
                f"{k}x",
                str(n),
                _ms(sc["fit"]["epoch_s"][k]["median_s"]),
                _x(sc["fit"]["ratio"][k]),
                _ms(sc["bare"]["epoch_s"][k]["median_s"]),
                _x(sc["bare"]["ratio"][k]),
                _x(sc["fit"]["epoch_s"][k]["median_s"] / sc["bare"]["epoch_s"][k]["median_s"]),
            ]
        )
    header = ["data", "train samples", "fit /epoch", "fit ratio", "bare /epoch", "bare ratio"]
    lines += _table(header + ["fit / bare"], rows)
    lines += [
        "",
        "Least-squares line, epoch time = fixed + per-1x x scale: "
        + "; ".join(
            f"{loop} {_ms(sc[loop]['fixed_s_per_epoch'])} fixed + "
            f"{_ms(sc[loop]['s_per_epoch_per_1x'])} per 1x"
            for loop in ("fit", "bare")
        )
        + ".",
    ]
    lines += _layer_order_section(results.get("layer_order"))
    lines += _loader_section(results["loader"]) + _study_section(results["study"])
    return "\n".join(lines) + "\n"


def _layer_order_section(r: dict[str, Any] | None) -> list[str]:
    if not r:  # results of a run before this section existed
        return []
    c = r["cnn"]
    lines = [
        "",
        "### ReLU after the max-pool",
        "",
        "Training steps (forward, backward, Adam; one batch) of the CNN setup's model as built, "
        "with each block's ReLU after its max-pool, against the textbook order (ReLU before): "
        "the same outputs and gradients, bit for bit (`tests/e2e/test_benchmarks.py`).",
        "",
    ]
    row = [_ms(c["ours"]["median_s"]), _ms(c["textbook"]["median_s"]), _x(c["ratio"])]
    return lines + _table(["ours, per step", "textbook, per step", "textbook / ours"], [row])


def _loader_section(r: dict[str, Any]) -> list[str]:
    shapes = ", ".join(f"{m} {tuple(s)}" for m, s in r["shapes"].items())
    lines = [
        "",
        "## 5. The `prepared` training loader vs the raw memory-map read",
        "",
        f"{r['samples']} training clips ({shapes}: {r['bytes_per_sample'] / 1e3:,.0f} kB per "
        f"sample), batch {r['batch_size']}, samples/s over whole epochs. *raw read*: each batch's "
        "rows copied out of the memory maps and nothing else (the limit); *train loader*: the "
        "batches `fit` gets (uint8 frames, float16 spectrograms, crop boxes and flips drawn), "
        "per worker count; *CPU route*: the same finished in the loader on the CPU; *on-device "
        f"step*: `on_device` alone (crop + resize, flip, normalisation) on {r['on_device']['device']}; "
        "*paired*: train / raw with each batch timed next to the raw read of its rows (median "
        "over epochs, min..max: steadier on a loaded machine).",
        "",
    ]
    workers = list(r["workers"])
    header = ["raw read", *(f"train loader, {w} w." for w in workers), "train / raw"]
    header += [f"train / raw, paired ({r['paired']['workers']} w.)"]
    header += ["CPU route", "on-device step"]
    row = [_rate(r["raw_read_samples_per_s"])]
    row += [_rate(r["workers"][w]["per_s"]) for w in workers]
    paired = r["paired"]["ratio"]
    row += [_x(r["train_over_raw"])]
    row += [f"{_x(paired['median'])} ({paired['min']:.2f}..{paired['max']:.2f})"]
    row += [_rate(r["cpu_route_samples_per_s"])]
    row += [_rate(r["on_device_samples_per_s"])]
    return lines + _table(header, [row])


def _study_section(r: dict[str, Any]) -> list[str]:
    how = "`umt run` in a new process" if r["fresh_process"] else "`run_study` in this process"
    lines = [
        "",
        "## 6. The default study",
        "",
        f"{how} with `--set` {', '.join(f'`{o}`' for o in r['overrides'])}; the stages' "
        "training time is the sum of their `train_seconds` in `summary.json`.",
        "",
    ]
    row = [
        str(r["seeds"]),
        f"{r['default_wall_s']:.1f} s",
        f"{r['stages_train_sum_s']:.1f} s",
        f"{100 * r['stages_over_wall']:.0f} %",
    ]
    return lines + _table(["seeds", "wall", "stages' training", "training / wall"], [row])
