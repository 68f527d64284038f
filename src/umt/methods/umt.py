"""Uni-Modal Teacher (UMT): fusion loss plus feature distillation from frozen uni-modal teachers.

Du et al. 2021 (arXiv 2106.11059), Sec. 4; 2023 (ICML, arXiv 2305.01233):

    L = CE(h(z_1, ..., z_M), y) + sum_m lambda_m * D(phi_m(x_m), phi_hat_m(x_m))

where ``phi_m`` is the student's encoder of modality m, ``phi_hat_m`` the frozen teacher's encoder
(trained alone on m), and ``D`` the mean squared error over feature elements (``l1`` and
``cosine`` are options). Teachers are in eval mode and under ``no_grad``: their BatchNorm
statistics never move.

Segmentation (2021 paper, NYU Depth V2): each branch of the two-branch encoder-decoder is distilled
from the uni-modal segmentation teacher's encoder at the chosen encoder stages ``S`` (default all),

    L = CE_pixels(logits, y) + sum_m lambda_m * mean_{k in S} D(r_m^k, r_hat_m^k)

where ``r_m^k`` is branch m's own stage-k map (before fusion) in the fused model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from umt.data.base import Batch
from umt.errors import UMTError
from umt.methods.base import MethodContext
from umt.models.base import FusionModel, StagedEncoder, encoder_features

DISTILL_LOSSES = ("mse", "l1", "cosine")


@dataclass(frozen=True)
class UMTConfig:
    """UMT's settings.

    Attributes:
        weight: lambda_m for every modality not listed in ``weights``.
        weights: lambda_m per modality name (overrides ``weight``).
        loss: feature distance: ``mse`` (the paper), ``l1`` or ``cosine``.
        init_from_teacher: start each student encoder from its teacher's weights (the paper
            trains students from scratch).
        cache_teachers: compute each teacher's features of the training samples once and read
            them back instead of running the teachers in every step. Only valid when the
            training inputs are the same every epoch (no random augmentation); refused otherwise.
        stages: segmentation: the encoder stages distilled (0-based); empty: all of them.
    """

    weight: float = 5.0
    weights: dict[str, float] = field(default_factory=dict)
    loss: str = "mse"
    init_from_teacher: bool = False
    cache_teachers: bool = False
    stages: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.loss not in DISTILL_LOSSES:
            raise UMTError(f"umt.loss: expected one of {list(DISTILL_LOSSES)}, got {self.loss!r}")
        bad = {m: w for m, w in {"": self.weight, **self.weights}.items() if not w >= 0}
        if bad:
            where = ", ".join(
                f"umt.weights.{m}={w}" if m else f"umt.weight={w}" for m, w in bad.items()
            )
            raise UMTError(f"{where}: a distillation weight must be 0 or more")
        if any(k < 0 for k in self.stages):
            raise UMTError(f"umt.stages: expected stage indices >= 0, got {list(self.stages)}")

    def weight_of(self, modality: str) -> float:
        return self.weights.get(modality, self.weight)


def feature_distance(
    student: torch.Tensor, teacher: torch.Tensor, kind: str = "mse"
) -> torch.Tensor:
    """Distance between student and teacher features, averaged over all elements.

    Args:
        student: ``(B, D)`` (or ``(B, C, H, W)``) student features.
        teacher: the same shape, from the frozen teacher.
        kind: ``mse``, ``l1`` or ``cosine`` (1 - cosine similarity per sample, averaged).

    Example:
        >>> s, t = torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0, 0.0]])
        >>> feature_distance(s, t).item(), feature_distance(s, t, "l1").item()
        (2.5, 1.5)
    """
    if student.shape != teacher.shape:
        raise UMTError(
            f"student features have shape {tuple(student.shape)} but the teacher's have "
            f"{tuple(teacher.shape)}; UMT needs the same feature shape (set the student's encoder "
            "to the teacher's architecture)"
        )
    if kind == "mse":
        return F.mse_loss(student, teacher)
    if kind == "l1":
        return F.l1_loss(student, teacher)
    if kind == "cosine":
        return (1 - F.cosine_similarity(student.flatten(1), teacher.flatten(1), dim=1)).mean()
    raise UMTError(
        f"unknown distillation loss {kind!r} (umt.loss); expected one of {DISTILL_LOSSES}"
    )


def umt_distill_loss(
    student: Mapping[str, torch.Tensor],
    teacher: Mapping[str, torch.Tensor],
    weights: Mapping[str, float],
    kind: str = "mse",
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``sum_m lambda_m * D(student_m, teacher_m)`` over the teachers' modalities.

    Returns:
        The weighted sum, and the unweighted distance per modality (for logging).

    Example:
        >>> s = {"a": torch.ones(2, 3), "b": torch.zeros(2, 3)}
        >>> t = {"a": torch.zeros(2, 3), "b": torch.zeros(2, 3)}
        >>> total, per = umt_distill_loss(s, t, {"a": 2.0, "b": 10.0})
        >>> total.item(), per["a"].item(), per["b"].item()
        (2.0, 1.0, 0.0)
    """
    per = {m: feature_distance(student[m], teacher[m], kind) for m in teacher}
    total = sum((weights[m] * d for m, d in per.items()), torch.zeros(()))
    return total, per


