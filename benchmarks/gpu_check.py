"""The GPU check of issue 17: does the VGGSound recipe keep one GPU busy? One table, in minutes.

``benchmarks/gpu_check.sh`` (or ``python -m benchmarks.gpu_check``) does, in a scratch folder:

1. writes VGGSound-shaped raw clips (``vggsound.csv`` + ``video/<id>_<start>.mp4``, 10 s of
   480x360 video at 25 fps with a tone; ``unique`` distinct clips encoded in parallel, the rest
   hard links to them under other ids) and prepares them with ``umt prepare`` (3 frames of
   224x224, 128-band log-mel of 10 s: the recipe's inputs);
2. trains the VGGSound recipe's model (two ResNet-18s, concatenation, SGD) with ``umt.engine.fit``
   for about ``steps`` steps, joint training and UMT (online teachers: untrained encoders of the
   same size, a step costs the same), at each precision (``32-true``, ``bf16-mixed``; with
   ``--compile`` also ``train.compile=inductor``), and measures over the steps after a warm-up:
   samples/s, GPU utilisation (``nvidia-smi`` sampled every 0.2 s), the share of step time spent
   waiting for data (from the end of a step to the start of the next: fetch, transfer and the
   on-device step), and the peak GPU memory;
3. runs 2-process DDP on the one GPU as a functional check (two processes sharing ``cuda:0``,
   gloo, since NCCL refuses two ranks on one device): it finishes, and both ranks end with the
   same weights.

``--tiny`` shrinks everything to run on a CPU in a minute or two (the test does this). The
check needs the ``video`` extra (PyAV) and, for the utilisation column, ``nvidia-smi``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "src" / "umt" / "configs" / "vggsound.yaml"
LABELS = ("dog barking", "people marching", "playing drums", "church bell ringing")


@dataclass(frozen=True)
class CheckSizes:
    """How big the check is (``FULL``: real sizes, ``TINY``: a CPU smoke test)."""

    clips: int = 1024
    unique: int = 64
    seconds: float = 10.0
    fps: int = 25
    width: int = 480
    height: int = 360
    frames: int = 3
    size: int = 224
    n_mels: int = 128
    batch_size: int = 64
    steps: int = 200
    warmup_steps: int = 20
    encoder_width: float = 1.0
    precisions: tuple[str, ...] = ("32-true", "bf16-mixed")
    workers: int | None = None  # loader processes; None: the recipe's (8)
    ddp_steps: int = 20


FULL = CheckSizes()
TINY = CheckSizes(
    clips=24,
    unique=4,
    seconds=1.0,
    fps=8,
    width=64,
    height=48,
    frames=2,
    size=32,
    n_mels=16,
    batch_size=4,
    steps=8,
    warmup_steps=2,
    encoder_width=0.0625,
    workers=0,
    ddp_steps=4,
)


# -- 1. data --------------------------------------------------------------------------------------


def write_clip(path: Path, seconds: float, fps: int, width: int, height: int, seed: int) -> None:
    """A moving bar over a shaded background and a tone, H.264 + AAC, at the given size."""
    import av

    rng = np.random.default_rng(seed)
    shade, hz = int(rng.integers(0, 200)), float(rng.uniform(200, 2000))
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as c:
        vs = c.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        aus = c.add_stream("aac", rate=16000)
        aus.layout = "mono"
        bar = max(2, width // 8)
        for i in range(round(seconds * fps)):
            img = np.full((height, width, 3), shade, np.uint8)
            x = (i * 5) % (width - bar)
            img[height // 4 :, x : x + bar] = (255, 160, 0)
            for packet in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(packet)
        for packet in vs.encode():
            c.mux(packet)
        t = np.arange(round(seconds * 16000)) / 16000
        wave = (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)
        size = aus.codec_context.frame_size or 1024
        fmt = aus.codec_context.format.name
        for pts in range(0, len(wave), size):
            chunk = wave[pts : pts + size][None]
            frame = av.AudioFrame.from_ndarray(chunk, format=fmt, layout="mono")
            frame.sample_rate, frame.pts = 16000, pts
            for packet in aus.encode(frame):
                c.mux(packet)
        for packet in aus.encode():
            c.mux(packet)


def make_data(sizes: CheckSizes, scratch: Path, log: Any) -> tuple[Path, dict[str, float]]:
    """Raw VGGSound-layout clips, then ``umt prepare``; returns the prepared folder, timings."""
    from umt.data.prepare import AudioSettings, PrepareConfig, VideoSettings, prepare

    raw, out = scratch / "raw", scratch / "prepared"
    workers = os.cpu_count() or 1
    start = time.perf_counter()
    unique = [raw / "unique" / f"u{i:04d}.mp4" for i in range(sizes.unique)]
    with ProcessPoolExecutor(workers) as pool:
        args = [
            (p, sizes.seconds, sizes.fps, sizes.width, sizes.height, i)
            for i, p in enumerate(unique)
        ]
        list(pool.map(_write_clip_args, args))
    rows = []
    for i in range(sizes.clips):
        ytid = f"c{i:05d}xxxxx"[:11]
        split = "test" if i % 10 == 9 else "train"
        rows.append(f"{ytid},{i + 1},{LABELS[i % len(LABELS)]},{split}\n")
        target = raw / "video" / f"{ytid}_{i + 1:06d}.mp4"
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(unique[i % len(unique)], target)  # same bytes, decoded again by prepare
    (raw / "vggsound.csv").write_text("".join(rows))
    written = time.perf_counter() - start
    log(f"wrote {sizes.unique} clips ({sizes.clips} ids) in {written:.0f} s")
    start = time.perf_counter()
    audio = AudioSettings(n_mels=sizes.n_mels, duration=sizes.seconds)
    cfg = PrepareConfig(
        dataset="vggsound",
        src=str(raw),
        out=str(out),
        workers=workers,
        video=VideoSettings(frames=sizes.frames, size=sizes.size),
        audio=audio,
        progress=False,
    )
    prepare(cfg, log=lambda _: None)
    prepared = time.perf_counter() - start
    log(f"prepared {sizes.clips} clips in {prepared:.0f} s ({workers} workers)")
    shutil.rmtree(raw)
    return out, {"write_s": written, "prepare_s": prepared}


def _write_clip_args(a: tuple[Path, float, int, int, int, int]) -> None:
    write_clip(*a)


# -- 2. training runs ---------------------------------------------------------------------------


class _Utilisation:
    """GPU utilisation samples ``(time, percent)``, every 0.2 s from ``nvidia-smi`` (or NVML
    through ``torch.cuda.utilization``), in a background thread."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _read(self) -> float | None:
        try:
            return float(torch.cuda.utilization())
        except Exception:
            pass
        try:
            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                capture_output=True,
                text=True,
                timeout=5,
            )
            return float(out.stdout.split()[0])
        except Exception:
            return None

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            value = self._read()
            if value is None:
                return
            self.samples.append((time.perf_counter(), value))

    def __enter__(self) -> _Utilisation:
        if torch.cuda.is_available():
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()


