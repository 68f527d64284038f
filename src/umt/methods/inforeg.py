"""InfoReg: slow the information-sufficient modality down during the prime learning window.

Huang, Wei, Yang, Hu, *Adaptive Unimodal Regulation for Balanced Multimodal Information
Acquisition*, CVPR 2025 (arXiv 2503.18595); the authors' code is ``GeWu-Lab/InfoReg_CVPR2025``
(``main.py``, ``train_epoch``).

The fused model is trained with its cross-entropy plus one uni-modal cross-entropy per modality,
each on what modality m alone contributes to the fused logits, ``f_m``:

    L = CE(h(z_1, ..., z_M), y) + u * sum_m CE(f_m(x), y)                          (u = 1 in the code)

**Information amount.** After every backward pass the diagonal Fisher information of each
encoder is accumulated, ``I_m(e) += sum_{W in encoder m} mean(grad_W^2)`` (weight tensors of
linear and convolution layers), giving one number per modality per epoch. With ``n`` = ``window``
and the history padded with ``n`` zeros (as the code does), the relative growth of its ``n``-epoch
moving average is

    k_m(e) = (mean(I_m(e-n .. e-1)) - mean(I_m(e-n-1 .. e-2))) / mean(I_m(e-n .. e-1))
           = (I_m(e-1) - I_m(e-n-1)) / sum(I_m(e-n .. e-1))                        (k = 1 at e = 0)

and the *prime learning window* of modality m is open while ``k_m > tau`` (``threshold``, 0.05).

**Regulation.** Per batch, the scores ``s_m = sum_i softmax(f_m(x_i))[y_i]`` name the
information-sufficient modality ``a = argmax_m s_m``. While its window is open its encoder is pulled
back towards its parameters at the start of the epoch, ``theta_a^0`` (a proximal term):

    beta_a  = c * exp(tanh(s_a - mean_{j != a} s_j))                               (c = ``strength``)
    g_a    <- g_a + beta_a * (theta_a - theta_a^0)

so the dominant encoder's step is shortened (and its information acquisition slowed) while the
others train unregulated. When the scores tie, no encoder is regulated.

``f_m`` is computed as in our OGM-GE (``umt.methods.ogm_ge``): the fused model's own fusion and head
on the features with every other modality's features zeroed. For concatenation with a linear head
that is ``W_m z_m + b``; the code uses ``W_m z_m + b / 2`` (the same up to the bias).

What we could verify, and where we chose:

- only the abstract, summaries and the authors' code could be read, not the paper's equations;
  everything above is the released ``main.py``;
- the code measures the information amount of the audio encoder only (the known
  information-sufficient modality of CREMA-D) and regulates whichever modality scores higher;
  here each modality has its own window ``k_m`` and is regulated while *its* window is open;
- the code's constants differ per modality (``0.95 exp(tanh(gap))`` for audio, ``0.1 exp(...)`` for
  video); one ``strength`` serves every modality here (default 0.95, the code's for the dominant
  audio);
- with more than two modalities, the gap is to the mean score of the others (as our OGM-GE);
- the Fisher trace is accumulated from the loss's gradient before the regulation term is added
  (the code adds it first); the code's scores are batch sums, kept here (``tanh`` saturates for
  large batches, as in the code);
- under DDP the scores are summed over the ranks, so every rank regulates alike; the gradients
  are already averaged when the trace is accumulated, so the traces agree too.

The trace history and the current epoch's sum are buffers of the method's module (checkpointed),
so a resumed stage continues with the same windows; ``theta^0`` is taken at every epoch start.
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
from umt.methods.common import all_reduce_scores, true_class_score
from umt.models.multimodal import MultimodalModel


@dataclass(frozen=True)
class InfoRegConfig:
    """InfoReg's settings.

    Attributes:
        strength: c in ``beta = c * exp(tanh(gap))`` (the code: 0.95 for the dominant audio).
        threshold: tau: a modality's prime learning window is open while ``k_m > tau`` (0.05).
        window: n, the epochs of the moving average of the information amount (10).
        unimodal: u, the weight of the uni-modal cross-entropies (1 in the code).
    """

    strength: float = 0.95
    threshold: float = 0.05
    window: int = 10
    unimodal: float = 1.0


def information_growth(history: torch.Tensor) -> float:
    """``k``: relative growth of the moving average of the information amount.

    Args:
        history: ``(n + 1,)`` the information amounts of the last ``n + 1`` epochs, oldest first
            (zeros before training, as the code pads its list).

    Returns:
        ``(history[-1] - history[0]) / sum(history[1:])``, i.e. the change of the ``n``-epoch mean
        over the newer mean; 1 while nothing has been measured (the code's ``k`` at epoch 0).

    Example:
        >>> information_growth(torch.tensor([0.0, 0.0, 0.0, 4.0]))  # first epoch measured
        1.0
        >>> information_growth(torch.tensor([1.0, 2.0, 3.0, 3.0]))  # (3 - 1) / 8
        0.25
    """
    newer = float(history[1:].sum())
    if newer <= 0:
        return 1.0
    return float(history[-1] - history[0]) / newer


def inforeg_coefficients(
    scores: Mapping[str, float | torch.Tensor], strength: float
) -> dict[str, float]:
    """``beta_m``: ``c * exp(tanh(s_a - mean_{j != a} s_j))`` for the top-scoring modality ``a``,
    0 for the others (and for all when the top score is tied).

    Example:
        >>> beta = inforeg_coefficients({"audio": 40.0, "visual": 20.0}, strength=0.95)
        >>> round(beta["audio"], 4), beta["visual"]  # 0.95 * e^tanh(20)
        (2.5824, 0.0)
        >>> inforeg_coefficients({"a": 1.5, "b": 1.5}, strength=1.0)
        {'a': 0.0, 'b': 0.0}
    """
    if len(scores) < 2:
        raise UMTError(f"InfoReg needs two or more modalities; got {list(scores)}")
    s = {m: float(v) for m, v in scores.items()}
    top = max(s, key=lambda m: s[m])
    others = [v for m, v in s.items() if m != top]
    out = dict.fromkeys(s, 0.0)
    if s[top] > max(others):
        gap = s[top] - sum(others) / len(others)
        out[top] = strength * float(torch.exp(torch.tanh(torch.tensor(gap))))
    return out


def regulate_(params: list[nn.Parameter], anchors: list[torch.Tensor], beta: float) -> None:
    """``g <- g + beta * (theta - theta^0)`` in place, for every parameter with a gradient.

    Example:
        >>> p = nn.Parameter(torch.tensor([2.0, -1.0]))
        >>> p.grad = torch.tensor([0.5, 0.5])
        >>> regulate_([p], [torch.tensor([1.0, 1.0])], beta=2.0)
        >>> p.grad.tolist()  # 0.5 + 2 * [1, -2]
        [2.5, -3.5]
    """
    for p, a in zip(params, anchors, strict=True):
        if p.grad is not None:
            p.grad.add_(p.detach() - a, alpha=beta)


class InfoRegState(nn.Module):
    """The information amounts: ``history`` ``(M, n + 1)`` of past epochs, ``current`` ``(M,)``
    summed over this epoch so far (buffers: checkpointed, nothing to optimise).

    Args:
        modalities: the modality names, in order.
        window: n.
    """

    history: torch.Tensor
    current: torch.Tensor

    def __init__(self, modalities: tuple[str, ...], window: int) -> None:
        super().__init__()
        self.modalities = modalities
        self.register_buffer(
            "history", torch.zeros(len(modalities), window + 1, dtype=torch.float64)
        )
        self.register_buffer("current", torch.zeros(len(modalities), dtype=torch.float64))

    def close_epoch(self) -> None:
        """Move this epoch's sums into the history (the oldest entry drops out)."""
        self.history.copy_(torch.cat([self.history[:, 1:], self.current[:, None]], dim=1))
        self.current.zero_()


def encoder_information(encoder: nn.Module) -> float:
    """``sum_W mean(grad_W^2)`` over the encoder's weight tensors (two or more dimensions): its
    share of the diagonal Fisher information in this step (the code's ``fim`` per layer)."""
    return sum(
        float(p.grad.square().mean())
        for p in encoder.parameters()
        if p.grad is not None and p.grad.ndim >= 2
    )


class InfoReg:
    """Fused and uni-modal cross-entropies; the information-sufficient encoder is held back by a
    proximal term while its prime learning window is open."""

    def __init__(self, state: InfoRegState, cfg: InfoRegConfig) -> None:
        if cfg.strength < 0:
            raise UMTError(f"inforeg.strength: expected a number >= 0, got {cfg.strength}")
        if cfg.window < 1:
            raise UMTError(f"inforeg.window: expected at least 1 epoch, got {cfg.window}")
        if cfg.unimodal < 0:
            raise UMTError(f"inforeg.unimodal: expected a number >= 0, got {cfg.unimodal}")
        self.state = state
        self.cfg = cfg
        self.growth: dict[str, float] = dict.fromkeys(state.modalities, 1.0)  # k_m
        self.anchors: dict[str, list[torch.Tensor]] = {}  # theta^0 per encoder
        self.coefficients: dict[str, float] = {}  # beta_m of the last step

    def trainable(self) -> nn.Module:
        return self.state

    def to(self, device: torch.device) -> InfoReg:
        return self

    @torch.no_grad()
    def on_train_epoch_start(self, model: MultimodalModel, epoch: int) -> None:
        """Close the last epoch's information amount, open or close each window, and take
        ``theta^0``."""
        if epoch > 0:
            self.state.close_epoch()
        self.growth = {
            m: information_growth(self.state.history[i])
            for i, m in enumerate(self.state.modalities)
        }
        self.anchors = {
            m: [p.detach().clone() for p in model.encoders[m].parameters()]
            for m in self.state.modalities
        }

    def step(self, model: MultimodalModel, batch: Batch) -> dict[str, torch.Tensor]:
        labels = batch["label"]
        features, tokens = model.encode_all(batch)  # {m: (B, D_m)}
        logits = model.fuse(features, tokens)  # (B, K)
        loss = F.cross_entropy(logits, labels)
        out: dict[str, torch.Tensor] = {"logits": logits, "loss_fused": loss.detach()}
        scores = {}
        for m in model.modalities:  # f_m: the others' features (and tokens) zeroed
            only = {o: f if o == m else torch.zeros_like(f) for o, f in features.items()}
            only_tokens = None
            if tokens is not None:
                only_tokens = {o: t if o == m else torch.zeros_like(t) for o, t in tokens.items()}
            f_m = model.fuse(only, only_tokens)  # (B, K)
            loss_m = F.cross_entropy(f_m, labels)
            loss = loss + self.cfg.unimodal * loss_m
            scores[m] = true_class_score(f_m.detach(), labels)
            out[f"loss_{m}"] = loss_m.detach()
        scores = all_reduce_scores(scores)  # the same on every rank
        self.coefficients = inforeg_coefficients(scores, self.cfg.strength)
        for m in model.modalities:
            out[f"beta_{m}"] = torch.tensor(self.coefficients[m])
            out[f"growth_{m}"] = torch.tensor(self.growth[m])
        out["loss"] = loss
        return out

    @torch.no_grad()
    def on_after_backward(self, model: MultimodalModel) -> None:
        """Accumulate the information amounts, then regulate the dominant encoder if its window
        is open."""
        for i, m in enumerate(self.state.modalities):
            self.state.current[i] += encoder_information(model.encoders[m])
        for m, beta in self.coefficients.items():
            if beta <= 0 or self.growth[m] <= self.cfg.threshold or m not in self.anchors:
                continue
            regulate_(list(model.encoders[m].parameters()), self.anchors[m], beta)


def build_inforeg(ctx: MethodContext) -> InfoReg:
    """InfoReg for one stage (the fused model is trained as is; the state holds the traces)."""
    if len(ctx.data.modalities) < 2:
        raise UMTError(f"InfoReg needs two or more modalities; the data has {ctx.data.modalities}")
    cfg: InfoRegConfig = ctx.settings
    if cfg.window < 1:
        raise UMTError(f"inforeg.window: expected at least 1 epoch, got {cfg.window}")
    return InfoReg(InfoRegState(ctx.model.modalities, cfg.window), cfg)
