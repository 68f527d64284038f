"""Encoders: a modality's input -> a feature vector ``(B, D)``; each exposes ``feature_dim``.

Any ``nn.Module`` with a ``feature_dim`` attribute (or wrapped by the Python API with one) can
serve as an encoder; the probe and the distillation use only its output.

An encoder may also expose a token sequence for intermediate (attention) fusion:
``forward_tokens(x) -> (pooled, tokens)`` computes the pooled ``(B, D)`` vector, exactly as
``forward`` does, together with tokens ``(B, T, D)`` in one pass; ``tokens(x)`` returns the tokens
alone. Ours need no extra parameters for it: the tokens are additive parts of the pre-activation
feature, so ``pooled == relu(reduce(tokens))`` (a mean over positions for the CNN, a sum over
groups of hidden units for the MLP). An encoder without ``forward_tokens`` gives its pooled vector
as a single token (see ``umt.models.multimodal.MultimodalModel.encode_all``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import nn

from umt.errors import UMTError
from umt.models.resnet import build_resnet18


class Encoder(Protocol):
    """What the rest of the code needs of an encoder."""

    feature_dim: int

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...  # (B, *shape) -> (B, feature_dim)


class TokenEncoder(Encoder, Protocol):
    """An encoder that also gives a token sequence (for the attention fusion)."""

    def forward_tokens(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(pooled (B, feature_dim), tokens (B, T, feature_dim))`` from one pass."""
        ...


#: The MLP encoder's normalisations (``model.encoder.norm``).
NORMS = ("batch", "layer", "none")
#: The layer each normalisation puts after the MLP's hidden Linear layers (``none``: nothing).
_NORM_LAYERS: dict[str, Callable[[int], nn.Module]] = {
    "batch": nn.BatchNorm1d,
    "layer": nn.LayerNorm,
}


@dataclass(frozen=True)
class EncoderConfig:
    """Encoder architecture, the same for every modality unless a study overrides it.

    Attributes:
        name: ``auto`` (MLP for vectors and ``(C, T)`` series, CNN for ``(C, H, W)`` inputs,
            ResNet-18 for ``(T, C, H, W)`` clips), ``mlp``, ``cnn``, ``cnn1d`` (a 1-D CNN for
            ``(C, T)`` series), ``resnet18`` or ``resnet34`` (see ``umt.models.resnet``).
        feature_dim: size D of the feature vector (MLP, CNN; a ResNet-18's features are its pooled
            last stage, ``512 * width``).
        hidden: MLP hidden width.
        channels: CNN (and 1-D CNN) width of the first conv stage (doubled at each further
            stage).
        depth: MLP hidden layers.
        stages: CNN (and 1-D CNN) conv stages (each halves the resolution).
        stride: CNN (and 1-D CNN) stride of the first convolution: 2 does a quarter of the first
            stage's arithmetic (the most expensive stage) on images, at half the resolution.
        dropout: dropout before the feature layer (MLP).
        norm: MLP hidden layers' normalisation: ``batch`` (BatchNorm), ``layer`` (LayerNorm:
            no batch statistics; on scikit-learn's breast-cancer views 1.2 points better,
            docs/results.md) or ``none`` (plain Linear + ReLU, as many small tabular scripts).
        tokens: number of tokens the MLP gives the attention fusion (groups of its last hidden
            layer); the CNN's tokens are the positions of its last feature map.
        width: ResNet-18 width multiplier (1.0: the standard 64-channel base; 0.125 for tiny CPU
            variants).
        weights: modality -> a weights file that initialises that modality's encoder in every
            stage (teachers and fused models): a state dict of ours (an encoder's, or a stage's
            ``model.pt``), or a torchvision-layout ResNet-18/34 state dict (e.g. ImageNet
            weights) for ``resnet18``/``resnet34`` encoders at ``width: 1``; see
            ``umt.models.pretrained``.
    """

    name: str = "auto"
    feature_dim: int = 64
    hidden: int = 128
    channels: int = 8
    depth: int = 2
    stages: int = 3
    dropout: float = 0.0
    tokens: int = 4
    width: float = 1.0
    weights: dict[str, str] = field(default_factory=dict)
    stride: int = 1
    norm: str = "batch"

    def __post_init__(self) -> None:
        if self.norm not in NORMS:
            raise UMTError(
                f"model.encoder.norm (or a model.modality override of it): expected one of "
                f"{list(NORMS)}, got {self.norm!r}"
            )
        # A size of 0 builds a model that trains to chance without a word (issue 28).
        for key in ("feature_dim", "hidden", "channels", "stages", "tokens", "stride"):
            _at_least(key, getattr(self, key), 1)
        _at_least("depth", self.depth, 0)
        if not (self.width > 0 and 0 <= self.dropout < 1):
            bad = ("width", self.width) if not self.width > 0 else ("dropout", self.dropout)
            raise UMTError(
                f"model.encoder.{bad[0]}: expected {'> 0' if bad[0] == 'width' else 'in [0, 1)'}, "
                f"got {bad[1]}"
            )


