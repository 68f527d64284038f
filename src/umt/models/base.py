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

import hashlib
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

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


def seed_for(*parts: object) -> int:
    """A seed of its own for each named part, stable across runs and machines: e.g. the initial
    weights of stage ``joint``'s encoder ``audio`` at training seed 0 are drawn from
    ``seed_for(0, "joint", "audio")``, independent of every other stage's and encoder's.

    Example:
        >>> seed_for(0, "joint", "audio") == seed_for(0, "joint", "audio") != seed_for(0, "umt", "audio")
        True
    """
    text = "/".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "big") >> 1


def seeded(init_seed: int | None, part: str) -> None:
    """Seed torch's global generator for ``part``'s initial weights from ``init_seed`` (nothing
    when ``init_seed`` is ``None``: the caller's generator state is used as it is)."""
    if init_seed is not None:
        torch.manual_seed(seed_for(init_seed, part))


def macs(model: nn.Module, batch: Any) -> int:
    """Multiply-accumulates of one forward pass of ``model`` on ``batch`` (its convolutions and
    linear layers; a cost measure that does not depend on the machine or its load).

    Example:
        >>> macs(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)), torch.zeros(5, 3))
        100
    """
    total = 0

    def count(module: nn.Module, args: Any, out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Linear):
            total += out.numel() * module.in_features
        elif isinstance(module, nn.modules.conv._ConvNd):
            per = module.in_channels // module.groups * int(torch.tensor(module.kernel_size).prod())
            total += out.numel() * per

    hooks = [m.register_forward_hook(count) for m in model.modules()]
    try:
        was = model.training
        model.eval()
        with torch.no_grad():
            model(batch)
        model.train(was)
    finally:
        for h in hooks:
            h.remove()
    return total
