"""The measurements. Each compares variants in one process, on the same data, model, batch size
and threads: the variants' runs are interleaved (A B C, C B A, ...) after a warm-up, and the
median of the repeats is kept, so that a change in the machine's load touches every variant.

Sections (keys of the results):

- ``overhead``: ``umt.engine.fit`` against the plain loop of :mod:`benchmarks.bare`, plus
  variants of ``fit`` with one part changed (:mod:`benchmarks.variants`), and a cProfile of one
  ``fit`` call (``profile``); ``overhead_model``: the overhead at several batch sizes, split into
  a cost per step and a cost per epoch.
- ``umt``: epoch time of UMT, with teachers run online and with cached teacher features, over
  joint training's.
- ``loading``: ``make_loader`` alone with 0, 1, 2 workers, against the training step's rate.
- ``scaling``: epoch time at 1x, 2x, 4x the data.
- ``layer_order``: training steps of the CNN setup's model as built (ReLU after each max-pool)
  against the textbook order (ReLU before it): the same numbers, bit for bit.
- ``loader``: the ``prepared`` training loader at VGGSound's sizes against the raw memory-map
  read of the same bytes, and the on-device step alone (:mod:`benchmarks.loader`).
- ``study``: the default study's wall time (:mod:`benchmarks.default_study`).
"""

from __future__ import annotations

import cProfile
import os
import platform
import pstats
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import lightning
import numpy as np
import torch

from benchmarks import default_study
from benchmarks.bare import bare_fit, train_step_rate
from benchmarks.loader import prepared_loader, write_random_prepared
from benchmarks.timing import Thunk, interleaved, summary
from benchmarks.variants import EpochLoggedModule, checkpoint_at_end
from umt.data import DataConfig, load_data
from umt.data.base import ArrayDataset, DataBundle, ShardedBatchSampler, make_loader
from umt.data.synthetic import SyntheticConfig
from umt.engine import TrainConfig, eval_device, fit
from umt.methods import UMT, Joint, UMTConfig
from umt.methods.base import Method
from umt.models import EncoderConfig, ModelConfig, MultimodalModel, build_model
from umt.probe import extract_features
from umt.tasks import task_of

SEED = 0


@dataclass(frozen=True)
class Sizes:
    """How much work each measurement does.

    Attributes:
        epochs: epochs per training run (each with a validation pass).
        warmup, repeats: untimed and timed runs of every variant.
        cnn_repeats: timed runs for the (slower) CNN setup.
        mlp_train, mlp_val, mlp_hidden: the MLP setup: the synthetic data set's split sizes (its
            defaults: 1500 / 1000) and the encoders' width (the default: 128).
        cnn_train, cnn_val, cnn_side, cnn_width: the CNN setup: random ``(1, side, side)``
            images per modality and the CNN's base width.
        batch_size: training batch size (validation: 4x, as in ``fit``).
        loader_epochs: timed passes over the training split per loader.
        scales: data-size multiples for the scaling section (MLP setup).
        model_batches: batch sizes over which the MLP setup's overhead is split into a cost
            per step and a cost per epoch.
        clips, clip_frames, clip_side, clip_mels, clip_steps: the ``prepared`` loader's
            training clips: how many, and their frames, frame side and spectrogram (VGGSound's
            recipe: 3 frames of 224x224, 128 mels x 1001 steps).
        clip_batch, clip_repeats: its batch size and timed epochs.
        study: ``umt run`` overrides of the default-study timing; ``study_fresh_process``:
            time ``umt run`` in a new process (else ``run_study`` in this one, no report).
    """

    epochs: int = 3
    warmup: int = 1
    repeats: int = 5
    cnn_repeats: int = 5
    mlp_train: int = 1500
    mlp_val: int = 1000
    mlp_hidden: int = 128
    cnn_train: int = 384
    cnn_val: int = 256
    cnn_side: int = 32
    cnn_width: int = 16
    batch_size: int = 64
    loader_epochs: int = 5
    scales: tuple[int, ...] = (1, 2, 4)
    model_batches: tuple[int, ...] = (32, 64, 256)
    clips: int = 512
    clip_frames: int = 3
    clip_side: int = 224
    clip_mels: int = 128
    clip_steps: int = 1001
    clip_batch: int = 64
    clip_repeats: int = 5
    study: tuple[str, ...] = default_study.DEFAULT
    study_fresh_process: bool = True