def timed_module(steps: list[tuple[int, float, float]]) -> type:
    """``StageModule`` recording when each training step starts and ends (host clock, the end
    after the GPU has finished the step). Between a step's end and the next one's start, the
    loop waits for data: the batch fetched, copied to the GPU, its on-device step launched."""
    from umt.engine import StageModule

    class Timed(StageModule):
        def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
            self._t0 = time.perf_counter()

        def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            steps.append((self.current_epoch, self._t0, time.perf_counter()))  # (epoch, start, end)

    return Timed


def _summarise(
    steps: list[tuple[int, float, float]], util: list[tuple[float, float]], sizes: CheckSizes
) -> dict[str, Any]:
    """Within-epoch step intervals after the warm-up: samples/s, waiting share, utilisation."""
    interval = wait = 0.0
    count = 0
    windows = []
    for i in range(max(1, sizes.warmup_steps), len(steps)):
        (e0, _, end0), (e1, start1, end1) = steps[i - 1], steps[i]
        if e0 != e1:  # validation and checkpoints lie between epochs
            continue
        interval += end1 - end0
        wait += start1 - end0
        count += 1
        windows.append((end0, end1))
    inside = [v for t, v in util if any(a <= t <= b for a, b in windows)]
    return {
        "steps_timed": count,
        "samples_per_s": sizes.batch_size * count / interval if interval else math.nan,
        "data_wait_share": wait / interval if interval else math.nan,
        "gpu_util_pct": float(np.mean(inside)) if inside else math.nan,
    }


