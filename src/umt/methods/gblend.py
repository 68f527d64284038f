"""Gradient-Blending (G-Blend): uni-modal and fused heads blended by how each one overfits.

Wang, Tran, Feiszli, *What Makes Training Multi-modal Classification Networks Hard?*, CVPR 2020
(arXiv 1905.12681). No official code is public.

Each encoder gets its own linear head beside the fused head, and the model is trained on

    L_blend = sum_k w_k * CE(head_k, y),   k in {each modality, the fused head}

Each weight comes from how branch k generalises and overfits over ``n`` epochs trained alone from
the current parameters, measured on a held-out set V carved from the training split (loss
``L^T`` on the rest T of the training split, ``L^V`` on V):

    O_N  = L^V_N - L^T_N                     overfitting at epoch N
    dG_k = L^V_N - L^V_{N+n}                 generalisation gained over n epochs
    dO_k = O_{N+n} - O_N                     overfitting gained over n epochs
    w_k  = (dG_k / dO_k^2) / Z,  Z = sum_k dG_k / dO_k^2   (the optimal blend)

This is the paper's *online* G-Blend: every ``every`` epochs (the super-epoch ``n``) the weights
are re-estimated as its offline estimate does, from the current parameters: a copy of each
uni-modal branch (encoder plus its head) and of the fused model is trained for ``n`` epochs on T
with that branch's loss alone (Adam, ``lr``), and its losses on T and V before and after give
``dG_k`` and ``dO_k``. The blended model is then trained for ``n`` epochs with those weights.
Prediction is the fused head's, ``model(batch)``.

Choices where the paper leaves room:

- ``dG_k`` is clipped at 0 before the ratio: a branch whose held-out loss rose gets no weight (the
  unclipped ratio would give it a negative one); if no branch improved (all overfit over the
  super-epoch), the previous weights are kept (uniform before the first estimate);
- ``L^T`` is measured by an evaluation pass over T (eval mode), not as the running training loss;
- V is ``holdout`` of the training split, drawn with the training seed (never the val or test
  split), and stays held out throughout: the method asks for each training sample's index
  (``needs_index``) and drops V's samples from every training batch before the forward pass, so
  neither the blended model nor the branch copies ever train on V.

The weights live in a buffer of the method's trainable module, so they are checkpointed and a
resumed stage continues with them. (Equation numbers are left out: we wrote the maths out
rather than cite numbers we could not check against the paper.)
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from umt.data.base import ArrayDataset, Batch
from umt.errors import UMTError
from umt.methods.base import MethodContext
from umt.methods.common import split_holdout
from umt.models.multimodal import MultimodalModel

FUSED = "fused"


@dataclass(frozen=True)
class GBlendConfig:
    """G-Blend's settings.

    Attributes:
        every: the super-epoch ``n``: epochs between re-estimations, and epochs each branch copy
            is trained to estimate its weight.
        holdout: share of the training split held out as V (drawn with the training seed).
        lr: Adam learning rate of the branch copies during estimation.
        batch_size: batch size of the branch copies during estimation.
    """

    every: int = 5
    holdout: float = 0.2
    lr: float = 1e-3
    batch_size: int = 64


def gblend_weights(
    train_before: torch.Tensor,
    val_before: torch.Tensor,
    train_after: torch.Tensor,
    val_after: torch.Tensor,
    *,
    eps: float = 1e-12,
) -> torch.Tensor:
    """Blending weights ``w_k ∝ dG_k / dO_k^2``, summing to 1 (the paper's optimal blend).

    Args:
        train_before, val_before: ``(K,)`` losses of each branch on T and V at epoch N.
        train_after, val_after: ``(K,)`` the same after ``n`` more epochs.
        eps: added to ``dO_k^2`` against division by zero.

    Returns:
        ``(K,)`` weights; uniform if no branch's held-out loss went down.

    Example:
        >>> t = lambda *x: torch.tensor(x, dtype=torch.float64)
        >>> before_t, before_v = t(2.0, 2.0), t(2.2, 2.2)
        >>> after_t, after_v = t(1.0, 0.5), t(1.4, 1.5)
        >>> # dG = [0.8, 0.7], dO = [0.2, 0.8]: raw = [20, 1.09375]
        >>> gblend_weights(before_t, before_v, after_t, after_v).round(decimals=4).tolist()
        [0.9481, 0.0519]
    """
    gain = (val_before - val_after).clamp_min(0)  # dG_k
    overfit = (val_after - train_after) - (val_before - train_before)  # dO_k
    raw = gain / (overfit.square() + eps)
    total = raw.sum()
    if not torch.isfinite(total) or total <= 0:
        return torch.full_like(raw, 1.0 / len(raw))
    return raw / total


class GBlendHeads(nn.Module):
    """The uni-modal linear heads and the current blending weights (a checkpointed buffer).

    Args:
        feature_dims: modality -> D_m.
        num_classes: K.
    """

    weights: torch.Tensor

    def __init__(self, feature_dims: dict[str, int], num_classes: int) -> None:
        super().__init__()
        self.heads = nn.ModuleDict({m: nn.Linear(d, num_classes) for m, d in feature_dims.items()})
        self.branches = (*feature_dims, FUSED)
        self.register_buffer("weights", torch.full((len(self.branches),), 1 / len(self.branches)))


def _branch_loss(
    model: MultimodalModel, heads: GBlendHeads, branch: str, batch: Batch
) -> torch.Tensor:
    """CE of one branch: a modality's encoder and head, or the fused model."""
    if branch == FUSED:
        return F.cross_entropy(model(batch), batch["label"])
    logits = heads.heads[branch](model.encoders[branch](batch[branch]))
    return F.cross_entropy(logits, batch["label"])


def _batches(
    data: ArrayDataset,
    rows: np.ndarray,
    batch_size: int,
    device: torch.device,
    rng: np.random.Generator | None = None,
) -> Iterator[Batch]:
    order = rows if rng is None else rng.permutation(rows)
    for start in range(0, len(order), batch_size):
        batch = data[order[start : start + batch_size].tolist()]
        yield {k: v.to(device) for k, v in batch.items()}


class GBlend:
    """Online Gradient-Blending: the blended loss, re-weighted every ``cfg.every`` epochs."""

    needs_index = True  # training batches carry "index", to leave the held-out set V out

    def __init__(
        self,
        heads: GBlendHeads,
        train: ArrayDataset,
        cfg: GBlendConfig,
        seed: int,
    ) -> None:
        if cfg.every < 1:
            raise UMTError(f"gblend.every: expected at least 1 epoch, got {cfg.every}")
        self.heads = heads
        self.train = train
        self.cfg = cfg
        self.seed = seed
        self.fit_rows, self.held_rows = split_holdout(len(train), cfg.holdout, seed)
        self._held = torch.from_numpy(self.held_rows)

    def trainable(self) -> nn.Module:
        return self.heads

    def to(self, device: torch.device) -> GBlend:
        return self

    @torch.no_grad()
    def _mean_loss(
        self, model: MultimodalModel, heads: GBlendHeads, branch: str, rows: np.ndarray
    ) -> float:
        model.eval()
        heads.eval()
        device = next(model.parameters()).device
        total = 0.0
        for batch in _batches(self.train, rows, 4 * self.cfg.batch_size, device):
            total += float(_branch_loss(model, heads, branch, batch)) * len(batch["label"])
        return total / len(rows)

    def estimate(self, model: MultimodalModel, epoch: int) -> torch.Tensor:
        """The weights from ``n = every`` epochs of each branch trained alone.

        The current weights if no branch's held-out loss went down.
        """
        cfg = self.cfg
        device = next(model.parameters()).device
        losses = torch.zeros(4, len(self.heads.branches), dtype=torch.float64)
        for i, branch in enumerate(self.heads.branches):
            net, heads = copy.deepcopy(model), copy.deepcopy(self.heads)
            if branch == FUSED:
                params = list(net.parameters())
            else:
                params = [*net.encoders[branch].parameters(), *heads.heads[branch].parameters()]
            losses[0, i] = self._mean_loss(net, heads, branch, self.fit_rows)
            losses[1, i] = self._mean_loss(net, heads, branch, self.held_rows)
            opt = torch.optim.Adam(params, lr=cfg.lr)
            rng = np.random.default_rng([self.seed, epoch, i])
            with torch.enable_grad():
                for _ in range(cfg.every):
                    net.train()
                    heads.train()
                    for batch in _batches(self.train, self.fit_rows, cfg.batch_size, device, rng):
                        opt.zero_grad(set_to_none=True)
                        _branch_loss(net, heads, branch, batch).backward()
                        opt.step()
            losses[2, i] = self._mean_loss(net, heads, branch, self.fit_rows)
            losses[3, i] = self._mean_loss(net, heads, branch, self.held_rows)
        if (losses[1] - losses[3]).max() <= 0:  # no branch generalised better: keep the weights
            return self.heads.weights.detach().cpu().clone()
        return gblend_weights(losses[0], losses[1], losses[2], losses[3]).float()

    def on_train_epoch_start(self, model: MultimodalModel, epoch: int) -> None:
        if epoch % self.cfg.every == 0:
            weights = self.estimate(model, epoch)
            self.heads.weights.copy_(weights.to(self.heads.weights.device))

    def without_held_out(self, batch: Batch) -> tuple[Batch, bool]:
        """The batch without V's samples, and whether any sample is left.

        A batch without ``index`` is returned whole; one made only of V's samples (vanishingly
        rare) is returned whole with ``False``, and the step then contributes nothing.
        """
        if "index" not in batch:
            return batch, True
        keep = ~torch.isin(batch["index"], self._held.to(batch["index"].device))
        if bool(keep.all()) or not bool(keep.any()):
            return batch, bool(keep.any())
        return {k: v[keep] for k, v in batch.items()}, True

    def step(self, model: MultimodalModel, batch: Batch) -> dict[str, torch.Tensor]:
        batch, kept = self.without_held_out(batch)
        features, tokens = model.encode_all(batch)  # {m: (B, D_m)}
        logits = model.fuse(features, tokens)  # (B, K)
        labels = batch["label"]
        losses = {m: F.cross_entropy(h(features[m]), labels) for m, h in self.heads.heads.items()}
        losses[FUSED] = F.cross_entropy(logits, labels)
        w = self.heads.weights
        loss = sum(
            (w[i] * losses[k] for i, k in enumerate(self.heads.branches)), logits.new_zeros(())
        )
        if not kept:
            loss = loss * 0.0  # only V's samples: no gradient from them
        out = {"loss": loss, "logits": logits}
        for i, k in enumerate(self.heads.branches):
            out[f"loss_{k}"] = losses[k].detach()
            out[f"weight_{k}"] = w[i].detach()
        return out


def build_gblend(ctx: MethodContext) -> GBlend:
    """G-Blend for one stage: a linear head per encoder, V carved from the training split."""
    if len(ctx.data.modalities) < 2:
        raise UMTError(f"G-Blend needs two or more modalities; the data has {ctx.data.modalities}")
    if FUSED in ctx.data.modalities:
        raise UMTError(f"G-Blend names its fused branch {FUSED!r}; rename that modality")
    dims = {m: int(e.feature_dim) for m, e in ctx.model.encoders.items()}  # type: ignore[arg-type]
    heads = GBlendHeads(dims, ctx.data.num_classes)
    return GBlend(heads, ctx.data.train, ctx.settings, ctx.seed)
