"""What a training method is: the loss of one step, and how to predict.

A method never loops, logs, checkpoints or moves data: the engine does that once for all methods.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from umt.data.base import Batch, DataBundle
from umt.models.multimodal import MultimodalModel


class Method(Protocol):
    """A training method. ``step`` returns named tensors: ``loss`` (backpropagated) and
    ``logits`` (for metrics) at least; every other key is logged.

    Optional hooks the engine calls when a method defines them:

    - ``trainable() -> nn.Module``: extra modules trained with the model (e.g. per-modality
      heads); they are optimised, checkpointed and wrapped by DDP together with the model.
    - ``on_train_epoch_start(model, epoch)``: e.g. re-estimate blending weights.
    - ``on_after_backward(model)``: e.g. modulate the encoders' gradients before the step.

    A method with ``needs_index = True`` gets training batches with ``"index"`` (each sample's
    position in the train split), e.g. to look up cached teacher features.
    """

    def step(self, model: MultimodalModel, batch: Batch) -> dict[str, torch.Tensor]: ...

    def to(self, device: torch.device) -> Method: ...


@dataclass(frozen=True)
class MethodContext:
    """What a method's builder gets.

    Attributes:
        settings: the method's section of the study config (``None`` if it has none).
        model: the fresh fusion model the method will train (a builder may initialise it).
        teachers: the trained uni-modal models by modality (frozen; use ``.encoders[m]``).
        data: the study's data set (e.g. for a held-out split of the method's own).
        seed: the training seed.
        teacher_features: per modality, the teacher encoder's features of every training sample
            ``(N, D)``, computed once and memory-mapped (for methods that cache them).
    """

    settings: Any
    model: MultimodalModel
    teachers: Mapping[str, MultimodalModel]
    data: DataBundle
    seed: int
    teacher_features: Callable[[str], np.ndarray] | None = None


@dataclass(frozen=True)
class MethodSpec:
    """A method a study can name.

    Attributes:
        description: one line for listings.
        build: makes the method for one stage; ``None`` for a method that trains nothing (UME).
        uses_teachers: the method depends on the uni-modal models (their hashes key its cache).
    """

    description: str
    build: Callable[[MethodContext], Method] | None
    uses_teachers: bool = False