FULL = Sizes()
QUICK = Sizes(  # a smoke test: no warm-up, tiny data and models
    epochs=2,
    warmup=0,
    repeats=1,
    cnn_repeats=1,
    mlp_train=96,
    mlp_val=64,
    mlp_hidden=16,
    cnn_train=48,
    cnn_val=32,
    cnn_side=8,
    cnn_width=4,
    batch_size=16,
    loader_epochs=2,
    scales=(1, 2),
    model_batches=(8, 16),
    clips=32,
    clip_frames=2,
    clip_side=16,
    clip_mels=8,
    clip_steps=20,
    clip_batch=8,
    clip_repeats=1,
    study=default_study.QUICK,
    study_fresh_process=False,
)


@dataclass(frozen=True)
class Setup:
    """A data set and a model to train on it."""

    name: str
    description: str
    data: DataBundle
    model: ModelConfig
    repeats: int

    def build(self) -> MultimodalModel:
        torch.manual_seed(SEED)
        return build_model(self.model, self.data.input_shapes, self.data.num_classes)

    def teachers(self) -> dict[str, torch.nn.Module]:
        """Uni-modal teacher encoders (untrained: a step costs the same as with trained ones)."""
        torch.manual_seed(SEED)
        shapes, k = self.data.input_shapes, self.data.num_classes
        return {
            m: build_model(self.model, {m: s}, k, linear_head=True).encoders[m]
            for m, s in shapes.items()
        }


def mlp_setup(sizes: Sizes, scale: int = 1) -> Setup:
    """The synthetic data set (preset ``imbalanced``) and the default MLPs."""
    n_train, n_val = sizes.mlp_train * scale, sizes.mlp_val * scale
    synthetic = SyntheticConfig(n_train=n_train, n_val=n_val, n_test=sizes.mlp_val)
    data = load_data(DataConfig(name="synthetic", synthetic=synthetic))
    enc = EncoderConfig(name="mlp", hidden=sizes.mlp_hidden)
    model = ModelConfig(encoder=enc, head_hidden=sizes.mlp_hidden)
    shape = data.input_shapes[data.modalities[0]]
    desc = f"synthetic, 2 x {shape} vectors, MLP width {sizes.mlp_hidden}"
    return Setup("mlp", desc, data, model, sizes.repeats)


def random_images(
    n_train: int, n_val: int, side: int, *, modalities: tuple[str, ...] = ("a", "b"), k: int = 10
) -> DataBundle:
    """Random ``(1, side, side)`` images per modality and random labels (timing only)."""
    rng = np.random.default_rng(SEED)

    def split(n: int) -> ArrayDataset:
        arrays = {m: rng.standard_normal((n, 1, side, side), dtype=np.float32) for m in modalities}
        return ArrayDataset(arrays, rng.integers(0, k, n))

    return DataBundle("random-images", split(n_train), split(n_val), split(n_val), num_classes=k)


def cnn_setup(sizes: Sizes) -> Setup:
    data = random_images(sizes.cnn_train, sizes.cnn_val, sizes.cnn_side)
    enc = EncoderConfig(name="cnn", channels=sizes.cnn_width, stages=3)
    side = sizes.cnn_side
    desc = f"random images, 2 x (1, {side}, {side}), CNN width {sizes.cnn_width}"
    return Setup("cnn", desc, data, ModelConfig(encoder=enc), sizes.cnn_repeats)


class Runs:
    """Makes the runs to time: ``fit`` (in a fresh stage directory) or the bare loop."""

    def __init__(self, cfg: TrainConfig, scratch: Path) -> None:
        self.cfg, self.scratch, self._n = cfg, scratch, 0

    def with_batch_size(self, batch_size: int) -> Runs:
        return Runs(replace(self.cfg, batch_size=batch_size), self.scratch / f"bs{batch_size}")

    def _stage_dir(self) -> Path:
        self._n += 1
        path = self.scratch / f"run{self._n}"
        shutil.rmtree(path, ignore_errors=True)
        return path

    def fit(
        self,
        setup: Setup,
        method: Callable[[], Method],
        *,
        data: DataBundle | None = None,
        **seams: type,
    ) -> Callable[[], Thunk]:
        """``fit`` with ``seams`` (``module=``, ``checkpoint_cls=``: see ``umt.engine.fit``)."""

        def prepare() -> Thunk:
            model, m, stage_dir = setup.build(), method(), self._stage_dir()
            d = data or setup.data

            def run() -> None:
                fit(
                    model, m, d, self.cfg, stage_dir, task=task_of(d), seed=SEED, stage="b", **seams
                )

            return run

        return prepare

    def bare(
        self, setup: Setup, method: Callable[[], Method], *, data: DataBundle | None = None
    ) -> Callable[[], Thunk]:
        def prepare() -> Thunk:
            model, m = setup.build(), method()
            return lambda: bare_fit(model, m, data or setup.data, self.cfg, seed=SEED)

        return prepare


