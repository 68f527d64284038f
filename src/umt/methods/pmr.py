"""PMR: prototypical modal rebalance.

Fan, Xu, Wei, Hu, Wang, Wang, *PMR: Prototypical Modal Rebalance for Multimodal Learning*,
CVPR 2023 (arXiv 2211.07089); the authors' code is ``fanyunfeng-bit/Modal-Imbalance-PMR``
(``main_Prototype_grad.py``).

Each modality m keeps one prototype per class, the mean encoder feature of the class,
``c_k^m = mean{phi_m(x_i) : y_i = k}``, recomputed at the start of every epoch from a
random share of the training split and smoothed with momentum,
``c <- (1 - momentum) c_new + momentum c_old``. A modality's prototypical prediction is the
softmax of its negative Euclidean distances to its prototypes,
``p_m(k | x) = softmax_k(-||phi_m(x_m) - c_k^m||)``, and the prototypical cross-entropy
``PCE_m = CE(-d(phi_m(x_m), c^m), y)`` pulls the encoder towards class structure with no
help from the other modality. The prototypical scores tell which modality leads,

    s_m   = sum_i p_m(y_i | x_i),        rho_m = s_m / mean_{j != m} s_j
    beta_m  = clip(1 / rho_m - 1, 0, 1)    (boost: non-zero for a modality behind)
    gamma_m = clip(rho_m - 1, 0, 1)        (slow-down: non-zero for a modality ahead)
    L = CE(fused) + alpha sum_m beta_m PCE_m - mu sum_m gamma_m H(p_m)

where ``H(p_m)`` is the mean entropy of the leading modality's prototypical prediction (the
prototype entropy regularisation, applied in the first ``entropy_epochs`` epochs only). With two
modalities ``rho_a = s_a / s_v`` and this is the paper's pair ``(beta, lambda)``. Prediction is the
fused head's, ``model(batch)``.

Choices where the paper leaves room, or the code and the paper differ:

- the authors' public script uses ``alpha`` as an on/off coefficient (the whole ``alpha`` for the
  weaker modality's PCE, none for the other) and has no entropy term; here the clipped
  coefficients and the entropy term follow the paper (and the BalanceBenchmark toolkit by the
  same lab). ``mu`` and ``entropy_epochs`` defaults are our reading (not verified against the
  paper's tables); ``mu: 0`` turns the entropy term off;
- with more than two modalities a modality is compared with the mean score of the others;
- prototypes come from ``proto_share`` of the training split (the code: the first tenth of its
  shuffled loader), drawn anew each epoch with the training seed, in eval mode; a class absent
  from that share keeps its previous prototype (the code would divide by zero);
- the prototypes are buffers of the method's trainable module, so checkpoints keep them.

The maths is written out rather than cited by equation number (we could not check the numbers).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from umt.data.base import ArrayDataset, Batch
from umt.errors import UMTError
from umt.methods.base import MethodContext
from umt.methods.common import all_reduce_scores
from umt.models.multimodal import MultimodalModel


@dataclass(frozen=True)
class PMRConfig:
    """PMR's settings.

    Attributes:
        alpha: weight of the prototypical cross-entropy of the modalities behind (the authors'
            default 1).
        mu: weight of the prototype entropy regularisation of the modality ahead (0: off).
        entropy_epochs: the epochs (from the first) in which the entropy term is applied.
        momentum: momentum of the prototypes across epochs (the authors' default 0.2).
        proto_share: share of the training split the prototypes are computed from each epoch.
    """

    alpha: float = 1.0
    mu: float = 0.01
    entropy_epochs: int = 10
    momentum: float = 0.2
    proto_share: float = 0.1


def class_prototypes(
    features: torch.Tensor, labels: torch.Tensor, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class mean feature (the prototypes) and the number of samples of each class.

    Args:
        features: ``(N, D)``.
        labels: ``(N,)`` in ``0..K-1``.
        num_classes: K.

    Returns:
        ``(K, D)`` prototypes (zero for an absent class) and ``(K,)`` counts.

    Example:
        >>> f = torch.tensor([[0.0, 2.0], [2.0, 0.0], [4.0, 4.0]])
        >>> protos, counts = class_prototypes(f, torch.tensor([0, 0, 2]), 3)
        >>> protos.tolist(), counts.tolist()
        ([[1.0, 1.0], [0.0, 0.0], [4.0, 4.0]], [2.0, 0.0, 1.0])
    """
    onehot = F.one_hot(labels, num_classes).to(features.dtype)  # (N, K)
    counts = onehot.sum(0)  # (K,)
    sums = onehot.T @ features  # (K, D)
    return sums / counts.clamp_min(1).unsqueeze(1), counts


def pmr_coefficients(
    scores: Mapping[str, float | torch.Tensor],
) -> tuple[dict[str, float], dict[str, float]]:
    """The boost ``beta_m`` and slow-down ``gamma_m`` per modality from its score.

    Example:
        >>> beta, gamma = pmr_coefficients({"a": 30.0, "v": 20.0})  # rho_a = 1.5, rho_v = 2/3
        >>> beta, gamma
        ({'a': 0.0, 'v': 0.5}, {'a': 0.5, 'v': 0.0})
    """
    if len(scores) < 2:
        raise UMTError(f"PMR needs two or more modalities; got {list(scores)}")
    s = {m: float(v) for m, v in scores.items()}
    beta, gamma = {}, {}
    for m, s_m in s.items():
        others = [v for o, v in s.items() if o != m]
        rho = max(s_m, 1e-12) / max(sum(others) / len(others), 1e-12)
        beta[m] = min(max(1.0 / rho - 1.0, 0.0), 1.0)
        gamma[m] = min(max(rho - 1.0, 0.0), 1.0)
    return beta, gamma


class Prototypes(nn.Module):
    """The class prototypes per modality, as buffers ``proto_<m>`` of shape ``(K, D_m)``."""

    def __init__(self, feature_dims: Mapping[str, int], num_classes: int) -> None:
        super().__init__()
        self.modalities = tuple(feature_dims)
        for m, d in feature_dims.items():
            self.register_buffer(f"proto_{m}", torch.zeros(num_classes, d))

    def get(self, modality: str) -> torch.Tensor:
        proto: torch.Tensor = getattr(self, f"proto_{modality}")
        return proto


class PMR:
    """Fused cross-entropy plus the prototypical terms that rebalance the modalities."""

    def __init__(
        self,
        prototypes: Prototypes,
        train: ArrayDataset,
        num_classes: int,
        cfg: PMRConfig,
        seed: int,
    ) -> None:
        if not 0.0 < cfg.proto_share <= 1.0:
            raise UMTError(f"pmr.proto_share: expected a share in (0, 1], got {cfg.proto_share}")
        if not 0.0 <= cfg.momentum < 1.0:
            raise UMTError(f"pmr.momentum: expected a number in [0, 1), got {cfg.momentum}")
        self.prototypes = prototypes
        self.train = train
        self.num_classes = num_classes
        self.cfg = cfg
        self.seed = seed
        self.epoch = 0

    def trainable(self) -> nn.Module:
        return self.prototypes  # buffers only: checkpointed, nothing to optimise

    def to(self, device: torch.device) -> PMR:
        return self

    @torch.no_grad()
    def on_train_epoch_start(self, model: MultimodalModel, epoch: int) -> None:
        """New prototypes from a random share of the training split (eval mode), with momentum."""
        self.epoch = epoch
        n = len(self.train)
        rng = np.random.default_rng([self.seed, epoch])
        rows = np.sort(rng.permutation(n)[: max(1, round(self.cfg.proto_share * n))])
        device = next(model.parameters()).device
        was_training = model.training
        model.eval()
        feats: dict[str, list[torch.Tensor]] = {m: [] for m in self.prototypes.modalities}
        labels = []
        for start in range(0, len(rows), 256):
            batch = self.train[rows[start : start + 256].tolist()]
            batch = {k: v.to(device) for k, v in batch.items()}
            features = model.encode(batch)
            for m in feats:
                feats[m].append(features[m])
            labels.append(batch["label"])
        model.train(was_training)
        y = torch.cat(labels)
        for m, parts in feats.items():
            new, counts = class_prototypes(torch.cat(parts), y, self.num_classes)
            old = self.prototypes.get(m)
            present = (counts > 0).unsqueeze(1)
            if epoch > 0:
                new = (1 - self.cfg.momentum) * new + self.cfg.momentum * old
            old.copy_(torch.where(present, new, old))

    def step(self, model: MultimodalModel, batch: Batch) -> dict[str, torch.Tensor]:
        cfg, labels = self.cfg, batch["label"]
        features, tokens = model.encode_all(batch)  # {m: (B, D_m)}
        logits = model.fuse(features, tokens)  # (B, K)
        loss = F.cross_entropy(logits, labels)
        sims = {m: -torch.cdist(features[m], self.prototypes.get(m)) for m in features}  # (B, K)
        scores = {
            m: s.detach().softmax(-1).gather(1, labels[:, None]).sum() for m, s in sims.items()
        }
        scores = all_reduce_scores(scores)  # the same on every rank
        beta, gamma = pmr_coefficients(scores)
        out: dict[str, torch.Tensor] = {"logits": logits, "loss_fused": loss.detach()}
        for m, sim in sims.items():
            pce = F.cross_entropy(sim, labels)
            loss = loss + cfg.alpha * beta[m] * pce
            if cfg.mu > 0 and self.epoch < cfg.entropy_epochs and gamma[m] > 0:
                logp = sim.log_softmax(-1)
                entropy = -(logp.exp() * logp).sum(-1).mean()
                loss = loss - cfg.mu * gamma[m] * entropy
            out[f"pce_{m}"] = pce.detach()
            out[f"beta_{m}"] = torch.tensor(beta[m])
            out[f"gamma_{m}"] = torch.tensor(gamma[m])
        out["loss"] = loss
        return out


def build_pmr(ctx: MethodContext) -> PMR:
    """PMR for one stage: empty prototypes, filled at the start of the first epoch."""
    if len(ctx.data.modalities) < 2:
        raise UMTError(f"PMR needs two or more modalities; the data has {ctx.data.modalities}")
    dims = {m: int(e.feature_dim) for m, e in ctx.model.encoders.items()}  # type: ignore[arg-type]
    prototypes = Prototypes(dims, ctx.data.num_classes)
    return PMR(prototypes, ctx.data.train, ctx.data.num_classes, ctx.settings, ctx.seed)
