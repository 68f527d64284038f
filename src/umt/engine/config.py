"""How a stage is trained: ``TrainConfig``, the same for every stage of a study (a method may
override it: ``StudyConfig.recipes``), with every value checked when it is built."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

import torch

from umt.config import KEY_OMITS_DEFAULT, key_omits
from umt.errors import UMTError


@dataclass(frozen=True)
class TrainConfig:
    """How a stage is trained (the same for every stage of a study).

    Attributes:
        epochs: the cap on training epochs; the checkpoint kept is the epoch with the best val
            score (the task's metric). The default recipe (cap 40, ``plateau`` schedule,
            ``patience`` 6) trains until the val score stops improving, on data it was never
            tuned for; the papers' recipes (``--config vggsound`` ...) set a fixed schedule.
        batch_size: samples per step (per device).
        optimizer: ``adam``, ``adamw`` or ``sgd`` (momentum ``momentum``).
        lr, weight_decay, momentum: optimiser settings.
        scheduler: ``none``, ``cosine`` (over ``epochs``), ``step`` (x ``gamma`` every
            ``step_size`` epochs) or ``plateau`` (x ``gamma`` when the val score has not improved
            for ``plateau_patience`` epochs: ``ReduceLROnPlateau``).
        patience: early stopping: stop when the val score has not improved for ``patience``
            epochs (0: off, train all ``epochs``). With ``plateau`` (lr x ``gamma`` after
            ``plateau_patience`` epochs) 6 lets the lower lr have its 3 epochs before stopping.
        plateau_patience: epochs without improvement before ``plateau`` lowers the lr.
        accelerator, devices, strategy, num_nodes, precision: passed to the Lightning Trainer
            (``auto`` uses a GPU when one is present).
        num_workers: DataLoader worker processes.
        progress: show progress bars (on a terminal only: a log file gets none).
        deterministic: deterministic algorithms (bit-identical reruns on CPU).
        threads: CPU threads for PyTorch (0: PyTorch's default). Small models train fastest
            with 1; a busy machine with more threads than free cores slows down sharply.
        compile: ``none``, or the ``torch.compile`` backend each encoder is compiled with, in
            place (``nn.Module.compile``: weights and checkpoints are unchanged). ``inductor`` is
            PyTorch's compiler, worth its start-up cost (tens of seconds per stage) for large
            encoders on a GPU; ``eager`` and ``aot_eager`` trace without compiling (debugging).
        sync_batchnorm: under DDP on GPUs, normalise each BatchNorm layer with the statistics of
            the whole global batch (``SyncBatchNorm``) instead of each process's share: without
            it, N processes of batch B train a slightly different model from one process of N x B
            (and the running statistics kept are process 0's). PyTorch runs it on GPUs only.
        logger: where training curves go, one or several of ``csv`` (``<stage>/metrics.csv``),
            ``tensorboard``, ``wandb`` (offline) and ``mlflow`` (a local file store); see
            ``umt.engine.loggers``.
    """

    epochs: int = 40
    batch_size: int = 64
    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    scheduler: str = "plateau"
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
    logger: tuple[str, ...] = ("csv",)
    # Added after stage keys existed: in a stage's key only when set (config.KEY_OMITS_DEFAULT);
    # patience was 0 (off) then, and stays out of keys at 0.
    patience: int = field(default=6, metadata=key_omits(0))
    plateau_patience: int = field(default=3, metadata=KEY_OMITS_DEFAULT)
    sync_batchnorm: bool = field(default=False, metadata=KEY_OMITS_DEFAULT)

    def __post_init__(self) -> None:
        _check_train(self)


OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("none", "cosine", "step", "plateau")
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu")
# Lightning's precision names (``lightning.fabric.connector._PRECISION_INPUT_STR``) and the
# short aliases it still accepts.
PRECISIONS = (
    *("16-true", "16-mixed", "bf16-true", "bf16-mixed", "32-true", "64-true"),
    *("transformer-engine", "transformer-engine-float16", "16", "32", "64", "bf16"),
)


def _check_train(cfg: TrainConfig) -> None:
    """Refuse, when the config is built, a ``train`` value that would fail (or silently do
    something else) only once a stage trains."""

    def need(ok: bool, key: str, expected: str, value: Any) -> None:
        if not ok:
            raise UMTError(f"train.{key}: expected {expected}, got {value!r}")

    need(cfg.batch_size >= 1, "batch_size", "at least 1", cfg.batch_size)
    need(math.isfinite(cfg.lr) and cfg.lr > 0, "lr", "a positive number", cfg.lr)
    need(cfg.weight_decay >= 0, "weight_decay", "0 or more", cfg.weight_decay)
    need(cfg.momentum >= 0, "momentum", "0 or more", cfg.momentum)
    need(cfg.optimizer in OPTIMIZERS, "optimizer", f"one of {list(OPTIMIZERS)}", cfg.optimizer)
    need(cfg.scheduler in SCHEDULERS, "scheduler", f"one of {list(SCHEDULERS)}", cfg.scheduler)
    need(cfg.step_size >= 1, "step_size", "at least 1", cfg.step_size)
    need(cfg.gamma > 0, "gamma", "a positive number", cfg.gamma)
    need(
        cfg.accelerator in ACCELERATORS,
        "accelerator",
        f"one of {list(ACCELERATORS)}",
        cfg.accelerator,
    )
    need(cfg.precision in PRECISIONS, "precision", f"one of {list(PRECISIONS[:6])}", cfg.precision)
    need(cfg.num_nodes >= 1, "num_nodes", "at least 1", cfg.num_nodes)
    need(cfg.num_workers >= 0, "num_workers", "0 or more", cfg.num_workers)
    need(cfg.threads >= 0, "threads", "0 (PyTorch's default) or more", cfg.threads)
    if isinstance(cfg.devices, int):
        need(cfg.devices >= 1 or cfg.devices == -1, "devices", "'auto', -1 or >= 1", cfg.devices)


def check_accelerator(cfg: TrainConfig) -> None:
    """Refuse a GPU accelerator, or ``sync_batchnorm``, on a machine without a GPU (before
    anything trains)."""
    if cfg.accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise UMTError(
            f"train.accelerator: {cfg.accelerator!r} but PyTorch sees no CUDA GPU here "
            f"(torch {torch.__version__}); use train.accelerator=auto (a GPU when present) or cpu"
        )
    if cfg.sync_batchnorm and (cfg.accelerator == "cpu" or not torch.cuda.is_available()):
        raise UMTError(
            "train.sync_batchnorm: PyTorch's SyncBatchNorm runs on GPUs only, and training runs "
            "on the CPU here; drop it (a CPU DDP run normalises with each process's share)"
        )
    _check_device_count(cfg)


def _check_device_count(cfg: TrainConfig) -> None:
    """Refuse more devices than this machine has: a process each, on GPUs that are not there
    or on CPU cores that are (Lightning would start them all, and on a CPU they would only
    contend for its cores)."""
    n = cfg.devices if isinstance(cfg.devices, int) else None
    if isinstance(cfg.devices, str) and cfg.devices.strip().isdigit():
        n = int(cfg.devices)
    gpu = cfg.accelerator in ("gpu", "cuda") or (
        cfg.accelerator == "auto" and torch.cuda.is_available()
    )
    if n is None or n < 1 or cfg.accelerator not in ("auto", "cpu", "gpu", "cuda"):
        return
    have = torch.cuda.device_count() if gpu else os.cpu_count() or 1
    if n > have:
        where = f"{have} GPU(s)" if gpu else f"the CPU here, which has {have} core(s)"
        raise UMTError(
            f"train.devices={cfg.devices}: training runs on {where}; Lightning would start "
            f"{n} processes. Set train.devices to at most {have} (or auto)"
        )


__all__ = [
    "ACCELERATORS",
    "OPTIMIZERS",
    "PRECISIONS",
    "SCHEDULERS",
    "TrainConfig",
    "check_accelerator",
]
