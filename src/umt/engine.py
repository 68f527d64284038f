"""Training and evaluation of one stage, with Lightning at the edge.

``StageModule`` is a thin adapter: it calls the method's ``step`` and logs what it returns. Devices,
precision, DDP, checkpoints, resumption, loggers and progress bars are Lightning's.
"""

from __future__ import annotations

import logging
import math
import os
import random
import shutil
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from torch import nn
from torchmetrics.classification import MulticlassAccuracy, MulticlassJaccardIndex

from umt.data.base import ArrayDataset, Batch, DataBundle, make_loader
from umt.data.segmentation import IGNORE_INDEX
from umt.errors import UMTError
from umt.faults import fault_active, fault_point
from umt.io import save_torch
from umt.methods.base import Method
from umt.models.multimodal import MultimodalModel, mask_batch


@dataclass(frozen=True)
class TrainConfig:
    """How a stage is trained (the same for every stage of a study).

    Attributes:
        epochs: training epochs; the checkpoint kept is the epoch with the best val accuracy.
        batch_size: samples per step (per device).
        optimizer: ``adam``, ``adamw`` or ``sgd`` (momentum ``momentum``).
        lr, weight_decay, momentum: optimiser settings.
        scheduler: ``none``, ``cosine`` (over ``epochs``) or ``step`` (x ``gamma`` every
            ``step_size`` epochs).
        accelerator, devices, strategy, num_nodes, precision: passed to the Lightning Trainer
            (``auto`` uses a GPU when one is present).
        num_workers: DataLoader worker processes.
        progress: show progress bars.
        deterministic: deterministic algorithms (bit-identical reruns on CPU).
        threads: CPU threads for PyTorch (0: PyTorch's default). Small models train fastest
            with 1; a busy machine with more threads than free cores slows down sharply.
        compile: ``none``, or the ``torch.compile`` backend each encoder is compiled with, in
            place (``nn.Module.compile``: weights and checkpoints are unchanged). ``inductor`` is
            PyTorch's compiler, worth its start-up cost (tens of seconds per stage) for large
            encoders on a GPU; ``eager`` and ``aot_eager`` trace without compiling (debugging).
    """

    epochs: int = 20
    batch_size: int = 64
    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    scheduler: str = "none"
    step_size: int = 10
    gamma: float = 0.1
    accelerator: str = "auto"
    devices: int | str = "auto"
    strategy: str = "auto"
    num_nodes: int = 1
    precision: str = "32-true"
    num_workers: int = 0
    progress: bool = True
    deterministic: bool = True
    threads: int = 0
    compile: str = "none"


class DivergenceError(UMTError):
    """The loss became NaN or infinite; the stage stops, its last good checkpoint is kept."""


OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("none", "cosine", "step")


class StageModule(L.LightningModule):
    """Lightning adapter: ``training_step`` is the method's ``step``; validation is accuracy
    (``val/acc``), or for segmentation the mean IoU (``val/miou``, unlabelled pixels ignored)."""

    def __init__(
        self,
        model: MultimodalModel,
        method: Method,
        cfg: TrainConfig,
        num_classes: int,
        stage: str,
        *,
        task: str = "classification",
    ) -> None:
        super().__init__()
        self.model = model
        self.method = method  # not an nn.Module: teachers stay out of DDP and checkpoints
        trainable = getattr(method, "trainable", None)
        self.extra = trainable() if trainable is not None else None  # e.g. per-modality heads
        self.cfg = cfg
        self.stage = stage
        self.val_acc: MulticlassAccuracy | MulticlassJaccardIndex
        self.val_acc = MulticlassAccuracy(num_classes=num_classes, average="micro")
        self.val_name = "val/acc"
        if task == "segmentation":
            self.val_acc = MulticlassJaccardIndex(num_classes, ignore_index=IGNORE_INDEX)
            self.val_name = "val/miou"
        self.finish_train: Callable[[Batch], Batch] | None = None  # set by fit (issue 17)
        self.finish_val: Callable[[Batch], Batch] | None = None

    def on_after_batch_transfer(self, batch: Batch, dataloader_idx: int) -> Batch:
        # The data's on_device step (prepared clips: crop, flip, normalise in batch on the GPU).
        finish = self.finish_train if self.trainer.training else self.finish_val
        return finish(batch) if finish is not None else batch

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
        fault_point(f"checkpoint:{self.stage}:{self.current_epoch}")

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        rng = checkpoint.get("umt_rng")
        if rng is not None:
            torch.set_rng_state(rng["torch"])
            kind, keys, pos, has_gauss, gauss = rng["numpy"]
            np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
            random.setstate(rng["python"])

    def on_train_epoch_start(self) -> None:
        hook = getattr(self.method, "on_train_epoch_start", None)
        if hook is not None:
            hook(self.model, self.current_epoch)

    def on_after_backward(self) -> None:
        hook = getattr(self.method, "on_after_backward", None)
        if hook is not None:
            hook(self.model)

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
        n = len(batch["label"])
        logs = {f"train/{k}": v.detach() for k, v in out.items() if k != "logits" and v.ndim == 0}
        self.log_dict(logs, on_step=False, on_epoch=True, batch_size=n, sync_dist=True)
        return loss

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        logits = self.model(batch)
        loss = F.cross_entropy(logits, batch["label"])
        self.val_acc.update(logits, batch["label"])
        n = len(batch["label"])
        self.log("val/loss", loss, on_epoch=True, batch_size=n, sync_dist=True)
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
        else:
            raise UMTError(
                f"unknown scheduler {cfg.scheduler!r} (train.scheduler); expected one of {SCHEDULERS}"
            )
        return {"optimizer": opt, "lr_scheduler": sched}


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
    best_val_acc: float
    best_epoch: int
    epochs: int
    seconds: float


