"""Uni-Modal Teacher (UMT): fusion loss plus feature distillation from frozen uni-modal teachers.

Du et al. 2021 (arXiv 2106.11059), Sec. 4; 2023 (ICML, arXiv 2305.01233):

    L = CE(h(z_1, ..., z_M), y) + sum_m lambda_m * D(P_m phi_m(x_m), phi_hat_m(x_m))

``phi_m`` is the student's encoder of modality m, ``phi_hat_m`` the frozen teacher's encoder
(trained alone on m), ``D`` the mean squared error over feature elements (``l1``, ``cosine``:
options) and ``P_m`` a learned linear map where the student's width differs from the teacher's
(FitNets' regressor, Romero et al. 2015; the identity otherwise). Teachers are in eval mode and
under ``no_grad``: their BatchNorm statistics never move.

Segmentation (2021 paper, NYU Depth V2): each branch of the two-branch encoder-decoder is distilled
from the uni-modal teacher's encoder at the encoder stages ``S`` (``stages``; default all),
``sum_m lambda_m * mean_{k in S} D(r_m^k, r_hat_m^k)``, ``r_m^k`` branch m's stage-k map. With
ESANet's injection the primary branch's stages run on fused maps; ``seg_target`` chooses its
``r_m^k``: ``branch`` (each stage's output in the fused pass, before that stage's fusion),
``fused`` (the fused map it carries on) or ``alone`` (the branch run on its own modality).

:func:`distill_term` is the second term: one implementation for the study's step (:class:`UMT`),
``umt.UMTLoss`` in a user's own loop and the Lightning mixin. G2D (``umt.methods.g2d``) adds a
logit term and a schedule on top of :class:`UMT`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from umt.config import KEY_OMITS_DEFAULT
from umt.data.base import Batch
from umt.errors import UMTError
from umt.methods.base import MethodContext
from umt.methods.losses import DISTILL_LOSSES, umt_stage_distill_loss
from umt.models.base import FusionModel, StagedEncoder, encoder_features
from umt.models.segmentation import STAGE_MAPS

Features = Mapping[str, Sequence[torch.Tensor]]  # modality -> [(B, D)] or stage maps [(B, C, H, W)]


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
            them back instead of running the teachers in every step (the same targets to float
            rounding). ``auto``: whenever that is exact (no random augmentation, single-stage
            encoders: classification); ``true``: always (an error where not exact); ``false``:
            teachers run online.
        stages: segmentation: the encoder stages distilled (0-based); empty: all of them.
        project: a learned projector ``P_m`` from student to teacher features: ``auto`` (only
            where the widths differ), ``true`` (always) or ``false`` (never; different widths
            are an error). Classification only.
        seg_target: segmentation with injection: the injected branch's maps distilled
            (``branch``, ``fused`` or ``alone``; see the module docstring).
    """

    weight: float = 5.0
    weights: dict[str, float] = field(default_factory=dict)
    loss: str = "mse"
    init_from_teacher: bool = False
    cache_teachers: Literal["auto"] | bool = "auto"
    stages: tuple[int, ...] = ()
    project: Literal["auto"] | bool = field(default="auto", metadata=KEY_OMITS_DEFAULT)
    seg_target: str = field(default="branch", metadata=KEY_OMITS_DEFAULT)

    def __post_init__(self) -> None:
        if self.seg_target not in STAGE_MAPS:
            raise UMTError(
                f"umt.seg_target: unknown {self.seg_target!r}; expected one of {STAGE_MAPS}"
            )
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
        for key in ("cache_teachers", "project"):
            if getattr(self, key) not in ("auto", True, False):
                raise UMTError(
                    f"umt.{key}: expected auto, true or false, got {getattr(self, key)!r}"
                )

    def weight_of(self, modality: str) -> float:
        return self.weights.get(modality, self.weight)