def recipe(sizes: CheckSizes, data_root: Path) -> tuple[Any, Any, Any]:
    """The VGGSound recipe on the prepared folder: (study config, model config, data)."""
    from umt.data import load_data
    from umt.study import load_config

    sets = [f"data.root={data_root}", f"data.prepared.frames={sizes.frames}"]
    cfg = load_config(RECIPE, [*sets, "train.progress=false"])
    model_cfg = replace(cfg.model, encoder=replace(cfg.model.encoder, width=sizes.encoder_width))
    return cfg, model_cfg, load_data(cfg.data)


def train_runs(
    sizes: CheckSizes, data_root: Path, scratch: Path, *, compile_: bool, log: Any
) -> list[dict[str, Any]]:
    from umt.engine import fit
    from umt.methods import UMT, Joint
    from umt.models import build_model
    from umt.tasks import task_of

    cfg, model_cfg, data = recipe(sizes, data_root)
    per_epoch = len(data.train) // sizes.batch_size + (len(data.train) % sizes.batch_size > 0)
    epochs = max(2, math.ceil(sizes.steps / per_epoch))
    shapes, k = data.input_shapes, data.num_classes
    workers = cfg.train.num_workers if sizes.workers is None else sizes.workers
    variants = [(p, "none", workers) for p in sizes.precisions]
    if workers != 0:  # the loader in the training process: does it keep up alone?
        variants.append((sizes.precisions[-1], "none", 0))
    if compile_:
        variants += [(p, "inductor", workers) for p in sizes.precisions]
    rows = []
    for method_name in ("joint", "umt"):
        for precision, backend, n_workers in variants:
            torch.manual_seed(0)
            model = build_model(model_cfg, shapes, k)
            if method_name == "umt":
                teachers = {
                    m: build_model(model_cfg, {m: s}, k, linear_head=True).encoders[m]
                    for m, s in shapes.items()
                }
                method: Any = UMT(teachers, cfg.umt)
            else:
                method = Joint()
            train = replace(
                cfg.train,
                epochs=epochs,
                batch_size=sizes.batch_size,
                precision=precision,
                compile=backend,
                num_workers=n_workers,
                progress=False,
            )
            steps: list[tuple[int, float, float]] = []
            timed = timed_module(steps)
            if torch.cuda.is_available():
                torch.cuda.reset_peak_memory_stats()
            stage_dir = scratch / f"{method_name}-{precision}-{backend}-{n_workers}"
            start = time.perf_counter()
            row: dict[str, Any] = {"method": method_name, "precision": precision}
            row |= {"compile": backend, "workers": n_workers}
            try:
                with _Utilisation() as util:
                    fit(
                        model,
                        method,
                        data,
                        train,
                        stage_dir,
                        task=task_of(data),
                        seed=0,
                        stage=method_name,
                        module=timed,
                    )
                row |= _summarise(steps, util.samples, sizes)
                row["peak_gib"] = (
                    torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else 0.0
                )
            except Exception as e:  # one failed setting must not hide the others
                row["error"] = f"{type(e).__name__}: {e}"[:300]
            row["wall_s"] = time.perf_counter() - start
            shutil.rmtree(stage_dir, ignore_errors=True)
            log(f"{method_name} {precision} compile={backend} workers={n_workers}: {_fmt_row(row)}")
            rows.append(row)
    return rows


