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

where ``r_m^k`` is branch m's stage-k map in the fused model. With ESANet's injection the primary
branch's stages run on fused maps; ``umt.seg_target`` chooses its ``r_m^k``: ``branch`` (each
stage's output in the fused pass, before that stage's fusion), ``fused`` (the fused map it carries
on) or ``alone`` (the branch run on its own modality). With ``model.seg.inject: false`` (late
fusion) every branch is uni-modal and the three are the same.

Variants (options of :class:`UMTConfig`; by default ``umt`` trains exactly as above: no logit
term, no prioritisation, and a projector only where the widths differ, where UMT used to stop):

- **Logit distillation** (``logit_weight`` gamma, ``temperature`` T; Hinton et al. 2015, as used by
  G2D, Rakib & Bagavathi, ICCV 2025, arXiv 2506.21514):

      L += gamma * sum_m T^2 * KL( softmax(l_hat_m / T) || softmax(l_m / T) )

  with ``l_hat_m`` the frozen teacher's logits (its own head on its features) and ``l_m`` the
  student's logits for modality m: by default (``logit_target: branch``) a linear head on the
  student's encoder features ``z_m``, trained with the model (a method-owned module, like
  G-Blending's uni-modal heads; it is not used for prediction); ``logit_target: fused`` uses the
  fused logits ``h(z_1, ..., z_M)`` for every m instead, as G2D's released code does
  (``student.py``: ``distillation_loss(student_outputs, teacher_audio_outputs, T)``).
