"""Fusion modules: per-modality features ``{m: (B, D_m)}`` -> one vector ``(B, output_dim)``.

``FUSIONS`` maps a name to a constructor ``(feature_dims, **options) -> module``; every module
exposes ``output_dim``. A fusion with ``needs_tokens = True`` (``attention``) is called as
``fusion(features, tokens)`` with the encoders' token sequences ``{m: (B, T_m, D_m)}``;
``umt.models.multimodal.MultimodalModel`` computes both in one pass of each encoder.

=============  ==========================================================================
``concat``     late fusion: concatenation, ``output_dim = sum D_m``
``sum``        late fusion: a Linear per modality to ``dim``, summed
``gated``      late fusion: ``tanh`` projections weighted by sigmoid gates (per channel)
``film``       one modality's features scale and shift the others' projection (FiLM)
``attention``  intermediate fusion: a small transformer over all modalities' tokens
=============  ==========================================================================
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import torch
from torch import nn

from umt.errors import UMTError


class Fusion(Protocol):
    """What ``MultimodalModel`` needs of a fusion module: ``output_dim``, and a call
    ``fusion(features) -> (B, output_dim)``, or ``fusion(features, tokens)`` where the module
    sets ``needs_tokens = True`` (``needs_tokens`` may be left out: ``False``)."""

    output_dim: int


def _need_modalities(name: str, feature_dims: Mapping[str, int], at_least: int) -> None:
    if len(feature_dims) < at_least:
        raise UMTError(
            f"the {name} fusion supports {at_least} or more modalities; got "
            f"{len(feature_dims)} ({', '.join(feature_dims) or 'none'})"
        )


class ConcatFusion(nn.Module):
    """Late fusion by concatenation, in a fixed modality order.

    Example:
        >>> f = ConcatFusion({"a": 2, "b": 3})
        >>> f.output_dim, tuple(f({"b": torch.ones(1, 3), "a": torch.zeros(1, 2)}).shape)
        (5, (1, 5))
    """

    needs_tokens = False

    def __init__(self, feature_dims: Mapping[str, int]) -> None:
        super().__init__()
        self.modalities = tuple(feature_dims)
        self.output_dim = sum(feature_dims.values())

    def forward(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return torch.cat([features[m] for m in self.modalities], dim=1)  # (B, sum D_m)


class SumFusion(nn.Module):
    """Late fusion by summation: ``sum_m W_m z_m + b_m``, each ``W_m`` a Linear ``D_m -> dim``.

    Args:
        feature_dims: modality -> D_m (one or more modalities).
        dim: the common width, ``output_dim``.

    Example:
        >>> f = SumFusion({"a": 2, "b": 3}, dim=4)
        >>> f.output_dim, tuple(f({"a": torch.ones(5, 2), "b": torch.ones(5, 3)}).shape)
        (4, (5, 4))
    """

    needs_tokens = False

    def __init__(self, feature_dims: Mapping[str, int], *, dim: int = 64) -> None:
        super().__init__()
        _need_modalities("sum", feature_dims, 1)
        self.proj = nn.ModuleDict({m: nn.Linear(d, dim) for m, d in feature_dims.items()})
        self.output_dim = dim

    def forward(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return torch.stack([p(features[m]) for m, p in self.proj.items()]).sum(0)  # (B, dim)


class GatedFusion(nn.Module):
    """Gated fusion, the Gated Multimodal Unit (Arevalo et al. 2017) for M modalities.

    ``h_m = tanh(W_m z_m)`` and gates ``g = sigmoid(W_g [z_1; ...; z_M])`` of shape ``(B, M, dim)``,
    one gate per modality and channel; the output is ``sum_m g_m * h_m``. The gates are computed
    from every modality, so a sample can lean on whichever modality is informative for it.

    Args:
        feature_dims: modality -> D_m (one or more modalities).
        dim: the common width, ``output_dim``.

    Example:
        >>> f = GatedFusion({"a": 2, "b": 3, "c": 1}, dim=4)
        >>> x = {"a": torch.ones(5, 2), "b": torch.ones(5, 3), "c": torch.ones(5, 1)}
        >>> f.output_dim, tuple(f(x).shape), tuple(f.gates(x).shape)
        (4, (5, 4), (5, 3, 4))
    """

    needs_tokens = False

    def __init__(self, feature_dims: Mapping[str, int], *, dim: int = 64) -> None:
        super().__init__()
        _need_modalities("gated", feature_dims, 1)
        self.modalities = tuple(feature_dims)
        self.proj = nn.ModuleDict({m: nn.Linear(d, dim) for m, d in feature_dims.items()})
        self.gate = nn.Linear(sum(feature_dims.values()), len(feature_dims) * dim)
        self.output_dim = dim

    def gates(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The gates ``(B, M, dim)`` in ``[0, 1]``, modalities in construction order."""
        z = torch.cat([features[m] for m in self.modalities], dim=1)  # (B, sum D_m)
        return torch.sigmoid(self.gate(z)).unflatten(1, (len(self.modalities), -1))

    def forward(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        h = torch.stack([torch.tanh(self.proj[m](features[m])) for m in self.modalities], 1)
        return (self.gates(features) * h).sum(1)  # (B, M, dim) -> (B, dim)


class FiLMFusion(nn.Module):
    """Feature-wise linear modulation (Perez et al. 2018): one modality conditions the others.

    With ``c`` the conditioning modality and ``W_m`` a Linear ``D_m -> dim`` per other modality::

        out = (1 + gamma(z_c)) * mean_{m != c} W_m z_m + beta(z_c)

    where ``gamma, beta`` are one Linear ``D_c -> 2 dim`` (``1 +`` makes a fresh layer start near
    the identity). With two modalities this is plain FiLM of one by the other; with more, the
    conditioning modality modulates the mean of the others' projections.

    Args:
        feature_dims: modality -> D_m; two or more modalities.
        dim: width of the projections, ``output_dim``.
        condition: the conditioning modality; ``None`` for the first in ``feature_dims``.

    Example:
        >>> f = FiLMFusion({"audio": 2, "visual": 3}, dim=4, condition="visual")
        >>> x = {"audio": torch.ones(5, 2), "visual": torch.ones(5, 3)}
        >>> f.output_dim, f.condition, f.targets, tuple(f(x).shape)
        (4, 'visual', ('audio',), (5, 4))
    """

    needs_tokens = False

    def __init__(
        self, feature_dims: Mapping[str, int], *, dim: int = 64, condition: str | None = None
    ) -> None:
        super().__init__()
        _need_modalities("film", feature_dims, 2)
        names = tuple(feature_dims)
        if condition is None:
            condition = names[0]
        if condition not in feature_dims:
            raise UMTError(
                f"the film fusion's conditioning modality {condition!r} "
                f"(model.film_condition) is not a modality of the model; expected one of "
                f"{list(names)}"
            )
        self.condition = condition
        self.targets = tuple(m for m in names if m != condition)
        self.proj = nn.ModuleDict({m: nn.Linear(feature_dims[m], dim) for m in self.targets})
        self.film = nn.Linear(feature_dims[condition], 2 * dim)
        self.output_dim = dim

    def forward(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        x = torch.stack([self.proj[m](features[m]) for m in self.targets]).mean(0)  # (B, dim)
        gamma, beta = self.film(features[self.condition]).chunk(2, dim=1)  # 2 x (B, dim)
        return (1 + gamma) * x + beta


class AttentionFusion(nn.Module):
    """Intermediate fusion: a small transformer encoder over every modality's tokens.

    Each modality's tokens ``(B, T_m, D_m)`` are projected to ``dim`` by a Linear and tagged with a
    learned modality embedding; a learned fusion token is prepended; ``layers`` pre-norm
    transformer layers mix them all; the fusion token's output (layer-normed) is the fused vector.
    There are no positional embeddings within a modality (``T_m`` follows the input size): each
    modality's tokens are a set to the attention.

    ``needs_tokens = True``: called as ``fusion(features, tokens)``; ``features`` is not used.

    Args:
        feature_dims: modality -> D_m, the token width (an encoder's ``feature_dim``).
        dim: the transformer width, ``output_dim``; divisible by ``heads``.
        layers: transformer layers.
        heads: attention heads.
        dropout: dropout inside the transformer layers.

    Example:
        >>> f = AttentionFusion({"a": 2, "b": 3}, dim=8, heads=2)
        >>> tokens = {"a": torch.ones(5, 4, 2), "b": torch.ones(5, 1, 3)}
        >>> f.output_dim, tuple(f({}, tokens).shape)
        (8, (5, 8))
    """

    needs_tokens = True

    def __init__(
        self,
        feature_dims: Mapping[str, int],
        *,
        dim: int = 64,
        layers: int = 1,
        heads: int = 4,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        _need_modalities("attention", feature_dims, 1)
        if heads < 1 or dim % heads:
            raise UMTError(
                f"the attention fusion's width {dim} (model.fusion_dim) must be a multiple of its "
                f"heads {heads} (model.attention_heads)"
            )
        if layers < 1:
            raise UMTError(
                f"the attention fusion needs layers >= 1 (model.attention_layers); got {layers}"
            )
        self.proj = nn.ModuleDict({m: nn.Linear(d, dim) for m, d in feature_dims.items()})
        self.modality_embed = nn.Parameter(torch.randn(len(feature_dims), dim) * 0.02)
        self.fusion_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(
            dim, heads, dim_feedforward=2 * dim, dropout=dropout, batch_first=True, norm_first=True
        )
        self.transformer = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.output_dim = dim

    def forward(
        self, features: Mapping[str, torch.Tensor], tokens: Mapping[str, torch.Tensor] | None
    ) -> torch.Tensor:
        if tokens is None:
            raise UMTError(
                "the attention fusion needs the encoders' token sequences: use "
                "model(batch), or features, tokens = model.encode_all(batch) then "
                "model.fuse(features, tokens)"
            )
        seq = [
            self.proj[m](tokens[m]) + self.modality_embed[i]  # (B, T_m, dim)
            for i, m in enumerate(self.proj)
        ]
        batch = seq[0].shape[0]
        x = torch.cat([self.fusion_token.expand(batch, -1, -1), *seq], dim=1)  # (B, 1+sum T, dim)
        return self.norm(self.transformer(x)[:, 0])  # (B, dim)


FUSIONS: dict[str, Callable[..., nn.Module]] = {
    "concat": ConcatFusion,
    "sum": SumFusion,
    "gated": GatedFusion,
    "film": FiLMFusion,
    "attention": AttentionFusion,
}


def build_fusion(name: str, feature_dims: Mapping[str, int], **options: Any) -> nn.Module:
    """The fusion ``name`` over ``feature_dims``, given the ``options`` its constructor takes.

    Options a constructor does not declare are left out, so one flat set of options (the
    ``fusion_*``, ``film_*`` and ``attention_*`` fields of ``ModelConfig``) serves every fusion,
    including a user's constructor that takes only ``feature_dims``.

    Example:
        >>> build_fusion("sum", {"a": 2}, dim=3, heads=2).output_dim
        3
        >>> build_fusion("mean", {"a": 2})
        Traceback (most recent call last):
        umt.errors.UMTError: unknown fusion 'mean' (model.fusion); expected one of \
['attention', 'concat', 'film', 'gated', 'sum']
    """
    if name not in FUSIONS:
        raise UMTError(f"unknown fusion {name!r} (model.fusion); expected one of {sorted(FUSIONS)}")
    make = FUSIONS[name]
    params = inspect.signature(make).parameters.values()
    if not any(p.kind is p.VAR_KEYWORD for p in params):
        accepted = {p.name for p in params}
        options = {k: v for k, v in options.items() if k in accepted}
    return make(feature_dims, **options)
