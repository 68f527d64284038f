"""ResNet-18 encoders written here (no torchvision): spectrograms ``(C, F, T)`` and clips of frames
``(T, 3, H, W)``.

The architecture is He et al.'s ResNet-18 (*Deep Residual Learning for Image Recognition*, 2016):
a 7x7 stride-2 stem and 3x3 max-pool, four stages of two basic blocks (two 3x3 convolutions and a
shortcut) with ``64, 128, 256, 512`` channels, the last three stages starting with stride 2, and a
global average pool. As in the audio-visual balancing literature (OGM-GE, BalanceBenchmark), it is
trained from scratch: the audio encoder takes a one-channel spectrogram, the visual encoder runs
the same trunk on every frame and pools over time and space together.

``width`` scales every stage's channels (``width=1``: the standard 64-channel base, 512 features;
``width=0.125``: 8 channels, 64 features), for tiny CPU variants in tests. Parameter counts at
``width=1`` (no classifier; the ``fc`` layer of torchvision's ``resnet18`` is not part of an
encoder): 11,176,512 for three input channels — torchvision's 11,689,512 minus its 513,000-weight
``fc`` — and 11,170,240 for one.

Features are the pooled last stage, ``feature_dim = 8 * base`` (512 at ``width=1``). Tokens for
the attention fusion are the last stage's positions, ``(B, H'W', D)`` (``(B, T H'W', D)`` for
clips), and ``forward(x) == tokens(x).mean(1)``.

``depth=34`` gives ResNet-34 (``3, 4, 6, 3`` blocks per stage; 21,284,672 weights for three input
channels at ``width=1``, torchvision's 21,797,672 minus ``fc``), so that ImageNet weights of either
depth in torchvision's layout load onto these encoders (``umt.models.pretrained``).
"""

from __future__ import annotations

import torch
from torch import nn

from umt.errors import UMTError

#: Channels of the first stage at ``width=1``; later stages double it.
BASE_CHANNELS = 64


