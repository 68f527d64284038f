"""Encoders: a modality's input -> a feature vector ``(B, D)``; each exposes ``feature_dim``.

Any ``nn.Module`` with a ``feature_dim`` attribute (or wrapped by the Python API with one) can
serve as an encoder; the probe and the distillation use only its output.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn

from umt.errors import UMTError


class Encoder(Protocol):
    """What the rest of the code needs of an encoder."""

    feature_dim: int

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...  # (B, *shape) -> (B, feature_dim)


@dataclass(frozen=True)
class EncoderConfig:
    """Encoder architecture, the same for every modality unless a study overrides it.

    Attributes:
        name: ``auto`` (MLP for vectors, CNN for ``(C, H, W)`` inputs), ``mlp`` or ``cnn``.
        feature_dim: size D of the feature vector.
        hidden: MLP hidden width / CNN base width.
        depth: MLP hidden layers / CNN conv stages.
        dropout: dropout before the feature layer (MLP).
    """

    name: str = "auto"
    feature_dim: int = 64
    hidden: int = 128
    depth: int = 2
    dropout: float = 0.0


class MLPEncoder(nn.Module):
    """Flatten, then ``depth`` x (Linear, BatchNorm, ReLU), then Linear to ``feature_dim``.

    Example:
        >>> enc = MLPEncoder(in_shape=(6,), feature_dim=4)
        >>> tuple(enc(torch.zeros(3, 6)).shape)
        (3, 4)
    """

    def __init__(
        self,
        in_shape: tuple[int, ...],
        *,
        feature_dim: int = 64,
        hidden: int = 128,
        depth: int = 2,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(in_shape)
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.BatchNorm1d(hidden), nn.ReLU()]
            width = hidden
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        layers += [nn.Linear(width, feature_dim), nn.ReLU()]
        self.net = nn.Sequential(*layers)
        self.feature_dim = feature_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # (B, D)


class CNNEncoder(nn.Module):
    """A small CNN for ``(C, H, W)`` inputs (images, spectrograms): ``depth`` stages of
    (Conv3x3, BatchNorm, ReLU, MaxPool2) doubling the width, global average pool, Linear.

    Example:
        >>> enc = CNNEncoder(in_shape=(1, 16, 16), feature_dim=8, width=4)
        >>> tuple(enc(torch.zeros(2, 1, 16, 16)).shape)
        (2, 8)
    """

    def __init__(
        self, in_shape: tuple[int, ...], *, feature_dim: int = 64, width: int = 16, depth: int = 3
    ) -> None:
        super().__init__()
        if len(in_shape) != 3:
            raise UMTError(f"the CNN encoder expects (C, H, W) inputs; got shape {in_shape}")
        layers: list[nn.Module] = []
        c_in, c = in_shape[0], width
        for _ in range(depth):
            layers += [
                nn.Conv2d(c_in, c, 3, padding=1, bias=False),
                nn.BatchNorm2d(c),
                nn.ReLU(),
                nn.MaxPool2d(2, ceil_mode=True),
            ]
            c_in, c = c, 2 * c
        self.features = nn.Sequential(*layers)
        self.proj = nn.Sequential(nn.Linear(c_in, feature_dim), nn.ReLU())
        self.feature_dim = feature_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x)  # (B, C', H', W')
        return self.proj(h.mean(dim=(2, 3)))  # (B, D)


def build_encoder(cfg: EncoderConfig, in_shape: tuple[int, ...]) -> nn.Module:
    """The encoder ``cfg`` names for inputs of shape ``in_shape`` (no batch dimension)."""
    name = cfg.name
    if name == "auto":
        name = "cnn" if len(in_shape) == 3 else "mlp"
    if name == "mlp":
        return MLPEncoder(
            in_shape,
            feature_dim=cfg.feature_dim,
            hidden=cfg.hidden,
            depth=cfg.depth,
            dropout=cfg.dropout,
        )
    if name == "cnn":
        return CNNEncoder(in_shape, feature_dim=cfg.feature_dim, width=cfg.hidden, depth=cfg.depth)
    raise UMTError(f"unknown encoder {cfg.name!r} (model.encoder.name); expected auto, mlp or cnn")