def _compile_encoders(model: MultimodalModel, backend: str) -> None:
    """``torch.compile`` each encoder in place with ``backend`` (``train.compile``)."""
    if backend == "none":
        return
    import torch._dynamo

    known = torch._dynamo.list_backends(exclude_tags=())
    if backend not in known:
        raise UMTError(
            f"train.compile: unknown backend {backend!r}; expected 'none' or one of {known}"
        )
    for encoder in model.encoders.values():
        encoder.compile(backend=backend)


def fit(
    model: MultimodalModel,
    method: Method,
    data: DataBundle,
    cfg: TrainConfig,
    stage_dir: Path,
    *,
    seed: int,
    stage: str,
) -> FitResult:
    """Train ``model`` with ``method``; keep the epoch with the best validation accuracy (mean
    IoU for segmentation).

    Writes ``stage_dir/metrics.csv`` and ``stage_dir/checkpoints/{best,last}.ckpt``. If
    ``last.ckpt`` exists (an interrupted run), training resumes from it. On return ``model``
    holds the best epoch's weights.
    """
    _quiet_lightning()
    L.seed_everything(seed, workers=True, verbose=False)
    _compile_encoders(model, cfg.compile)
    module = StageModule(model, method, cfg, data.num_classes, stage, task=data.task)
    ckpt_dir = stage_dir / "checkpoints"
    checkpoint = ModelCheckpoint(
        dirpath=ckpt_dir, filename="best", monitor=module.val_name, mode="max", save_last=True
    )
    trainer = L.Trainer(
        max_epochs=cfg.epochs,
        accelerator=cfg.accelerator,
        devices=cfg.devices,
        strategy=cfg.strategy,
        num_nodes=cfg.num_nodes,
        precision=cfg.precision,  # type: ignore[arg-type]
        logger=CSVLogger(stage_dir, name="", version=""),
        callbacks=[checkpoint],
        enable_progress_bar=cfg.progress,
        enable_model_summary=False,
        deterministic=cfg.deterministic,
        num_sanity_val_steps=0,
        use_distributed_sampler=False,  # our batch sampler shards itself (exact eval metrics)
        log_every_n_steps=1,
    )
    train_set = data.train.indexed() if getattr(method, "needs_index", False) else data.train
    # Raw batches (e.g. uint8 frames, crop boxes drawn on the CPU), finished after the transfer.
    train_set, val_set = train_set.for_device(), data.val.for_device()
    module.finish_train, module.finish_val = train_set.on_device, val_set.on_device
    train_loader = make_loader(
        train_set, batch_size=cfg.batch_size, shuffle=True, seed=seed, num_workers=cfg.num_workers
    )
    val_loader = make_loader(val_set, batch_size=cfg.batch_size * 4, shuffle=False)
    last = ckpt_dir / "last.ckpt"
    if last.is_file() and not _readable(last):
        warnings.warn(
            f"{last} is unreadable (cut off by a crash?); restarting stage {stage!r}", stacklevel=2
        )
        shutil.rmtree(ckpt_dir)
    start = time.perf_counter()
    trainer.fit(module, train_loader, val_loader, ckpt_path=str(last) if last.is_file() else None)
    seconds = time.perf_counter() - start
    best = checkpoint.best_model_path
    if not best:
        raise UMTError(
            f"stage {stage!r}: training produced no checkpoint (train.epochs={cfg.epochs})"
        )
    state = torch.load(best, map_location="cpu", weights_only=True)["state_dict"]
    model.load_state_dict(
        {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}
    )
    score = checkpoint.best_model_score
    best_epoch = int(torch.load(best, map_location="cpu", weights_only=True)["epoch"])
    return FitResult(
        best_val_acc=float(score) if score is not None else math.nan,
        best_epoch=best_epoch,
        epochs=cfg.epochs,
        seconds=seconds,
    )