def umt_stage_distill_loss(
    student: Mapping[str, list[torch.Tensor]],
    teacher: Mapping[str, list[torch.Tensor]],
    weights: Mapping[str, float],
    stages: tuple[int, ...] = (),
    kind: str = "mse",
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``sum_m lambda_m * mean_{k in stages} D(student_m[k], teacher_m[k])`` (segmentation).

    Args:
        student, teacher: modality -> the encoder's stage maps ``[(B, C_k, H_k, W_k)]``.
        weights: lambda_m.
        stages: stage indices distilled; empty: all.
        kind: the distance (see :func:`feature_distance`).

    Example:
        >>> s = {"d": [torch.ones(1, 2, 2, 2), torch.zeros(1, 4, 1, 1)]}
        >>> t = {"d": [torch.zeros(1, 2, 2, 2), torch.zeros(1, 4, 1, 1)]}
        >>> umt_stage_distill_loss(s, t, {"d": 2.0})[0].item()   # 2 * (1 + 0) / 2
        1.0
        >>> umt_stage_distill_loss(s, t, {"d": 2.0}, stages=(0,))[0].item()
        2.0
    """
    per = {}
    for m in teacher:
        ks = stages or tuple(range(len(teacher[m])))
        bad = [k for k in ks if not -len(teacher[m]) <= k < len(teacher[m])]
        if bad:
            raise UMTError(
                f"umt.stages: {bad} out of range; the encoder of {m!r} has stages "
                f"0..{len(teacher[m]) - 1}"
            )
        dists = [feature_distance(student[m][k], teacher[m][k], kind) for k in ks]
        per[m] = torch.stack(dists).mean()
    total = sum((weights[m] * d for m, d in per.items()), torch.zeros(()))
    return total, per


class UMT:
    """The UMT training step. ``teachers`` maps a modality to its frozen teacher encoder."""

    def __init__(
        self,
        teachers: Mapping[str, nn.Module],
        cfg: UMTConfig,
        *,
        cached: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        self.teachers = dict(teachers)
        self.cfg = cfg
        self.cached = dict(cached) if cached is not None else None  # {m: (N, D)} train features
        self.needs_index = self.cached is not None
        for teacher in self.teachers.values():
            teacher.eval()
            teacher.requires_grad_(False)

    def to(self, device: torch.device) -> UMT:
        for teacher in self.teachers.values():
            teacher.to(device).eval()
        return self

    @torch.no_grad()
    def teacher_targets(self, batch: Batch) -> dict[str, list[torch.Tensor]]:
        """The frozen teachers' features of the batch, as lists like the student's
        (``forward_features``: one ``(B, D)`` tensor, or a segmentation teacher's stage maps):
        looked up if cached, else computed."""
        if self.cached is None:
            return {m: encoder_features(t.eval(), batch[m]) for m, t in self.teachers.items()}
        rows = batch["index"].cpu().numpy()
        return {
            m: [torch.from_numpy(np.asarray(feats[rows])).to(batch[m].device)]
            for m, feats in self.cached.items()
        }

    def step(self, model: FusionModel, batch: Batch) -> dict[str, torch.Tensor]:
        """Fused loss plus each encoder's features (every distilled stage of a segmentation
        branch) pulled towards its teacher's (see the module docstring)."""
        logits, features = model.forward_features(batch)  # (B, K[, H, W]), {m: [features]}
        task = F.cross_entropy(logits, batch["label"])  # unlabelled pixels: ignored (-100)
        targets = self.teacher_targets(batch)
        weights = {m: self.cfg.weight_of(m) for m in self.teachers}
        distill, per = umt_stage_distill_loss(
            features, targets, weights, self.cfg.stages, self.cfg.loss
        )
        out = {"loss": task + distill.to(task), "logits": logits, "task_loss": task}
        out["distill_loss"] = distill
        out.update({f"distill_{m}": d.detach() for m, d in per.items()})
        return out


def build_umt(ctx: MethodContext) -> UMT:
    """UMT for one stage: the teachers' encoders, optionally copied into the student first."""
    cfg: UMTConfig = ctx.settings
    encoders = {m: t.encoders[m] for m, t in ctx.teachers.items()}
    if cfg.init_from_teacher:
        for m, enc in encoders.items():
            ctx.model.encoders[m].load_state_dict(enc.state_dict())
    cached = None
    if cfg.cache_teachers and any(isinstance(e, StagedEncoder) for e in encoders.values()):
        raise UMTError(
            "umt.cache_teachers: not available for encoders of several stages (segmentation: the "
            "teachers' stage maps of every training image would not fit a cache); set "
            "umt.cache_teachers=false"
        )
    if cfg.cache_teachers:
        if ctx.data.train.augmented:
            raise UMTError(
                "umt.cache_teachers: the training inputs of this data set are randomly "
                "augmented, so each epoch's teacher features differ; cached features would be "
                "wrong. Set umt.cache_teachers=false (teachers then run online)."
            )
        if ctx.teacher_features is None:
            raise UMTError("umt.cache_teachers needs the study's teacher-feature cache")
        cached = {m: ctx.teacher_features(m) for m in encoders}
    return UMT(encoders, cfg, cached=cached)