- **Projector** (``project``): where a student encoder's width ``D_m`` differs from its teacher's
  ``D_hat_m`` the distance is taken after a learned linear map, ``D(P_m z_m, phi_hat_m(x_m))`` with
  ``P_m: R^D_m -> R^D_hat_m`` (FitNets' regressor, Romero et al. 2015); ``auto`` adds one only
  where the sizes differ, ``true`` everywhere, ``false`` never (different sizes are then an
  error, as before).
- **Modality prioritisation** (``prioritize``; G2D's "sequential modality prioritisation", SMP):
  see :func:`priority_coefficients`. In the epochs ``prioritize_start..prioritize_end`` only the
  modality whose *teacher* is least confident on the batch trains its encoder; the weight
  gradients of every other encoder are zeroed after the backward pass.

``g2d`` (``umt.methods.g2d``) is UMT with all three G2D parts on, at G2D's settings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from umt.config import KEY_OMITS_DEFAULT
from umt.data.base import Batch
from umt.errors import UMTError
from umt.methods.base import MethodContext
from umt.methods.losses import (
    DISTILL_LOSSES,
    feature_distance,
    logit_distill_loss,
    priority_coefficients,
    umt_distill_loss,
    umt_stage_distill_loss,
)
from umt.methods.ogm_ge import true_class_score
from umt.models.base import FusionModel, StagedEncoder, encoder_features
from umt.models.multimodal import MultimodalModel
from umt.models.segmentation import STAGE_MAPS

LOGIT_TARGETS = ("branch", "fused")


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
            them back instead of running the teachers in every step (the targets are the same
            to float rounding; a step costs about what joint training's does). ``auto`` (the
            default): whenever that is exact, i.e. the training inputs are the same every
            epoch (no random augmentation) and the encoders are single-stage (classification);
            ``true``: always (an error where it is not exact); ``false``: teachers run online.
        stages: segmentation: the encoder stages distilled (0-based); empty: all of them.
        logit_weight: gamma of the logit distillation (0: off, as the UMT papers).
        temperature: T of the logit distillation (G2D's code: 1).
        logit_target: which student logits are distilled: ``branch`` (a linear head per
            modality on the student's encoder features) or ``fused`` (the fused logits, as G2D's
            released code).
        project: a learned linear projector from student to teacher features: ``auto`` (only
            where the widths differ), ``true`` (always) or ``false`` (never; different widths
            are an error). Classification only.
        prioritize: G2D's modality prioritisation (see :func:`priority_coefficients`).
        prioritize_start: first epoch of the prioritisation (0-based, inclusive).
        prioritize_end: last epoch of the prioritisation (inclusive; G2D's code: epoch 150 of
            300, i.e. the first half of training).
        seg_target: segmentation with injection (ESANet): which maps of the injected branch are
            distilled: ``branch``, ``fused`` or ``alone`` (see the module docstring). Left out
            of stage keys while at its default, so earlier runs' stages stay valid.
    """

    weight: float = 5.0
    weights: dict[str, float] = field(default_factory=dict)
    loss: str = "mse"
    init_from_teacher: bool = False
    cache_teachers: Literal["auto"] | bool = "auto"
    stages: tuple[int, ...] = ()
    logit_weight: float = field(default=0.0, metadata=KEY_OMITS_DEFAULT)
    temperature: float = field(default=1.0, metadata=KEY_OMITS_DEFAULT)
    logit_target: str = field(default="branch", metadata=KEY_OMITS_DEFAULT)
    project: Literal["auto"] | bool = field(default="auto", metadata=KEY_OMITS_DEFAULT)
    prioritize: bool = field(default=False, metadata=KEY_OMITS_DEFAULT)
    prioritize_start: int = field(default=0, metadata=KEY_OMITS_DEFAULT)
    prioritize_end: int = field(default=150, metadata=KEY_OMITS_DEFAULT)
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
        if self.cache_teachers not in ("auto", True, False):
            raise UMTError(
                f"umt.cache_teachers: expected auto, true or false, got {self.cache_teachers!r}"
            )

    def weight_of(self, modality: str) -> float:
        return self.weights.get(modality, self.weight)


__all__ = [
    "DISTILL_LOSSES",
    "UMT",
    "UMTConfig",
    "build_umt",
    "feature_distance",
    "logit_distill_loss",
    "priority_coefficients",
    "umt_distill_loss",
    "umt_stage_distill_loss",
]


class UMTModules(nn.Module):
    """UMT's own trainable modules: projectors and student branch heads (either may be empty).

    Args:
        projectors: modality -> ``P_m`` (student width to teacher width).
        heads: modality -> linear head on the student's features (logit distillation).
    """

    def __init__(self, projectors: nn.ModuleDict, heads: nn.ModuleDict) -> None:
        super().__init__()
        self.projectors = projectors
        self.heads = heads


class UMT:
    """The UMT training step. ``teachers`` maps a modality to its frozen teacher encoder.

    Args:
        teachers: modality -> frozen teacher encoder.
        cfg: the settings.
        cached: the teachers' features of every training sample (looked up by ``"index"``).
        teacher_models: modality -> the whole uni-modal teacher (encoder and head); needed for
            the teacher's logits (logit distillation, prioritisation).
        modules: the projectors and branch heads, trained with the model (``None``: none).
    """

    def __init__(
        self,
        teachers: Mapping[str, nn.Module],
        cfg: UMTConfig,
        *,
        cached: Mapping[str, np.ndarray] | None = None,
        teacher_models: Mapping[str, MultimodalModel] | None = None,
        modules: UMTModules | None = None,
    ) -> None:
        if cfg.logit_target not in LOGIT_TARGETS:
            raise UMTError(
                f"umt.logit_target: expected one of {LOGIT_TARGETS}, got {cfg.logit_target!r}"
            )
        if cfg.logit_weight < 0:
            raise UMTError(f"umt.logit_weight: expected a number >= 0, got {cfg.logit_weight}")
        if cfg.temperature <= 0:
            raise UMTError(f"umt.temperature: expected a number > 0, got {cfg.temperature}")
        needs_logits = cfg.logit_weight > 0 or cfg.prioritize
        if needs_logits and teacher_models is None:
            raise UMTError(
                "umt.logit_weight / umt.prioritize need the teachers' heads (pass teacher_models)"
            )
        self.teachers = dict(teachers)
        self.cfg = cfg
        self.cached = dict(cached) if cached is not None else None  # {m: (N, D)} train features
        self.needs_index = self.cached is not None
        self.teacher_models = dict(teacher_models) if needs_logits and teacher_models else None
        self.modules = modules
        self.epoch = 0
        self.coefficients: dict[str, float] = {}  # prioritisation of the last step
        for teacher in self.teachers.values():
            teacher.eval()
            teacher.requires_grad_(False)
        for model in (self.teacher_models or {}).values():
            model.eval()
            model.requires_grad_(False)

    def resolved_settings(self) -> UMTConfig:
        """The settings with ``cache_teachers`` as used (``auto`` -> true or false)."""
        return replace(self.cfg, cache_teachers=self.cached is not None)

    def trainable(self) -> nn.Module | None:
        """The projectors and branch heads (``None`` for plain UMT: nothing extra is trained)."""
        return self.modules

    def to(self, device: torch.device) -> UMT:
        for teacher in self.teachers.values():
            teacher.to(device).eval()
        for model in (self.teacher_models or {}).values():
            model.to(device).eval()
        return self

    def on_train_epoch_start(self, model: MultimodalModel, epoch: int) -> None:
        self.epoch = epoch

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

    @torch.no_grad()
    def teacher_logits(self, targets: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Each teacher's logits ``l_hat_m`` from its features (its own head)."""
        assert self.teacher_models is not None
        return {m: t.eval().fuse({m: targets[m]}) for m, t in self.teacher_models.items()}

    def _projected(self, m: str, features: list[torch.Tensor]) -> list[torch.Tensor]:
        """Modality m's features after its projector ``P_m`` (unchanged where it has none)."""
        if self.modules is None or m not in self.modules.projectors:
            return features
        return [self.modules.projectors[m](f) for f in features]

    def step(self, model: FusionModel, batch: Batch) -> dict[str, torch.Tensor]:
        """Fused loss plus each encoder's features (every distilled stage of a segmentation
        branch) pulled towards its teacher's (see the module docstring), and G2D's additions
        where they are on."""
        cfg = self.cfg
        if cfg.seg_target == "branch":
            logits, features = model.forward_features(batch)  # (B, K[, H, W]), {m: [features]}
        else:  # a SegmentationModel (checked by build_umt)
            logits, features = model.forward_stages(  # type: ignore[attr-defined]
                batch, maps=cfg.seg_target
            )
        task = F.cross_entropy(logits, batch["label"])  # unlabelled pixels: ignored (-100)
        targets = self.teacher_targets(batch)
        weights = {m: cfg.weight_of(m) for m in self.teachers}
        student = {m: self._projected(m, features[m]) for m in self.teachers}
        distill, per = umt_stage_distill_loss(student, targets, weights, cfg.stages, cfg.loss)
        out = {"loss": task + distill.to(task), "logits": logits, "task_loss": task}
        out["distill_loss"] = distill
        out.update({f"distill_{m}": d.detach() for m, d in per.items()})
        if self.teacher_models is not None:  # G2D's additions (off in plain UMT)
            teacher_logits = self.teacher_logits({m: t[-1] for m, t in targets.items()})
            if cfg.logit_weight > 0:
                pooled = {m: f[-1] for m, f in features.items()}  # (B, D_m)
                kd = self._logit_loss(pooled, logits, teacher_logits, out)
                out["loss"] = out["loss"] + cfg.logit_weight * kd
            if cfg.prioritize:
                self._prioritize(teacher_logits, batch["label"], out)
        return out

    def _logit_loss(
        self,
        features: Mapping[str, torch.Tensor],
        logits: torch.Tensor,
        teacher_logits: Mapping[str, torch.Tensor],
        out: dict[str, torch.Tensor],
    ) -> torch.Tensor:
        """``sum_m T^2 KL(teacher_m || student_m)`` (unweighted); logs each term."""
        total = logits.new_zeros(())
        for m, t in teacher_logits.items():
            if self.cfg.logit_target == "fused":
                s = logits  # (B, K): the fused logits, for every teacher (G2D's code)
            else:
                assert self.modules is not None
                s = self.modules.heads[m](features[m])  # (B, K): modality m's branch head
            kd = logit_distill_loss(s, t, self.cfg.temperature)
            out[f"logit_distill_{m}"] = kd.detach()
            total = total + kd
        out["logit_distill_loss"] = total.detach()
        return total

    def _prioritize(
        self,
        teacher_logits: Mapping[str, torch.Tensor],
        labels: torch.Tensor,
        out: dict[str, torch.Tensor],
    ) -> None:
        """The prioritisation coefficients of this batch, for :meth:`on_after_backward`."""
        scores = {m: true_class_score(t, labels) for m, t in teacher_logits.items()}
        if dist.is_available() and dist.is_initialized():  # same choice on every rank
            stacked = torch.stack(list(scores.values()))
            dist.all_reduce(stacked)
            scores = dict(zip(scores, stacked, strict=True))
        self.coefficients = priority_coefficients(scores)
        for m, k in self.coefficients.items():
            out[f"priority_{m}"] = torch.tensor(k)

    @torch.no_grad()
    def on_after_backward(self, model: MultimodalModel) -> None:
        """Prioritisation: zero the weight gradients of every encoder not prioritised now.

        Like G2D's code (which scales the 4-D convolution weights of a ResNet), only weight
        tensors (two or more dimensions) are touched; biases and normalisation still train.
        """
        cfg = self.cfg
        if not cfg.prioritize or not self.coefficients:
            return
        if not cfg.prioritize_start <= self.epoch <= cfg.prioritize_end:
            return
        for m, k in self.coefficients.items():
            if k == 1.0:
                continue
            for p in model.encoders[m].parameters():
                if p.grad is not None and p.grad.ndim >= 2:
                    p.grad.mul_(k)


def build_umt(ctx: MethodContext) -> UMT:
    """UMT for one stage: the teachers' encoders, optionally copied into the student first, and
    the projectors and branch heads its options ask for."""
    cfg: UMTConfig = ctx.settings
    encoders = {m: t.encoders[m] for m, t in ctx.teachers.items()}
    if cfg.init_from_teacher:
        for m, enc in encoders.items():
            ctx.model.encoders[m].load_state_dict(enc.state_dict())
    if cfg.seg_target != "branch" and not any(
        isinstance(e, StagedEncoder) for e in encoders.values()
    ):
        raise UMTError(
            f"umt.seg_target={cfg.seg_target!r} applies to segmentation models only; this "
            "model's encoders have no fused input: leave it 'branch'"
        )
    cached = None
    staged = any(isinstance(e, StagedEncoder) for e in encoders.values())  # segmentation
    if cfg.cache_teachers is True and staged:
        raise UMTError(
            "umt.cache_teachers: not available for encoders of several stages (segmentation: the "
            "teachers' stage maps of every training image would not fit a cache); set "
            "umt.cache_teachers=false"
        )
    if staged and (cfg.logit_weight > 0 or cfg.prioritize):
        raise UMTError(
            "umt.logit_weight / umt.prioritize: classification only (a segmentation teacher has "
            "no per-image logits); set them to 0 / false"
        )
    if cfg.cache_teachers is True:
        if ctx.data.train.augmented:
            raise UMTError(
                "umt.cache_teachers: the training inputs of this data set are randomly "
                "augmented, so each epoch's teacher features differ; cached features would be "
                "wrong. Set umt.cache_teachers=false (teachers then run online)."
            )
        if ctx.teacher_features is None:
            raise UMTError("umt.cache_teachers needs the study's teacher-feature cache")
    exact = not staged and not ctx.data.train.augmented and ctx.teacher_features is not None
    if cfg.cache_teachers is True or (cfg.cache_teachers == "auto" and exact):
        assert ctx.teacher_features is not None
        cached = {m: ctx.teacher_features(m) for m in encoders}
    modules = None if staged else _modules(ctx, cfg)
    return UMT(encoders, cfg, cached=cached, teacher_models=dict(ctx.teachers), modules=modules)


def _modules(ctx: MethodContext, cfg: UMTConfig) -> UMTModules | None:
    """The projectors (where ``cfg.project`` asks for them) and branch heads (logit
    distillation into ``branch``); ``None`` when there are neither."""
    if cfg.project not in ("auto", True, False):
        raise UMTError(f"umt.project: expected auto, true or false, got {cfg.project!r}")
    projectors = nn.ModuleDict()
    for m, teacher in ctx.teachers.items():
        d_student = int(ctx.model.encoders[m].feature_dim)  # type: ignore[arg-type]
        d_teacher = int(teacher.encoders[m].feature_dim)  # type: ignore[arg-type]
        if cfg.project is True or (cfg.project == "auto" and d_student != d_teacher):
            projectors[m] = nn.Linear(d_student, d_teacher)
    heads = nn.ModuleDict()
    if cfg.logit_weight > 0 and cfg.logit_target == "branch":
        for m in ctx.teachers:
            d = int(ctx.model.encoders[m].feature_dim)  # type: ignore[arg-type]
            heads[m] = nn.Linear(d, ctx.data.num_classes)
    if not projectors and not heads:
        return None
    return UMTModules(projectors, heads)
