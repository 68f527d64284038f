"""The GPU check of issues 17 and 29: does the VGGSound recipe keep one GPU busy, alone and
under 2-process DDP? One table, in minutes.

``benchmarks/gpu_check.sh`` (or ``python -m benchmarks.gpu_check``) does, in a scratch folder:

1. writes the rehearsal's VGGSound data (:mod:`benchmarks.rehearsal_data`: ``vggsound.csv`` +
   ``video/<id>_<start>.mp4``, 10 s of 480x360 video at 25 fps, H.264 + AAC; ``unique``
   distinct clips encoded in parallel, the rest hard links to them under other ids) and
   prepares it with ``umt prepare`` (3 frames of 224x224, 128-band log-mel of 10 s: the
   recipe's inputs); or, with ``--data DIR``, uses a folder already prepared (e.g. the
   rehearsal's: ``python -m benchmarks.rehearsal --keep K``, then
   ``--data K/vggsound-large-prepared``);
2. trains the VGGSound recipe's model (two ResNet-18s, concatenation, SGD) with ``umt.engine.fit``
   for about ``steps`` steps, joint training and UMT (online teachers: untrained encoders of the
   same size, a step costs the same), at each precision (``32-true``, ``bf16-mixed``; with
   ``--compile`` also ``train.compile=inductor``), and measures over the steps after a warm-up:
   samples/s, GPU utilisation (``nvidia-smi`` sampled every 0.2 s), the share of step time spent
   waiting for data (from the end of a step to the start of the next: fetch, transfer and the
   on-device step), and the peak GPU memory;
3. trains joint under 2-process DDP and measures the same (global samples/s from rank 0's steps,
   utilisation over the run): on two GPUs when there are two (NCCL, one per process), else both
   processes on the one GPU (gloo, since NCCL refuses two ranks on one device); it must finish
   with the same weights on both ranks.

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
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "src" / "umt" / "configs" / "vggsound.yaml"
LABELS = ("dog barking", "people marching", "playing drum kit", "church bell ringing")


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
    ddp_steps: int = 100  # per rank


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


def make_data(sizes: CheckSizes, scratch: Path, log: Any) -> tuple[Path, dict[str, float]]:
    """The rehearsal's VGGSound-layout clips, then ``umt prepare``; the prepared folder, timings."""
    from benchmarks.rehearsal_data import ClipSpec, write_vggsound
    from umt.data.prepare import AudioSettings, PrepareConfig, VideoSettings, prepare

    raw, out = scratch / "raw", scratch / "prepared"
    workers = os.cpu_count() or 1
    start = time.perf_counter()
    spec = ClipSpec(seconds=sizes.seconds, width=sizes.width, height=sizes.height, fps=sizes.fps)
    per_class = max(1, sizes.unique // len(LABELS))
    write_vggsound(raw, sizes.clips, LABELS, spec, unique=per_class, workers=workers)
    written = time.perf_counter() - start
    log(f"wrote {per_class * len(LABELS)} distinct clips ({sizes.clips} ids) in {written:.0f} s")
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
        clean=True,
    )
    prepare(cfg, log=lambda _: None)
    prepared = time.perf_counter() - start
    log(f"prepared {sizes.clips} clips in {prepared:.0f} s ({workers} workers)")
    shutil.rmtree(raw)
    return out, {"write_s": written, "prepare_s": prepared}


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

    stored = json.loads((data_root / "meta.json").read_text())["modalities"]["visual"]["shape"]
    frames = min(sizes.frames, stored[0])  # a folder of --data may store other sizes
    sets = [f"data.root={data_root}", f"data.prepared.frames={frames}"]
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
    """One of two DDP processes (``LOCAL_RANK=0``, ``NODE_RANK=rank``: two one-process "nodes"
    on this machine): on its own GPU (``CUDA_VISIBLE_DEVICES`` set by :func:`ddp_check`; NCCL),
    or both on the one device (gloo). Rank 0 records its steps' times."""
    import lightning.pytorch.strategies.ddp as ddp

    from umt.engine import fit
    from umt.methods import Joint
    from umt.models import build_model
    from umt.tasks import task_of

    if os.environ.get("UMT_CHECK_DDP_BACKEND", "gloo") == "gloo":
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

    steps: list[tuple[int, float, float]] = []

    class Final(timed_module(steps)):  # type: ignore[misc]
        def on_train_end(self) -> None:  # each rank's weights at the end of training (before
            # fit reloads the best checkpoint, the same file on both ranks), rank 0's steps
            total = sum(float(p.double().sum()) for p in self.model.parameters())
            record = {"param_sum": total, "steps": steps if rank == 0 else []}
            (out / f"ddp-rank{rank}.json").write_text(json.dumps(record))

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
    two_gpus = torch.cuda.is_available() and torch.cuda.device_count() >= 2
    start = time.perf_counter()
    util = _Utilisation().__enter__()
    for rank in (0, 1):
        env = {
            **os.environ,
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "NODE_RANK": str(rank),
            "LOCAL_RANK": "0",
            "WORLD_SIZE": "2",
            "UMT_CHECK_DDP_BACKEND": "nccl" if two_gpus else "gloo",
            "PYTHONPATH": os.pathsep.join(
                [str(ROOT), str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]
            ),
        }
        if two_gpus:
            env["CUDA_VISIBLE_DEVICES"] = str(rank)
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
    util.__exit__()
    records = []
    for rank in (0, 1):
        f = out / f"ddp-rank{rank}.json"
        records.append(json.loads(f.read_text()) if f.is_file() else None)
    sums = [r["param_sum"] if r else None for r in records]
    ok = all(p.returncode == 0 for p in procs) and None not in sums
    result: dict[str, Any] = {"ok": ok and sums[0] == sums[1], "seconds": seconds}
    result["same_weights"] = ok and sums[0] == sums[1]
    result["devices"] = "two devices (nccl)" if two_gpus else "one device (gloo)"
    if records[0]:  # global samples: both ranks step together, each on its own batch
        steps = [tuple(x) for x in records[0]["steps"]]
        warm = replace(sizes, batch_size=2 * sizes.batch_size,
                       warmup_steps=min(sizes.warmup_steps, len(steps) // 4))  # fmt: skip
        result |= _summarise(steps, util.samples, warm)  # type: ignore[arg-type]
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
    lines += [
        "",
        f"2-process DDP on {ddp.get('devices', 'one device (gloo)')}: {verdict}, {same}, "
        f"{ddp['seconds']:.0f} s",
    ]
    if ddp.get("steps_timed"):
        util = "n/a" if math.isnan(ddp["gpu_util_pct"]) else f"{ddp['gpu_util_pct']:.0f} %"
        lines += [
            "",
            "| DDP (joint, 32-true, 2 processes) | samples/s (global) | GPU util | waiting for data |",
            "|---|---|---|---|",
            f"| {ddp['steps_timed']} steps timed on rank 0, batch {meta['batch_size']} per process | "
            f"{ddp['samples_per_s']:,.0f} | {util} | {100 * ddp['data_wait_share']:.0f} % |",
        ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__)
    parser.add_argument("--tiny", action="store_true", help="tiny sizes: a CPU smoke test")
    parser.add_argument("--compile", action="store_true", help="also train.compile=inductor")
    parser.add_argument("--steps", type=int, help="training steps per run (default: 200)")
    parser.add_argument("--out", type=Path, help="folder for gpu_check.json and gpu_check.md")
    parser.add_argument("--keep", type=Path, help="work here and keep it (default: a temp dir)")
    parser.add_argument("--ddp-rank", type=int, help=argparse.SUPPRESS)
    parser.add_argument(
        "--data",
        type=Path,
        help="a VGGSound folder already prepared (e.g. the rehearsal's, kept with --keep K: "
        "K/vggsound-large-prepared) instead of writing and preparing clips",
    )
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
        if args.data is not None:
            data_root, timings = args.data, {"write_s": 0.0, "prepare_s": 0.0}
            splits = json.loads((data_root / "prepared.json").read_text())["splits"]
            sizes = replace(sizes, clips=sum(v["clips"] for v in splits.values()))
            log(f"data: {data_root} (prepared before, {sizes.clips} clips)")
        else:
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
