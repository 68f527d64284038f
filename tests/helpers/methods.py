"""Tiny models and data for the methods' unit tests (``tests/methods/``), built from fixed seeds.

Two set-ups. The UMT set-up (UMT, UME, joint training, G2D): modalities ``a`` and ``b``, one
teacher per modality with a linear head, and a fused student. The peers' set-up (the balancing
methods, which train no teachers): MLP-encoder concat-fusion models over :data:`DIMS`'
modalities, and one whose ``a`` encoder dominates.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from helpers import random_batch
from umt.data.base import ArrayDataset, DataBundle
from umt.models import EncoderConfig, ModelConfig, MultimodalModel, build_model
from umt.models.encoders import MLPEncoder
from umt.models.fusion import build_fusion


def plain_softmax(xs: list[float]) -> list[float]:
    """The softmax in plain Python: the reference for hand-computed numbers."""
    z = sum(math.exp(x) for x in xs)
    return [math.exp(x) / z for x in xs]


# -- the UMT set-up ------------------------------------------------------------------------------

SHAPES = {"a": (5,), "b": (4,)}
CFG = ModelConfig(EncoderConfig(feature_dim=6, hidden=8, depth=2), head_hidden=8)


def umt_batch(n: int = 8, seed: int = 0) -> dict[str, torch.Tensor]:
    """A batch of the :data:`SHAPES` modalities, labels in 0-2."""
    return random_batch(SHAPES, n, seed)


def umt_teachers() -> dict[str, MultimodalModel]:
    """One teacher per modality (its encoder and a linear head), in eval mode."""
    torch.manual_seed(1)
    return {m: build_model(CFG, {m: s}, 3, linear_head=True).eval() for m, s in SHAPES.items()}


def umt_student() -> MultimodalModel:
    """The fused student over both modalities."""
    torch.manual_seed(2)
    return build_model(CFG, SHAPES, 3)


def umt_bundle(n: int = 24) -> DataBundle:
    """Noise of the :data:`SHAPES` modalities, labels in 0-2; train, val and test alike."""
    rng = np.random.default_rng(0)
    ds = ArrayDataset(
        {m: rng.normal(size=(n, *s)) for m, s in SHAPES.items()}, rng.integers(0, 3, n)
    )
    return DataBundle("tiny", ds, ds, ds, num_classes=3)


# -- the peers' set-up ---------------------------------------------------------------------------

#: Five peers (balancing methods that train no teachers), each registered and run in a tiny study.
PEERS = ("gblend", "ogm_ge", "mmpareto", "mla", "pmr")

#: Input sizes of the tiny vector modalities of the peers' unit tests.
DIMS = {"a": 5, "v": 6, "t": 4}


def tiny_fusion_model(
    modalities: tuple[str, ...] = ("a", "v"), feature_dim: int = 4
) -> MultimodalModel:
    """A seeded MLP-encoder concat-fusion model over :data:`DIMS`' modalities, 3 classes."""
    torch.manual_seed(0)
    encoders = nn.ModuleDict(
        {m: MLPEncoder((DIMS[m],), feature_dim=feature_dim, hidden=8) for m in modalities}
    )
    fusion = build_fusion("concat", {m: feature_dim for m in modalities})
    return MultimodalModel(encoders, fusion, nn.Linear(feature_dim * len(modalities), 3))


def peer_batch(
    modalities: tuple[str, ...] = ("a", "v"), n: int = 16, *, lead: float = 0.0
) -> dict[str, torch.Tensor]:
    """A batch of :data:`DIMS`' ``modalities``, labels in 0-2, the first modality shifted by
    ``lead`` times the label (it carries the label)."""
    batch = random_batch({m: (DIMS[m],) for m in modalities}, n, seed=1)
    if lead:
        batch[modalities[0]] = batch[modalities[0]] + lead * batch["label"][:, None]
    return batch


def peer_bundle(
    modalities: tuple[str, ...] = ("a", "v"), n: int = 60, *, lead: float = 0.0
) -> DataBundle:
    """Noise of :data:`DIMS`' ``modalities``, labels in 0-2 (drawn first), the first modality
    shifted by ``lead`` times the label (it carries the label); train, val and test alike."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, n)
    arrays = {m: rng.normal(size=(n, DIMS[m])) for m in modalities}
    if lead:
        arrays[modalities[0]] = arrays[modalities[0]] + lead * labels[:, None]
    ds = ArrayDataset(arrays, labels)
    return DataBundle("tiny", ds, ds, ds, num_classes=3)


def dominated_model() -> tuple[MultimodalModel, dict[str, torch.Tensor]]:
    """A concat model whose ``a`` encoder dominates: ``a`` carries the label, ``v`` is noise, and
    20 steps of joint training (Adam) let the fused head lean on ``a``."""
    g = torch.Generator().manual_seed(3)
    y = torch.arange(48) % 3
    batch = {
        "a": F.one_hot(y, 3).float().repeat(1, 2)[:, :5] * 3 + torch.randn(48, 5, generator=g),
        "v": torch.randn(48, 6, generator=g),
        "label": y,
    }
    model = tiny_fusion_model()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(20):
        opt.zero_grad()
        F.cross_entropy(model(batch), y).backward()
        opt.step()
    return model, batch


def stepped(
    method: object, model: MultimodalModel, batch: dict[str, torch.Tensor], optimizer: str
) -> MultimodalModel:
    """A copy of ``model`` after one training step of ``method`` (``model`` is unchanged), the
    way the engine runs it: step, backward, the method's ``on_after_backward``, optimiser step."""
    model = copy.deepcopy(model).train()
    opt: torch.optim.Optimizer
    if optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=0.01)
    method.step(model, batch)["loss"].backward()  # type: ignore[attr-defined]
    if hasattr(method, "on_after_backward"):
        method.on_after_backward(model)
    opt.step()
    return model


def step_update(
    method: object, model: MultimodalModel, batch: dict[str, torch.Tensor], optimizer: str
) -> dict[str, torch.Tensor]:
    """Each parameter's change in one training step of ``method`` from ``model``'s state."""
    after = dict(stepped(method, model, batch, optimizer).named_parameters())
    return {n: after[n].detach() - p.detach() for n, p in model.named_parameters()}


def encoder_weights(update: dict[str, torch.Tensor], m: str) -> torch.Tensor:
    """Modality ``m``'s encoder weight tensors' changes, flattened into one vector."""
    return torch.cat(
        [d.flatten() for n, d in update.items() if n.startswith(f"encoders.{m}.") and d.ndim >= 2]
    )
