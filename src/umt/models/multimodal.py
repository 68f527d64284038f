"""The fusion model: encoders per modality, a fusion module, a head.

``encode(batch) -> {m: z_m}`` and ``fuse(features) -> logits`` are the seam that distillation,
probing, masking and ensembling all use. A fusion that mixes token sequences (``attention``) also
needs each encoder's tokens: ``encode_all(batch) -> (features, tokens)`` computes both in one pass
of each encoder, and ``fuse(features, tokens)`` takes them; ``model(batch)`` does both.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from umt.config import from_dict, to_dict
from umt.data.base import is_modality_key
from umt.errors import UMTError
from umt.models.base import TokenEncoder, TokenFusion, seeded
from umt.models.encoders import EncoderConfig, EncoderFactory, build_encoder, user_encoder
from umt.models.fusion import FUSIONS, build_fusion
from umt.models.pretrained import init_encoders
from umt.models.segmentation import SegModelConfig


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of the uni-modal and multi-modal models of a study.

    Attributes:
        encoder: encoder architecture (the same kind for the teacher and the student).
        fusion: a key of ``umt.models.fusion.FUSIONS``: ``concat``, ``sum``, ``gated``,
            ``film`` or ``attention``. A one-modality model (a teacher) always concatenates,
            i.e. is its encoder plus the head.
        head_hidden: hidden width of the fusion head; 0 for a linear head. A hidden layer lets
            the fused model learn paired (cross-modal) features from late-fused vectors.
        fusion_dim: output width of the ``sum``, ``gated``, ``film`` and ``attention`` fusions
            (the common width the modalities are projected to).
        film_condition: the modality whose features scale and shift the others' in the ``film``
            fusion; ``None`` for the first modality of the data.
        attention_layers: transformer layers of the ``attention`` fusion.
        attention_heads: attention heads of the ``attention`` fusion (``fusion_dim`` must be a
            multiple of it).
        seg: the encoder-decoder of segmentation data sets (``umt.models.segmentation``); the
            fields above are for classification.
        modality: per modality, fields of ``encoder`` that differ for that modality's encoder
            (teacher and student alike), e.g. ``{audio: {name: cnn, channels: 16}}``; the
            recipe search sets them.
    """

    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    fusion: str = "concat"
    head_hidden: int = 128
    fusion_dim: int = 64
    film_condition: str | None = None
    attention_layers: int = 1
    attention_heads: int = 4
    seg: SegModelConfig = field(default_factory=SegModelConfig)
    modality: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        sizes = {"head_hidden": 0, "fusion_dim": 1, "attention_layers": 1, "attention_heads": 1}
        for key, low in sizes.items():
            if getattr(self, key) < low:
                raise UMTError(
                    f"model.{key}: expected an integer >= {low}, got {getattr(self, key)}"
                )
        for m in self.modality:
            self.encoder_of(m)  # unknown keys and wrong types fail here, named

    def encoder_of(self, modality: str) -> EncoderConfig:
        """The encoder of ``modality``: ``encoder`` with ``modality[modality]`` on top.

        Example:
            >>> cfg = ModelConfig(modality={"a": {"name": "mlp", "hidden": 32}})
            >>> cfg.encoder_of("a").hidden, cfg.encoder_of("b").hidden
            (32, 128)
        """
        override = self.modality.get(modality)
        if not override:
            return self.encoder
        if not isinstance(override, dict):
            raise UMTError(
                f"model.modality.{modality}: expected a section of encoder settings (e.g. "
                f"{{name: mlp, hidden: 64}}), got {override!r}"
            )
        merged = {**to_dict(self.encoder), **override}
        return from_dict(EncoderConfig, merged, prefix=f"model.modality.{modality}")