def distill_term(
    student: Features,
    teacher: Features,
    weights: Mapping[str, float],
    *,
    kind: str = "mse",
    projectors: nn.ModuleDict | Mapping[str, nn.Module] | None = None,
    stages: tuple[int, ...] = (),
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """UMT's distillation term ``sum_m lambda_m * mean_{k in S} D(P_m s_m^k, t_m^k)`` over the
    teachers' modalities: the weighted sum, and the unweighted distance per modality.

    Example:
        >>> s, t = {"a": [torch.ones(2, 3)]}, {"a": [torch.zeros(2, 3)]}
        >>> total, per = distill_term(s, t, {"a": 2.0})
        >>> total.item(), per["a"].item()
        (2.0, 1.0)
    """
    projected = {
        m: [projectors[m](f) for f in student[m]]
        if projectors is not None and m in projectors
        else list(student[m])
        for m in teacher
    }
    return umt_stage_distill_loss(projected, teacher, weights, stages, kind)


class UMT:
    """The UMT training step.

    Args:
        teachers: modality -> frozen teacher encoder.
        cfg: the settings.
        cached: the teachers' features of every training sample (looked up by ``"index"``).
        projectors: modality -> ``P_m``, trained with the model (``None``: none).
    """

    def __init__(
        self,
        teachers: Mapping[str, nn.Module],
        cfg: UMTConfig,
        *,
        cached: Mapping[str, np.ndarray] | None = None,
        projectors: nn.ModuleDict | None = None,
    ) -> None:
        self.teachers = dict(teachers)
        self.cfg = cfg
        self.cached = dict(cached) if cached is not None else None  # {m: (N, D)} train features
        self.needs_index = self.cached is not None
        self.projectors = projectors
        for teacher in self.teachers.values():
            teacher.eval().requires_grad_(False)

    def resolved_settings(self) -> UMTConfig:
        """The settings with ``cache_teachers`` as used (``auto`` -> true or false)."""
        return replace(self.cfg, cache_teachers=self.cached is not None)

    def trainable(self) -> nn.Module | None:
        """The projectors (``None`` where widths agree: nothing extra is trained)."""
        return self.projectors

    def to(self, device: torch.device) -> UMT:
        for teacher in self.teachers.values():
            teacher.to(device).eval()
        return self

    @torch.no_grad()
    def teacher_targets(self, batch: Batch) -> dict[str, list[torch.Tensor]]:
        """The frozen teachers' features of the batch, as lists like the student's (one
        ``(B, D)`` tensor, or a segmentation teacher's stage maps): looked up if cached."""
        if self.cached is None:
            return {m: encoder_features(t.eval(), batch[m]) for m, t in self.teachers.items()}
        rows = batch["index"].cpu().numpy()
        return {
            m: [torch.from_numpy(np.asarray(feats[rows])).to(batch[m].device)]
            for m, feats in self.cached.items()
        }

    def losses(
        self, model: FusionModel, batch: Batch
    ) -> tuple[dict[str, torch.Tensor], Features, Features]:
        """The step's named tensors, the student's features and the teachers' targets."""
        cfg = self.cfg
        if cfg.seg_target == "branch":
            logits, features = model.forward_features(batch)  # (B, K[, H, W]), {m: [features]}
        else:  # a SegmentationModel (checked by build_umt)
            logits, features = model.forward_stages(batch, maps=cfg.seg_target)  # type: ignore[attr-defined]
        task = F.cross_entropy(logits, batch["label"])  # unlabelled pixels: ignored (-100)
        targets = self.teacher_targets(batch)
        weights = {m: cfg.weight_of(m) for m in self.teachers}
        distill, per = distill_term(
            features, targets, weights, kind=cfg.loss, projectors=self.projectors, stages=cfg.stages
        )
        out = {"loss": task + distill.to(task), "logits": logits, "task_loss": task}
        out["distill_loss"] = distill
        out.update({f"distill_{m}": d.detach() for m, d in per.items()})
        return out, features, targets

    def step(self, model: FusionModel, batch: Batch) -> dict[str, torch.Tensor]:
        """Fused loss plus each encoder's features pulled towards its teacher's."""
        return self.losses(model, batch)[0]


def build_umt(ctx: MethodContext) -> UMT:
    """UMT for one stage: the teachers' encoders (optionally copied into the student first),
    their cached features where that is exact, and projectors where the widths differ."""
    cfg: UMTConfig = ctx.settings
    encoders = {m: t.encoders[m] for m, t in ctx.teachers.items()}
    if cfg.init_from_teacher:
        for m, enc in encoders.items():
            ctx.model.encoders[m].load_state_dict(enc.state_dict())
    staged = any(isinstance(e, StagedEncoder) for e in encoders.values())  # segmentation
    if cfg.seg_target != "branch" and not staged:
        raise UMTError(
            f"umt.seg_target={cfg.seg_target!r} applies to segmentation models only; this "
            "model's encoders have no fused input: leave it 'branch'"
        )
    if cfg.cache_teachers is True:
        if staged:
            raise UMTError(
                "umt.cache_teachers: not available for encoders of several stages (segmentation: "
                "the teachers' stage maps of every training image would not fit a cache); set "
                "umt.cache_teachers=false"
            )
        if ctx.data.train.augmented:
            raise UMTError(
                "umt.cache_teachers: the training inputs of this data set are randomly "
                "augmented, so each epoch's teacher features differ; cached features would be "
                "wrong. Set umt.cache_teachers=false (teachers then run online)."
            )
        if ctx.teacher_features is None:
            raise UMTError("umt.cache_teachers needs the study's teacher-feature cache")
    exact = not staged and not ctx.data.train.augmented and ctx.teacher_features is not None
    cached = None
    if cfg.cache_teachers is True or (cfg.cache_teachers == "auto" and exact):
        assert ctx.teacher_features is not None
        cached = {m: ctx.teacher_features(m) for m in encoders}
    projectors = None if staged else _projectors(ctx, cfg)
    return UMT(encoders, cfg, cached=cached, projectors=projectors)


def _projectors(ctx: MethodContext, cfg: UMTConfig) -> nn.ModuleDict | None:
    """``P_m: R^D_m -> R^D_hat_m`` where ``cfg.project`` asks for one; ``None`` when none."""
    projectors = nn.ModuleDict()
    for m, teacher in ctx.teachers.items():
        d_student = int(ctx.model.encoders[m].feature_dim)
        d_teacher = int(teacher.encoders[m].feature_dim)
        if cfg.project is True or (cfg.project == "auto" and d_student != d_teacher):
            projectors[m] = nn.Linear(d_student, d_teacher)
    return projectors or None


__all__ = ["UMT", "UMTConfig", "build_umt", "distill_term"]
