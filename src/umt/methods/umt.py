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

from umt.config import KEY_OMITS_DEFAULT, key_omits
from umt.data.base import Batch
from umt.errors import UMTError
from umt.methods.base import MethodContext
from umt.methods.losses import DISTILL_LOSSES, umt_stage_distill_loss
from umt.models.base import FusionModel, StagedEncoder, encoder_features
from umt.models.segmentation import STAGE_MAPS
from umt.probe import extract_features

TARGETS = ("features", "standardised", "readout")
SELECTS = ("better", "all")
#: How far (in standard errors of the paired difference over validation samples) a teacher's
#: probe must beat the joint encoder's for ``select: better`` to distil that modality: one-sided
#: 95 %.
SELECT_Z = 1.645

Outcomes = str | Sequence[float] | np.ndarray  # per validation sample: right (1) or wrong (0)
Features = Mapping[str, Sequence[torch.Tensor]]  # modality -> [(B, D)] or stage maps [(B, C, H, W)]


@dataclass(frozen=True)
class UMTConfig:
    """UMT's settings.

    Attributes:
        weight: lambda_m for every modality not listed in ``weights``.
        weights: lambda_m per modality name (overrides ``weight``).
        loss: feature distance: ``mse`` (the paper), ``l1`` or ``cosine``.
        init_from_teacher: start each distilled student encoder from its teacher's weights (where
            the architectures match; a student of another width starts from its own init).
            The papers train students from scratch (unverified); started from the teacher, the
            encoder keeps what its teacher learnt instead of having to be pulled back to it,
            and closed the probe gap fully on every check set where from scratch it closed
            65-83 % (docs/results.md, "UMT's defaults"). In a study with ``select: better``,
            the encoders it does not distil start from the same seed's joint model's.
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
        select: which modalities are distilled: ``better`` (where some teacher is a better
            yardstick than the study's jointly trained encoder, its probe beating the joint
            encoder's on validation beyond noise (:func:`better_yardstick`; in a study over
            every seed's validation outcomes at once, one decision for all seeds), every
            modality whose teacher is not worse beyond noise; where none is, no modality: distilling
            towards a teacher that carries less than the joint encoder can only pull the
            encoder back) or ``all`` (every modality, as the papers).
        target: what of the features is matched: ``features`` (as they are, the paper),
            ``standardised`` (each dimension in units of the teacher's spread over the training
            split: ``(f - mu) / sigma``, so that no dimension weighs by its scale alone) or
            ``readout`` (the teacher's own head applied to both: KL between the teacher's
            prediction from its features and from the student's). Classification only.
        decline: in a study with ``select: better``: a UMT stage that ends below the same seed's
            joint training on validation beyond noise is declined: tried again from joint's
            trained model, then (still below) with nothing distilled (``umt.study.select``;
            the attempts kept, the report flags it); ``false``: kept. Classification only.
    """

    weight: float = 5.0
    weights: dict[str, float] = field(default_factory=dict)
    loss: str = "mse"
    init_from_teacher: bool = field(default=True, metadata=key_omits(False))
    cache_teachers: Literal["auto"] | bool = "auto"
    stages: tuple[int, ...] = ()
    project: Literal["auto"] | bool = field(default="auto", metadata=KEY_OMITS_DEFAULT)
    seg_target: str = field(default="branch", metadata=KEY_OMITS_DEFAULT)
    target: str = field(default="features", metadata=KEY_OMITS_DEFAULT)
    select: str = field(default="better", metadata=key_omits("all"))
    decline: bool = field(default=True, metadata=KEY_OMITS_DEFAULT)

    def __post_init__(self) -> None:
        if self.seg_target not in STAGE_MAPS:
            raise UMTError(
                f"umt.seg_target: unknown {self.seg_target!r}; expected one of {STAGE_MAPS}"
            )
        if self.select not in SELECTS:
            raise UMTError(f"umt.select: expected one of {list(SELECTS)}, got {self.select!r}")
        if self.target not in TARGETS:
            raise UMTError(f"umt.target: expected one of {list(TARGETS)}, got {self.target!r}")
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
    targets: Mapping[str, nn.Module] | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """UMT's distillation term ``sum_m lambda_m * mean_{k in S} D(g_m(P_m s_m^k), g_m(t_m^k))``
    over the teachers' modalities: the weighted sum, and the unweighted distance per modality.
    ``targets``: modality -> ``g_m``, what of the features is matched (the ``target`` option:
    the identity where absent).

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
    if targets:
        projected = {
            m: [targets[m](f) for f in fs] if m in targets else fs for m, fs in projected.items()
        }
        teacher = {
            m: [targets[m](f) for f in fs] if m in targets else list(fs)
            for m, fs in teacher.items()
        }
    return umt_stage_distill_loss(projected, teacher, weights, stages, kind)


def better_yardstick(teacher: Outcomes, joint: Outcomes, z: float = SELECT_Z) -> bool:
    """Whether a teacher's probe beats the joint encoder's on validation beyond noise: over the
    same samples (``"1"`` or 1: the probe was right, ``"0"`` or 0: wrong, as ``probe.json`` or
    ``val-outcomes.npy`` keep them; or per sample the share of several seeds' probes that were
    right), the mean paired difference is more than ``z`` standard errors above 0.

    Example:
        >>> better_yardstick("1" * 90 + "0" * 10, "1" * 70 + "0" * 30)  # +20 points of 100
        True
        >>> better_yardstick("1" * 71 + "0" * 29, "1" * 70 + "0" * 30)  # +1 point: noise
        False
    """
    if len(teacher) != len(joint) or len(teacher) == 0:
        raise UMTError(
            f"better_yardstick: the probes' validation outcomes differ in length "
            f"({len(teacher)} vs {len(joint)}); they must cover the same samples"
        )
    d = np.subtract(*np.array([[float(v) for v in x] for x in (teacher, joint)], dtype=float))
    se = d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else 0.0
    return bool(d.mean() > z * se) if se > 0 else bool(d.mean() > 0)


class Standardise(nn.Module):
    """``(f - mu) / sigma`` per feature dimension, with the teacher's statistics over the training
    split (the ``standardised`` target)."""

    mu: torch.Tensor
    sigma: torch.Tensor

    def __init__(self, features: torch.Tensor) -> None:
        super().__init__()
        sigma = features.std(0)
        # A dimension the teacher hardly uses (a ReLU unit that is almost always off) must not
        # be magnified: spreads are floored at a tenth of the mean spread.
        floor = 0.1 * float(sigma.mean()) + 1e-8
        self.register_buffer("mu", features.mean(0))
        self.register_buffer("sigma", sigma.clamp_min(floor))

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return (f - self.mu) / self.sigma


class Readout(nn.Module):
    """The frozen teacher's own head on features of its width: logits ``(B, K)`` (the ``readout``
    target)."""

    def __init__(self, teacher: nn.Module, modality: str) -> None:
        super().__init__()
        self.teacher, self.modality = teacher, modality

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.teacher.fuse({self.modality: f})  # type: ignore[operator]


class UMT:
    """The UMT training step.

    Args:
        teachers: modality -> frozen teacher encoder.
        cfg: the settings.
        cached: the teachers' features of every training sample (looked up by ``"index"``).
        projectors: modality -> ``P_m``, trained with the model (``None``: none).
        targets: modality -> ``g_m``, what of the features is matched (``None``: themselves).
    """

    def __init__(
        self,
        teachers: Mapping[str, nn.Module],
        cfg: UMTConfig,
        *,
        cached: Mapping[str, np.ndarray] | None = None,
        projectors: nn.ModuleDict | None = None,
        targets: Mapping[str, nn.Module] | None = None,
    ) -> None:
        self.teachers = dict(teachers)
        self.targets = dict(targets or {})
        self.kind = "kl" if cfg.target == "readout" else cfg.loss
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
        for target in self.targets.values():
            target.to(device).eval()
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
            features,
            targets,
            weights,
            kind=self.kind,
            projectors=self.projectors,
            stages=cfg.stages,
            targets=self.targets,
        )
        out = {"loss": task + distill.to(task), "logits": logits, "task_loss": task}
        out["distill_loss"] = distill
        out.update({f"distill_{m}": d.detach() for m, d in per.items()})
        return out, features, targets

    def step(self, model: FusionModel, batch: Batch) -> dict[str, torch.Tensor]:
        """Fused loss plus each encoder's features pulled towards its teacher's."""
        return self.losses(model, batch)[0]


def _same_shapes(student: nn.Module, teacher: nn.Module) -> bool:
    """Whether ``teacher``'s weights fit ``student`` (a student of another architecture or width
    cannot start from its teacher: it is distilled from its own initialisation)."""
    mine, theirs = student.state_dict(), teacher.state_dict()
    return mine.keys() == theirs.keys() and all(mine[k].shape == theirs[k].shape for k in mine)


def build_umt(ctx: MethodContext) -> UMT:
    """UMT for one stage: the teachers' encoders (optionally copied into the student first),
    their cached features where that is exact, and projectors where the widths differ."""
    cfg: UMTConfig = ctx.settings
    encoders = {m: t.encoders[m] for m, t in ctx.teachers.items()}
    if cfg.init_from_teacher:  # the modalities distilled (a weight above 0) start from it
        for m, enc in encoders.items():
            if cfg.weight_of(m) > 0 and _same_shapes(ctx.model.encoders[m], enc):
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
    if cfg.target != "features" and staged:
        raise UMTError(
            f"umt.target={cfg.target!r}: classification only; a segmentation branch's maps are "
            "distilled as they are (umt.target=features)"
        )
    projectors = None if staged else _projectors(ctx, cfg)
    return UMT(encoders, cfg, cached=cached, projectors=projectors, targets=_targets(ctx, cfg))


def _targets(ctx: MethodContext, cfg: UMTConfig) -> dict[str, nn.Module]:
    """``g_m`` of each teacher's modality for ``cfg.target`` (none for ``features``)."""
    if cfg.target == "readout":
        return {m: Readout(t.eval().requires_grad_(False), m) for m, t in ctx.teachers.items()}
    if cfg.target != "standardised":
        return {}
    out: dict[str, nn.Module] = {}
    for m, t in ctx.teachers.items():
        if ctx.teacher_features is not None and not ctx.data.train.augmented:
            feats = torch.from_numpy(np.array(ctx.teacher_features(m))).float()
        else:  # the teacher's features of the training split as evaluated
            feats, _ = extract_features(t.encoders[m], ctx.data.eval_split("train"), m)
        out[m] = Standardise(feats)
    return out


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