def _fmt_row(row: dict[str, Any]) -> str:
    if "error" in row:
        return f"failed: {row['error']}"
    return (
        f"{row['samples_per_s']:.0f} samples/s, GPU {row['gpu_util_pct']:.0f} %, "
        f"waiting for data {100 * row['data_wait_share']:.0f} %, peak {row['peak_gib']:.1f} GiB"
    )


# -- 3. DDP ---------------------------------------------------------------------------------------


def ddp_worker(rank: int, sizes: CheckSizes, data_root: Path, out: Path) -> None:
    """One of two DDP processes on the same device (``LOCAL_RANK=0``, ``NODE_RANK=rank``: two
    one-process "nodes" on this machine), gloo."""
    import lightning.pytorch.strategies.ddp as ddp

    from umt.engine import StageModule, fit
    from umt.methods import Joint
    from umt.models import build_model
    from umt.tasks import task_of

    ddp._get_default_process_group_backend_for_device = lambda device: "gloo"  # type: ignore[attr-defined]
    cfg, model_cfg, data = recipe(sizes, data_root)
    per_epoch = math.ceil(len(data.train) / (2 * sizes.batch_size))
    train = replace(
        cfg.train,
        epochs=max(1, math.ceil(sizes.ddp_steps / per_epoch)),
        batch_size=sizes.batch_size,
        devices=1,
        num_nodes=2,
        strategy="ddp",
        num_workers=0,
        progress=False,
    )
    torch.manual_seed(0)
    model = build_model(model_cfg, data.input_shapes, data.num_classes)

    class Final(StageModule):  # each rank's weights at the end of training (before fit reloads
        def on_train_end(self) -> None:  # the best checkpoint, the same file on both ranks)
            total = sum(float(p.double().sum()) for p in self.model.parameters())
            (out / f"ddp-rank{rank}.json").write_text(json.dumps({"param_sum": total}))

    fit(
        model,
        Joint(),
        data,
        train,
        out / "ddp-stage",
        task=task_of(data),
        seed=0,
        stage="ddp",
        module=Final,
    )


