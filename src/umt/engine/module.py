"""The Lightning adapter of one stage: ``StageModule`` calls the method's ``step`` and logs what it
returns; validation updates the task's metric, which selects the checkpoint. Devices, precision,
DDP, checkpoints and progress bars are Lightning's (``umt.engine.fit`` sets them up).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric, Metric

from umt.data.base import Batch
from umt.engine.config import (
    OPTIMIZERS,
    SCHEDULERS,
    TrainConfig,
)
from umt.errors import UMTError
from umt.io import fault_active, fault_point
from umt.methods.base import (
    AfterBackwardHook,
    EpochStartHook,
    HasTrainable,
    Method,
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
