"""The rehearsal's projections (full VGGSound and Kinetics-Sounds on 16 cores) and its tables."""

from __future__ import annotations

from typing import Any

#: Clips of the full data sets: VGGSound (the authors' repository: 199,176), Kinetics-Sounds
#: (AV-SUPERB's 32 classes: about 23k + 1.6k + 3.1k; the 31-class files of OGM-GE list 17,396).
FULL_CLIPS = {"VGGSound": 199_176, "Kinetics-Sounds": 28_000}
CORES = 16


def project(results: dict[str, Any]) -> dict[str, Any]:
    """Wall time of ``umt prepare`` on the full data sets with 16 decoding processes, from CPU
    time (which a shared machine's load does not inflate, as it does wall time).

    Decoding: each process decodes ``per_core`` clips per CPU-second (the large run's decoded
    clips over its workers' CPU time); 16 of them give 16 times that, unless the main process,
    which receives every clip's arrays and writes them, is slower (its CPU time per clip while
    the workers ran). The rest of the run (reading the annotations, indexing the files,
    assembling the folder: the main process alone) is ``a + b * clips`` CPU-seconds, fitted to
    the small and the large run.
    """
    v = results["vggsound"]
    small, large = v["small"], v["large"]
    mem = large["memory"]
    per_core = large["decoded"] / mem["workers_cpu_s"]
    main_per_clip = mem["main_cpu_decoding_s"] / large["decoded"]
    rest = {
        k: v[k]["memory"]["main_cpu_s"] - v[k]["memory"]["main_cpu_decoding_s"]
        for k in ("small", "large")
    }
    per_clip = max(rest["large"] - rest["small"], 0.0) / max(large["clips"] - small["clips"], 1)
    fixed = max(rest["small"] - per_clip * small["clips"], 0.0)
    hd = v.get("hd")
    hd_factor = hd["hd"]["prepare_s"] / hd["sd"]["prepare_s"] if hd else None
    out: dict[str, Any] = {
        "prepare_per_core": per_core,
        "main_s_per_clip_decoding": main_per_clip,
        "serial_s_per_clip": per_clip,
        "serial_s_fixed": fixed,
        "cores": CORES,
        "hd_factor": hd_factor,
        "rows": [],
    }
    for name, clips in FULL_CLIPS.items():
        variants = [("480x360", 1.0)]
        if name == "Kinetics-Sounds" and hd_factor:
            variants.append(("1280x720", hd_factor))
        for res, factor in variants:
            rate = min(
                per_core / factor * CORES, 1 / main_per_clip if main_per_clip else float("inf")
            )
            decode, serial = clips / rate, fixed + clips * per_clip
            out["rows"].append(
                {
                    "data set": name,
                    "clips": clips,
                    "resolution": res,
                    "clips_per_s": rate,
                    "decode_s": decode,
                    "serial_s": serial,
                    "wall_s": decode + serial,
                }  # fmt: skip
            )
    return out


