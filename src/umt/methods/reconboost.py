"""ReconBoost: modality-alternating boosting, one learner per modality, reconciled with the others.

Hua, Xu, Bao, Yang, Huang, *ReconBoost: Boosting Can Achieve Modality Reconcilement*, ICML 2024
(PMLR 235, arXiv 2405.09321); the authors' code is ``huacong/ReconBoost`` (``train.py``,
``models/dynamic_net.py``). The BalanceBenchmark toolkit (``GeWu-Lab/BalanceBenchmark``,
``ReconBoost_trainer.py``) re-implements the same loss.

Each modality m has one learner ``f_m = h_m o phi_m`` (its encoder and a classifier head), and the
prediction is their boosted sum

    F(x) = beta * sum_m f_m(x_m)                                    (beta: a learnt boost rate)

Training alternates between modalities. In a *boosting stage* only modality m's learner is
trained; the others are frozen (no gradient, and in eval mode so that their normalisation
statistics do not move either). With ``F_-m = beta * sum_{j != m} f_j(x_j)`` the ensemble of the
other modalities' current learners and ``p_-m = softmax(F_-m)``, the stage minimises

    L_m = mean_i [ (1 - lambda * p_-m(y_i | x_i)) * CE(f_m(x_i), y_i)             (boosting)
                   + alpha * ||softmax(f_m(x_i)) - sg softmax(f_prev(x_i))||^2 / K ]  (memory)

The first term is the cross-entropy ``CE(f_m, y)`` plus the KL-based reconcilement regulariser
``-lambda * D``, where ``D = -p_-m(y) log p_m(y)`` is the true-class part of the cross-entropy
term of ``KL(p_-m || p_m)`` (the abstract's "reconcilement regularization against competition
with the historical models", here the other modalities' current learners): it discounts, in the
new learner's cross-entropy, what the others already predict. Its gradient on the learner's logits
is ``(1 - lambda p_-m(y)) (p_m - e_y)``: a sample the other modalities already classify counts
less, one they get wrong counts fully, so the new learner fits the ensemble's remaining error as a
gradient-boosting step does. Unlike classic gradient boosting,
the learner replaces the modality's previous one instead of being added beside it ("we only
preserve the newest model for each modality"): here the learner is simply updated in place.

After every boosting stage a *global rectification* stage trains all learners and ``beta`` jointly
on the ensemble, ``CE(F(x), y)`` (the authors' "phase 2", ``correct_epoch`` epochs per stage).

The schedule, in epochs (``unit: epoch``) or optimiser steps (``unit: step``), with ``B`` =
``boost_length`` and ``R`` = ``rectify_length``:

    tick t:  round r, pos = divmod(t, B + R)
             pos <  B  ->  boost modality  modalities[r mod M]
             pos >= B  ->  global rectification

``build_reconboost`` replaces the model's fusion module and head by :class:`LearnerHeads` (one head
per modality, giving ``(B, M, K)``) and :class:`BoostedSum` (``beta * sum_m``), so ``model(batch)``
*is* ``F(x)``: the study's checkpoint selection, test accuracy, masking (a masked modality's learner
sees zeros) and the probes of each encoder measure what ReconBoost predicts. The study's fusion
module is not used (as for MLA: ReconBoost has none).

What we could verify, and where we chose:

- only the abstract and the authors' code could be read; the paper's equations were not reachable.
  The boosting loss above is the code's, ``-w1 * y.log p_m + w2 * (y * p_-m).log p_m`` averaged
  over classes, divided by ``w1 / K`` so that the CE weight is 1: ``lambda = w2 / w1`` (0.2 on
  CREMA-D, 0.25 on AVE and ModelNet40 in the authors' commands). A full ``-lambda KL(p_-m || p_m)``
  over all classes would be unbounded below (``p_m(c) -> 0`` for any ``c`` the others favour), which
  is presumably why the code keeps the true class only; we do the same;
- the "memory consolidation" term: the released code adds ``alpha * MSE(softmax f_m,
  softmax f_prev)`` (``alpha = 0.5``) with *both* sides detached, so it has no gradient and does
  nothing. ``f_prev`` is the learner boosted in the previous stage. We give it a gradient on
  ``f_m`` when ``consolidation > 0``; the default 0 matches what the code effectively trains. The
  paper's definition could not be checked;
- the code's learners share one classifier head (``common_space``, an MLP); ``head: shared`` does
  that (one linear head, needs equal feature widths), the default ``separate`` gives each modality
  its own linear head, so a boosting stage leaves the other learners entirely untouched;
- the code pre-trains each learner uni-modally (``--use_pretrain``, "to enhance stability") and
  uses fresh SGD optimisers per phase; here, like every peer, the learners start from scratch and
  the study's one optimiser, learning rate and epochs are used throughout (its state is shared by
  the phases);
- the code evaluates only after a rectification stage; here validation runs every epoch and the
  study keeps the best epoch, whichever phase it ended;
- with ``unit: step`` a stage is counted in optimiser steps, kept in a buffer of the model (so a
  resumed stage continues the schedule); with ``unit: epoch`` the epoch comes from the engine.

Under DDP a boosting step leaves the other encoders without gradients, so the strategy needs
``find_unused_parameters`` (as MLA's steps do).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from umt.data.base import Batch
from umt.errors import UMTError
from umt.methods.base import MethodContext
from umt.models.multimodal import MultimodalModel

UNITS = ("epoch", "step")
HEADS = ("separate", "shared")


@dataclass(frozen=True)
class ReconBoostConfig:
    """ReconBoost's settings.

    Attributes:
        unit: what ``boost_length`` and ``rectify_length`` count: ``epoch`` or ``step``.
        boost_length: epochs (or steps) of each boosting stage, one modality's learner alone
            (the authors' ``epochs_per_stage``, 4 epochs).
        rectify_length: epochs (or steps) of global rectification after each boosting stage
            (the authors' ``correct_epoch``, 4 epochs); 0 turns it off.
        reconcile: the reconcilement weight ``lambda`` in ``[0, 1]`` (the authors'
            ``weight2 / weight1``: 0.2 to 0.25); 0 gives plain alternating uni-modal training.
        consolidation: weight ``alpha`` of the memory-consolidation term (0: as the released
            code effectively trains, see the module docstring).
        head: ``separate`` (a linear head per modality) or ``shared`` (one head for all, as the
            authors' ``common_space``; needs one feature width).
        boost_rate: initial value of the learnt boost rate ``beta`` (the authors' 1.0).
    """

    unit: str = "epoch"
    boost_length: int = 1
    rectify_length: int = 1
    reconcile: float = 0.25
    consolidation: float = 0.0
    head: str = "separate"
    boost_rate: float = 1.0


def boosted_modality(
    tick: int, modalities: Sequence[str], boost_length: int, rectify_length: int
) -> str | None:
    """The modality whose learner is boosted at ``tick`` (an epoch or a step), or ``None`` during
    global rectification.

    Example:
        >>> [boosted_modality(t, ("a", "v"), 2, 1) for t in range(7)]
        ['a', 'a', None, 'v', 'v', None, 'a']
    """
    r, pos = divmod(tick, boost_length + rectify_length)
    return modalities[r % len(modalities)] if pos < boost_length else None


def reconboost_loss(
    logits: torch.Tensor, others: torch.Tensor, labels: torch.Tensor, reconcile: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The boosting loss of one learner against the ensemble of the others.

    ``mean_i (1 - lambda * softmax(others_i)[y_i]) * CE(logits_i, y_i)``: the cross-entropy plus
    the true-class KL reconcilement ``lambda * p_-m(y) * log p_m(y)``.

    Args:
        logits: ``(B, K)`` the boosted learner's logits ``f_m``.
        others: ``(B, K)`` the other learners' ensemble ``F_-m`` (no gradient is taken through it).
        labels: ``(B,)`` class indices.
        reconcile: ``lambda``.

    Returns:
        The loss and the per-sample weights ``(B,)``.

    Example:
        >>> logits = torch.log(torch.tensor([[0.5, 0.5], [0.25, 0.75]]))
        >>> others = torch.log(torch.tensor([[0.8, 0.2], [0.6, 0.4]]))
        >>> loss, w = reconboost_loss(logits, others, torch.tensor([0, 1]), reconcile=0.5)
        >>> [round(x, 4) for x in w.tolist()]  # 1 - 0.5 * [0.8, 0.4]
        [0.6, 0.8]
        >>> round(loss.item(), 4)  # (0.6 ln 2 + 0.8 ln 4/3) / 2
        0.323
    """
    p_others = others.detach().softmax(-1).gather(1, labels[:, None]).squeeze(1)  # (B,)
    weights = 1.0 - reconcile * p_others
    ce = F.cross_entropy(logits, labels, reduction="none")  # (B,)
    return (weights * ce).mean(), weights


class LearnerHeads(nn.Module):
    """The model's "fusion": each modality's classifier head on its own features, ``(B, M, K)``.

    Args:
        feature_dims: modality -> D_m.
        num_classes: K.
        shared: one head for every modality (all D_m equal).

    Example:
        >>> heads = LearnerHeads({"a": 3, "b": 5}, num_classes=2)
        >>> tuple(heads({"b": torch.ones(4, 5), "a": torch.zeros(4, 3)}).shape)
        (4, 2, 2)
    """

    needs_tokens = False

    def __init__(
        self, feature_dims: Mapping[str, int], num_classes: int, *, shared: bool = False
    ) -> None:
        super().__init__()
        self.modalities = tuple(feature_dims)
        self.shared = shared
        self.output_dim = num_classes
        if shared:
            self.heads = nn.ModuleDict(
                {"shared": nn.Linear(next(iter(feature_dims.values())), num_classes)}
            )
        else:
            self.heads = nn.ModuleDict(
                {m: nn.Linear(d, num_classes) for m, d in feature_dims.items()}
            )

    def head(self, modality: str) -> nn.Module:
        return self.heads["shared" if self.shared else modality]

    def forward(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return torch.stack([self.head(m)(features[m]) for m in self.modalities], 1)  # (B, M, K)


class BoostedSum(nn.Module):
    """The model's "head": ``beta * sum_m f_m``, with the learnt boost rate ``beta``.

    It also holds the optimiser steps taken so far (a buffer, so checkpoints keep the schedule).

    Example:
        >>> BoostedSum(2.0)(torch.ones(3, 2, 4)).tolist()[0]
        [4.0, 4.0, 4.0, 4.0]
    """

    steps: torch.Tensor

    def __init__(self, boost_rate: float = 1.0) -> None:
        super().__init__()
        self.boost_rate = nn.Parameter(torch.tensor(float(boost_rate)))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def forward(self, stacked: torch.Tensor) -> torch.Tensor:
        return self.boost_rate * stacked.sum(1)  # (B, M, K) -> (B, K)


class ReconBoost:
    """Boosting stages alternating over modalities, with global rectification between them
    (``build_reconboost`` sets the model up)."""

    def __init__(self, modalities: tuple[str, ...], cfg: ReconBoostConfig) -> None:
        self.modalities = modalities
        self.cfg = cfg
        self.epoch = 0
        # Early stopping waits for one full round: every modality boosted (and rectified) once.
        round_ = len(modalities) * (cfg.boost_length + cfg.rectify_length)
        self.min_epochs = round_ if cfg.unit == "epoch" else 1

    def to(self, device: torch.device) -> ReconBoost:
        return self

    def on_train_epoch_start(self, model: MultimodalModel, epoch: int) -> None:
        self.epoch = epoch

    def phase(self, model: MultimodalModel) -> tuple[str | None, str | None]:
        """The modality boosted now (``None``: rectification) and the one boosted in the stage
        before (``None`` in the first stage)."""
        cfg = self.cfg
        tick = self.epoch if cfg.unit == "epoch" else int(_sum_head(model).steps)
        period = cfg.boost_length + cfg.rectify_length
        m = boosted_modality(tick, self.modalities, cfg.boost_length, cfg.rectify_length)
        r = tick // period
        prev = self.modalities[(r - 1) % len(self.modalities)] if r > 0 else None
        return m, prev

    def step(self, model: MultimodalModel, batch: Batch) -> dict[str, torch.Tensor]:
        m, prev = self.phase(model)
        head = _sum_head(model)
        head.steps += 1
        labels = batch["label"]
        if m is None:  # global rectification: every learner and beta, on the ensemble
            logits = model.fuse(model.encode(batch))  # (B, K)
            loss = F.cross_entropy(logits, labels)
            return {"loss": loss, "logits": logits, "loss_rectify": loss.detach()}

        heads = _learner_heads(model)
        others: dict[str, torch.Tensor] = {}
        with torch.no_grad():  # the other learners are frozen: no gradient, eval mode
            for o in self.modalities:
                if o == m:
                    continue
                encoder = model.encoders[o]
                training = encoder.training
                encoder.eval()
                others[o] = heads.head(o)(encoder(batch[o]))  # (B, K)
                encoder.train(training)
        beta = head.boost_rate.detach()
        ensemble = beta * torch.stack(list(others.values())).sum(0)  # F_-m, (B, K)
        logits = heads.head(m)(model.encoders[m](batch[m]))  # f_m, (B, K)
        boost, weights = reconboost_loss(logits, ensemble, labels, self.cfg.reconcile)
        loss = boost
        out: dict[str, torch.Tensor] = {}
        if self.cfg.consolidation > 0 and prev is not None and prev != m:
            memory = F.mse_loss(logits.softmax(-1), others[prev].softmax(-1))
            loss = loss + self.cfg.consolidation * memory
            out["loss_memory"] = memory.detach()
        out.update(
            {
                "loss": loss,
                "logits": (ensemble + beta * logits).detach(),
                f"loss_{m}": boost.detach(),
                f"weight_{m}": weights.mean().detach(),
            }
        )
        return out


def _learner_heads(model: MultimodalModel) -> LearnerHeads:
    if not isinstance(model.fusion, LearnerHeads):
        raise UMTError("ReconBoost needs the model set up by build_reconboost (LearnerHeads)")
    return model.fusion


def _sum_head(model: MultimodalModel) -> BoostedSum:
    if not isinstance(model.head, BoostedSum):
        raise UMTError("ReconBoost needs the model set up by build_reconboost (BoostedSum)")
    return model.head


def build_reconboost(ctx: MethodContext) -> ReconBoost:
    """ReconBoost for one stage: the model's fusion and head become :class:`LearnerHeads` and
    :class:`BoostedSum`, so that ``model(batch)`` is the boosted ensemble ``F(x)``."""
    cfg: ReconBoostConfig = ctx.settings
    model = ctx.model
    if len(model.modalities) < 2:
        raise UMTError(f"ReconBoost needs two or more modalities; the data has {model.modalities}")
    if cfg.unit not in UNITS:
        raise UMTError(f"reconboost.unit: expected one of {UNITS}, got {cfg.unit!r}")
    if cfg.head not in HEADS:
        raise UMTError(f"reconboost.head: expected one of {HEADS}, got {cfg.head!r}")
    if cfg.boost_length < 1 or cfg.rectify_length < 0:
        raise UMTError(
            "reconboost.boost_length: expected at least 1 and reconboost.rectify_length at "
            f"least 0; got {cfg.boost_length} and {cfg.rectify_length}"
        )
    if not 0.0 <= cfg.reconcile <= 1.0:
        raise UMTError(
            f"reconboost.reconcile: expected lambda in [0, 1] (above 1 a sample's weight turns "
            f"negative), got {cfg.reconcile}"
        )
    if cfg.consolidation < 0:
        raise UMTError(f"reconboost.consolidation: expected a number >= 0, got {cfg.consolidation}")
    dims = {m: int(e.feature_dim) for m, e in model.encoders.items()}  # type: ignore[arg-type]
    if cfg.head == "shared" and len(set(dims.values())) != 1:
        raise UMTError(
            f"reconboost.head 'shared' needs one feature width for every encoder; got {dims} "
            "(set model.encoder.feature_dim, or reconboost.head: separate)"
        )
    model.fusion = LearnerHeads(dims, ctx.data.num_classes, shared=cfg.head == "shared")
    model.head = BoostedSum(cfg.boost_rate)
    return ReconBoost(model.modalities, cfg)
