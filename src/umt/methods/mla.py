"""MLA: multimodal learning by alternating uni-modal adaptation through one shared head.

Zhang, Yoon, Bansal, Yao, *Multimodal Representation Learning by Alternating Unimodal
Adaptation*, CVPR 2024 (arXiv 2311.10707); the authors' code is
``Cecile-hi/Multimodal-Learning-with-Alternating-Unimodal-Adaptation``.

There is no fusion module. Every encoder feeds the same linear head ``h``, and training alternates
between modalities, each step a uni-modal one:

    step t:  m = modalities[t mod M],   L = CE(h(phi_m(x_m)), y)

so the encoders never compete inside one loss. Because the head is shared, a step on modality m
could overwrite what it learnt from the others; the head's weight gradient is therefore projected
orthogonally to the feature directions already seen ("gradient modification", after
OWM, Zeng et al. 2019). With ``r`` the mean feature of the current batch and ``P`` (``D x D``,
initially ``I``):

    k = P r,   P <- P - k k^T / (alpha + r^T k),   P <- P / ||P||_F,   grad_W <- grad_W P^T

(the authors' ``GSPlugin``; like it, the first step is not projected and the bias is left alone).
At test time the modalities' predictions are fused with weights from their uncertainty
("test-time dynamic fusion"): per sample, with ``e_m`` the entropy of
``softmax(h(phi_m(x_m)))``,

    lambda_m = exp(max_j e_j - e_m) / sum_i exp(max_j e_j - e_i)
    out      = sum_m lambda_m h(phi_m(x_m))

so a confident modality counts more. ``build_mla`` replaces the model's fusion module and head by
:class:`StackFusion` and :class:`SharedHead`, so ``model(batch)`` *is* this prediction: the study
evaluates, checkpoints and caches MLA like any other method, and the probes see the encoders.

Where this differs from the authors' code, and why:

- the code takes one optimiser step per modality on every batch (M steps per batch); the engine
  takes one step per batch, so here batches alternate between modalities and, per epoch, each
  encoder is updated on 1/M of the batches. Exact parity needs a hook that lets a method take
  several optimiser steps per batch (Lightning's manual optimisation);
- the code decays the OWM ``alpha`` from 0.1 to 0.01 within each epoch (``0.1 ** (1 + b / B)``);
  here ``alpha`` is a constant setting (the position in the epoch is not passed to a method);
- the code's entropy is taken over a softmax along the *batch* axis (``dim=0``), which makes a
  sample's prediction depend on the rest of its batch; here it is the per-sample entropy over
  classes, as the paper describes it;
- the code's projection only runs for a parameter named ``module.weight``, which a bare
  ``nn.Linear`` head never has, so the released code trains without it; here it runs
  (``project: false`` turns it off).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from umt.data.base import Batch
from umt.errors import UMTError
from umt.methods.base import MethodContext
from umt.models.multimodal import MultimodalModel

FUSIONS = ("entropy", "mean")


@dataclass(frozen=True)
class MLAConfig:
    """MLA's settings.

    Attributes:
        project: modify the shared head's gradient (orthogonal projection).
        alpha: the projection's regulariser ``alpha`` (the authors' code decays it from 0.1 to
            0.01 within each epoch).
        fusion: test-time fusion: ``entropy`` (uncertainty-weighted) or ``mean``
            (equal weights).
    """

    project: bool = True
    alpha: float = 0.1
    fusion: str = "entropy"


def entropy_weights(logits: torch.Tensor) -> torch.Tensor:
    """Per-sample fusion weights from each modality's prediction entropy (test-time dynamic fusion).

    Args:
        logits: ``(B, M, K)``, each modality's logits from the shared head.

    Returns:
        ``(B, M)`` weights ``exp(max_j e_j - e_m) / sum_i exp(max_j e_j - e_i)``, i.e.
        ``softmax(-e)`` over the modalities, summing to 1 per sample.

    Example:
        >>> logits = torch.tensor([[[0.0, 0.0], [100.0, 0.0]]], dtype=torch.float64)
        >>> # entropies e = [ln 2, 0]
        >>> entropy_weights(logits).round(decimals=4).tolist()  # [1/2, 1] / (3/2)
        [[0.3333, 0.6667]]
    """
    logp = logits.log_softmax(-1)
    entropy = -(logp.exp() * logp).sum(-1)  # (B, M)
    return (-entropy).softmax(-1)


def owm_update(projector: torch.Tensor, mean_feature: torch.Tensor, alpha: float) -> torch.Tensor:
    """The projector after folding in one batch's mean feature (the OWM recursion).

    ``k = P r``, ``P - k k^T / (alpha + r^T k)``, normalised to unit Frobenius norm.

    Example:
        >>> p = owm_update(torch.eye(2), torch.tensor([1.0, 0.0]), alpha=1.0)  # [[1/2, 0], [0, 1]]
        >>> (p * 5**0.5 / 2).round(decimals=4).tolist()  # divided by sqrt(5/4)
        [[0.5, 0.0], [0.0, 1.0]]
    """
    r = mean_feature.reshape(-1, 1)  # (D, 1)
    k = projector @ r  # (D, 1)
    updated = projector - (k @ k.T) / (alpha + float(r.T @ k))
    return updated / updated.norm()


class StackFusion(nn.Module):
    """MLA's "fusion": no mixing; the modalities' features stacked ``(B, M, D)`` for the head.

    Example:
        >>> f = StackFusion(("a", "b"), 3)
        >>> tuple(f({"b": torch.ones(2, 3), "a": torch.zeros(2, 3)}).shape)
        (2, 2, 3)
    """

    needs_tokens = False

    def __init__(self, modalities: tuple[str, ...], dim: int) -> None:
        super().__init__()
        self.modalities = modalities
        self.output_dim = dim

    def forward(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return torch.stack([features[m] for m in self.modalities], 1)  # (B, M, D)


class SharedHead(nn.Module):
    """One linear classifier for every modality, and the test-time fusion of its outputs.

    It also holds the training's gradient projector ``P`` as a buffer (checkpointed with the
    model, so a resumed stage goes on with it).

    Args:
        dim: the common feature width D.
        num_classes: K.
        fusion: ``entropy`` or ``mean``.
    """

    projector: torch.Tensor

    def __init__(self, dim: int, num_classes: int, fusion: str = "entropy") -> None:
        super().__init__()
        if fusion not in FUSIONS:
            raise UMTError(f"mla.fusion: expected one of {FUSIONS}, got {fusion!r}")
        self.classifier = nn.Linear(dim, num_classes)
        self.fusion = fusion
        # The gradient projector P of training: a buffer, so checkpoints keep it.
        self.register_buffer("projector", torch.eye(dim))

    def forward(self, stacked: torch.Tensor) -> torch.Tensor:
        logits = self.classifier(stacked)  # (B, M, K)
        if self.fusion == "mean":
            return logits.mean(1)
        return (entropy_weights(logits).unsqueeze(-1) * logits).sum(1)  # (B, K)


class MLA:
    """Alternating uni-modal steps through the model's shared head (``build_mla`` installs it)."""

    def __init__(self, modalities: tuple[str, ...], cfg: MLAConfig) -> None:
        self.modalities = modalities
        self.cfg = cfg
        self.steps = 0
        self.mean_feature: torch.Tensor | None = None  # of the last step, for on_after_backward

    def to(self, device: torch.device) -> MLA:
        return self

    def step(self, model: MultimodalModel, batch: Batch) -> dict[str, torch.Tensor]:
        m = self.modalities[self.steps % len(self.modalities)]
        self.steps += 1
        features = model.encoders[m](batch[m])  # (B, D)
        head: SharedHead = model.head  # type: ignore[assignment]
        logits = head.classifier(features)  # (B, K)
        loss = F.cross_entropy(logits, batch["label"])
        self.mean_feature = features.detach().mean(0)  # r, (D,)
        return {"loss": loss, "logits": logits, f"loss_{m}": loss.detach()}

    @torch.no_grad()
    def on_after_backward(self, model: MultimodalModel) -> None:
        if not self.cfg.project or self.mean_feature is None or self.steps == 1:
            return  # the authors' code leaves the very first update alone
        head: SharedHead = model.head  # type: ignore[assignment]
        head.projector.copy_(owm_update(head.projector, self.mean_feature, self.cfg.alpha))
        grad = head.classifier.weight.grad
        if grad is not None:  # (K, D) <- (K, D) @ P^T
            grad.copy_(grad @ head.projector.T)


def build_mla(ctx: MethodContext) -> MLA:
    """MLA for one stage: the model's fusion and head become :class:`StackFusion` and
    :class:`SharedHead`, so that ``model(batch)`` is MLA's test-time fusion."""
    cfg: MLAConfig = ctx.settings
    model = ctx.model
    dims = {m: int(e.feature_dim) for m, e in model.encoders.items()}  # type: ignore[arg-type]
    if len(set(dims.values())) != 1:
        raise UMTError(
            f"MLA shares one head across the encoders, so they need one feature width; got {dims} "
            "(set model.encoder.feature_dim for all)"
        )
    if cfg.alpha <= 0:
        raise UMTError(f"mla.alpha: expected a positive number, got {cfg.alpha}")
    dim = next(iter(dims.values()))
    model.fusion = StackFusion(model.modalities, dim)
    model.head = SharedHead(dim, ctx.data.num_classes, cfg.fusion)
    return MLA(model.modalities, cfg)