class MultimodalModel(nn.Module):
    """Encoders per modality, a fusion module and a head; one modality makes a uni-modal model.

    Args:
        encoders: modality name -> encoder with ``feature_dim`` (and ``forward_tokens`` where
            the fusion uses tokens; an encoder without it gives its features as one token).
        fusion: module mapping ``{m: (B, D_m)}`` to ``(B, fusion.output_dim)``; with
            ``needs_tokens = True`` it is called ``fusion(features, tokens)``.
        head: module mapping fused features to logits.

    Example:
        >>> enc = {"a": nn.Sequential(nn.Linear(3, 4))}
        >>> enc["a"].feature_dim = 4
        >>> model = MultimodalModel(nn.ModuleDict(enc), build_fusion("concat", {"a": 4}),
        ...                         nn.Linear(4, 2))
        >>> tuple(model({"a": torch.zeros(5, 3)}).shape)
        (5, 2)
    """

    def __init__(self, encoders: nn.ModuleDict, fusion: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.encoders = encoders
        self.fusion = fusion
        self.head = head

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self.encoders.keys())

    @property
    def needs_tokens(self) -> bool:
        """Whether the fusion mixes token sequences (and ``fuse`` needs ``tokens``)."""
        return isinstance(self.fusion, TokenFusion) and self.fusion.needs_tokens

    def encode(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Each encoder's pooled features ``{m: (B, D_m)}`` (what probes and UMT distil)."""
        self._check(batch)
        return {m: enc(batch[m]) for m, enc in self.encoders.items()}  # {m: (B, D_m)}

    def _check(self, batch: Mapping[str, torch.Tensor]) -> None:
        missing = [m for m in self.encoders if m not in batch]
        if missing:
            raise UMTError(
                f"the batch has no modality {missing} (it has {sorted(batch)}); the model "
                f"expects {list(self.encoders)}"
            )

    def encode_all(
        self, batch: Mapping[str, torch.Tensor]
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor] | None]:
        """``encode(batch)``, plus the tokens ``{m: (B, T_m, D_m)}`` if the fusion needs them.

        Each encoder runs once: ``forward_tokens`` gives both; an encoder without it gives its
        pooled features as a single token. ``tokens`` is ``None`` for a fusion without tokens.

        Example:
            >>> from umt.models.encoders import MLPEncoder
            >>> enc = nn.ModuleDict({"a": MLPEncoder((3,), feature_dim=4, tokens=2)})
            >>> fusion = build_fusion("attention", {"a": 4}, dim=8, heads=2)
            >>> model = MultimodalModel(enc, fusion, nn.Linear(8, 2))
            >>> features, tokens = model.encode_all({"a": torch.zeros(5, 3)})
            >>> tuple(features["a"].shape), tuple(tokens["a"].shape)
            ((5, 4), (5, 2, 4))
            >>> tuple(model.fuse(features, tokens).shape)
            (5, 2)
        """
        if not self.needs_tokens:
            return self.encode(batch), None
        self._check(batch)
        features, tokens = {}, {}
        for m, enc in self.encoders.items():
            if isinstance(enc, TokenEncoder):
                features[m], tokens[m] = enc.forward_tokens(batch[m])  # (B, D_m), (B, T_m, D_m)
            else:
                features[m] = enc(batch[m])
                tokens[m] = features[m].unsqueeze(1)  # (B, 1, D_m)
        return features, tokens

    def fuse(
        self,
        features: Mapping[str, torch.Tensor],
        tokens: Mapping[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Logits ``(B, K)`` from the features (and, for a token fusion, the tokens)."""
        if self.needs_tokens:
            return self.head(self.fusion(features, tokens))  # (B, K)
        return self.head(self.fusion(features))  # (B, K)

    def forward_features(
        self, batch: Mapping[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, list[torch.Tensor]]]:
        """Logits ``(B, K)`` and each encoder's features ``{m: [(B, D_m)]}`` from one pass (the
        :class:`~umt.models.base.FusionModel` contract)."""
        features, tokens = self.encode_all(batch)
        return self.fuse(features, tokens), {m: [z] for m, z in features.items()}

    def forward(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.fuse(*self.encode_all(batch))


def build_model(
    cfg: ModelConfig,
    input_shapes: Mapping[str, tuple[int, ...]],
    num_classes: int,
    *,
    linear_head: bool = False,
    encoders: Mapping[str, EncoderFactory] | None = None,
    init_seed: int | None = None,
) -> MultimodalModel:
    """A model over the modalities of ``input_shapes`` (one modality: a uni-modal model).

    Args:
        cfg: architecture.
        input_shapes: modality -> per-sample input shape.
        num_classes: K.
        linear_head: force a linear head (uni-modal models: encoder + linear head, as the paper).
        encoders: modality -> a factory of the user's encoder (``factory(input_shape)``, see
            :func:`~umt.models.encoders.user_encoder`), used instead of ``cfg.encoder`` for
            that modality.
        init_seed: each encoder, and the fusion and head, draw their initial weights from a
            generator of their own derived from it (:func:`~umt.models.base.seed_for`);
            ``None``: from torch's global generator as it stands.

    The encoders ``cfg.encoder.weights`` names start from those files
    (:func:`~umt.models.pretrained.init_encoders`).

    Example:
        >>> cfg = ModelConfig(EncoderConfig(feature_dim=8, hidden=8), fusion="film",
        ...                   fusion_dim=16, film_condition="b")
        >>> model = build_model(cfg, {"a": (3,), "b": (1, 8, 8)}, num_classes=2)
        >>> model.fusion.condition, tuple(model({"a": torch.zeros(4, 3),
        ...                                      "b": torch.zeros(4, 1, 8, 8)}).shape)
        ('b', (4, 2))
        >>> type(build_model(cfg, {"a": (3,)}, 2, linear_head=True).fusion).__name__
        'ConcatFusion'
    """
    factories = encoders or {}
    built = nn.ModuleDict()
    for m, s in input_shapes.items():
        seeded(init_seed, m)
        built[m] = (
            user_encoder(factories[m], s, m)
            if m in factories
            else build_encoder(cfg.encoder_of(m), s)
        )
    if cfg.encoder.weights:
        init_encoders(built, cfg.encoder.weights)
    dims = {m: int(e.feature_dim) for m, e in built.items()}  # type: ignore[arg-type]
    if cfg.fusion not in FUSIONS:  # checked for teachers too, before anything trains
        build_fusion(cfg.fusion, dims)  # raises the error that lists the valid names
    # Fusing one modality means nothing: a uni-modal model is its encoder plus the head.
    seeded(init_seed, "fusion")
    fusion = build_fusion(
        cfg.fusion if len(dims) > 1 else "concat",
        dims,
        dim=cfg.fusion_dim,
        condition=cfg.film_condition,
        layers=cfg.attention_layers,
        heads=cfg.attention_heads,
    )
    width = int(fusion.output_dim)  # type: ignore[arg-type]
    head: nn.Module
    if linear_head or cfg.head_hidden == 0:
        head = nn.Linear(width, num_classes)
    else:
        head = nn.Sequential(
            nn.Linear(width, cfg.head_hidden), nn.ReLU(), nn.Linear(cfg.head_hidden, num_classes)
        )
    return MultimodalModel(built, fusion, head)


def mask_batch(
    batch: Mapping[str, torch.Tensor],
    keep: tuple[str, ...] | list[str],
    *,
    fill: str = "zero",
    means: Mapping[str, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """The batch with every modality not in ``keep`` replaced by zeros or its training mean.

    This defines the per-modality output of any fused model, whatever its fusion module.

    Example:
        >>> b = mask_batch({"a": torch.ones(2, 1), "b": torch.ones(2, 1), "label": torch.zeros(2)},
        ...                ["a"])
        >>> b["a"].sum().item(), b["b"].sum().item()
        (2.0, 0.0)
    """
    out = dict(batch)
    for m, x in batch.items():
        if not is_modality_key(m) or m in keep:
            continue
        if fill == "zero":
            out[m] = torch.zeros_like(x)
        elif fill == "mean":
            if means is None or m not in means:
                raise UMTError(f"mask fill 'mean' needs the training mean of modality {m!r}")
            out[m] = means[m].to(x).expand_as(x)
        else:
            raise UMTError(f"unknown mask fill {fill!r} (mask_fill); expected 'zero' or 'mean'")
    return out
