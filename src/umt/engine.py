"""Training of one stage, with Lightning at the edge.

``StageModule`` is a thin adapter: it calls the method's ``step`` and logs what it returns. Devices,
precision, DDP, checkpoints, resumption, loggers and progress bars are Lightning's. ``fit`` trains
one stage; evaluation belongs to the tasks (``umt.tasks``).
"""

from __future__ import annotations

import logging
import math
import os
import random
import shutil
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from torch import nn
from torchmetrics import MeanMetric, Metric

from umt.checkpoints import (
    AtomicCheckpointIO,
    metric_rows,
    resumable,
    resume_epoch,
    write_metric_rows,
)
from umt.data.base import Batch, DataBundle, make_loader
from umt.errors import UMTError
from umt.faults import fault_active, fault_point
from umt.io import save_torch
from umt.loggers import build_loggers
from umt.methods.base import (
    AfterBackwardHook,
    EpochStartHook,
    HasTrainable,
    Method,
    needs_index,
)
from umt.tasks.base import Task
from umt.train_config import (
    OPTIMIZERS,
    SCHEDULERS,
    TrainConfig,
)


class DivergenceError(UMTError):
    """The loss became NaN or infinite; the stage stops, its last good checkpoint is kept."""


class StageModule(L.LightningModule):
    """Lightning adapter: ``training_step`` is the method's ``step``; validation updates the
    task's metric (``val/acc``, or ``val/miou`` for segmentation), which selects the checkpoint.

    A variant (e.g. one that logs once per epoch, in ``benchmarks/``) subclasses it and
    overrides :meth:`log_step` and :meth:`log_validation`; ``fit(..., module=Variant)`` trains
    with it.
    """

    def __init__(
        self,
        model: nn.Module,
        method: Method,
        cfg: TrainConfig,
        stage: str,
        *,
        metric: Metric,
        metric_key: str,
    ) -> None:
        super().__init__()
        self.model = model
        self.method = method  # not an nn.Module: teachers stay out of DDP and checkpoints
        # Extra modules trained with the model (e.g. per-modality heads).
        self.extra = method.trainable() if isinstance(method, HasTrainable) else None
        self.cfg = cfg
        self.stage = stage
        self.val_acc = metric  # the task's score on the validation split
        self.val_name = f"val/{metric_key}"
        # The validation loss as a metric: its sums (loss × samples, samples) are all-reduced
        # under DDP as sums. ``self.log(loss, sync_dist=True)`` averaged the integer sample count
        # over processes, which truncates with unequal shards (101 samples logged as 100).
        self.val_loss = MeanMetric()
        # The training scalars' sums over the epoch (value x batch size) and its sample count.
        self._sums: dict[str, torch.Tensor] = {}
        self._count = 0
        # The method's optional hooks, looked up once (a Protocol isinstance check is slow).
        self._epoch_hook = (
            method.on_train_epoch_start if isinstance(method, EpochStartHook) else None
        )
        self._backward_hook = (
            method.on_after_backward if isinstance(method, AfterBackwardHook) else None
        )
        self.finish_train: Callable[[Batch], Batch] | None = None  # set by fit (issue 17)
        self.finish_val: Callable[[Batch], Batch] | None = None
        # Training time, kept in the checkpoints so that a resumed stage counts it all:
        # seconds before this run (from the checkpoint resumed) + since ``fit_started``.
        self.seconds_before = 0.0
        self.fit_started = time.perf_counter()

    def on_after_batch_transfer(self, batch: Batch, dataloader_idx: int) -> Batch:
        # The data's on_device step (prepared clips: crop, flip, normalise in batch on the GPU).
        finish = self.finish_train if self.trainer.training else self.finish_val
        return finish(batch) if finish is not None else batch

    def train_seconds(self) -> float:
        """Seconds this stage has trained, including the runs before a resume."""
        return self.seconds_before + time.perf_counter() - self.fit_started

    def _flush_loggers(self) -> None:
        # Write the rows logged so far (Lightning's CSV logger holds them for 100 steps), so
        # that an interrupted stage's metrics.csv holds every epoch up to its last checkpoint.
        for logger in self.loggers:
            logger.save()

    def on_fit_start(self) -> None:
        self.method.to(self.device)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # The random generators, so that a resumed run draws what an uninterrupted one would.
        kind, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)
        keys_t = torch.from_numpy(np.asarray(keys).astype(np.int64))
        checkpoint["umt_rng"] = {  # plain types and tensors only: loadable with weights_only
            "torch": torch.get_rng_state(),
            "numpy": [kind, keys_t, pos, has_gauss, gauss],
            "python": random.getstate(),
        }
        checkpoint["umt_train_seconds"] = self.train_seconds()
        self._flush_loggers()
        fault_point(f"checkpoint:{self.stage}:{self.current_epoch}")

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        rng = checkpoint.get("umt_rng")
        if rng is not None:
            torch.set_rng_state(rng["torch"])
            kind, keys, pos, has_gauss, gauss = rng["numpy"]
            np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
            random.setstate(rng["python"])
        self.seconds_before = float(checkpoint.get("umt_train_seconds", 0.0))

    def on_train_epoch_start(self) -> None:
        self._flush_loggers()  # the previous epoch's train/* means, logged after its checkpoint
        self._sums = {}
        self._count = 0
        if self._epoch_hook is not None:
            self._epoch_hook(self.model, self.current_epoch)

    def on_after_backward(self) -> None:
        if self._backward_hook is not None:
            self._backward_hook(self.model)

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        out = self.method.step(self.model, batch)
        loss = out["loss"]
        fault_point(f"step:{self.stage}:{self.global_step}")
        if fault_active(f"nan:{self.stage}:{self.global_step}"):
            loss = loss * float("nan")
        if not torch.isfinite(loss):
            raise DivergenceError(
                f"stage {self.stage!r}: the loss became {loss.item()} at epoch {self.current_epoch}, "
                f"step {self.global_step} (batch {batch_idx} of the epoch); the last good "
                "checkpoint is kept. Lower train.lr or check the inputs for NaN/inf"
            )
        self.log_step(out, len(batch["label"]))
        return loss

    def log_step(self, out: dict[str, torch.Tensor], n: int) -> None:
        """Add a step's named scalars (``train/<name>``, weighted by its ``n`` samples) to the
        epoch's sums, logged as sample-weighted means at the epoch's end (one ``self.log`` per
        step cost more than a small model's step: Lightning moves its whole result collection
        at every call)."""
        for k, v in out.items():
            if k != "logits" and v.ndim == 0:
                self._sums[k] = self._sums.get(k, 0) + v.detach() * n
        self._count += n

    def on_train_epoch_end(self) -> None:
        if self._count:
            logs = {f"train/{k}": s / self._count for k, s in self._sums.items()}
            self.log_dict(logs, on_step=False, on_epoch=True, sync_dist=True)

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        logits = self.model(batch)
        loss = F.cross_entropy(logits, batch["label"])
        self.val_acc.update(logits, batch["label"])
        self.log_validation(loss, len(batch["label"]))

    def log_validation(self, loss: torch.Tensor, n: int) -> None:
        """Log a validation batch's loss and the task's metric (``val/acc``) as epoch values."""
        self.val_loss.update(loss.detach(), weight=n)
        self.log("val/loss", self.val_loss, on_epoch=True, batch_size=n)
        self.log(self.val_name, self.val_acc, on_epoch=True, batch_size=n, prog_bar=True)

    def configure_optimizers(self):  # type: ignore[no-untyped-def]
        cfg = self.cfg
        params = [p for p in self.parameters() if p.requires_grad]  # model + method's extras
        opt: torch.optim.Optimizer
        if cfg.optimizer == "adam":
            opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        elif cfg.optimizer == "adamw":
            opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        elif cfg.optimizer == "sgd":
            opt = torch.optim.SGD(
                params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
            )
        else:
            raise UMTError(
                f"unknown optimizer {cfg.optimizer!r} (train.optimizer); expected one of {OPTIMIZERS}"
            )
        if cfg.scheduler == "none":
            return opt
        if cfg.scheduler == "cosine":
            sched: torch.optim.lr_scheduler.LRScheduler = (
                torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, cfg.epochs))
            )
        elif cfg.scheduler == "step":
            sched = torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.step_size, gamma=cfg.gamma)
        elif cfg.scheduler == "plateau":
            plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
                opt, mode="max", factor=cfg.gamma, patience=cfg.plateau_patience
            )
            # Stepped once per epoch on the val score (validation runs every epoch).
            monitor = {"scheduler": plateau, "monitor": self.val_name, "interval": "epoch"}
            return {"optimizer": opt, "lr_scheduler": monitor}
        else:
            raise UMTError(
                f"unknown scheduler {cfg.scheduler!r} (train.scheduler); expected one of {SCHEDULERS}"
            )
        return {"optimizer": opt, "lr_scheduler": sched}


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
) -> FitResult:
    """Train ``model`` with ``method``; keep the epoch with the best validation score (the
    ``task``'s metric: accuracy, or mean IoU for segmentation).

    Writes ``stage_dir/metrics.csv`` and ``stage_dir/checkpoints/{best,last}.ckpt``. If
    ``last.ckpt`` exists (an interrupted run), training resumes from it. On return ``model``
    holds the best epoch's weights. ``module`` and ``checkpoint_cls`` are the seams for a
    variant of the Lightning adapter or of the checkpoint callback (the benchmarks price them).
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
    callbacks: list[L.Callback] = [checkpoint]
    early: EarlyStopping | None = None
    if cfg.patience > 0:
        early = EarlyStopping(monitor=adapter.val_name, mode="max", patience=cfg.patience)
        callbacks.append(early)
    trainer = L.Trainer(
        max_epochs=cfg.epochs,
        accelerator=cfg.accelerator,
        devices=cfg.devices,
        strategy=cfg.strategy,
        sync_batchnorm=cfg.sync_batchnorm,
        num_nodes=cfg.num_nodes,
        precision=cfg.precision,  # type: ignore[arg-type]
        logger=build_loggers(cfg.logger, stage_dir),  # train.logger; csv: stage_dir/metrics.csv
        callbacks=callbacks,
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
    trainer.fit(adapter, train_loader, val_loader, ckpt_path=str(last) if last.is_file() else None)
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