def ddp_check(sizes: CheckSizes, data_root: Path, scratch: Path, *, tiny: bool) -> dict[str, Any]:
    """Starts the two DDP processes and checks that both finish with the same weights."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = scratch / "ddp"
    out.mkdir()
    procs = []
    start = time.perf_counter()
    for rank in (0, 1):
        env = {
            **os.environ,
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "NODE_RANK": str(rank),
            "LOCAL_RANK": "0",
            "WORLD_SIZE": "2",
            "PYTHONPATH": os.pathsep.join(
                [str(ROOT), str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]
            ),
        }
        args = [sys.executable, "-m", "benchmarks.gpu_check", "--ddp-rank", str(rank)]
        args += ["--data", str(data_root), "--out", str(out)] + (["--tiny"] if tiny else [])
        procs.append(
            subprocess.Popen(
                args, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
        )
    outputs = []
    for p in procs:
        try:
            outputs.append(p.communicate(timeout=300)[0])
        except subprocess.TimeoutExpired:
            p.kill()
            outputs.append(p.communicate()[0])
    seconds = time.perf_counter() - start
    sums = []
    for rank in (0, 1):
        f = out / f"ddp-rank{rank}.json"
        sums.append(json.loads(f.read_text())["param_sum"] if f.is_file() else None)
    ok = all(p.returncode == 0 for p in procs) and None not in sums
    result: dict[str, Any] = {"ok": ok and sums[0] == sums[1], "seconds": seconds}
    result["same_weights"] = ok and sums[0] == sums[1]
    if not result["ok"]:
        result["output"] = "\n".join(o[-2000:] for o in outputs)
    return result


# -- the table ------------------------------------------------------------------------------------


def table(rows: list[dict[str, Any]], ddp: dict[str, Any], meta: dict[str, Any]) -> str:
    lines = [
        f"GPU check ({meta['device']}; {meta['clips']} clips, batch {meta['batch_size']}, "
        f"~{meta['steps']} steps per run, the first {meta['warmup_steps']} untimed; data: "
        f"written {meta['write_s']:.0f} s, prepared {meta['prepare_s']:.0f} s)",
        "",
        "| method | precision | compile | loader workers | samples/s | GPU util | waiting for data "
        "| peak GPU memory | run wall |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            cells = ["failed: " + r["error"].replace("|", "/"), "", "", ""]
        else:
            util = "n/a" if math.isnan(r["gpu_util_pct"]) else f"{r['gpu_util_pct']:.0f} %"
            cells = [
                f"{r['samples_per_s']:,.0f}",
                util,
                f"{100 * r['data_wait_share']:.0f} %",
                f"{r['peak_gib']:.1f} GiB",
            ]
        lines.append(
            f"| {r['method']} | {r['precision']} | {r['compile']} | {r['workers']} | "
            + " | ".join(cells)
            + f" | {r['wall_s']:.0f} s |"
        )
    verdict = "passed" if ddp["ok"] else "FAILED"
    same = "same weights on both ranks" if ddp.get("same_weights") else "weights differ or missing"
    lines += ["", f"2-process DDP on one device (gloo): {verdict}, {same}, {ddp['seconds']:.0f} s"]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__)
    parser.add_argument("--tiny", action="store_true", help="tiny sizes: a CPU smoke test")
    parser.add_argument("--compile", action="store_true", help="also train.compile=inductor")
    parser.add_argument("--steps", type=int, help="training steps per run (default: 200)")
    parser.add_argument("--out", type=Path, help="folder for gpu_check.json and gpu_check.md")
    parser.add_argument("--keep", type=Path, help="work here and keep it (default: a temp dir)")
    parser.add_argument("--ddp-rank", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    sizes = TINY if args.tiny else FULL
    if args.steps:
        sizes = replace(sizes, steps=args.steps)
    if args.ddp_rank is not None:  # one of the DDP processes
        if args.tiny:
            torch.set_num_threads(1)
        ddp_worker(args.ddp_rank, sizes, args.data, args.out)
        return 0
    torch.set_float32_matmul_precision("high")  # TF32 on Ampere and later: what users run
    if args.tiny:
        torch.set_num_threads(1)  # tiny models on a CPU: one thread is fastest

    def log(s: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {s}", file=sys.stderr, flush=True)

    scratch = args.keep or Path(tempfile.mkdtemp(prefix="umt-gpu-check-"))
    scratch.mkdir(parents=True, exist_ok=True)
    try:
        start = time.perf_counter()
        data_root, timings = make_data(sizes, scratch, log)
        rows = train_runs(sizes, data_root, scratch, compile_=args.compile, log=log)
        ddp = ddp_check(sizes, data_root, scratch, tiny=args.tiny)
        log(f"DDP: {'passed' if ddp['ok'] else 'FAILED'} in {ddp['seconds']:.0f} s")
        device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU"
        meta = {**asdict(sizes), **timings, "device": device, "wall_s": 0.0}
        meta["wall_s"] = time.perf_counter() - start
        text = table(rows, ddp, meta) + f"\n\nwall time {meta['wall_s']:.0f} s\n"
        print(text)
        if args.out:
            args.out.mkdir(parents=True, exist_ok=True)
            result = {"meta": meta, "runs": rows, "ddp": ddp}
            (args.out / "gpu_check.json").write_text(json.dumps(result, indent=1) + "\n")
            (args.out / "gpu_check.md").write_text(text)
        failed = [r for r in rows if "error" in r]
        return 1 if failed or not ddp["ok"] else 0
    finally:
        if args.keep is None:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
