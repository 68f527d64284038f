"""Diagnosing & Re-learning: each encoder's learning state, diagnosed; softly re-initialised.

Wei, Li, Feng, Hu, *Diagnosing and Re-learning for Balanced Multimodal Learning*, ECCV 2024
(arXiv 2407.09705); the authors' code is ``GeWu-Lab/Diagnosing_Relearning_ECCV2024``
(``code/ours.py``).

The fused model is trained with its plain cross-entropy. Every ``every`` epochs (at most
``times`` times) each encoder's learning state is diagnosed from the separability of its
uni-modal representation, and the encoder is softly re-initialised towards its initial weights
``theta_m^0`` in proportion to how much it has over-learnt:

    P_m^T, P_m^V = purity(k-means(z_m(T)), y_T), purity(k-means(z_m(V)), y_V)   (diagnosis)
    alpha_m      = tanh(lambda * |P_m^T - P_m^V|)                                (re-learning strength)
    theta_m     <- alpha_m * theta_m^0 + (1 - alpha_m) * theta_m                  (soft re-initialisation)

``z_m(T)`` are encoder m's features of training samples, ``z_m(V)`` of a held-out part of the
training split, each min-max scaled to ``[-1, 1]`` per dimension and clustered by k-means with
``K`` (the number of classes) clusters; ``purity`` is the share of samples whose cluster's majority
label is their own. A modality whose training features separate the classes much better than its
held-out ones (a large gap: well learnt, now memorising) is re-initialised more; a worse-learnt
modality, whose gap is small, keeps most of what it has, and every modality gets some re-learning.
Prediction is the fused model's, ``model(batch)``.

What we could verify, and where we chose:

- only the abstract, README and the authors' code could be read, not the paper's equations; the
  rule above is the released ``ours.py`` (``reinit_score``, ``reinit``, ``purity_score``);
- the code diagnoses on its ``val.csv``, about 11 % carved out of CREMA-D's training list
  (``my_train.csv`` is the rest). Here V is ``holdout`` of the training split, drawn with the
  training seed; the method asks for each sample's index (``needs_index``) and drops V's samples
  from every training batch, so the model never trains on V (as G-Blending's held-out set);
- the code clusters all training features; here at most ``max_samples`` training samples (a seeded
  draw, new at every diagnosis), to keep k-means cheap; k-means runs with ``n_init=10`` and a
  fixed ``random_state`` (the training seed), so every DDP rank finds the same clusters;
- schedule: the code re-initialises after training epoch ``e`` for ``e = 20, 40, 60`` of 90 (every
  ``reinit_epoch = 20``, ``reinit_num = 3``); here at the start of epoch ``e`` for
  ``e = k, 2 k, ...`` (at most ``times``), ``k`` the share ``every`` (0.22: the code's 20 of 90)
  of the stage's epoch cap, and early stopping cannot end the stage before the last;
- every parameter of the encoder is moved (the code moves every parameter of ``audio_net`` /
  ``visual_net``); buffers (BatchNorm running statistics) are left as they are, as in the code;
  the optimiser's state is kept (the code keeps its optimiser too);
- ``theta^0`` is the student's initialisation, copied when the method is built (a resumed stage
  rebuilds the same initial model from the seed, so it needs no checkpoint).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from umt.data.base import ArrayDataset, Batch
from umt.errors import UMTError
from umt.methods.base import MethodContext, epochs_of
from umt.methods.common import split_holdout
from umt.models.multimodal import MultimodalModel


@dataclass(frozen=True)
class RelearnConfig:
    """Diagnosing & Re-learning's settings.

    Attributes:
        every: the share of the training (``train.epochs``, the cap) between diagnoses (the
            code's ``reinit_epoch``: 20 of 90 epochs, 0.22); early stopping waits for the last.
        times: at most this many re-initialisations (the code's ``reinit_num``, 3).
        strength: lambda in ``alpha = tanh(lambda * gap)`` (the code's ``move_lambda``, 3).
        holdout: share of the training split held out for the diagnosis (the code's CREMA-D
            split: about 0.11).
        max_samples: at most this many training samples are clustered per diagnosis.
    """

    every: float = 0.22
    times: int = 3
    strength: float = 3.0
    holdout: float = 0.1
    max_samples: int = 2000


def purity(labels: np.ndarray, clusters: np.ndarray) -> float:
    """Share of samples whose cluster's most frequent label is their own.

    Example:
        >>> purity(np.array([0, 0, 1, 1, 1, 2]), np.array([5, 5, 5, 7, 7, 7]))  # 2 + 2 of 6
        0.6666666666666666
    """
    labels, clusters = np.asarray(labels), np.asarray(clusters)
    correct = 0
    for c in np.unique(clusters):
        members = labels[clusters == c]
        correct += int(np.bincount(members).max())
    return correct / len(labels)


def minmax_scale(x: np.ndarray) -> np.ndarray:
    """Each column scaled to ``[-1, 1]`` (a constant column becomes -1, as scikit-learn's
    ``MinMaxScaler``).

    Example:
        >>> minmax_scale(np.array([[0.0, 5.0], [2.0, 5.0], [4.0, 5.0]])).tolist()
        [[-1.0, -1.0], [0.0, -1.0], [1.0, -1.0]]
    """
    low, high = x.min(0), x.max(0)
    span = np.where(high > low, high - low, 1.0)
    return 2.0 * (x - low) / span - 1.0


def cluster_purity(features: np.ndarray, labels: np.ndarray, num_classes: int, seed: int) -> float:
    """Purity of a k-means clustering (K = ``num_classes``) of the min-max scaled features."""
    from sklearn.cluster import KMeans  # imported here: scikit-learn loads slowly

    k = min(num_classes, len(features))
    clusters = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(
        minmax_scale(features.astype(np.float64))
    )
    return purity(labels, clusters)


def relearn_strength(purity_train: float, purity_held: float, strength: float) -> float:
    """``alpha = tanh(lambda * |P^T - P^V|)``.

    Example:
        >>> round(relearn_strength(0.9, 0.6, strength=3.0), 4)  # tanh(0.9)
        0.7163
    """
    return float(np.tanh(strength * abs(purity_train - purity_held)))


@torch.no_grad()
def soft_reinit_(params: list[nn.Parameter], initial: list[torch.Tensor], alpha: float) -> None:
    """``theta <- alpha * theta^0 + (1 - alpha) * theta`` in place.

    Example:
        >>> p = nn.Parameter(torch.tensor([4.0, -2.0]))
        >>> soft_reinit_([p], [torch.tensor([0.0, 2.0])], alpha=0.25)
        >>> p.tolist()  # 0.25 * [0, 2] + 0.75 * [4, -2]
        [3.0, -1.0]
    """
    for p, p0 in zip(params, initial, strict=True):
        p.mul_(1.0 - alpha).add_(p0.to(p.device), alpha=alpha)


def relearn_due(epoch: int, every: int, times: int) -> bool:
    """Whether a diagnosis and re-initialisation happen at the start of ``epoch``: every
    ``every`` epochs after the first, at most ``times`` times.

    Example:
        >>> [e for e in range(20) if relearn_due(e, every=5, times=2)]
        [5, 10]
    """
    return epoch > 0 and epoch % every == 0 and epoch // every <= times


def drop_rows(batch: Batch, held: torch.Tensor) -> tuple[Batch, bool]:
    """The batch without the samples whose ``index`` is in ``held``, and whether any is left.

    A batch without ``index`` is returned whole; one made only of held-out samples is returned
    whole with ``False`` (the step then contributes nothing).

    Example:
        >>> b = {"x": torch.arange(4), "index": torch.tensor([3, 1, 4, 5])}
        >>> kept, left = drop_rows(b, torch.tensor([1, 5]))
        >>> kept["x"].tolist(), left
        ([0, 2], True)
    """
    if "index" not in batch:
        return batch, True
    keep = ~torch.isin(batch["index"], held.to(batch["index"].device))
    if bool(keep.all()) or not bool(keep.any()):
        return batch, bool(keep.any())
    return {k: v[keep] for k, v in batch.items()}, True


class Relearn:
    """Joint training; at the start of every ``every``-th epoch, each encoder is diagnosed and
    softly re-initialised (``build_relearn`` sets it up)."""

    needs_index = True  # training batches carry "index", to leave the held-out set V out

    def __init__(
        self,
        initial: Mapping[str, Sequence[torch.Tensor]],
        train: ArrayDataset,
        num_classes: int,
        cfg: RelearnConfig,
        seed: int,
        *,
        epochs: int = 20,
    ) -> None:
        if not 0.0 < cfg.every <= 1.0 or cfg.times < 0:
            raise UMTError(
                f"relearn.every: expected a share of the training in (0, 1] and relearn.times "
                f"at least 0; got {cfg.every} and {cfg.times}"
            )
        if cfg.strength < 0:
            raise UMTError(f"relearn.strength: expected a number >= 0, got {cfg.strength}")
        if not 0.0 < cfg.holdout < 1.0:
            raise UMTError(f"relearn.holdout: expected a share in (0, 1), got {cfg.holdout}")
        if cfg.max_samples < 1:
            raise UMTError(f"relearn.max_samples: expected at least 1, got {cfg.max_samples}")
        self.initial = {m: [p.detach().clone() for p in ps] for m, ps in initial.items()}
        self.train = train
        self.num_classes = num_classes
        self.cfg = cfg
        self.seed = seed
        self.fit_rows, self.held_rows = split_holdout(
            len(train), cfg.holdout, seed, key="relearn.holdout"
        )
        self._held = torch.from_numpy(self.held_rows)
        self.alphas: dict[str, float] = dict.fromkeys(initial, 0.0)  # of the last re-init
        self.every = max(1, epochs_of(cfg.every, epochs))  # in epochs of this stage's cap
        self.min_epochs = self.every * cfg.times + 1  # the last re-initialisation, then an epoch
        self.purities: dict[str, tuple[float, float]] = {}

    def to(self, device: torch.device) -> Relearn:
        return self

    @torch.no_grad()
    def features(
        self, model: MultimodalModel, rows: np.ndarray
    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Every encoder's features of the training samples ``rows`` (eval mode), and labels."""
        device = next(model.parameters()).device
        was_training = model.training
        model.eval()
        feats: dict[str, list[torch.Tensor]] = {m: [] for m in self.initial}
        labels = []
        for start in range(0, len(rows), 256):
            batch = self.train[rows[start : start + 256].tolist()]
            batch = {k: v.to(device) for k, v in batch.items()}
            z = model.encode(batch)
            for m in feats:
                feats[m].append(z[m].flatten(1).float().cpu())
            labels.append(batch["label"].cpu())
        model.train(was_training)
        y = torch.cat(labels).numpy()
        return {m: torch.cat(parts).numpy() for m, parts in feats.items()}, y

    def diagnose(self, model: MultimodalModel, epoch: int) -> dict[str, float]:
        """``alpha_m`` per modality from the purity gap between T and V."""
        rng = np.random.default_rng([self.seed, epoch])
        fit = self.fit_rows
        if len(fit) > self.cfg.max_samples:
            fit = np.sort(rng.choice(fit, self.cfg.max_samples, replace=False))
        train_feats, train_y = self.features(model, fit)
        held_feats, held_y = self.features(model, self.held_rows)
        alphas = {}
        for m in self.initial:
            p_t = cluster_purity(train_feats[m], train_y, self.num_classes, self.seed)
            p_v = cluster_purity(held_feats[m], held_y, self.num_classes, self.seed)
            self.purities[m] = (p_t, p_v)
            alphas[m] = relearn_strength(p_t, p_v, self.cfg.strength)
        return alphas

    def on_train_epoch_start(self, model: MultimodalModel, epoch: int) -> None:
        if not relearn_due(epoch, self.every, self.cfg.times):
            return
        self.alphas = self.diagnose(model, epoch)
        for m, alpha in self.alphas.items():
            soft_reinit_(list(model.encoders[m].parameters()), self.initial[m], alpha)

    def step(self, model: MultimodalModel, batch: Batch) -> dict[str, torch.Tensor]:
        batch, kept = drop_rows(batch, self._held)
        logits = model(batch)  # (B, K)
        loss = F.cross_entropy(logits, batch["label"])
        if not kept:
            loss = loss * 0.0  # only V's samples: no gradient from them
        out = {"loss": loss, "logits": logits}
        for m, alpha in self.alphas.items():
            out[f"reinit_{m}"] = torch.tensor(alpha)
        return out


def build_relearn(ctx: MethodContext) -> Relearn:
    """Diagnosing & Re-learning for one stage: the student's initial encoder weights are kept
    (``theta^0``) and V is carved from the training split."""
    if len(ctx.data.modalities) < 2:
        raise UMTError(
            f"Diagnosing & Re-learning needs two or more modalities; the data has "
            f"{ctx.data.modalities}"
        )
    initial = {m: list(enc.parameters()) for m, enc in ctx.model.encoders.items()}
    epochs = ctx.epochs or 20
    return Relearn(
        initial, ctx.data.train, ctx.data.num_classes, ctx.settings, ctx.seed, epochs=epochs
    )