# -- 1. framework overhead ------------------------------------------------------------------------


def overhead(setup: Setup, runs: Runs, sizes: Sizes) -> dict[str, Any]:
    """``fit`` against the bare loop (joint training), and ``fit`` with one part changed."""
    cfg = runs.cfg
    variants = {
        "bare": runs.bare(setup, Joint),
        "fit": runs.fit(setup, Joint),
        "fit_epoch_logging": runs.fit(setup, Joint, module=EpochLoggedModule),
        "fit_checkpoint_at_end": runs.fit(
            setup, Joint, checkpoint_cls=checkpoint_at_end(cfg.epochs)
        ),
        "fit_both": runs.fit(
            setup,
            Joint,
            module=EpochLoggedModule,
            checkpoint_cls=checkpoint_at_end(cfg.epochs),
        ),
    }
    times = interleaved(variants, warmup=sizes.warmup, repeats=setup.repeats)
    samples = len(setup.data.train) * cfg.epochs
    out: dict[str, Any] = {name: summary(t, samples) for name, t in times.items()}
    bare = out["bare"]["median_s"]
    steps = len(make_loader(setup.data.train, batch_size=cfg.batch_size, shuffle=True))
    out["ratio"] = {name: out[name]["median_s"] / bare for name in times if name != "bare"}
    out["overhead_pct"] = 100 * (out["ratio"]["fit"] - 1)
    fit_s = out["fit"]["median_s"]
    out["cost"] = {  # what each part costs, from the differences of medians
        "engine_ms_per_step": 1e3 * (fit_s - bare) / (steps * cfg.epochs),
        "step_logging_ms_per_step": 1e3
        * (fit_s - out["fit_epoch_logging"]["median_s"])
        / (steps * cfg.epochs),
        "checkpoints_ms_per_epoch": 1e3
        * (fit_s - out["fit_checkpoint_at_end"]["median_s"])
        / max(1, cfg.epochs - 1),
    }
    out["steps_per_epoch"] = steps
    out["samples"] = samples
    return out


def overhead_model(setup: Setup, runs: Runs, sizes: Sizes) -> dict[str, Any]:
    """``fit``'s extra time per epoch over the bare loop's, at several batch sizes, split by a
    least-squares line into a cost per training step and a cost per epoch (the per-fit costs,
    e.g. building the Trainer, are spread over the epochs)."""
    variants = {}
    steps = {}
    for bs in sizes.model_batches:
        r = runs.with_batch_size(bs)
        variants[f"bare/{bs}"] = r.bare(setup, Joint)
        variants[f"fit/{bs}"] = r.fit(setup, Joint)
        steps[bs] = len(make_loader(setup.data.train, batch_size=bs, shuffle=True))
    times = interleaved(variants, warmup=sizes.warmup, repeats=setup.repeats)
    epochs = runs.cfg.epochs
    extra = {
        bs: (statistics.median(times[f"fit/{bs}"]) - statistics.median(times[f"bare/{bs}"]))
        / epochs
        for bs in sizes.model_batches
    }
    x = np.array([steps[bs] for bs in sizes.model_batches], dtype=float)
    y = np.array([extra[bs] for bs in sizes.model_batches])
    per_step, per_epoch = np.polyfit(x, y, 1)
    return {
        "batches": {
            str(bs): {
                "steps_per_epoch": steps[bs],
                "extra_s_per_epoch": extra[bs],
                "ratio": statistics.median(times[f"fit/{bs}"])
                / statistics.median(times[f"bare/{bs}"]),
                "bare": summary(times[f"bare/{bs}"], len(setup.data.train) * epochs),
                "fit": summary(times[f"fit/{bs}"], len(setup.data.train) * epochs),
            }
            for bs in sizes.model_batches
        },
        "per_step_s": float(per_step),
        "per_epoch_s": float(per_epoch),
    }


