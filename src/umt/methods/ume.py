"""Uni-Modal Ensemble (UME) and the rule that chooses between UME and UMT.

UME (Du et al. 2023, Sec. 5): train each uni-modal model alone and predict with the average of
their outputs — no joint training at all. Best when paired (cross-modal) features matter little.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import torch
from torch import nn

from umt.errors import UMTError

UME_COMBINES = ("probs", "logits")


@dataclass(frozen=True)
class UMEConfig:
    """UME's settings.

    Attributes:
        combine: average ``probs`` (softmax outputs) or raw ``logits``.
        weights: per modality weight of its model in the average (default 1 each).
    """

    combine: str = "probs"
    weights: dict[str, float] | None = None

    def __post_init__(self) -> None:
        if self.combine not in UME_COMBINES:
            raise UMTError(
                f"ume.combine: expected one of {list(UME_COMBINES)}, got {self.combine!r}"
            )
        weights = self.weights or {}
        if any(not w >= 0 for w in weights.values()) or (weights and sum(weights.values()) <= 0):
            raise UMTError(f"ume.weights: expected weights >= 0 with a positive sum, got {weights}")


def ume_combine(
    logits: Mapping[str, torch.Tensor],
    *,
    combine: str = "probs",
    weights: Mapping[str, float] | None = None,
) -> torch.Tensor:
    """Weighted average of the uni-modal models' outputs, returned as logits.

    ``probs``: ``log(sum_m w_m softmax(l_m) / sum_m w_m)``; ``logits``: ``sum_m w_m l_m / sum w_m``.
    Classes are dimension 1: logits ``(B, K)``, or per pixel ``(B, K, H, W)`` for segmentation
    (the average is then taken at every pixel).

    Example:
        >>> l = {"a": torch.tensor([[2.0, 0.0]]), "b": torch.tensor([[0.0, 4.0]])}
        >>> ume_combine(l, combine="logits").tolist()
        [[1.0, 2.0]]
        >>> ume_combine(l).exp().sum().item()  # log of an average of distributions
        1.0
    """
    w = {m: 1.0 if weights is None else float(weights.get(m, 1.0)) for m in logits}
    total = sum(w.values())
    if total <= 0:
        raise UMTError(f"UME weights must sum to a positive number; got {w}")
    if combine == "logits":
        return sum(w[m] * x for m, x in logits.items()) / total  # type: ignore[return-value]
    if combine == "probs":
        p = sum(w[m] * x.softmax(1) for m, x in logits.items()) / total
        return p.clamp_min(1e-12).log()  # type: ignore[union-attr]
    raise UMTError(f"unknown UME combine {combine!r} (ume.combine); expected 'probs' or 'logits'")


class Ensemble(nn.Module):
    """The UME predictor: uni-modal models combined by :func:`ume_combine`."""

    def __init__(self, members: Mapping[str, nn.Module], cfg: UMEConfig) -> None:
        super().__init__()
        self.members = nn.ModuleDict(dict(members))
        self.cfg = cfg

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self.members.keys())

    def forward(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        outs = {m: model(batch) for m, model in self.members.items()}
        return ume_combine(outs, combine=self.cfg.combine, weights=self.cfg.weights)

    def subset(self, keep: Sequence[str]) -> Ensemble:
        """The ensemble of the members whose modality is in ``keep`` (a missing modality's member
        does not vote: the natural reading of an ensemble with that modality missing).

        Example:
            >>> ens = Ensemble({"a": nn.Linear(1, 2), "b": nn.Linear(1, 2)}, UMEConfig())
            >>> ens.subset(["b"]).modalities
            ('b',)
        """
        members = {m: model for m, model in self.members.items() if m in keep}
        if not members:
            raise UMTError(f"UME: no member for the modalities {list(keep)}")
        weights = {m: w for m, w in (self.cfg.weights or {}).items() if m in members} or None
        return Ensemble(members, replace(self.cfg, weights=weights))


@dataclass(frozen=True)
class ChoiceConfig:
    """The UMT/UME rule's settings.

    Attributes:
        split: split whose accuracies are compared (never ``test``).
        margin: UME is chosen when ``acc(UME) >= acc(joint) - margin``.
        compare: the multi-modal model UME is compared with (``joint``: naive joint training,
            whose advantage over UME can only come from paired features).
    """

    split: str = "val"
    margin: float = 0.0
    compare: str = "joint"


@dataclass(frozen=True)
class Choice:
    method: str  # "ume" or "umt"
    reason: str


def choose(
    ume_acc: float,
    joint_acc: float,
    *,
    margin: float = 0.0,
    label: str = "val",
    metric: str = "accuracy",
) -> Choice:
    """The guiding strategy of Du et al. 2023 as we read it (PAPER.md, "Choosing").

    If the ensemble of independently trained uni-modal models is at least as accurate as joint
    training, cross-modal interaction adds little (few paired features): choose UME. Otherwise
    joint training learned something the uni-modal models cannot (paired features): choose UMT,
    which keeps that and also learns the uni-modal features. ``metric`` names the compared
    score in the reason (``accuracy``; ``mIoU`` for segmentation).

    Example:
        >>> choose(0.80, 0.75).method, choose(0.60, 0.75).method
        ('ume', 'umt')
    """
    if ume_acc >= joint_acc - margin:
        return Choice(
            "ume",
            f"UME {label} {metric} {ume_acc:.4f} >= joint {joint_acc:.4f} - margin {margin}: "
            "the papers' rule reads this as little gained from cross-modal (paired) features, "
            "so UME",
        )
    return Choice(
        "umt",
        f"UME {label} {metric} {ume_acc:.4f} < joint {joint_acc:.4f} - margin {margin}: the "
        "papers' rule reads joint training's lead as paired features the uni-modal models miss, "
        "so UMT",
    )
