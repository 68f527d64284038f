"""``python -m benchmarks.check_sets [OUT] [--set k=v ...]``: the default study on data sets it was
never tuned on (``scripts/make_check_sets.py``), against a plain PyTorch baseline.

For each set: the default study (1 seed, ``train.threads=1``, plus any ``--set``), then each
teacher's test accuracy against the linear probe on its own features (within 3 points, or the
study flagged it), and the fused models against :func:`baseline`: small per-modality MLPs/CNNs,
concatenated, trained with Adam for 60 epochs, the best val epoch kept.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "scripts")]

from make_check_sets import make_check_sets  # noqa: E402

from umt.study import load_config, run_study  # noqa: E402


def _encoder(shape: tuple[int, ...]) -> nn.Module:
    if len(shape) == 1:
        return nn.Sequential(nn.Linear(shape[0], 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU())
    return nn.Sequential(
        nn.Conv2d(shape[0], 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
    )  # fmt: skip


def baseline(root: Path, epochs: int = 60, seed: int = 0) -> float:
    """Plain PyTorch: one small encoder per modality, concatenated, a linear head; Adam lr 1e-3,
    batch 64; the test accuracy of the best val epoch."""
    torch.manual_seed(seed)
    mods = sorted(p.stem for p in (root / "train").glob("*.npy") if p.stem != "labels")

    def load(split: str) -> tuple[list[torch.Tensor], torch.Tensor]:
        xs = [torch.from_numpy(np.load(root / split / f"{m}.npy")) for m in mods]
        return xs, torch.from_numpy(np.load(root / split / "labels.npy"))

    (xtr, ytr), (xva, yva), (xte, yte) = load("train"), load("val"), load("test")
    encs = nn.ModuleList(_encoder(tuple(x.shape[1:])) for x in xtr)
    head = nn.Linear(64 * len(mods), int(ytr.max()) + 1)
    params = [*encs.parameters(), *head.parameters()]
    opt = torch.optim.Adam(params, lr=1e-3)

    def logits(xs: list[torch.Tensor]) -> torch.Tensor:
        return head(torch.cat([e(x) for e, x in zip(encs, xs, strict=True)], 1))

    def acc(xs: list[torch.Tensor], y: torch.Tensor) -> float:
        with torch.no_grad():
            return float((logits(xs).argmax(1) == y).float().mean())

    best_val, best_test = -1.0, 0.0
    for _ in range(epochs):
        for idx in torch.randperm(len(ytr)).split(64):
            loss = nn.functional.cross_entropy(logits([x[idx] for x in xtr]), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        val = acc(xva, yva)
        if val > best_val:
            best_val, best_test = val, acc(xte, yte)
    return best_test


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv and not argv[0].startswith("--") else Path("check_runs")
    extra = [a for i, a in enumerate(argv) if i > 0 and argv[i - 1] == "--set"]
    torch.set_num_threads(1)
    for root in make_check_sets(out / "data"):
        start = time.perf_counter()
        overrides = ["seeds=[0]", "train.threads=1", "train.progress=false", *extra]
        cfg = load_config(overrides=[*overrides, f"name={root.name}", "data.name=folder",
                                     f"data.root={root}"])  # fmt: skip
        s = run_study(cfg, out / "runs", log=lambda _: None).summary
        study_s = time.perf_counter() - start
        print(f"== {root.name}: {s['data']['sizes']}, study {study_s:.0f} s")
        for m in s["data"]["modalities"]:
            entry = s["methods"][f"teacher-{m}"]
            test, probe = entry["test_acc"]["mean"], s["probes"][m]["teacher"]["mean"]
            flagged = any(f.startswith("under-trained") for f in entry["flags"])
            verdict = "ok" if test >= probe - 0.03 else ("FLAGGED" if flagged else "MISSED")
            print(f"  teacher {m}: test {100 * test:.1f} vs probe {100 * probe:.1f}  {verdict}")
            for flag in entry["flags"]:
                print(f"    flag: {flag}")
        start = time.perf_counter()
        base = baseline(root)
        print(f"  baseline (plain PyTorch, 60 epochs): test {100 * base:.1f} "
              f"({time.perf_counter() - start:.0f} s)")  # fmt: skip
        for stage in ("joint", "umt", "ume"):
            if stage in s["methods"]:
                test = s["methods"][stage]["test_acc"]["mean"]
                print(f"  {stage}: test {100 * test:.1f} ({100 * (test - base):+.1f} vs baseline)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