def _readable(path: Path) -> bool:
    try:
        torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        return False
    return True


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


@torch.no_grad()
def accuracy(
    predict: Callable[[Batch], torch.Tensor] | nn.Module,
    dataset: ArrayDataset,
    num_classes: int,
    *,
    device: torch.device | str = "cpu",
    batch_size: int = 512,
    transform: Callable[[Batch], Batch] | None = None,
) -> float:
    """Top-1 accuracy of ``predict`` (a model in eval mode) on ``dataset``."""
    if isinstance(predict, nn.Module):
        predict.eval().to(device)
    # Process-local: under DDP only the main process evaluates, on the whole split.
    metric = MulticlassAccuracy(num_classes=num_classes, average="micro", sync_on_compute=False)
    metric = metric.to(device)
    for batch in make_loader(dataset, batch_size=batch_size, shuffle=False, shard=False):
        batch = {k: v.to(device) for k, v in batch.items()}
        if transform is not None:
            batch = transform(batch)
        metric.update(predict(batch), batch["label"])
    return float(metric.compute())


@torch.no_grad()
def segmentation_scores(
    predict: Callable[[Batch], torch.Tensor] | nn.Module,
    dataset: ArrayDataset,
    num_classes: int,
    *,
    device: torch.device | str = "cpu",
    batch_size: int = 64,
    transform: Callable[[Batch], Batch] | None = None,
) -> dict[str, Any]:
    """Mean IoU, pixel accuracy and per-class IoU of ``predict`` (logits ``(B, K, H, W)``) on
    ``dataset``, over all its pixels, unlabelled ones (``IGNORE_INDEX``) left out.

    The mean IoU averages the classes present in the labels or the predictions of the split
    (torchmetrics' ``macro``); ``iou`` lists every class (0 for an absent one).
    """
    if isinstance(predict, nn.Module):
        predict.eval().to(device)
    kw: dict[str, Any] = {"ignore_index": IGNORE_INDEX, "sync_on_compute": False}
    miou = MulticlassJaccardIndex(num_classes, average="macro", **kw).to(device)
    iou = MulticlassJaccardIndex(num_classes, average="none", **kw).to(device)
    pixel = MulticlassAccuracy(num_classes, average="micro", **kw).to(device)
    for batch in make_loader(dataset, batch_size=batch_size, shuffle=False, shard=False):
        batch = {k: v.to(device) for k, v in batch.items()}
        if transform is not None:
            batch = transform(batch)
        pred = predict(batch).argmax(1)  # (B, H, W)
        for metric in (miou, iou, pixel):
            metric.update(pred, batch["label"])
    return {
        "miou": float(miou.compute()),
        "pixel_acc": float(pixel.compute()),
        "iou": [float(v) for v in iou.compute()],
    }


def modality_accuracies(
    model: nn.Module,
    dataset: ArrayDataset,
    num_classes: int,
    modalities: tuple[str, ...],
    *,
    mode: str = "only",
    fill: str = "zero",
    means: Mapping[str, torch.Tensor] | None = None,
    device: torch.device | str = "cpu",
    score: Callable[[dict[str, Any]], float] | None = None,
) -> dict[str, float]:
    """Per modality m, the fused model's accuracy with inputs masked (``zero`` or ``mean``).

    ``mode="only"``: every modality but m is masked (what the model gets from m alone).
    ``mode="without"``: only m is masked (what is left when m is missing at test time).
    ``score``: for segmentation, picks a number from :func:`segmentation_scores`' dict (e.g.
    the mean IoU) instead of computing accuracy.
    """
    if mode not in ("only", "without"):
        raise ValueError(f"mode must be 'only' or 'without', got {mode!r}")
    out = {}
    for m in modalities:
        keep = [m] if mode == "only" else [o for o in modalities if o != m]

        def transform(b: Batch, keep: list[str] = keep) -> Batch:
            return mask_batch(b, keep, fill=fill, means=means)

        if score is not None:
            scores = segmentation_scores(
                model, dataset, num_classes, device=device, transform=transform
            )
            out[m] = score(scores)
            continue
        out[m] = accuracy(model, dataset, num_classes, device=device, transform=transform)
    return out


def save_model(model: nn.Module, path: Path) -> None:
    """The unwrapped module's ``state_dict`` (no ``module.``/``_orig_mod.`` prefixes on disk)."""
    inner = getattr(model, "_orig_mod", model)
    inner = getattr(inner, "module", inner)
    save_torch(path, inner.state_dict())
