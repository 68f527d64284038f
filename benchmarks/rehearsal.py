"""The real benchmarks rehearsed at a size where their costs show (issue 29): raw folders in each
data set's real layout with real codecs, ``umt prepare`` on them, and a few epochs of the
VGGSound recipe on the result. ``python -m benchmarks.rehearsal [--clips N] [--out DIR]``.

1. writes a VGGSound folder (``vggsound.csv`` + ``video/<id>_<start>.mp4``: 10-second 480x360
   25 fps H.264 + AAC 44.1 kHz stereo clips, ``--unique`` distinct clips per class encoded and
   hard-linked under the other names, 1 % of the rows without a file and a few corrupt files);
2. times a decode-only loop over the distinct files (what ``umt prepare`` decodes: the video up
   to the last sampled frame and the whole sound, nothing converted) in 1 and in ``--workers``
   processes: the decoder's own limit;
3. runs ``umt prepare vggsound`` (its command line, in a child process) at two sizes, the small
   one a quarter of the large, sampling every process's memory (``/proc``) every 0.2 s: peak
   resident memory of the main process and of each decoding worker, throughput, wall time;
4. writes and prepares Kinetics-Sounds (CVDF layout), CREMA-D (AudioWAV/VideoFlash, the
   speaker-independent split), AVE (Annotations.txt and split files) and NYU Depth V2 (the
   labelled ``.mat`` and ``splits.mat``) folders;
5. trains the VGGSound recipe (teachers, joint, UMT, UME, probes; its recipe search off) for
   ``--epochs`` epochs on the small size's prepared clips with a 4-channel ResNet-18 and 64x64
   crops (``umt run --config vggsound``): accuracy above chance shows labels and rows stayed
   aligned from CSV to batch (the large size's folder is kept with ``--keep`` for
   ``benchmarks/gpu_check.sh --data``);
6. projects the wall time of the full VGGSound (199,176 clips) and Kinetics-Sounds (about
   28,000 clips, at 480x360 and, from a few 1280x720 clips, at 720p) on 16 cores.

Writes ``rehearsal.json`` and ``rehearsal.md`` under ``--out`` (default
``benchmarks/results/``). ``--tiny`` runs every step at toy sizes in about a minute (the test).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from benchmarks import rehearsal_data as rd
from benchmarks.rehearsal_report import project, to_markdown

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Sizes:
    clips: int = 2000  # VGGSound-layout clips at the large size (the small one: a quarter)
    classes: int = 16
    unique: int = 2  # distinct clips per class
    spec: rd.ClipSpec = rd.REAL
    others: int = 240  # Kinetics-Sounds and AVE clips; CREMA-D: 10 actors x 24
    cremad_seconds: float = 2.5
    nyu_images: int = 1449
    nyu_hw: tuple[int, int] = (120, 160)  # stored in the .mat (the real file: 480x640)
    hd_clips: int = 3  # 1280x720 clips for the Kinetics projection
    frames: int = 3
    size: int = 224
    n_mels: int = 128
    epochs: int = 2
    crop: int = 64


FULL = Sizes()
TINY = Sizes(
    clips=48, classes=4, unique=1, spec=rd.TINY, others=24, cremad_seconds=1.0, nyu_images=12,
    nyu_hw=(24, 32), hd_clips=0, frames=1, size=32, n_mels=16, epochs=1, crop=16,
)  # fmt: skip


# -- memory of a process tree -------------------------------------------------------------------


def _status(pid: int) -> dict[str, int]:
    """``VmHWM``, ``VmRSS``, ``RssAnon``, ``RssFile`` of ``pid`` in KiB (empty once it is gone)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    keys = ("VmHWM", "VmRSS", "RssAnon", "RssFile")
    return {
        k: int(v.split()[0]) for k, v in re.findall(r"^(\w+):\s+(.*)$", text, re.M) if k in keys
    }


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def _cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of ``pid`` (all its threads), or None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class TreeMemory:
    """Peak memory and CPU time of a process and of its descendants (its workers), sampled from
    ``/proc`` every 0.2 s. CPU seconds measure work where wall time measures the machine's load:
    on a shared machine, clips per CPU-second is the per-core rate a dedicated core gives."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peaks = pid, {}  # type: ignore[var-annotated]
        self.cpu: dict[int, float] = {}
        self.main_cpu_with_workers: list[float] = []  # the main process's CPU while workers ran
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            todo, seen = [self.pid], []
            while todo:
                p = todo.pop()
                seen.append(p)
                todo += _children(p)
            for p in seen:
                now = _status(p)
                if now:
                    old = self.peaks.setdefault(p, {})
                    for k, v in now.items():
                        old[k] = max(old.get(k, 0), v)
                cpu = _cpu_s(p)
                if cpu is not None:
                    self.cpu[p] = cpu
            if len(seen) > 1 and self.pid in self.cpu:
                self.main_cpu_with_workers.append(self.cpu[self.pid])

    def stop(self) -> dict[str, Any]:
        """``{"main": {...}, "workers": [{...}, ...]}`` in MiB, and CPU seconds: ``main_cpu_s``,
        ``main_cpu_decoding_s`` (while workers ran), ``workers_cpu_s``."""
        self._stop.set()
        self._thread.join()
        mib = {p: {k: v / 1024 for k, v in d.items()} for p, d in self.peaks.items()}
        during = self.main_cpu_with_workers
        return {
            "main": mib.get(self.pid, {}),
            "workers": [v for p, v in mib.items() if p != self.pid],
            "main_cpu_s": self.cpu.get(self.pid, 0.0),
            "main_cpu_decoding_s": during[-1] - during[0] if len(during) > 1 else 0.0,
            "workers_cpu_s": sum(c for p, c in self.cpu.items() if p != self.pid),
        }


# -- steps ---------------------------------------------------------------------------------------


def _decode_only(path: Path, frames: int = 3) -> None:
    """Decode what ``umt prepare`` decodes of a clip, converting nothing: the video up to its last
    sampled frame (the centre of the last of ``frames`` segments) and the whole sound."""
    import av

    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        stream.thread_type = "AUTO"
        end = float(stream.duration * stream.time_base) if stream.duration else math.inf
        last = end * (frames - 0.5) / frames
        for frame in c.decode(stream):
            if frame.time is not None and frame.time >= last:
                break
    with av.open(str(path)) as c:
        for _ in c.decode(c.streams.audio[0]):
            pass


def decode_only(files: list[Path], workers: int, frames: int) -> dict[str, float]:
    """:func:`_decode_only` over ``files`` in ``workers`` processes: clips per second of wall
    time and per CPU-second (the decoders' threads included)."""
    run = partial(_decode_only, frames=frames)
    start, cpu0 = time.perf_counter(), _cpu_total()
    if workers == 1:
        for f in files:
            run(f)
    else:
        with ProcessPoolExecutor(workers) as pool:
            list(pool.map(run, files, chunksize=4))
    wall, cpu = time.perf_counter() - start, _cpu_total() - cpu0
    return {"per_s": len(files) / wall, "per_cpu_s": len(files) / cpu}


def _cpu_total() -> float:
    """CPU seconds of this process and of its children that ended."""
    me, kids = (resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def run_umt(args: list[str], log: Callable[[str], None]) -> dict[str, Any]:
    """``umt ARGS`` in a child process: its wall time, output and peak memory."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    start, cpu0 = time.perf_counter(), _cpu_total()
    proc = subprocess.Popen(
        [sys.executable, "-m", "umt.cli", *args], cwd=ROOT, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    memory = TreeMemory(proc.pid)
    output, _ = proc.communicate()
    result = {"wall_s": time.perf_counter() - start, "memory": memory.stop(), "rc": proc.returncode}
    result["cpu_s"] = _cpu_total() - cpu0  # the whole tree, exact (its processes ended)
    if proc.returncode != 0:
        raise RuntimeError(
            f"umt {' '.join(args[:2])} failed ({proc.returncode}):\n{output[-3000:]}"
        )
    m = re.search(r"decoded (\d+) clips? in ([\d.]+) s", output)
    if m:
        result["decoded"], result["decode_s"] = int(m[1]), float(m[2])
    result["log_tail"] = output.strip().splitlines()[-4:]
    log(f"umt {' '.join(args[:2])}: {result['wall_s']:.0f} s")
    return result


def _prepare_args(sizes: Sizes, dataset: str, src: Path, out: Path, workers: int) -> list[str]:
    return [
        "prepare", dataset, "--src", str(src), "--out", str(out), "--workers", str(workers),
        "--frames", str(sizes.frames), "--size", str(sizes.size), "--n-mels", str(sizes.n_mels),
        "--no-progress", "--clean",
    ]  # fmt: skip


def _subset(raw: Path, n: int, dest: Path) -> Path:
    """A VGGSound folder of the first ``n`` rows of ``raw``'s CSV (files hard-linked)."""
    rows = (raw / "vggsound.csv").read_text().splitlines(keepends=True)[:n]
    (dest / "video").mkdir(parents=True)
    (dest / "vggsound.csv").write_text("".join(rows))
    for row in rows:
        ytid, start = row.split(",")[:2]
        f = raw / "video" / f"{ytid}_{int(start):06d}.mp4"
        if f.exists():
            os.link(f, dest / "video" / f.name)
    return dest


def vggsound(
    sizes: Sizes, scratch: Path, workers: int, log: Callable[[str], None]
) -> dict[str, Any]:
    """Steps 1-3: the VGGSound folder, the decoder's limit, ``umt prepare`` at two sizes."""
    from umt.data.prepare import load_manifest

    names = load_manifest("vggsound").class_list().names
    classes = [names[(k * 19) % len(names)] for k in range(sizes.classes)]  # spread out
    raw = scratch / "vggsound-raw"
    start = time.perf_counter()
    written = rd.write_vggsound(raw, sizes.clips, classes, sizes.spec, unique=sizes.unique,
                                missing=max(1, sizes.clips // 100), corrupt=max(1, sizes.clips // 500),
                                workers=workers)  # fmt: skip
    out: dict[str, Any] = {"write_s": time.perf_counter() - start, "clips": sizes.clips}
    out["missing"], out["corrupt"] = len(written.missing), len(written.corrupt)
    out["mb_per_clip"] = sum(p.stat().st_size for p in (raw / ".pool").glob("*.mp4")) / (
        1e6 * len(list((raw / ".pool").glob("*.mp4")))
    )
    log(f"wrote {sizes.clips} VGGSound clips in {out['write_s']:.0f} s")
    files = sorted((raw / ".pool").glob("*.mp4")) * 2
    out["decode_only_1"] = decode_only(files, 1, sizes.frames)
    out["decode_only_n"] = decode_only(files, workers, sizes.frames)
    log(
        f"decode only: {out['decode_only_1']['per_cpu_s']:.1f} clips per CPU-second (1 process), "
        f"{out['decode_only_n']['per_cpu_s']:.1f} ({workers})"
    )
    small = _subset(raw, sizes.clips // 4, scratch / "vggsound-small")
    for name, src in (("small", small), ("large", raw)):
        dest = scratch / f"vggsound-{name}-prepared"
        out[name] = run_umt(_prepare_args(sizes, "vggsound", src, dest, workers), log)
        out[name]["clips"] = sum(1 for _ in open(src / "vggsound.csv"))
        out[f"{name}_dir"] = str(dest)
        if name == "large":
            out["coverage"] = json.loads((dest / "coverage.json").read_text())["counts"]
    shutil.rmtree(small)
    if sizes.hd_clips:
        out["hd"] = _hd_calibration(sizes, scratch, workers, log)
    return out


def _hd_calibration(
    sizes: Sizes, scratch: Path, workers: int, log: Callable[[str], None]
) -> dict[str, Any]:
    """Per-clip prepare and decode-only CPU time at 1280x720 against 480x360 (same length)."""
    from umt.data.prepare import AudioSettings, Source, VideoSettings, decode_clip

    audio, video = AudioSettings(n_mels=sizes.n_mels), VideoSettings(sizes.frames, sizes.size)
    costs = {}
    for name, spec in (("sd", sizes.spec), ("hd", replace(sizes.spec, width=1280, height=720))):
        files = [scratch / "hd" / f"{name}{i}.mp4" for i in range(sizes.hd_clips)]
        for i, f in enumerate(files):
            rd.write_clip(f, spec, label=i, variant=i)
        t = time.process_time()
        for f in files:
            decode_clip(Source(f, f), audio, video)
        prep = (time.process_time() - t) / len(files)
        t = time.process_time()
        for f in files:
            _decode_only(f, sizes.frames)
        costs[name] = {"prepare_s": prep, "decode_only_s": (time.process_time() - t) / len(files)}
    log(
        f"720p/360p per-clip prepare cost: {costs['hd']['prepare_s'] / costs['sd']['prepare_s']:.2f}x"
    )
    return costs


def others(sizes: Sizes, scratch: Path, workers: int, log: Callable[[str], None]) -> dict[str, Any]:
    """Step 4: Kinetics-Sounds, CREMA-D (speaker-independent), AVE, NYU Depth V2."""
    from umt.data.prepare import load_manifest

    out: dict[str, Any] = {}
    k = min(sizes.classes, 8)
    jobs: list[tuple[str, str, Callable[[Path], rd.Written], list[str]]] = [
        ("kinetics-sounds", "kinetics_sounds", lambda r: rd.write_kinetics(
            r, sizes.others, load_manifest("kinetics_sounds").class_list().names[:k], sizes.spec,
            unique=1, missing=2, workers=workers), []),
        ("cremad", "cremad", lambda r: rd.write_cremad(
            r, [1001, 1002, 1003, 1004, 1005, 1006, 1023, 1028, 1014, 1016], sizes.others // 10,
            replace(sizes.spec, seconds=sizes.cremad_seconds, fps=30), workers=workers),
         ["--split", "speaker-independent"]),
        ("ave", "ave", lambda r: rd.write_ave(
            r, sizes.others, load_manifest("ave").class_list().names[:k], sizes.spec, unique=1,
            workers=workers), []),
    ]  # fmt: skip
    for dataset, key, write, extra in jobs:
        raw = scratch / f"{key}-raw"
        t = time.perf_counter()
        written = write(raw)
        result = run_umt(
            [*_prepare_args(sizes, dataset, raw, scratch / f"{key}-out", workers), *extra], log
        )
        result["write_s"], result["annotated"] = (
            time.perf_counter() - t - result["wall_s"],
            written.annotated,
        )
        result["coverage"] = json.loads((scratch / f"{key}-out" / "coverage.json").read_text())[
            "counts"
        ]
        out[key] = result
        shutil.rmtree(raw)
        shutil.rmtree(scratch / f"{key}-out")
    raw = scratch / "nyuv2-raw"
    t = time.perf_counter()
    rd.write_nyuv2(
        raw, sizes.nyu_images, *sizes.nyu_hw, n_test=round(sizes.nyu_images * 654 / 1449)
    )
    write_s = time.perf_counter() - t
    result = run_umt(
        ["prepare", "nyuv2", "--src", str(raw), "--out", str(scratch / "nyuv2-out")], log
    )
    result["write_s"], result["annotated"] = write_s, sizes.nyu_images
    result["coverage"] = json.loads((scratch / "nyuv2-out" / "coverage.json").read_text())["counts"]
    out["nyuv2"] = result
    return out


def train(
    sizes: Sizes, prepared: Path, scratch: Path, log: Callable[[str], None]
) -> dict[str, Any]:
    """Step 5: the VGGSound recipe, a few epochs, small encoders."""
    sets = [
        f"data.root={prepared}", "seeds=[0]", f"train.epochs={sizes.epochs}",
        "model.encoder.width=0.0625", f"data.prepared.crop={sizes.crop}",
        f"data.prepared.frames={sizes.frames}", "train.batch_size=32", "train.num_workers=0",
        "train.lr=0.01", "train.progress=false", "probe.max_iter=20", "tune.enabled=false",
    ]  # fmt: skip
    args = ["run", "--config", "vggsound", "--out", str(scratch / "runs")]
    for s in sets:
        args += ["--set", s]
    result = run_umt(args, log)
    summary = json.loads(next((scratch / "runs").glob("*/summary.json")).read_text())
    shown = ["--set data.root=DATA_DIR", *(f"--set {s}" for s in sets[1:])]
    result["command"] = "umt run --config vggsound " + " ".join(shown)
    result["test_acc"] = {
        name: m["test_acc"]["mean"] if isinstance(m.get("test_acc"), dict) else m.get("test_acc")
        for name, m in summary["methods"].items()
    }
    result["chance"] = 1 / sizes.classes
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.rehearsal", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument(
        "--tiny", action="store_true", help="toy sizes: every step in about a minute"
    )
    parser.add_argument(
        "--clips", type=int, help=f"VGGSound clips at the large size ({FULL.clips})"
    )
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="decoding processes"
    )
    parser.add_argument("--epochs", type=int, help=f"training epochs ({FULL.epochs})")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--keep", type=Path, help="work here and keep it (default: a temp dir)")
    args = parser.parse_args(argv)
    sizes = TINY if args.tiny else FULL
    if args.clips:
        sizes = replace(sizes, clips=args.clips)
    if args.epochs:
        sizes = replace(sizes, epochs=args.epochs)

    def log(s: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {s}", file=sys.stderr, flush=True)

    scratch = args.keep or Path(tempfile.mkdtemp(prefix="umt-rehearsal-"))
    scratch.mkdir(parents=True, exist_ok=True)
    start, cpu0 = time.perf_counter(), _cpu_total()
    try:
        results: dict[str, Any] = {"sizes": asdict(sizes), "workers": args.workers}
        results["cores"] = os.cpu_count()
        results["load_before"] = os.getloadavg()
        results["vggsound"] = vgg = vggsound(sizes, scratch, args.workers, log)
        results["others"] = others(sizes, scratch, args.workers, log)
        vgg.pop("large_dir")  # kept with --keep: benchmarks/gpu_check.sh --data trains on it
        results["train"] = train(sizes, Path(vgg.pop("small_dir")), scratch, log)
        results["load_after"] = os.getloadavg()
        results["wall_s"] = time.perf_counter() - start
        results["cpu_s"] = _cpu_total() - cpu0
        results["projection"] = project(results)
        text = to_markdown(results)
        print(text)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "rehearsal.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
        (args.out / "rehearsal.md").write_text(text)
        log(f"rehearsal: {results['wall_s']:.0f} s; {args.out / 'rehearsal.md'}")
        return 0
    finally:
        if args.keep is None:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
