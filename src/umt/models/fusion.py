"""Fusion modules: per-modality features ``{m: (B, D_m)}`` -> one vector ``(B, output_dim)``.

``FUSIONS`` maps a name to a constructor ``(feature_dims) -> module``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import nn

from umt.errors import UMTError


class ConcatFusion(nn.Module):
    """Late fusion by concatenation, in a fixed modality order.

    Example:
        >>> f = ConcatFusion({"a": 2, "b": 3})
        >>> f.output_dim, tuple(f({"b": torch.ones(1, 3), "a": torch.zeros(1, 2)}).shape)
        (5, (1, 5))
    """

    def __init__(self, feature_dims: Mapping[str, int]) -> None:
        super().__init__()
        self.modalities = tuple(feature_dims)
        self.output_dim = sum(feature_dims.values())

    def forward(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return torch.cat([features[m] for m in self.modalities], dim=1)  # (B, sum D_m)


FUSIONS: dict[str, Callable[[Mapping[str, int]], nn.Module]] = {
    "concat": ConcatFusion,
}


def build_fusion(name: str, feature_dims: Mapping[str, int]) -> nn.Module:
    if name not in FUSIONS:
        raise UMTError(f"unknown fusion {name!r} (model.fusion); expected one of {sorted(FUSIONS)}")
    return FUSIONS[name](feature_dims)
