"""What a training method is: the loss of one step, and how to predict.

A method never loops, logs, checkpoints or moves data: the engine does that once for all methods.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

from umt.data.base import Batch, DataBundle


class Method(Protocol):
    """A training method. ``step`` returns named tensors: ``loss`` (backpropagated) and
    ``logits`` (for metrics) at least; every other key is logged.

    Optional abilities are the ``Protocol`` s below; the engine checks them with ``isinstance``:
    :class:`HasTrainable`, :class:`EpochStartHook`, :class:`AfterBackwardHook`,
    :class:`NeedsIndex`.
    """

    def step(self, model: Any, batch: Batch) -> dict[str, torch.Tensor]: ...

    def to(self, device: torch.device) -> Method: ...


@runtime_checkable
class HasTrainable(Protocol):
    """Extra modules trained with the model (e.g. per-modality heads): optimised, checkpointed
    and wrapped by DDP together with the model."""

    def trainable(self) -> nn.Module: ...


@runtime_checkable
class EpochStartHook(Protocol):
    """Called at the start of every training epoch (e.g. to re-estimate blending weights)."""

    def on_train_epoch_start(self, model: Any, epoch: int) -> None: ...


@runtime_checkable
class AfterBackwardHook(Protocol):
    """Called after each backward pass, before the optimiser step (e.g. to modulate the
    encoders' gradients)."""

    def on_after_backward(self, model: Any) -> None: ...


@runtime_checkable
class NeedsIndex(Protocol):
    """``needs_index = True``: training batches carry ``"index"`` (each sample's position in the
    train split), e.g. to look up cached teacher features."""

    needs_index: bool


@runtime_checkable
class ResolvesSettings(Protocol):
    """A method whose settings hold ``auto`` choices that it resolves when built (e.g. UMT's
    ``cache_teachers``): the study keys its stage on the resolved settings, so ``auto`` shares
    the stage of the explicit value it resolved to."""

    def resolved_settings(self) -> Any: ...


@runtime_checkable
class Scheduled(Protocol):
    """A method with a schedule over epochs (G2D's prioritisation, Re-learning's re-initialisations,
    ...): ``min_epochs``, the epochs it needs to run it out; early stopping waits for them."""

    min_epochs: int


def epochs_of(fraction: float, epochs: int) -> int:
    """A share of the training (``fraction`` of the cap ``epochs``) in whole epochs.

    Example:
        >>> epochs_of(0.5, 40), epochs_of(0.22, 90), epochs_of(0.5, 0)
        (20, 20, 0)
    """
    return int(round(fraction * epochs))


def needs_index(method: object) -> bool:
    """Whether ``method``'s training batches must carry each sample's ``"index"``."""
    return isinstance(method, NeedsIndex) and method.needs_index


@dataclass(frozen=True)
class MethodContext:
    """What a method's builder gets.

    Attributes:
        settings: the method's section of the study config (``None`` if it has none).
        model: the fresh fusion model the method will train (a builder may initialise it): a
            ``umt.models.base.FusionModel``; a ``MultimodalModel`` for the methods that support
            classification alone (their ``MethodSpec.tasks``).
        teachers: the trained uni-modal models by modality (frozen; use ``.encoders[m]``).
        data: the study's data set (e.g. for a held-out split of the method's own).
        seed: the training seed.
        epochs: the stage's epoch cap (``train.epochs`` of its recipe): a method's schedule is
            set in fractions of it (0: unknown, e.g. a loop of the user's).
        teacher_features: per modality, the teacher encoder's features of every training sample
            ``(N, D)``, computed once and memory-mapped (for methods that cache them).
    """

    settings: Any
    model: Any
    teachers: Mapping[str, Any]
    data: DataBundle
    seed: int
    teacher_features: Callable[[str], np.ndarray] | None = None
    epochs: int = 0


#: The recipe of a method whose ``optimizer`` is ``sgd``, under its own ``train:`` settings:
#: SGD with momentum 0.9 (the authors' codes) at a learning rate for it (Adam's 1e-3 would
#: barely move SGD); the search tries a decade either side.
SGD_RECIPE: Mapping[str, Any] = {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9}

#: The tasks a method supports unless its entry says otherwise, and every task (the keys of
#: ``umt.tasks.TASKS``; a test checks they agree).
CLASSIFICATION_ONLY = frozenset({"classification"})
ALL_TASKS = frozenset({"classification", "segmentation"})


@dataclass(frozen=True)
class MethodSpec:
    """A method a study can name: everything about it in one entry of ``METHODS``.

    Attributes:
        display: its name in the report's tables (e.g. ``OGM-GE``).
        description: one line for listings.
        build: makes the method for one stage; ``None`` for a method that trains nothing (UME).
        config: the dataclass of its settings, the study config's section named as the method
            (``umt:``, ``ogm_ge:`` ...); ``None`` for a method without settings.
        uses_teachers: the method depends on the uni-modal models (their hashes key its cache).
        tasks: the tasks (``umt.tasks.TASKS``) it supports.
        search_space: its key hyper-parameter(s) and the values the search tries by default,
            ``{key: (values...)}``: a field of its settings, or ``train.<field>`` of its
            recipe. Empty: nothing of its own to search (UME trains nothing).
        optimizer: the optimiser its authors' code trains with, which its mechanism assumes
            (``sgd`` for a method that scales, projects or holds per-encoder gradients, which an
            adaptive optimiser's per-parameter normalisation reshapes); ``None``: any. A study
            trains the method with it (``SGD_RECIPE``) unless the method's own recipe says
            otherwise, and the report says where it ran under another.
    """

    display: str
    description: str
    build: Callable[[MethodContext], Method] | None
    config: type | None = None
    uses_teachers: bool = False
    tasks: frozenset[str] = CLASSIFICATION_ONLY
    search_space: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    optimizer: str | None = None