#: Where a ``fit`` call's time goes, by named functions (cumulative time; entries can nest:
#: the validation loops include their ``self.log`` calls).
PROFILE_PARTS: dict[str, tuple[str, str]] = {
    "Trainer construction": ("lightning/pytorch/trainer/trainer.py", "__init__"),
    "training epochs (loop)": ("lightning/pytorch/loops/training_epoch_loop.py", "run"),
    "method.step (forward, loss)": ("umt/methods/", "step"),
    "backward": ("torch/_tensor.py", "backward"),
    "Adam update": ("torch/optim/adam.py", "adam"),
    "self.log / log_dict (train + val)": ("lightning/pytorch/core/module.py", "log"),
    "train batch fetch (loader)": ("lightning/pytorch/loops/fetchers.py", "__next__"),
    "validation loops": ("lightning/pytorch/loops/evaluation_loop.py", "run"),
    "checkpoint writes": ("lightning/pytorch/callbacks/model_checkpoint.py", "_save_checkpoint"),
    "CSV logger writes": ("lightning/fabric/loggers/csv_logs.py", "save"),
    "reload best weights (torch.load)": ("torch/serialization.py", "load"),
}

#: Self time by where the code lives (these do not overlap: they sum to the whole call).
PACKAGES = (
    ("lightning", ("/lightning/", "/lightning_utilities/", "/lightning_fabric/")),
    ("torchmetrics", ("/torchmetrics/",)),
    ("torch (Python)", ("/torch/",)),
    ("umt", ("/umt/",)),
)


def profile_fit(setup: Setup, runs: Runs, out_dir: Path | None) -> dict[str, Any]:
    """cProfile of one ``fit`` call (joint). cProfile slows Python code more than native code:
    read the shares as where the time goes, the overhead section as how much."""
    run = runs.fit(setup, Joint)()
    prof = cProfile.Profile()
    prof.enable()
    run()
    prof.disable()
    stats = pstats.Stats(prof)
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    total = max(ct for (_, _, _, ct, _) in raw.values())
    parts = {}
    for label, (where, func) in PROFILE_PARTS.items():
        # The outermost of the matching functions (a file may hold nested ones of that name).
        found = [ct for (f, _, n), (_, _, _, ct, _) in raw.items() if where in f and n == func]
        parts[label] = max(found, default=0.0)
    by_package = dict.fromkeys([p for p, _ in PACKAGES], 0.0)
    by_package["torch native ops and other builtins"] = 0.0
    by_package["other Python"] = 0.0
    for (file, _, _), (_, _, tt, _, _) in raw.items():
        if file == "~":  # built-in functions: torch's C++ ops, dict/list methods, ...
            by_package["torch native ops and other builtins"] += tt
            continue
        path = file.replace(os.sep, "/")
        name = next((p for p, marks in PACKAGES if any(m in path for m in marks)), "other Python")
        by_package[name] += tt
    if out_dir is not None:
        text = out_dir / f"profile-{setup.name}.txt"
        with text.open("w") as fh:
            pstats.Stats(prof, stream=fh).sort_stats("cumulative").print_stats(60)
    return {"total_s": total, "parts_s": parts, "self_s_by_package": by_package}


# -- 2. UMT cost ----------------------------------------------------------------------------------

#: The training loops the UMT section runs each method in.
UMT_LOOPS = ("fit", "fit_epoch_logging", "bare")


def umt_cost(setup: Setup, runs: Runs, sizes: Sizes) -> dict[str, Any]:
    """Epoch time of UMT (online teachers; cached teacher features) over joint training's."""
    teachers = setup.teachers()
    start = time.perf_counter()
    cached = {
        m: extract_features(enc, setup.data.train, m, device=eval_device(runs.cfg))[0].numpy()
        for m, enc in teachers.items()
    }
    cache_s = time.perf_counter() - start

    def online() -> Method:
        return UMT(teachers, UMTConfig())

    def from_cache() -> Method:
        return UMT(teachers, UMTConfig(cache_teachers=True), cached=cached)

    methods: dict[str, Callable[[], Method]] = {
        "joint": Joint,
        "umt_online": online,
        "umt_cached": from_cache,
    }
    variants = {f"fit/{n}": runs.fit(setup, m) for n, m in methods.items()}
    variants |= {
        f"fit_epoch_logging/{n}": runs.fit(setup, m, module=EpochLoggedModule)
        for n, m in methods.items()
    }
    variants |= {f"bare/{n}": runs.bare(setup, m) for n, m in methods.items()}
    times = interleaved(variants, warmup=sizes.warmup, repeats=setup.repeats)
    epochs = runs.cfg.epochs
    out: dict[str, Any] = {"epochs": epochs, "cache_build_s": cache_s}
    for loop in UMT_LOOPS:
        per_epoch = {n: summary([t / epochs for t in times[f"{loop}/{n}"]], 1.0) for n in methods}
        joint = per_epoch["joint"]["median_s"]
        out[loop] = {
            "epoch_s": per_epoch,
            "ratio": {n: per_epoch[n]["median_s"] / joint for n in methods if n != "joint"},
        }
    return out


