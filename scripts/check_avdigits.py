"""Does ``avdigits`` show modality failure? A plain-PyTorch check, independent of the engine.

Trains, per seed, three small CNN models on the data set: audio alone, vision alone, and both
(late fusion: the two encoders' features concatenated, one linear head), each for ``--epochs``
epochs with Adam (lr 1e-3, batch 64), keeping the epoch with the best validation accuracy. Then
fits a linear probe (logistic regression, C chosen on val) on each frozen encoder's features.
Modality failure: the joint model's visual encoder probes worse than the visual-only encoder.

    PYTHONPATH=src python scripts/check_avdigits.py --seeds 0 1 2            # the shipped file
    PYTHONPATH=src python scripts/check_avdigits.py --file other.npz --epochs 20

Single-threaded; about 2-3 minutes per seed on one CPU core.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from torch import nn

from umt.data import ArrayDataset, Batch, DataBundle
from umt.data.avdigits import load_avdigits, read_avdigits

FEATURES = 64


def encoder() -> nn.Module:
    """Three 3x3 conv blocks (16, 32, 64 channels, BatchNorm, ReLU), two max-pools, global pool."""
    layers: list[nn.Module] = []
    for i, (cin, cout) in enumerate(((1, 16), (16, 32), (32, FEATURES))):
        layers += [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]
        if i < 2:
            layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())  # (B, 64)


class LateFusion(nn.Module):
    """One encoder per modality, features concatenated, a linear head."""

    def __init__(self, modalities: list[str]) -> None:
        super().__init__()
        self.modalities = modalities
        self.encoders = nn.ModuleDict({m: encoder() for m in modalities})
        self.head = nn.Linear(FEATURES * len(modalities), 10)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.head(torch.cat([self.encoders[m](batch[m]) for m in self.modalities], 1))


def batches(ds: ArrayDataset, size: int, order: np.ndarray | None = None) -> Iterator[Batch]:
    """Batches of ``size`` in ``order`` (default: as stored)."""
    order = np.arange(len(ds)) if order is None else order
    for i in range(0, len(ds), size):
        yield ds[order[i : i + size].tolist()]


@torch.no_grad()
def accuracy(model: LateFusion, ds: ArrayDataset) -> float:
    model.eval()
    hits = sum(int((model(b).argmax(1) == b["label"]).sum()) for b in batches(ds, 512))
    return hits / len(ds)


def train(data: DataBundle, modalities: list[str], epochs: int, seed: int) -> LateFusion:
    """Train; return the model at the epoch of best validation accuracy."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = LateFusion(modalities)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    best, state = -1.0, model.state_dict()
    for _ in range(epochs):
        model.train()
        for b in batches(data.train, 64, rng.permutation(len(data.train))):
            loss = nn.functional.cross_entropy(model(b), b["label"])
            opt.zero_grad()
            loss.backward()
            opt.step()
        val = accuracy(model, data.val)
        if val > best:
            best, state = val, {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(state)
    return model


@torch.no_grad()
def probe(model: LateFusion, modality: str, data: DataBundle) -> tuple[float, float]:
    """Linear probe of one frozen encoder: (val, test) accuracy, C picked on val."""
    enc = model.encoders[modality].eval()
    feats = {
        s: torch.cat([enc(b[modality]) for b in batches(data.split(s), 512)]).numpy()
        for s in ("train", "val", "test")
    }
    scaler = StandardScaler().fit(feats["train"])
    x = {s: scaler.transform(f) for s, f in feats.items()}
    y = {s: data.split(s).labels for s in feats}
    fits = [
        LogisticRegression(C=c, max_iter=2000).fit(x["train"], y["train"])
        for c in (0.01, 0.1, 1.0, 10.0)
    ]
    best = max(fits, key=lambda clf: clf.score(x["val"], y["val"]))
    return best.score(x["val"], y["val"]), best.score(x["test"], y["test"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", type=Path, help="an avdigits .npz (default: the shipped one)")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = read_avdigits(args.file) if args.file else load_avdigits()
    rows: dict[str, list[tuple[float, float]]] = {}
    for seed in args.seeds:
        start = time.perf_counter()
        for name, mods in (("audio", ["audio"]), ("visual", ["visual"]), ("joint", ["audio", "visual"])):  # fmt: skip
            model = train(data, mods, args.epochs, seed)
            rows.setdefault(f"{name} model", []).append(
                (accuracy(model, data.val), accuracy(model, data.test))
            )
            for m in mods:
                rows.setdefault(f"probe {m} encoder of {name}", []).append(probe(model, m, data))
        print(f"seed {seed}: {time.perf_counter() - start:.0f} s", flush=True)
    print(f"\n{'':34s} {'val':>14s} {'test':>14s}   ({len(args.seeds)} seeds, mean ± std)")
    for name, vals in rows.items():
        v = np.array(vals) * 100
        cells = [f"{v[:, i].mean():6.1f} ± {v[:, i].std():4.1f}" for i in (0, 1)]
        print(f"{name:34s} {cells[0]:>14s} {cells[1]:>14s}")


if __name__ == "__main__":
    main()