def _at_least(key: str, value: int, low: int) -> None:
    if value < low:
        raise UMTError(
            f"model.encoder.{key} (or a model.modality override of it): expected an integer "
            f">= {low}, got {value}"
        )


class MLPEncoder(nn.Module):
    """Flatten, then ``depth`` x (Linear, ``norm``: LayerNorm, BatchNorm or nothing, ReLU), then
    Linear to ``feature_dim``.

    Tokens: the last hidden layer's ``hidden`` units are split into ``tokens`` contiguous groups;
    token j is group j's contribution to the last Linear, ``W[:, g_j] h[g_j] + b / tokens``, so the
    tokens sum to the pre-activation feature and ``forward(x) == relu(tokens(x).sum(1))``.

    Example:
        >>> enc = MLPEncoder(in_shape=(6,), feature_dim=4, tokens=3)
        >>> tuple(enc(torch.zeros(3, 6)).shape), tuple(enc.tokens(torch.zeros(3, 6)).shape)
        ((3, 4), (3, 3, 4))
    """

    def __init__(
        self,
        in_shape: tuple[int, ...],
        *,
        feature_dim: int = 64,
        hidden: int = 128,
        depth: int = 2,
        dropout: float = 0.0,
        tokens: int = 4,
        norm: str = "batch",
    ) -> None:
        super().__init__()
        if tokens < 1:
            raise UMTError(
                f"the MLP encoder needs tokens >= 1 (model.encoder.tokens); got {tokens}"
            )
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(in_shape)
        normalise: Callable[[int], nn.Module] | None = _NORM_LAYERS.get(norm)
        for _ in range(depth):
            normed = [normalise(hidden)] if normalise is not None else []
            layers += [nn.Linear(width, hidden), *normed, nn.ReLU()]
            width = hidden
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        layers += [nn.Linear(width, feature_dim), nn.ReLU()]
        self.net = nn.Sequential(*layers)
        self.feature_dim = feature_dim
        self.num_tokens = min(tokens, width)  # no empty group

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # (B, D)

    def forward_tokens(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The pooled features ``(B, D)`` and ``num_tokens`` tokens ``(B, k, D)``, in one pass."""
        h = self.net[:-2](x)  # (B, W): the last hidden layer
        last: nn.Linear = self.net[-2]  # type: ignore[assignment]
        pooled = self.net[-1](last(h))  # (B, D), as forward
        k, width = self.num_tokens, h.shape[1]
        group = torch.arange(width, device=h.device) * k // width  # (W,) group of each unit
        mask = (group == torch.arange(k, device=h.device)[:, None]).to(h.dtype)  # (k, W)
        tokens = (h[:, None, :] * mask) @ last.weight.T + last.bias / k  # (B, k, D)
        return pooled, tokens

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, num_tokens, D)``: see the class docstring."""
        return self.forward_tokens(x)[1]


class CNNEncoder(nn.Module):
    """A small CNN for ``(C, H, W)`` inputs (images, spectrograms), or over the time axis of
    ``(C, T)`` series (``cnn1d``): ``depth`` stages of (Conv3x3, BatchNorm, ReLU, MaxPool2)
    doubling the width, global average pool, Linear.
    (The ReLU is applied after the max-pool: ReLU is monotone, so ``relu(max(x)) == max(relu(x))``
    and the outputs and gradients are the same, bit for bit, for a quarter of the ReLU's work.)

    Tokens: each spatial position of the last feature map ``(C', H', W')``, projected to D by the
    feature Linear (before its ReLU), in row-major order; ``forward(x) == relu(tokens(x).mean(1))``.

    The convolutions' weights are kept channels-last, so the feature maps are too: on a CPU the
    small maps of this network train about 1.8x faster that way (max-pooling with indices is slow
    on the default layout; ``python -m benchmarks``). The numbers are the same to float rounding.

    Example:
        >>> enc = CNNEncoder(in_shape=(1, 16, 16), feature_dim=8, width=4)
        >>> tuple(enc(torch.zeros(2, 1, 16, 16)).shape)
        (2, 8)
        >>> tuple(enc.tokens(torch.zeros(2, 1, 16, 16)).shape)  # 16 / 2**3 = 2: 2 x 2 positions
        (2, 4, 8)
    """

    def __init__(
        self,
        in_shape: tuple[int, ...],
        *,
        feature_dim: int = 64,
        width: int = 16,
        depth: int = 3,
        stride: int = 1,
    ) -> None:
        super().__init__()
        if len(in_shape) not in (2, 3):
            raise UMTError(
                f"the CNN encoder expects (C, H, W) images or (C, T) series; got shape {in_shape}"
            )
        image = len(in_shape) == 3
        conv, norm, pool = (
            (nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d)
            if image
            else (nn.Conv1d, nn.BatchNorm1d, nn.MaxPool1d)
        )
        layers: list[nn.Module] = []
        c_in, c = in_shape[0], width
        for i in range(depth):
            layers += [
                conv(c_in, c, 3, stride=stride if i == 0 else 1, padding=1, bias=False),
                norm(c),
                pool(2, ceil_mode=True),
                nn.ReLU(inplace=True),  # after the pool: the same function, on fewer values
            ]
            c_in, c = c, 2 * c
        self.features = nn.Sequential(*layers)
        if image:
            self.features = self.features.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.proj = nn.Sequential(nn.Linear(c_in, feature_dim), nn.ReLU())
        self.feature_dim = feature_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x)  # (B, C', H', W') (or (B, C', T'))
        return self.proj(h.mean(dim=tuple(range(2, h.ndim))))  # (B, D)

    def forward_tokens(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The pooled features ``(B, D)`` and one token per position ``(B, H'W', D)``."""
        h = self.features(x)  # (B, C', H', W')
        pooled = self.proj(h.mean(dim=tuple(range(2, h.ndim))))  # (B, D), as forward
        tokens = self.proj[0](h.flatten(2).transpose(1, 2))  # (B, H'W', D)
        return pooled, tokens

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, H'W', D)``: see the class docstring."""
        return self.forward_tokens(x)[1]


def encoder_kind(cfg: EncoderConfig, in_shape: tuple[int, ...]) -> str:
    """The encoder ``cfg`` builds for inputs of shape ``in_shape``: its name, where ``auto`` is
    a CNN for ``(C, H, W)`` images, a ResNet-18 for ``(T, C, H, W)`` clips, an MLP otherwise."""
    return cfg.name if cfg.name != "auto" else {3: "cnn", 4: "resnet18"}.get(len(in_shape), "mlp")


def build_encoder(cfg: EncoderConfig, in_shape: tuple[int, ...]) -> nn.Module:
    """The encoder ``cfg`` names for inputs of shape ``in_shape`` (no batch dimension)."""
    name = encoder_kind(cfg, in_shape)
    if name == "mlp":
        return MLPEncoder(
            in_shape,
            feature_dim=cfg.feature_dim,
            hidden=cfg.hidden,
            depth=cfg.depth,
            dropout=cfg.dropout,
            tokens=cfg.tokens,
            norm=cfg.norm,
        )
    if name in ("cnn", "cnn1d"):  # cnn1d: the same CNN over a (C, T) series' time axis
        if name == "cnn1d" and len(in_shape) != 2:
            raise UMTError(f"the cnn1d encoder expects (C, T) series; got shape {in_shape}")
        return CNNEncoder(
            in_shape,
            feature_dim=cfg.feature_dim,
            width=cfg.channels,
            depth=cfg.stages,
            stride=cfg.stride,
        )
    if name in ("resnet18", "resnet34"):
        return build_resnet18(in_shape, width=cfg.width, depth=int(name.removeprefix("resnet")))
    raise UMTError(
        f"unknown encoder {cfg.name!r} (model.encoder.name); expected auto, mlp, cnn, cnn1d or "
        "resnet18 (or resnet34)"
    )


#: A user's encoder for one modality: ``factory(input_shape) -> nn.Module`` (``input_shape``
#: without the batch dimension); the module maps ``(B, *input_shape)`` to ``(B, D)``.
EncoderFactory = Callable[[tuple[int, ...]], nn.Module]


def user_encoder(factory: EncoderFactory, in_shape: tuple[int, ...], modality: str) -> nn.Module:
    """The module ``factory(in_shape)`` made into an encoder, checked by one dry forward pass on
    zeros ``(2, *in_shape)`` (in eval mode, so no BatchNorm statistic moves): it must return
    ``(2, D)`` features; ``feature_dim`` is set to ``D`` (a ``feature_dim`` of its own must agree).

    Example:
        >>> enc = user_encoder(lambda s: nn.Sequential(nn.Flatten(), nn.Linear(6, 5)), (2, 3), "a")
        >>> enc.feature_dim
        5
    """
    module = factory(in_shape)
    if not isinstance(module, nn.Module):
        raise UMTError(
            f"encoders[{modality!r}]: the factory returned a {type(module).__name__}; expected "
            "an nn.Module mapping (B, *input_shape) to (B, D)"
        )
    training = module.training
    module.eval()
    try:
        with torch.no_grad():
            out = module(torch.zeros(2, *in_shape))  # (2, D)
    except Exception as e:
        last = (str(e).strip().splitlines() or [""])[-1]  # TorchScript errors span many lines
        raise UMTError(
            f"encoders[{modality!r}]: the encoder fails on a batch of shape {(2, *in_shape)} "
            f"({type(e).__name__}: {last})"
        ) from e
    finally:
        module.train(training)
    if not isinstance(out, torch.Tensor) or out.ndim != 2:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise UMTError(
            f"encoders[{modality!r}]: the encoder must return (B, D) features; it returned "
            f"{shape} for inputs {(2, *in_shape)} (pool or flatten its output)"
        )
    own = getattr(module, "feature_dim", None)
    if own is not None and int(own) != out.shape[1]:
        raise UMTError(
            f"encoders[{modality!r}]: feature_dim is {own}, but the encoder returns "
            f"{out.shape[1]} features"
        )
    module.feature_dim = int(out.shape[1])  # type: ignore[assignment]
    return module
