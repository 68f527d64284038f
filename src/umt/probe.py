"""Linear evaluation of a frozen encoder: how much of the task its features make linearly visible.

Du et al. measure modality failure this way: freeze an encoder, train only a linear classifier on
its features, report test accuracy; compare the jointly trained encoder with the uni-modal one.

The classifier is a multinomial logistic regression on standardised features, fitted full-batch
with L-BFGS for each L2 strength of a small grid; the strength is chosen on the validation split
and the test split is read once, for the chosen one.

Segmentation's per-position probe of feature maps is the same classifier applied at every
position (``umt.tasks.seg_probe.linear_probe_maps``); ``umt.probe(encoder, data, modality)``
(``umt.tasks.probe``) runs the probe of the data set's task.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from umt.data.base import ArrayDataset, make_loader
from umt.errors import UMTError


@dataclass(frozen=True)
class ProbeConfig:
    """Linear probe settings.

    Attributes:
        l2: L2 strengths tried; the one with the best validation accuracy is kept.
        max_iter: L-BFGS iterations per fit.
        batch_size: batch size of feature extraction.
    """

    l2: tuple[float, ...] = (1e-4, 1e-3, 1e-2)
    max_iter: int = 100
    batch_size: int = 512

    def __post_init__(self) -> None:
        if not self.l2 or any(not (v >= 0) for v in self.l2):  # `not >=` also catches NaN
            raise UMTError(
                f"probe.l2: expected a non-empty list of strengths >= 0, got {list(self.l2)}"
            )
        if self.max_iter < 1:
            raise UMTError(f"probe.max_iter: expected at least 1, got {self.max_iter}")
        if self.batch_size < 1:
            raise UMTError(f"probe.batch_size: expected at least 1, got {self.batch_size}")


DEFAULT_PROBE = ProbeConfig()


@dataclass(frozen=True)
class ProbeResult:
    """A probe's scores, its chosen L2, and the classifier itself (``head``: a Linear on the raw
    features, the standardisation folded in; it can replace a model's linear head)."""

    val_acc: float
    test_acc: float
    l2: float
    feature_dim: int
    head: nn.Linear | None = field(default=None, compare=False, repr=False)
    val_correct: torch.Tensor | None = field(default=None, compare=False, repr=False)  # (N_val,)

    def as_dict(self) -> dict[str, float]:
        return {"val_acc": self.val_acc, "test_acc": self.test_acc, "l2": self.l2}


