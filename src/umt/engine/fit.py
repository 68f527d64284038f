"""Training of one stage, with Lightning at the edge: ``fit`` trains a model with a method and
keeps the best validation epoch; where to run (``eval_device``, ``is_main_process``) and how a
trained model is saved. Evaluation belongs to the tasks (``umt.tasks``).
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import lightning as L
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from torch import nn

from umt.data.base import DataBundle, make_loader
from umt.engine.checkpoints import (
    AtomicCheckpointIO,
    metric_rows,
    resumable,
    resume_epoch,
    write_metric_rows,
)
from umt.engine.config import (
    TrainConfig,
)
from umt.engine.interrupts import passing_interrupts
from umt.engine.loggers import build_loggers
from umt.engine.module import StageModule
from umt.errors import UMTError
from umt.io import save_torch
from umt.methods.base import (
    Method,
    Scheduled,
    needs_index,
)
from umt.tasks.base import Task

T = TypeVar("T")


def _interactive() -> bool:
    """Whether standard output is a terminal (where Lightning draws its progress bars)."""
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):  # replaced or closed by the caller
        return False


def _quiet_lightning() -> None:
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*GPU available but not used.*")
    warnings.filterwarnings("ignore", ".*Checkpoint directory.*exists and is not empty.*")
    warnings.filterwarnings("ignore", ".*`isinstance.*treespec.*")
    warnings.filterwarnings("ignore", ".*Experiment logs directory.*exists and is not empty.*")


@dataclass(frozen=True)
class FitResult:
    """A trained stage: its best validation score (the task's metric, as logged in training),
    the epoch it came from, the epoch cap and the training time; the last epoch run
    (``stopped_epoch``, 0-based like ``best_epoch``) and whether training converged."""

    best_val_score: float
    best_epoch: int
    epochs: int
    seconds: float
    stopped_epoch: int = -1
    converged: bool = True


def cap_tail(epochs: int) -> int:
    """How many of the last epochs of a cap count as "at the cap": a tenth of it, at least one.

    Example:
        >>> cap_tail(20), cap_tail(5), cap_tail(100)
        (2, 1, 10)
    """
    return max(1, epochs // 10)


def is_converged(best_epoch: int, epochs: int, *, early_stopped: bool = False) -> bool:
    """False when the best epoch lies within the last :func:`cap_tail` epochs of the cap
    ``epochs`` (the val score was still improving when training hit the cap), unless early
    stopping ended training (the score had stopped improving).

    Example:
        >>> is_converged(19, 20), is_converged(17, 20), is_converged(9, 20, early_stopped=True)
        (False, True, True)
    """
    return early_stopped or best_epoch < epochs - cap_tail(epochs)


def _compile_encoders(model: nn.Module, backend: str) -> None:
    """``torch.compile`` each encoder in place with ``backend`` (``train.compile``)."""
    if backend == "none":
        return
    import torch._dynamo

    known = torch._dynamo.list_backends(exclude_tags=())
    if backend not in known:
        raise UMTError(
            f"train.compile: unknown backend {backend!r}; expected 'none' or one of {known}"
        )
    encoders = model.encoders
    assert isinstance(encoders, nn.ModuleDict)  # the FusionModel contract
    for encoder in encoders.values():
        encoder.compile(backend=backend)


def fit(
    model: nn.Module,
    method: Method,
    data: DataBundle,
    cfg: TrainConfig,
    stage_dir: Path,
    *,
    task: Task,
    seed: int,
    stage: str,
    module: type[StageModule] = StageModule,
    checkpoint_cls: type[ModelCheckpoint] = ModelCheckpoint,
    callbacks: Sequence[L.Callback] = (),
) -> FitResult:
    """Train ``model`` with ``method``; keep the epoch with the best validation score (the
    ``task``'s metric: accuracy, or mean IoU for segmentation).

    Writes ``stage_dir/metrics.csv`` and ``stage_dir/checkpoints/{best,last}.ckpt``. If
    ``last.ckpt`` exists (an interrupted run), training resumes from it. On return ``model``
    holds the best epoch's weights. ``module`` and ``checkpoint_cls`` are the seams for a
    variant of the Lightning adapter or of the checkpoint callback (the benchmarks price them);
    ``callbacks``: more Lightning callbacks (e.g. the recipe search's pruning of a trial).
    """
    _quiet_lightning()
    L.seed_everything(seed, workers=True, verbose=False)
    _compile_encoders(model, cfg.compile)
    adapter = module(
        model,
        method,
        cfg,
        stage,
        metric=task.val_metric(data.num_classes),
        metric_key=task.metric,
    )
    ckpt_dir = stage_dir / "checkpoints"
    checkpoint = checkpoint_cls(
        dirpath=ckpt_dir, filename="best", monitor=adapter.val_name, mode="max", save_last=True
    )
    every: list[L.Callback] = [checkpoint, *callbacks]
    early: EarlyStopping | None = None
    if cfg.patience > 0:
        early = EarlyStopping(monitor=adapter.val_name, mode="max", patience=cfg.patience)
        every.append(early)
    # A method's schedule (e.g. G2D's prioritisation) runs out before early stopping may end it.
    min_epochs = min(method.min_epochs, cfg.epochs) if isinstance(method, Scheduled) else None
    trainer = L.Trainer(
        max_epochs=cfg.epochs,
        min_epochs=min_epochs,
        accelerator=cfg.accelerator,
        devices=cfg.devices,
        strategy=cfg.strategy,
        sync_batchnorm=cfg.sync_batchnorm,
        num_nodes=cfg.num_nodes,
        precision=cfg.precision,  # type: ignore[arg-type]
        logger=build_loggers(cfg.logger, stage_dir),  # train.logger; csv: stage_dir/metrics.csv
        callbacks=every,
        plugins=[AtomicCheckpointIO()],  # a full disk leaves the previous checkpoint, not half one
        # Bars only on a terminal: redirected to a file they would fill it with carriage returns.
        enable_progress_bar=cfg.progress and _interactive(),
        enable_model_summary=False,
        deterministic=cfg.deterministic,
        num_sanity_val_steps=0,
        use_distributed_sampler=False,  # our batch sampler shards itself (exact eval metrics)
        log_every_n_steps=1,
    )
    train_set = data.train.indexed() if needs_index(method) else data.train
    # Raw batches (e.g. uint8 frames, crop boxes drawn on the CPU), finished after the transfer.
    train_set, val_set = train_set.for_device(), data.val.for_device()
    adapter.finish_train, adapter.finish_val = train_set.on_device, val_set.on_device
    train_loader = make_loader(
        train_set, batch_size=cfg.batch_size, shuffle=True, seed=seed, num_workers=cfg.num_workers
    )
    val_loader = make_loader(val_set, batch_size=cfg.batch_size * 4, shuffle=False)
    last = ckpt_dir / "last.ckpt"
    if last.is_file() and not resumable(last):
        warnings.warn(
            f"{last} or the best checkpoint it names is unreadable (cut off by a crash or a full "
            f"disk?); restarting stage {stage!r}",
            stacklevel=2,
        )
        shutil.rmtree(ckpt_dir)
    resumed = resume_epoch(stage_dir)
    metrics_file = stage_dir / "metrics.csv"
    # Lightning's CSV logger starts metrics.csv afresh: keep the rows of the epochs resumed from.
    earlier = metric_rows(metrics_file, until_epoch=resumed) if resumed is not None else []
    adapter.fit_started = time.perf_counter()
    with passing_interrupts():  # Ctrl-C/SIGTERM: raised to the CLI (exit 130/143), not exit 1
        trainer.fit(
            adapter, train_loader, val_loader, ckpt_path=str(last) if last.is_file() else None
        )
    seconds = adapter.train_seconds()
    if earlier and is_main_process():
        write_metric_rows(metrics_file, earlier + metric_rows(metrics_file))
    best = checkpoint.best_model_path
    if not best:
        raise UMTError(
            f"stage {stage!r}: training produced no checkpoint (train.epochs={cfg.epochs})"
        )
    # A run directory that was moved or copied: its checkpoints name their old folder.
    best = str(ckpt_dir / Path(best).name)
    saved = torch.load(best, map_location="cpu", weights_only=True)
    state = saved["state_dict"]
    model.load_state_dict(
        {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}
    )
    score = checkpoint.best_model_score
    if score is None:  # Lightning drops it when the directory moved; the best checkpoint has it
        score = next(
            (
                v.get("best_model_score")
                for k, v in saved.get("callbacks", {}).items()
                if k.startswith("ModelCheckpoint")
            ),
            None,
        )
    best_epoch = int(saved["epoch"])
    stopped_epoch = trainer.current_epoch - 1  # the last epoch run (current_epoch counts them)
    early_stopped = early is not None and early.stopped_epoch > 0
    return FitResult(
        best_val_score=float(score) if score is not None else math.nan,
        best_epoch=best_epoch,
        epochs=cfg.epochs,
        seconds=seconds,
        stopped_epoch=stopped_epoch,
        converged=is_converged(best_epoch, cfg.epochs, early_stopped=early_stopped),
    )


def is_main_process() -> bool:
    """Whether this is global rank 0 (also before any multi-process launch): the writer.

    Reads the launchers' variables: ``RANK`` (torchrun), ``SLURM_PROCID`` (SLURM), or Lightning's
    ``NODE_RANK``/``LOCAL_RANK`` for the processes it starts itself.
    """
    for var in ("RANK", "SLURM_PROCID"):
        if var in os.environ:
            return int(os.environ[var]) == 0
    return int(os.environ.get("NODE_RANK", 0)) == 0 and int(os.environ.get("LOCAL_RANK", 0)) == 0


def agree(value: T) -> T:
    """The main process's ``value`` on every process of a DDP run (``value`` itself elsewhere).

    What only the main process decides (it alone probes and writes) but every process must act
    on alike, e.g. UMT's distilled modalities or a teacher's refit head: decided apart, the
    processes would train different objectives under one all-reduced gradient. A collective:
    every process calls it at the same point.
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def eval_device(cfg: TrainConfig) -> torch.device:
    """The device evaluation runs on: a GPU when the config allows one and one is present."""
    if cfg.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def save_model(model: nn.Module, path: Path) -> None:
    """The unwrapped module's ``state_dict`` (no ``module.``/``_orig_mod.`` prefixes on disk)."""
    inner = getattr(model, "_orig_mod", model)
    inner = getattr(inner, "module", inner)
    save_torch(path, inner.state_dict())
