"""``python -m benchmarks.yardstick ROOT [--seeds 0 1 2]``: what a plain PyTorch script gets on a
umt-folder data set, the yardstick a study's defaults must meet (issue 26).

One fixed recipe, no search: per modality a small encoder (an MLP for vectors and series; for
``(C, H, W)`` images, and ``(C, T)`` series, also a small CNN: the better of the two on
validation is the yardstick), the features concatenated, a linear head; Adam (lr 1e-3, weight
decay 1e-4), batch 64, 60 epochs, the test accuracy of the best validation epoch; mean over
seeds. The uni-modal models (one encoder and a linear head) are trained the same way.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

EPOCHS, LR, WEIGHT_DECAY, BATCH = 60, 1e-3, 1e-4, 64


def mlp(shape: tuple[int, ...], depth: int = 1, batch_norm: bool = False) -> nn.Module:
    """``depth`` hidden layers of 128 (each with BatchNorm where ``batch_norm``: umt's own MLP
    encoder is ``depth=2, batch_norm=True``), then 64 features."""
    layers: list[nn.Module] = [nn.Flatten()]
    width = int(np.prod(shape))
    for _ in range(depth):
        layers += [nn.Linear(width, 128), *([nn.BatchNorm1d(128)] if batch_norm else []), nn.ReLU()]
        width = 128
    return nn.Sequential(*layers, nn.Linear(width, 64), nn.ReLU())


def cnn(shape: tuple[int, ...]) -> nn.Module:
    conv, pool = (nn.Conv2d, nn.MaxPool2d) if len(shape) == 3 else (nn.Conv1d, nn.MaxPool1d)
    gap = nn.AdaptiveAvgPool2d(1) if len(shape) == 3 else nn.AdaptiveAvgPool1d(1)
    return nn.Sequential(
        conv(shape[0], 32, 3, padding=1), nn.ReLU(), pool(2),
        conv(32, 64, 3, padding=1), nn.ReLU(), gap, nn.Flatten(),
    )  # fmt: skip


def _load(root: Path, split: str, mods: list[str]) -> tuple[list[torch.Tensor], torch.Tensor]:
    xs = [torch.from_numpy(np.load(root / split / f"{m}.npy")).float() for m in mods]
    return xs, torch.from_numpy(np.load(root / split / "labels.npy")).long()


def fit(
    root: Path, mods: list[str], kinds: list[str], seed: int, **mlp_args: Any
) -> tuple[float, float]:
    """(best val accuracy, test accuracy at that epoch) of the plain script on ``mods``."""
    torch.manual_seed(seed)
    (xtr, ytr), (xva, yva), (xte, yte) = (_load(root, s, mods) for s in ("train", "val", "test"))
    k = json.loads((root / "meta.json").read_text())["num_classes"]
    encs = nn.ModuleList(
        cnn(tuple(x.shape[1:])) if kind == "cnn" else mlp(tuple(x.shape[1:]), **mlp_args)
        for x, kind in zip(xtr, kinds, strict=True)
    )
    head = nn.Linear(64 * len(mods), k)
    params = [*encs.parameters(), *head.parameters()]
    opt = torch.optim.Adam(params, lr=LR, weight_decay=WEIGHT_DECAY)

    def logits(xs: list[torch.Tensor]) -> torch.Tensor:
        return head(torch.cat([e(x) for e, x in zip(encs, xs, strict=True)], 1))

    def acc(xs: list[torch.Tensor], y: torch.Tensor) -> float:
        encs.eval()
        with torch.no_grad():
            out = float((logits(xs).argmax(1) == y).float().mean())
        encs.train()
        return out

    best_val, best_test = -1.0, 0.0
    for _ in range(EPOCHS):
        for idx in torch.randperm(len(ytr)).split(BATCH):
            loss = nn.functional.cross_entropy(logits([x[idx] for x in xtr]), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        val = acc(xva, yva)
        if val > best_val:
            best_val, best_test = val, acc(xte, yte)
    return best_val, best_test


def _kinds(root: Path, mods: list[str]) -> list[list[str]]:
    """The encoder choices: all MLPs, and (where a modality is an image or a series) CNNs there."""
    meta = json.loads((root / "meta.json").read_text())["modalities"]
    spatial = [len(meta[m]["shape"]) >= 2 for m in mods]
    choices = [["mlp"] * len(mods)]
    if any(spatial):
        choices.append(["cnn" if s else "mlp" for s in spatial])
    return choices


def yardstick(root: Path, mods: list[str], seeds: list[int], **mlp_args: Any) -> dict[str, float]:
    """The better recipe (by mean val) of :func:`_kinds` over ``seeds``: its mean val and test
    accuracy, the test std over seeds, and which encoders it used."""
    best: dict[str, float] | None = None
    for kinds in _kinds(root, mods):
        runs = [fit(root, mods, kinds, s, **mlp_args) for s in seeds]
        entry = {
            "val": statistics.mean(v for v, _ in runs),
            "test": statistics.mean(t for _, t in runs),
            "test_std": statistics.stdev([t for _, t in runs]) if len(runs) > 1 else 0.0,
            "kinds": ",".join(kinds),  # type: ignore[dict-item]
        }
        if best is None or entry["val"] > best["val"]:
            best = entry
    assert best is not None
    return best


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("root", type=Path)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--mlp-depth", type=int, default=1, help="hidden layers of the MLPs (1)")
    p.add_argument("--batch-norm", action="store_true", help="BatchNorm in the MLPs (as umt's)")
    p.add_argument("--fused-only", action="store_true", help="not the uni-modal models")
    args = p.parse_args(argv)
    kw = {"depth": args.mlp_depth, "batch_norm": args.batch_norm}
    torch.set_num_threads(1)
    meta = json.loads((args.root / "meta.json").read_text())
    mods = list(meta["modalities"])
    out = {"fused": yardstick(args.root, mods, args.seeds, **kw)}
    for m in [] if args.fused_only else mods:
        out[m] = yardstick(args.root, [m], args.seeds, **kw)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
