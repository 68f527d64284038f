"""What a training method is: the loss of one step, and how to predict.

A method never loops, logs, checkpoints or moves data: the engine does that once for all methods.
"""

from __future__ import annotations

from typing import Protocol

import torch

from umt.data.base import Batch
from umt.models.multimodal import MultimodalModel


class Method(Protocol):
    """A training method. ``step`` returns named tensors: ``loss`` (backpropagated) and
    ``logits`` (for metrics) at least; every other key is logged."""

    def step(self, model: MultimodalModel, batch: Batch) -> dict[str, torch.Tensor]: ...

    def to(self, device: torch.device) -> Method: ...
