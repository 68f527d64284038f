"""The contract every multi-modal model of umt keeps, and the optional abilities of its parts.

Both model families — the classification fusion model (:class:`~umt.models.multimodal.
MultimodalModel`) and the segmentation encoder-decoder (:class:`~umt.models.segmentation.
SegmentationModel`) — are a :class:`FusionModel`: encoders per modality, and one forward pass
that gives the logits together with each encoder's features *as computed inside that pass*. UMT's
distillation, the probes, masking and UME all read this one seam.

The optional abilities are typed ``Protocol`` s, checked with ``isinstance`` (never discovered by
``getattr``): an encoder that also gives tokens (:class:`TokenEncoder`), one with several stages
(:class:`StagedEncoder`), a fusion that mixes tokens (:class:`TokenFusion`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, runtime_checkable

import torch
from torch import nn


@runtime_checkable
class FusionModel(Protocol):
    """A multi-modal model: ``encoders`` by modality and a forward pass that fuses them.

    ``forward_features(batch)`` returns the logits and, per modality, the list of that encoder's
    features in this pass: one ``(B, D)`` vector for a classification encoder, the stage maps
    ``[(B, C_k, H_k, W_k)]`` for a segmentation branch. ``model(batch)`` gives the logits alone.
    """

    encoders: nn.ModuleDict

    @property
    def modalities(self) -> tuple[str, ...]: ...

    def forward_features(
        self, batch: Mapping[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, list[torch.Tensor]]]: ...

    def __call__(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor: ...


@runtime_checkable
class TokenEncoder(Protocol):
    """An encoder that gives its pooled features and its token sequence in one pass."""

    def forward_tokens(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...


@runtime_checkable
class StagedEncoder(Protocol):
    """An encoder of several stages (segmentation branches): every stage's map, in order."""

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]: ...


@runtime_checkable
class TokenFusion(Protocol):
    """A fusion module that mixes token sequences: called as ``fusion(features, tokens)``."""

    needs_tokens: bool


def encoder_features(encoder: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """An encoder's features of ``x`` as the list :meth:`FusionModel.forward_features` gives:
    every stage's map for a :class:`StagedEncoder`, else the one output ``[encoder(x)]``.

    Example:
        >>> [tuple(f.shape) for f in encoder_features(nn.Linear(3, 2), torch.zeros(4, 3))]
        [(4, 2)]
    """
    if isinstance(encoder, StagedEncoder):
        return encoder.forward_stages(x)
    return [encoder(x)]
