"""Naive joint training (and uni-modal training): cross-entropy on the model's fused logits.

With one modality this trains a uni-modal model (encoder + linear head): the UMT teachers and the
UME members. With several it is the naive late-fusion baseline,
``min CE(h(z_1, ..., z_M), y)`` end to end (PAPER.md, "Late-fusion model").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

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