@torch.no_grad()
def extract_features(
    encoder: nn.Module,
    dataset: ArrayDataset,
    modality: str,
    *,
    batch_size: int = 512,
    device: torch.device | str = "cpu",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Features ``(N, D)`` of the frozen encoder (eval mode) and labels ``(N,)``, on the CPU."""
    x, y = encode_split(encoder, dataset, modality, batch_size=batch_size, device=device)
    return x.flatten(1), y


def encode_split(
    encoder: nn.Module,
    dataset: ArrayDataset,
    modality: str,
    *,
    batch_size: int,
    device: torch.device | str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The frozen encoder's outputs (eval mode) over ``dataset`` and its labels, on the CPU."""
    was_training = encoder.training
    encoder.eval().to(device)
    outs, labels = [], []
    with torch.no_grad():
        for batch in make_loader(dataset, batch_size=batch_size, shuffle=False, shard=False):
            outs.append(encoder(batch[modality].to(device)).float().cpu())
            labels.append(batch["label"])
    encoder.train(was_training)
    return torch.cat(outs), torch.cat(labels)


def encode_model_split(
    model: nn.Module,
    dataset: ArrayDataset,
    modality: str,
    *,
    batch_size: int,
    device: torch.device | str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Branch ``modality``'s last features as the model's own forward pass computes them
    (``model.forward_features(batch)[1][modality][-1]``, the
    :class:`~umt.models.base.FusionModel` contract; eval mode) over ``dataset``, and its labels,
    on the CPU.

    For a classification model this is ``model.encoders[modality](x)``; for a fused segmentation
    model whose primary branch receives the fused map (ESANet), it is that branch's map as the
    fused model runs it, not the branch run alone.

    Example:
        >>> import numpy as np
        >>> from umt.models.multimodal import ModelConfig, build_model
        >>> model = build_model(ModelConfig(), {"a": (3,), "b": (2,)}, num_classes=2)
        >>> ds = ArrayDataset({"a": np.ones((5, 3)), "b": np.zeros((5, 2))}, np.zeros(5, dtype=int))
        >>> x, _ = encode_model_split(model, ds, "a", batch_size=5, device="cpu")
        >>> bool(torch.equal(x, model.eval().encoders["a"](torch.ones(5, 3))))
        True
    """
    encoders = model.encoders
    assert isinstance(encoders, nn.ModuleDict)  # the FusionModel contract
    if modality not in encoders:
        raise UMTError(f"the model has no encoder {modality!r}; it has {list(encoders)}")
    was_training = model.training
    model.eval().to(device)
    outs, labels = [], []
    with torch.no_grad():
        for batch in make_loader(dataset, batch_size=batch_size, shuffle=False, shard=False):
            inputs = {m: batch[m].to(device) for m in encoders}  # the model's modalities only
            features = model.forward_features(inputs)[1]  # type: ignore[operator]
            outs.append(features[modality][-1].float().cpu())
            labels.append(batch["label"])
    model.train(was_training)
    return torch.cat(outs), torch.cat(labels)


def fit_linear(
    x: torch.Tensor, y: torch.Tensor, num_classes: int, *, l2: float, max_iter: int = 100
) -> nn.Linear:
    """Multinomial logistic regression ``(N, D) -> K`` by full-batch L-BFGS (deterministic)."""
    torch.manual_seed(0)
    clf = nn.Linear(x.shape[1], num_classes)
    nn.init.zeros_(clf.weight)
    nn.init.zeros_(clf.bias)
    opt = torch.optim.LBFGS(clf.parameters(), max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(clf(x), y) + l2 * clf.weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)  # type: ignore[arg-type]
    return clf


def linear_probe(
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    num_classes: int,
    cfg: ProbeConfig = ProbeConfig(),
) -> ProbeResult:
    """Fit on ``train`` features, choose L2 on ``val``, report ``test`` once.

    Example:
        >>> x = torch.tensor([[0.0], [1.0], [2.0], [3.0]]); y = torch.tensor([0, 0, 1, 1])
        >>> linear_probe((x, y), (x, y), (x, y), 2).test_acc
        1.0
    """
    mean, std = train[0].mean(0), train[0].std(0).clamp_min(1e-6)

    def norm(x: torch.Tensor) -> torch.Tensor:
        return (x - mean) / std

    best: tuple[float, float, nn.Linear, torch.Tensor] | None = None
    for l2 in cfg.l2:
        clf = fit_linear(norm(train[0]), train[1], num_classes, l2=l2, max_iter=cfg.max_iter)
        with torch.no_grad():
            correct = clf(norm(val[0])).argmax(1) == val[1]
        acc = correct.float().mean().item()
        if best is None or acc > best[0]:
            best = (acc, l2, clf, correct)
    assert best is not None
    val_acc, l2, clf, val_correct = best
    with torch.no_grad():
        test_acc = (clf(norm(test[0])).argmax(1) == test[1]).float().mean().item()
        head = nn.Linear(train[0].shape[1], num_classes)  # clf((x - mean) / std), folded
        head.weight.copy_(clf.weight / std)
        head.bias.copy_(clf.bias - (clf.weight * mean / std).sum(1))
    d = train[0].shape[1]
    return ProbeResult(val_acc, test_acc, l2, feature_dim=d, head=head, val_correct=val_correct)