# -- 3. data loading ------------------------------------------------------------------------------


def loading(setup: Setup, runs: Runs, sizes: Sizes, workers: tuple[int, ...]) -> dict[str, Any]:
    """Samples/s of ``make_loader`` iteration alone, per worker count, and of the training step."""
    train, bs = setup.data.train, runs.cfg.batch_size
    out: dict[str, Any] = {"loader": {}}
    for w in workers:
        loader = make_loader(train, batch_size=bs, shuffle=True, seed=SEED, num_workers=w)
        sampler = loader.sampler
        assert isinstance(sampler, ShardedBatchSampler)
        seconds = []
        for epoch in range(sizes.warmup + sizes.loader_epochs):  # warm-up: workers start
            sampler.set_epoch(epoch)
            start = time.perf_counter()
            for _ in loader:
                pass
            if epoch >= sizes.warmup:
                seconds.append(time.perf_counter() - start)
        del loader  # stops the persistent workers
        out["loader"][str(w)] = summary(seconds, len(train))
    batches = list(make_loader(train, batch_size=bs, shuffle=True, seed=SEED))
    device = eval_device(runs.cfg)
    rates = [
        train_step_rate(setup.build(), Joint(), batches, device=device)
        for _ in range(sizes.warmup + setup.repeats)
    ][sizes.warmup :]
    step = statistics.median(rates)
    out["train_step"] = {"per_s": step, "runs_per_s": rates}
    out["loader_over_step"] = {w: r["per_s"] / step for w, r in out["loader"].items()}
    return out


# -- 4. scaling -----------------------------------------------------------------------------------


