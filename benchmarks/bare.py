"""The plain-PyTorch counterpart of ``umt.engine.fit``: the yardstick for the engine's overhead.

It does what ``fit`` does for one stage, without Lightning: the same loaders (``make_loader``,
same seed and batch sizes), the same optimiser, the method's own ``step``, one validation pass
per epoch, and the best epoch's weights kept (in memory: no files, no logs, no checkpoints).
"""

from __future__ import annotations

import time

import torch

from umt.data.base import Batch, DataBundle, ShardedBatchSampler, make_loader
from umt.engine import TrainConfig, eval_device
from umt.methods.base import Method
from umt.models.multimodal import MultimodalModel


def bare_fit(
    model: MultimodalModel, method: Method, data: DataBundle, cfg: TrainConfig, *, seed: int
) -> float:
    """Train ``model`` with ``method`` for ``cfg.epochs``; returns the best val accuracy."""
    device = eval_device(cfg)  # fit's accelerator="auto": a GPU when there is one
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(cfg.deterministic)  # as the Trainer sets it
    model.to(device)
    method.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    needs_index = getattr(method, "needs_index", False)
    train_set = data.train.indexed() if needs_index else data.train
    train = make_loader(
        train_set, batch_size=cfg.batch_size, shuffle=True, seed=seed, num_workers=cfg.num_workers
    )
    val = make_loader(data.val, batch_size=cfg.batch_size * 4, shuffle=False)
    sampler = train.sampler
    assert isinstance(sampler, ShardedBatchSampler)
    best_acc, best_state = -1.0, {}
    for epoch in range(cfg.epochs):
        sampler.set_epoch(epoch)  # the per-epoch shuffle, as the Trainer does it
        model.train()
        for batch in train:
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            loss = method.step(model, batch)["loss"]
            if not torch.isfinite(loss):  # fit checks too (and raises DivergenceError)
                raise FloatingPointError(f"loss {loss.item()} at epoch {epoch}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        model.eval()
        correct = torch.zeros((), dtype=torch.long, device=device)
        with torch.no_grad():
            for batch in val:
                batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
                correct += (model(batch).argmax(1) == batch["label"]).sum()
        acc = int(correct) / len(data.val)
        if acc > best_acc:
            best_acc = acc
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    return best_acc


def train_step_rate(
    model: MultimodalModel, method: Method, batches: list[Batch], *, device: torch.device
) -> float:
    """Samples per second of the training step alone (forward, backward, Adam) over ``batches``,
    already in memory: the rate a loader has to keep up with."""
    model.to(device).train()
    method.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    batches = [{k: v.to(device) for k, v in b.items()} for b in batches]
    start = time.perf_counter()
    for batch in batches:
        loss = method.step(model, batch)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return sum(len(b["label"]) for b in batches) / (time.perf_counter() - start)