def _base_channels(width: float) -> int:
    base = round(BASE_CHANNELS * width)
    if width <= 0 or base < 1:
        raise UMTError(
            f"ResNet width multiplier must give at least one channel (64 x width >= 1; "
            f"model.encoder.width); got width={width}"
        )
    return base


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm, plus the input (1x1-projected where the shape changes).

    Example:
        >>> block = BasicBlock(4, 8, stride=2)
        >>> tuple(block(torch.zeros(1, 4, 8, 8)).shape)
        (1, 8, 4, 4)
    """

    def __init__(self, c_in: int, c_out: int, *, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.relu(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        return self.relu(h + self.shortcut(x))


#: Basic blocks per stage of each depth (He et al., Table 1).
BLOCKS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}


def _blocks(depth: int) -> tuple[int, ...]:
    if depth not in BLOCKS:
        raise UMTError(f"ResNet depth must be one of {sorted(BLOCKS)}; got {depth}")
    return BLOCKS[depth]


class ResNet18Trunk(nn.Module):
    """Stem + four stages: ``(N, C, H, W) -> (N, 8 * base, H / 32, W / 32)`` (sizes rounded up).

    ``depth=34`` stacks ``3, 4, 6, 3`` basic blocks per stage instead of two (ResNet-34)."""

    def __init__(self, in_channels: int, *, width: float = 1.0, depth: int = 18) -> None:
        super().__init__()
        blocks = _blocks(depth)
        base = _base_channels(width)
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, base, 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(base),
            nn.MaxPool2d(3, stride=2, padding=1),
            nn.ReLU(inplace=True),  # after the pool: the same function, 4x cheaper
        )
        stages: list[nn.Module] = []
        c_in = base
        for i, c_out in enumerate((base, 2 * base, 4 * base, 8 * base)):
            stride = 1 if i == 0 else 2
            rest = [BasicBlock(c_out, c_out) for _ in range(blocks[i] - 1)]
            stages.append(nn.Sequential(BasicBlock(c_in, c_out, stride=stride), *rest))
            c_in = c_out
        self.stages = nn.Sequential(*stages)
        self.out_channels = c_in
        for m in self.modules():  # He initialisation, as torchvision's ResNet
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))  # (N, C', H', W')


class ResNet18Encoder(nn.Module):
    """ResNet-18 for ``(C, H, W)`` inputs (for audio, a one-channel log-mel spectrogram
    ``(1, mels, frames)``), pooled to ``feature_dim = 512 * width`` features.

    Example:
        >>> enc = ResNet18Encoder((1, 40, 64), width=0.125)
        >>> tuple(enc(torch.zeros(2, 1, 40, 64)).shape), enc.feature_dim
        ((2, 64), 64)
        >>> tuple(enc.tokens(torch.zeros(2, 1, 40, 64)).shape)  # 40 x 64 / 32**2 -> 2 x 2 positions
        (2, 4, 64)
    """

    def __init__(self, in_shape: tuple[int, ...], *, width: float = 1.0, depth: int = 18) -> None:
        super().__init__()
        if len(in_shape) != 3:
            raise UMTError(
                f"the resnet18 encoder expects (C, H, W) inputs (e.g. a spectrogram (1, mels, "
                f"frames)) or (T, C, H, W) clips; got shape {in_shape}"
            )
        self.trunk = ResNet18Trunk(in_shape[0], width=width, depth=depth)
        self.feature_dim = self.trunk.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(x).mean(dim=(2, 3))  # (B, D)

    def forward_tokens(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The pooled features ``(B, D)`` and one token per position ``(B, H'W', D)``."""
        tokens = self.trunk(x).flatten(2).transpose(1, 2)  # (B, H'W', D)
        return tokens.mean(1), tokens

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, H'W', D)``: see the class docstring."""
        return self.forward_tokens(x)[1]


class FrameResNet18Encoder(nn.Module):
    """ResNet-18 on each frame of a clip ``(T, C, H, W)``, pooled over time and space together
    (OGM-GE's visual encoder: the trunk's ``(T, D, H', W')`` maps are average-pooled to ``(D,)``).

    Example:
        >>> enc = FrameResNet18Encoder((3, 3, 32, 32), width=0.125)
        >>> tuple(enc(torch.zeros(2, 3, 3, 32, 32)).shape)
        (2, 64)
        >>> tuple(enc.tokens(torch.zeros(2, 3, 3, 32, 32)).shape)  # 3 frames x 1 x 1 positions
        (2, 3, 64)
    """

    def __init__(self, in_shape: tuple[int, ...], *, width: float = 1.0, depth: int = 18) -> None:
        super().__init__()
        if len(in_shape) != 4:
            raise UMTError(
                f"the frame resnet18 encoder expects clips of shape (T, C, H, W); got {in_shape}"
            )
        self.trunk = ResNet18Trunk(in_shape[1], width=width, depth=depth)
        self.feature_dim = self.trunk.out_channels

    def _maps(self, x: torch.Tensor) -> torch.Tensor:
        b, t = x.shape[:2]
        h = self.trunk(x.flatten(0, 1))  # (B T, D, H', W'): frames through one trunk
        return h.reshape(b, t, *h.shape[1:])  # (B, T, D, H', W')

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._maps(x).mean(dim=(1, 3, 4))  # (B, D): temporal and spatial average pool

    def forward_tokens(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The pooled features ``(B, D)`` and a token per frame and position ``(B, T H'W', D)``."""
        h = self._maps(x)  # (B, T, D, H', W')
        tokens = h.permute(0, 1, 3, 4, 2).flatten(1, 3)  # (B, T H' W', D)
        return tokens.mean(1), tokens

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, T H'W', D)``: see the class docstring."""
        return self.forward_tokens(x)[1]


def build_resnet18(in_shape: tuple[int, ...], *, width: float = 1.0, depth: int = 18) -> nn.Module:
    """The ResNet-18 encoder for ``in_shape``: :class:`ResNet18Encoder` for ``(C, H, W)``,
    :class:`FrameResNet18Encoder` for ``(T, C, H, W)`` (``depth=34``: the ResNet-34 ones).

    Example:
        >>> [type(build_resnet18(s)).__name__ for s in [(3, 3, 64, 64), (1, 64, 64)]]
        ['FrameResNet18Encoder', 'ResNet18Encoder']
        >>> [len(stage) for stage in build_resnet18((3, 32, 32), depth=34).trunk.stages]
        [3, 4, 6, 3]
    """
    if len(in_shape) == 4:
        return FrameResNet18Encoder(in_shape, width=width, depth=depth)
    if len(in_shape) == 3:
        return ResNet18Encoder(in_shape, width=width, depth=depth)
    raise UMTError(
        f"the resnet18 encoder expects (C, H, W) or (T, C, H, W) inputs; got shape {in_shape} "
        "(use model.encoder.name=mlp for vectors)"
    )