def _h(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


def to_markdown(r: dict[str, Any]) -> str:
    v, s, p = r["vggsound"], r["sizes"], r["projection"]
    spec = s["spec"]
    d1, dn = v["decode_only_1"], v["decode_only_n"]
    lines = [
        f"# Rehearsal ({r['cores']} cores, {r['workers']} decoding processes; load average "
        f"{r['load_before'][0]:.1f} before, {r['load_after'][0]:.1f} after; {r['wall_s']:.0f} s in "
        f"all, {r.get('cpu_s', 0):.0f} CPU-seconds)",
        "",
        f"VGGSound layout: {v['clips']:,} clips of {spec['seconds']:g} s, {spec['width']}x"
        f"{spec['height']} at {spec['fps']} fps, {spec['video_codec']} CRF {spec['crf']} + "
        f"{spec['audio_codec']} {spec['sample_rate']} Hz ({v['mb_per_clip']:.2f} MB a clip), "
        f"{s['classes']} classes, {s['unique']} distinct clips per class; {v['missing']} rows "
        f"without a file, {v['corrupt']} corrupt. Stored: {s['frames']} frames of {s['size']}x"
        f"{s['size']}, {s['n_mels']} mel bands. Written in {v['write_s']:.0f} s.",
        "",
        "Throughput: clips per second of wall time (what this machine gave, under its load) and "
        "per CPU-second of the decoding processes (what one dedicated core gives):",
        "",
        "| | wall clips/s | clips per CPU-second |",
        "|---|---|---|",
        f"| decode only, 1 process | {d1['per_s']:.1f} | {d1['per_cpu_s']:.1f} |",
        f"| decode only, {r['workers']} processes | {dn['per_s']:.1f} | {dn['per_cpu_s']:.1f} |",
    ]
    for name in ("small", "large"):
        run, mem = v[name], v[name]["memory"]
        per_cpu = run["decoded"] / mem["workers_cpu_s"]
        lines.append(
            f"| umt prepare, {run['clips']:,} clips, decoding ({r['workers']} workers) | "
            f"{run['decoded'] / run['decode_s']:.1f} | {per_cpu:.1f} "
            f"({per_cpu / d1['per_cpu_s']:.2f}x decode only) |"
        )
        lines.append(
            f"| umt prepare, {run['clips']:,} clips, whole command ({run['wall_s']:.0f} s, "
            f"{run['cpu_s']:.0f} CPU-s) | {run['clips'] / run['wall_s']:.1f} | "
            f"{run['clips'] / run['cpu_s']:.1f} |"
        )
    lines += [
        "",
        "Peak memory (MiB, sampled every 0.2 s from /proc: VmHWM is the peak resident set, "
        "RssAnon its anonymous part):",
        "",
        "| clips | main VmHWM | main RssAnon | worker VmHWM (max) | worker RssAnon (max) | workers seen |",
        "|---|---|---|---|---|---|",
    ]
    for name in ("small", "large"):
        m = v[name]["memory"]
        w = m["workers"] or [{}]
        lines.append(
            f"| {v[name]['clips']:,} | {m['main'].get('VmHWM', 0):.0f} | {m['main'].get('RssAnon', 0):.0f} | "
            f"{max(x.get('VmHWM', 0) for x in w):.0f} | {max(x.get('RssAnon', 0) for x in w):.0f} | "
            f"{len(m['workers'])} |"
        )
    lines += [
        "",
        "| other layouts | annotated | prepared | wall | CPU-s |",
        "|---|---|---|---|---|",
    ]
    for key, o in r["others"].items():
        prepared = o["coverage"]["total"]["prepared"]
        lines.append(
            f"| {key} | {o['annotated']:,} | {prepared:,} | {o['wall_s']:.0f} s | {o.get('cpu_s', 0):.0f} |"
        )
    t = r["train"]
    accs = ", ".join(f"{k} {100 * a:.0f} %" for k, a in t["test_acc"].items() if a is not None)
    lines += [
        "",
        f"Training on the {v['small']['clips']:,}-clip folder, {s['epochs']} epochs "
        f"({t['wall_s']:.0f} s, {t.get('cpu_s', 0):.0f} CPU-s): test accuracy {accs} (chance "
        f"{100 * t['chance']:.0f} %).",
        f"`{t['command']}`",
        "",
        f"Projection to {p['cores']} cores (from CPU time): a decoding process does "
        f"{p['prepare_per_core']:.1f} clips per CPU-second; the main process spends "
        f"{1000 * p['main_s_per_clip_decoding']:.1f} ms of CPU per clip receiving and writing "
        f"them (a ceiling of {1 / p['main_s_per_clip_decoding']:.0f} clips/s), and "
        f"{p['serial_s_fixed']:.0f} s + {1000 * p['serial_s_per_clip']:.1f} ms per clip alone "
        "(start, annotations, file index, assembling the folder; fitted to the two sizes)"
        + (
            f"; a 1280x720 clip costs {p['hd_factor']:.2f}x a 480x360 one."
            if p["hd_factor"]
            else "."
        ),
        "",
        "| data set | clips | resolution | clips/s | decoding | main process alone | wall |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in p["rows"]:
        lines.append(
            f"| {row['data set']} | {row['clips']:,} | {row['resolution']} | {row['clips_per_s']:.0f} | "
            f"{_h(row['decode_s'])} | {_h(row['serial_s'])} | {_h(row['wall_s'])} |"
        )
    return "\n".join(lines) + "\n"
