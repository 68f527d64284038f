"""The late-fusion model: encoders per modality, a fusion module, a head.

``encode(batch) -> {m: z_m}`` and ``fuse(features) -> logits`` are the seam that distillation,
probing, masking and ensembling all use.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from umt.models.encoders import EncoderConfig, build_encoder
from umt.models.fusion import build_fusion


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of the uni-modal and multi-modal models of a study.

    Attributes:
        encoder: encoder architecture (the same kind for the teacher and the student).
        fusion: a key of ``umt.models.fusion.FUSIONS``.
        head_hidden: hidden width of the fusion head; 0 for a linear head. A hidden layer lets
            the fused model learn paired (cross-modal) features from late-fused vectors.
    """

    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    fusion: str = "concat"
    head_hidden: int = 128


class MultimodalModel(nn.Module):
    """Encoders per modality, a fusion module and a head; one modality makes a uni-modal model.

    Args:
        encoders: modality name -> encoder with ``feature_dim``.
        fusion: module mapping ``{m: (B, D_m)}`` to ``(B, fusion.output_dim)``.
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

    def encode(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {m: enc(batch[m]) for m, enc in self.encoders.items()}  # {m: (B, D_m)}

    def fuse(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.head(self.fusion(features))  # (B, K)

    def forward(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.fuse(self.encode(batch))


def build_model(
    cfg: ModelConfig,
    input_shapes: Mapping[str, tuple[int, ...]],
    num_classes: int,
    *,
    linear_head: bool = False,
) -> MultimodalModel:
    """A model over the modalities of ``input_shapes`` (one modality: a uni-modal model).

    Args:
        cfg: architecture.
        input_shapes: modality -> per-sample input shape.
        num_classes: K.
        linear_head: force a linear head (uni-modal models: encoder + linear head, as the paper).
    """
    encoders = nn.ModuleDict({m: build_encoder(cfg.encoder, s) for m, s in input_shapes.items()})
    dims = {m: int(e.feature_dim) for m, e in encoders.items()}  # type: ignore[arg-type]
    fusion = build_fusion(cfg.fusion, dims)
    width = int(fusion.output_dim)  # type: ignore[arg-type]
    head: nn.Module
    if linear_head or cfg.head_hidden == 0:
        head = nn.Linear(width, num_classes)
    else:
        head = nn.Sequential(
            nn.Linear(width, cfg.head_hidden), nn.ReLU(), nn.Linear(cfg.head_hidden, num_classes)
        )
    return MultimodalModel(encoders, fusion, head)


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
        if m == "label" or m in keep:
            continue
        if fill == "zero":
            out[m] = torch.zeros_like(x)
        elif fill == "mean":
            if means is None or m not in means:
                raise ValueError(f"mask fill 'mean' needs the training mean of modality {m!r}")
            out[m] = means[m].to(x).expand_as(x)
        else:
            raise ValueError(f"unknown mask fill {fill!r}; expected 'zero' or 'mean'")
    return out
