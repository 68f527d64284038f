"""Naive joint training (and uni-modal training): cross-entropy on the model's fused logits.

With one modality this trains a uni-modal model (encoder + linear head): the UMT teachers and the
UME members. With several it is the naive late-fusion baseline,
``min CE(h(z_1, ..., z_M), y)`` end to end (PAPER.md, "Late-fusion model").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from umt.data.base import Batch
from umt.models.multimodal import MultimodalModel


class Joint:
    """Cross-entropy on the fused prediction; nothing else."""

    def step(self, model: MultimodalModel, batch: Batch) -> dict[str, torch.Tensor]:
        logits = model(batch)
        loss = F.cross_entropy(logits, batch["label"])
        return {"loss": loss, "logits": logits}

    def to(self, device: torch.device) -> Joint:
        return self


class HeadOnly:
    """Cross-entropy with the encoders frozen: trains only the rest of the model (the head of a
    teacher whose encoder was loaded from a file, ``teachers: {m: PATH}``).

    The encoders' weights leave the optimiser, and they run in eval mode at every step (the
    trainer restores train mode after each validation), so BatchNorm statistics stay those of
    the file.
    """

    def __init__(self, model: nn.Module) -> None:
        encoders = model.encoders
        assert isinstance(encoders, nn.Module)  # the FusionModel contract
        encoders.requires_grad_(False)

    def step(self, model: MultimodalModel, batch: Batch) -> dict[str, torch.Tensor]:
        model.encoders.eval()
        return Joint().step(model, batch)

    def to(self, device: torch.device) -> HeadOnly:
        return self