def textbook_order(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` with every (MaxPool2d, ReLU) pair of its ``nn.Sequential`` blocks swapped back
    to (ReLU, MaxPool2d), in place (the modules, hence the weights, are shared)."""
    for seq in [m for m in model.modules() if isinstance(m, torch.nn.Sequential)]:
        mods = list(seq)
        for i in range(len(mods) - 1):
            if isinstance(mods[i], torch.nn.MaxPool2d) and isinstance(mods[i + 1], torch.nn.ReLU):
                seq[i], seq[i + 1] = mods[i + 1], mods[i]
    return model


def layer_order(setup: Setup, sizes: Sizes) -> dict[str, Any]:
    """Seconds per training step (forward, backward, Adam) of ``setup``'s model as built and
    with the textbook layer order, on one batch, interleaved; ``ratio``: textbook / ours."""
    batch = next(iter(make_loader(setup.data.train, batch_size=sizes.batch_size, shuffle=False)))
    steps = max(1, 4 * sizes.epochs)

    def variant(textbook: bool) -> Callable[[], Thunk]:
        model = setup.build()
        if textbook:
            textbook_order(model)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)

        def prepare() -> Thunk:
            def run() -> None:
                for _ in range(steps):
                    loss = torch.nn.functional.cross_entropy(model(batch), batch["label"])
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()

            return run

        return prepare

    times = interleaved(
        {"ours": variant(False), "textbook": variant(True)},
        warmup=max(1, sizes.warmup),
        repeats=4 * setup.repeats,
    )
    out: dict[str, Any] = {n: summary([t / steps for t in ts], 1) for n, ts in times.items()}
    out["ratio"] = out["textbook"]["median_s"] / out["ours"]["median_s"]
    return out


def scaling(sizes: Sizes, runs: Runs) -> dict[str, Any]:
    """Epoch time (``fit`` and bare loop, joint, MLP setup) at each multiple of the data."""
    setups = {k: mlp_setup(sizes, scale=k) for k in sizes.scales}
    variants = {}
    for k, s in setups.items():
        variants[f"fit/{k}"] = runs.fit(s, Joint)
        variants[f"bare/{k}"] = runs.bare(s, Joint)
    times = interleaved(variants, warmup=sizes.warmup, repeats=sizes.repeats)
    epochs = runs.cfg.epochs
    out: dict[str, Any] = {"train_samples": {str(k): len(s.data.train) for k, s in setups.items()}}
    for loop in ("fit", "bare"):
        per_epoch = {
            str(k): summary([t / epochs for t in times[f"{loop}/{k}"]], len(s.data.train))
            for k, s in setups.items()
        }
        base = per_epoch[str(sizes.scales[0])]["median_s"]
        out[loop] = {
            "epoch_s": per_epoch,
            "ratio": {k: v["median_s"] / base for k, v in per_epoch.items()},
        }
        # epoch_s = fixed + per_1x * scale, least squares: the per-epoch cost that data size
        # does not change (checkpoints, loop start and end) and the cost per 1x of data.
        x = np.array(sizes.scales, dtype=float)
        y = np.array([per_epoch[str(k)]["median_s"] for k in sizes.scales])
        slope, intercept = np.polyfit(x, y, 1) if len(x) > 1 else (y[0], 0.0)
        out[loop]["fixed_s_per_epoch"] = float(intercept)
        out[loop]["s_per_epoch_per_1x"] = float(slope)
    return out


# -- all ------------------------------------------------------------------------------------------


def _git_commit() -> str | None:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return done.stdout.strip() or None


def run_all(
    sizes: Sizes,
    *,
    threads: int = 1,
    out_dir: Path | None = None,
    workers: tuple[int, ...] = (0, 1, 2),
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Every section; returns the results (what ``results.json`` holds)."""
    if threads > 0:
        torch.set_num_threads(threads)
    load_before = os.getloadavg()
    start = time.perf_counter()
    cfg = TrainConfig(epochs=sizes.epochs, batch_size=sizes.batch_size, progress=False)
    cfg = replace(cfg, threads=threads)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="umt-bench-") as scratch:
        runs = Runs(cfg, Path(scratch))
        setups = [mlp_setup(sizes), cnn_setup(sizes)]
        results["setups"] = {s.name: s.description for s in setups}
        sections: list[tuple[str, Callable[[Setup], dict[str, Any]]]] = [
            ("overhead", lambda s: overhead(s, runs, sizes)),
            ("profile", lambda s: profile_fit(s, runs, out_dir)),
            ("umt", lambda s: umt_cost(s, runs, sizes)),
            ("loading", lambda s: loading(s, runs, sizes, workers)),
        ]
        for section, measure in sections:
            results[section] = {}
            for s in setups:
                t = time.perf_counter()
                results[section][s.name] = measure(s)
                log(f"  {section}/{s.name}: {time.perf_counter() - t:.1f} s")
        t = time.perf_counter()
        results["overhead_model"] = {"mlp": overhead_model(setups[0], runs, sizes)}
        log(f"  overhead_model/mlp: {time.perf_counter() - t:.1f} s")
        t = time.perf_counter()
        results["layer_order"] = {"cnn": layer_order(setups[1], sizes)}
        log(f"  layer_order/cnn: {time.perf_counter() - t:.1f} s")
        t = time.perf_counter()
        results["scaling"] = {"mlp": scaling(sizes, runs)}
        log(f"  scaling/mlp: {time.perf_counter() - t:.1f} s")
        t = time.perf_counter()
        root = write_random_prepared(
            Path(scratch) / "prepared",
            n=sizes.clips,
            frames=sizes.clip_frames,
            side=sizes.clip_side,
            mels=sizes.clip_mels,
            steps=sizes.clip_steps,
        )
        results["loader"] = prepared_loader(
            root,
            batch_size=sizes.clip_batch,
            warmup=max(1, sizes.warmup),  # the first epoch starts the workers
            repeats=sizes.clip_repeats,
            workers=workers,
            device=eval_device(cfg),
        )
        log(f"  loader: {time.perf_counter() - t:.1f} s")
    t = time.perf_counter()
    results["study"] = default_study.time_default_study(
        sizes.study, threads=threads, fresh_process=sizes.study_fresh_process
    )
    log(f"  study: {time.perf_counter() - t:.1f} s")
    results["meta"] = {
        "sizes": asdict(sizes),
        "threads": torch.get_num_threads(),
        "device": str(eval_device(cfg)),
        "batch_size": cfg.batch_size,
        "epochs": cfg.epochs,
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "load_avg_before": list(load_before),
        "load_avg_after": list(os.getloadavg()),
        "wall_s": time.perf_counter() - start,
        "commit": _git_commit(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    return results
