"""OGM-GE: on-the-fly gradient modulation with generalisation enhancement.

Peng, Wei, Deng, Wang, Hu, *Balanced Multimodal Learning via On-the-fly Gradient Modulation*,
CVPR 2022 (arXiv 2203.15332); the authors' code is ``GeWu-Lab/OGM-GE_CVPR2022``.

The fused model is trained with its usual cross-entropy. After each backward pass the gradient of
every encoder is scaled down when its modality dominates the batch, and Gaussian noise is added:

    s_m    = sum_i softmax(f_m(x_i))[y_i]                      (contribution of modality m)
    rho_m  = s_m / mean_{j != m} s_j                           (discrepancy ratio)
    k_m    = 1 - tanh(alpha * rho_m)  if rho_m > 1,  else 1    (Eq. 10: modulation coefficient)
    g_m   <- k_m * g_m + N(0, std(g_m)^2)                      (OGM, then GE)

for every weight tensor of encoder m, during the epochs ``start_epoch..end_epoch`` (inclusive, as
in the authors' code). ``f_m(x)`` is what modality m alone contributes to the fused logits. The
paper reads it off the fused linear layer, ``W_m z_m + b / 2`` (concatenation fusion); to work for
any fusion module we run the fused model's own fusion and head on the features with every other
modality's features (and tokens) set to zero, ``h(fusion({m: z_m, j: 0}))``. For concatenation
with a linear head that is exactly ``W_m z_m + b`` (the bias counted whole rather than halved), and
it reuses the features of the training forward pass: no extra encoder pass. ``score="inputs"``
masks the *inputs* instead (``mask_batch``, as the study's per-modality accuracy does), at the
cost of one more pass of every encoder per modality.

Choices where the paper leaves room:

- two modalities give ``rho_m = s_m / s_other``, exactly the paper's ratio; with more, a modality
  is compared with the mean score of the others (the authors' code has only two; the
  BalanceBenchmark toolkit divides by the smallest score), so several may be slowed at once;
- like the authors' code (convolution weights of ResNets) the modulation touches the encoders'
  weight tensors (two or more dimensions), not biases or normalisation parameters, and the noise's
  standard deviation is that of the unmodulated gradient tensor, added to every encoder, dominant
  or not;
- ``shift=True`` gives the continuous variant ``1 - tanh(alpha * relu(rho_m - 1))`` (not the
  paper's; Eq. 10 jumps from 1 to ``1 - tanh(alpha)`` at ``rho_m = 1``).

Under DDP the scores are summed over the ranks, so every rank applies the same coefficients; the
noise comes from the global generator, which Lightning seeds alike on every rank. Eq. 10 is
the number the authors' code quotes; the other steps are written out rather than numbered.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from umt.data.base import Batch
from umt.errors import UMTError
from umt.methods.base import MethodContext
from umt.methods.common import all_reduce_scores, true_class_score
from umt.models.multimodal import MultimodalModel, mask_batch

SCORES = ("features", "inputs")


@dataclass(frozen=True)
class OGMGEConfig:
    """OGM-GE's settings.

    Attributes:
        alpha: the modulation strength alpha of Eq. 10 (the authors' code requires it per data
            set; larger slows the dominant modality more).
        start_epoch: first epoch with modulation (0-based, as the authors' ``modulation_starts``).
        end_epoch: last epoch with modulation, inclusive (the authors' ``modulation_ends``).
        noise: add the generalisation-enhancement noise (OGM-GE); ``false`` gives plain OGM.
        score: how a modality's contribution ``f_m`` is computed: ``features`` (the other
            modalities' features zeroed before the fusion) or ``inputs`` (their inputs zeroed).
        shift: use ``1 - tanh(alpha * relu(rho - 1))`` instead of Eq. 10 (continuous at 1).
    """

    alpha: float = 0.8
    start_epoch: int = 0
    end_epoch: int = 50
    noise: bool = True
    score: str = "features"
    shift: bool = False


def ogm_coefficients(
    scores: Mapping[str, float | torch.Tensor], alpha: float, *, shift: bool = False
) -> dict[str, float]:
    """Modulation coefficient ``k_m`` per modality from the batch scores ``s_m`` (Eq. 10).

    Args:
        scores: ``s_m``, the summed softmax probability of the true class from modality m alone.
        alpha: modulation strength.
        shift: ``1 - tanh(alpha * relu(rho - 1))`` instead of the paper's
            ``1 - tanh(alpha * rho)`` for ``rho > 1``.

    Returns:
        ``k_m`` in ``(0, 1]``: 1 for every modality not ahead of the others.

    Example:
        >>> k = ogm_coefficients({"a": 30.0, "v": 10.0}, alpha=0.5)  # rho_a = 3
        >>> round(k["a"], 4), k["v"]  # 1 - tanh(1.5)
        (0.0949, 1.0)
    """
    if len(scores) < 2:
        raise UMTError(f"OGM-GE needs two or more modalities; got {list(scores)}")
    s = {m: float(v) for m, v in scores.items()}
    out = {}
    for m, s_m in s.items():
        others = [v for o, v in s.items() if o != m]
        rho = s_m / max(sum(others) / len(others), 1e-12)
        if shift:
            out[m] = 1.0 - float(torch.tanh(torch.tensor(alpha * max(rho - 1.0, 0.0))))
        else:
            out[m] = 1.0 - float(torch.tanh(torch.tensor(alpha * rho))) if rho > 1.0 else 1.0
    return out


def modulate_(grad: torch.Tensor, coefficient: float, *, noise: bool) -> torch.Tensor:
    """``grad <- k * grad + N(0, std(grad)^2)`` in place (OGM, then GE); returns ``grad``.

    The noise's standard deviation is the unmodulated gradient's (plus 1e-8, as the authors' code).
    """
    std = float(grad.std()) + 1e-8 if grad.numel() > 1 else 1e-8
    grad.mul_(coefficient)
    if noise:
        grad.add_(torch.randn_like(grad) * std)
    return grad


class OGMGE:
    """Joint training whose encoder gradients are modulated after each backward pass."""

    def __init__(self, cfg: OGMGEConfig) -> None:
        if cfg.score not in SCORES:
            raise UMTError(f"ogm_ge.score: expected one of {SCORES}, got {cfg.score!r}")
        if cfg.alpha < 0:
            raise UMTError(f"ogm_ge.alpha: expected a number >= 0, got {cfg.alpha}")
        self.cfg = cfg
        self.epoch = 0
        self.coefficients: dict[str, float] = {}  # from the last step, for on_after_backward

    def to(self, device: torch.device) -> OGMGE:
        return self

    def on_train_epoch_start(self, model: MultimodalModel, epoch: int) -> None:
        self.epoch = epoch

    @torch.no_grad()
    def _scores(
        self,
        model: MultimodalModel,
        batch: Batch,
        features: Mapping[str, torch.Tensor],
        tokens: Mapping[str, torch.Tensor] | None,
    ) -> dict[str, torch.Tensor]:
        """``s_m`` per modality: the fused model's output with the other modalities removed."""
        labels = batch["label"]
        scores = {}
        for m in model.modalities:
            if self.cfg.score == "inputs":
                logits = model(mask_batch(batch, [m]))
            else:
                only = {o: f if o == m else torch.zeros_like(f) for o, f in features.items()}
                only_tokens = None
                if tokens is not None:
                    only_tokens = {
                        o: t if o == m else torch.zeros_like(t) for o, t in tokens.items()
                    }
                logits = model.fuse(only, only_tokens)
            scores[m] = true_class_score(logits, labels)
        scores = all_reduce_scores(scores)  # the same on every rank
        return scores

    def step(self, model: MultimodalModel, batch: Batch) -> dict[str, torch.Tensor]:
        features, tokens = model.encode_all(batch)  # {m: (B, D_m)}
        logits = model.fuse(features, tokens)  # (B, K)
        loss = F.cross_entropy(logits, batch["label"])
        scores = self._scores(model, batch, features, tokens)
        self.coefficients = ogm_coefficients(scores, self.cfg.alpha, shift=self.cfg.shift)
        out = {"loss": loss, "logits": logits}
        for m, s in scores.items():
            out[f"score_{m}"] = s.detach() / len(batch["label"])
            out[f"coeff_{m}"] = torch.tensor(self.coefficients[m])
        return out

    @torch.no_grad()
    def on_after_backward(self, model: MultimodalModel) -> None:
        cfg = self.cfg
        if not cfg.start_epoch <= self.epoch <= cfg.end_epoch or not self.coefficients:
            return
        for m, encoder in model.encoders.items():
            k = self.coefficients[m]
            for p in encoder.parameters():
                if p.grad is not None and p.grad.ndim >= 2:  # weights, not biases or norms
                    modulate_(p.grad, k, noise=cfg.noise)


def build_ogm_ge(ctx: MethodContext) -> OGMGE:
    """OGM-GE for one stage (the fused model is trained as is; nothing extra is trainable)."""
    if len(ctx.data.modalities) < 2:
        raise UMTError(f"OGM-GE needs two or more modalities; the data has {ctx.data.modalities}")
    return OGMGE(ctx.settings)
