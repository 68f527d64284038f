"""MMPareto: the multi-modal loss and each uni-modal loss combined without conflict, per encoder.

Wei & Hu, *MMPareto: Boosting Multimodal Learning with Innocent Unimodal Assistance*, ICML 2024
(arXiv 2405.17730); the authors' code is ``GeWu-Lab/MMPareto_ICML2024`` (``code/MMPareto.py``).

Each encoder gets a linear uni-modal head; the losses are the fused ``L_mm`` and one ``L_m`` per
modality. For the parameters ``theta_m`` of encoder m, with ``g_mm = grad L_mm`` and
``g_m = grad L_m`` (flattened over the whole encoder):

- if ``cos(g_mm, g_m) >= 0`` the two are combined with equal weights ``(1/2, 1/2)``;
- otherwise with the min-norm (Pareto) weights of the two-gradient problem (the
  MGDA solution for two tasks):
  ``a = clip((g_m - g_mm) . g_m / ||g_mm - g_m||^2, 0, 1)`` on ``g_mm`` and ``1 - a`` on ``g_m``;
- the magnitude is then restored and enlarged ("gradient integration"): per parameter
  tensor ``p``, ``d_p = 2 (a g_mm,p + (1 - a) g_m,p)``, rescaled up to ``||g_mm,p + g_m,p||``
  when it is shorter, times ``gamma`` (1.5 in the authors' code):
  ``g_p = gamma * max(1, ||g_mm,p + g_m,p|| / ||d_p||) * d_p``.

With equal weights ``d_p = g_mm,p + g_m,p``, so a non-conflicting step is ``gamma`` times the plain
sum. The fusion module, the fused head and the uni-modal heads get the plain gradients of their own
losses. The step computes ``g_mm`` and the ``g_m`` with two ``torch.autograd.grad`` calls and
returns a surrogate loss whose gradient is exactly the combined one and whose value is the total
``L_mm + sum_m L_m``; the engine's single backward pass then applies it. Prediction is the fused
head's, ``model(batch)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from umt.data.base import Batch
from umt.errors import UMTError
from umt.methods.base import MethodContext
from umt.models.multimodal import MultimodalModel


@dataclass(frozen=True)
class MMParetoConfig:
    """MMPareto's settings.

    Attributes:
        gamma: the magnitude enlargement of the combined encoder gradients (1.5 in the authors'
            code; 1 restores the summed gradient's magnitude without enlarging it).
    """

    gamma: float = 1.5


def pareto_weights(g1: torch.Tensor, g2: torch.Tensor) -> tuple[float, float]:
    """Min-norm weights ``(a, 1 - a)`` of two gradients: ``argmin_a ||a g1 + (1 - a) g2||``.

    ``a = (g2 - g1) . g2 / ||g1 - g2||^2``, clipped to ``[0, 1]``; ``(1/2, 1/2)`` when the two
    gradients are equal.

    Example:
        >>> pareto_weights(torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 1.0]))  # 1 - a = 2/5
        (0.6, 0.4)
    """
    diff = (g1 - g2).double()
    denom = float(diff @ diff)
    if denom == 0.0:
        return 0.5, 0.5
    a = float(((g2 - g1).double() @ g2.double()) / denom)
    a = min(1.0, max(0.0, a))
    return a, 1.0 - a


def mmpareto_combine(
    g_mm: Sequence[torch.Tensor], g_uni: Sequence[torch.Tensor], gamma: float = 1.5
) -> tuple[list[torch.Tensor], float, tuple[float, float]]:
    """One encoder's combined gradient per parameter tensor.

    Args:
        g_mm: the multi-modal loss's gradient, one tensor per parameter of the encoder.
        g_uni: the uni-modal loss's gradient, the same shapes.
        gamma: magnitude enlargement.

    Returns:
        The combined gradients, the cosine of the two flattened gradients, and the weights
        ``(a_mm, a_uni)``.

    Example:
        >>> out, cos, w = mmpareto_combine([torch.tensor([3.0, 0.0])], [torch.tensor([0.0, 4.0])])
        >>> out[0].tolist(), cos, w  # agreeing: gamma * (g_mm + g_uni)
        ([4.5, 6.0], 0.0, (0.5, 0.5))
    """
    flat_mm = torch.cat([g.flatten() for g in g_mm])
    flat_uni = torch.cat([g.flatten() for g in g_uni])
    cos = float(F.cosine_similarity(flat_mm, flat_uni, dim=0, eps=1e-12))
    w = (0.5, 0.5) if cos >= 0 else pareto_weights(flat_mm, flat_uni)
    out = []
    for a, b in zip(g_mm, g_uni, strict=True):
        d = 2 * (w[0] * a + w[1] * b)
        d_norm, sum_norm = d.norm(), (a + b).norm()
        scale = torch.where(d_norm > 0, (sum_norm / d_norm.clamp_min(1e-30)).clamp_min(1.0), 1.0)
        out.append(gamma * scale * d)
    return out, cos, w


def _filled(
    grads: Sequence[torch.Tensor | None], params: Sequence[torch.Tensor]
) -> list[torch.Tensor]:
    """The gradients, with zeros where a parameter got none."""
    return [torch.zeros_like(p) if g is None else g for g, p in zip(grads, params, strict=True)]


class MMPareto:
    """Fused loss plus uni-modal losses, encoder gradients combined as MMPareto prescribes."""

    def __init__(self, heads: nn.ModuleDict, cfg: MMParetoConfig) -> None:
        if cfg.gamma <= 0:
            raise UMTError(f"mmpareto.gamma: expected a positive number, got {cfg.gamma}")
        self.heads = heads
        self.cfg = cfg

    def trainable(self) -> nn.Module:
        return self.heads

    def to(self, device: torch.device) -> MMPareto:
        return self

    def step(self, model: MultimodalModel, batch: Batch) -> dict[str, torch.Tensor]:
        labels = batch["label"]
        features, tokens = model.encode_all(batch)  # {m: (B, D_m)}
        logits = model.fuse(features, tokens)  # (B, K)
        loss_mm = F.cross_entropy(logits, labels)
        uni = {m: F.cross_entropy(h(features[m]), labels) for m, h in self.heads.items()}
        loss_uni = sum(uni.values(), logits.new_zeros(()))

        encoder = {m: [p for p in model.encoders[m].parameters() if p.requires_grad] for m in uni}
        enc_params = [p for ps in encoder.values() for p in ps]
        enc_ids = {id(p) for p in enc_params}
        fused_params = [p for p in model.parameters() if p.requires_grad and id(p) not in enc_ids]
        head_params = [p for p in self.heads.parameters() if p.requires_grad]
        # g_mm on the encoders and the fusion + fused head; g_m on the encoders and uni heads.
        g_mm = torch.autograd.grad(
            loss_mm, enc_params + fused_params, retain_graph=True, allow_unused=True
        )
        g_uni = torch.autograd.grad(loss_uni, enc_params + head_params, allow_unused=True)

        n_enc = len(enc_params)
        g_mm_enc, g_uni_enc = _filled(g_mm[:n_enc], enc_params), _filled(g_uni[:n_enc], enc_params)
        targets = _filled(g_mm[n_enc:], fused_params) + _filled(g_uni[n_enc:], head_params)
        params: list[nn.Parameter] = fused_params + head_params
        out: dict[str, torch.Tensor] = {}
        start = 0
        for m, ps in encoder.items():
            stop = start + len(ps)
            combined, cos, w = mmpareto_combine(
                g_mm_enc[start:stop], g_uni_enc[start:stop], self.cfg.gamma
            )
            targets += combined
            params += ps
            out[f"cos_{m}"] = torch.tensor(cos)
            out[f"pareto_{m}"] = torch.tensor(float(cos < 0))
            out[f"loss_{m}"] = uni[m].detach()
            start = stop
        # d surrogate / d p = target_p; the value is that of the total loss.
        surrogate = sum(
            ((p * t.detach()).sum() for p, t in zip(params, targets, strict=True)),
            loss_mm.new_zeros(()),
        )
        loss = (loss_mm + loss_uni).detach() + surrogate - surrogate.detach()
        out.update({"loss": loss, "logits": logits.detach(), "loss_mm": loss_mm.detach()})
        return out


def build_mmpareto(ctx: MethodContext) -> MMPareto:
    """MMPareto for one stage: a linear uni-modal head per encoder."""
    if len(ctx.data.modalities) < 2:
        raise UMTError(f"MMPareto needs two or more modalities; the data has {ctx.data.modalities}")
    heads = nn.ModuleDict(
        {
            m: nn.Linear(int(e.feature_dim), ctx.data.num_classes)  # type: ignore[arg-type]
            for m, e in ctx.model.encoders.items()
        }
    )
    return MMPareto(heads, ctx.settings)
