"""``python -m benchmarks.user_loop [OUT] [--seeds 0 1 2] [--epochs 20]``: UMT in a user's own loop
(issue 26's example, built as a check): a small CNN on noisy handwritten digits with a quarter
blanked (the weak modality) and a noisy 6-dimensional class code (the strong one), a concat head,
Adam, 20 epochs; ``umt.diagnose`` on the jointly trained model, then a fresh student trained with
each candidate distillation through ``umt.UMTLoss``; the weak encoder's linear probe and the
fused test accuracy of each, over seeds.

Candidates: ``joint`` (no distillation), ``paper`` (``UMTLoss(teachers, weights=5)``, MSE, the
student from scratch), ``paper, from teachers`` (the same with every student encoder started
from its teacher's weights), ``cosine``, ``weight 1``, and ``default``
(``UMTLoss.from_diagnosis``: only failing modalities, started from their teachers). Last, over
the seeds where ``umt.diagnose`` called the weak encoder's failure: the probe gap and the share
of it the default closes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "scripts")]

from make_check_sets import _userloop  # noqa: E402

import umt  # noqa: E402
from umt.probe import linear_probe  # noqa: E402

ENCODERS = {"img": "img", "code": "code"}


class Split(Dataset):
    def __init__(self, root: Path, split: str) -> None:
        self.img = torch.from_numpy(np.load(root / split / "img.npy")).float()
        self.code = torch.from_numpy(np.load(root / split / "code.npy")).float()
        self.y = torch.from_numpy(np.load(root / split / "labels.npy")).long()

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"img": self.img[i], "code": self.code[i], "label": int(self.y[i])}


class TwoBranch(nn.Module):
    """A user's model: a small CNN for the image, an MLP for the code, concatenated."""

    def __init__(self) -> None:
        super().__init__()
        self.img = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )  # fmt: skip
        self.code = nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU())
        self.head = nn.Linear(64, 10)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.head(torch.cat([self.img(batch["img"]), self.code(batch["code"])], 1))


def train(model: nn.Module, data: Split, epochs: int, seed: int, umt_loss: Any = None) -> None:
    """The user's loop: Adam 1e-3, batch 64, ``epochs`` epochs (+ the distillation term)."""
    params = [*model.parameters(), *(umt_loss.parameters() if umt_loss is not None else [])]
    opt = torch.optim.Adam(params, lr=1e-3)
    g = torch.Generator().manual_seed(seed)
    hooks = umt.capture_features(model, ENCODERS) if umt_loss is not None else None
    feats = hooks.__enter__() if hooks is not None else None
    for _ in range(epochs):
        for idx in torch.randperm(len(data), generator=g).split(64):
            batch = {"img": data.img[idx], "code": data.code[idx], "label": data.y[idx]}
            loss = F.cross_entropy(model(batch), batch["label"])
            if umt_loss is not None:
                loss = loss + umt_loss(batch, feats)["loss"]
            opt.zero_grad()
            loss.backward()
            opt.step()
    if hooks is not None:
        hooks.__exit__(None, None, None)


@torch.no_grad()
def evaluate(model: nn.Module, splits: dict[str, Split]) -> dict[str, float]:
    """The fused test accuracy and the weak (img) encoder's linear probe."""
    model.eval()
    feats = {s: (model.img(d.img), d.y) for s, d in splits.items()}
    probe = linear_probe(feats["train"], feats["val"], feats["test"], 10)
    test = splits["test"]
    acc = float((model({"img": test.img, "code": test.code}).argmax(1) == test.y).float().mean())
    model.train()
    return {"probe_img": probe.test_acc, "fused": acc}


def run_seed(root: Path, seed: int, epochs: int) -> dict[str, dict[str, float]]:
    splits = {s: Split(root, s) for s in ("train", "val", "test")}
    torch.manual_seed(seed)
    joint = TwoBranch()
    train(joint, splits["train"], epochs, seed)
    out = {"joint": evaluate(joint, splits)}
    diag = umt.diagnose(
        joint, splits["train"], splits["val"], splits["test"], encoders=ENCODERS, progress=False,
        config=umt.DiagnoseConfig(seed=seed),
    )  # fmt: skip
    out["teacher"] = {"probe_img": diag["img"].teacher.test_acc, "fused": float("nan")}

    def from_teachers(student: nn.Module) -> umt.UMTLoss:  # every encoder, failing or not
        for m, name in ENCODERS.items():
            teacher = getattr(diag.teachers[m], "module", diag.teachers[m])
            student.get_submodule(name).load_state_dict(teacher.state_dict())
        return umt.UMTLoss(diag.teachers, weights=5.0)

    candidates = {
        "paper": lambda s: umt.UMTLoss(diag.teachers, weights=5.0),
        "paper, from teachers": from_teachers,
        "cosine": lambda s: umt.UMTLoss(diag.teachers, weights=5.0, kind="cosine"),
        "weight 1": lambda s: umt.UMTLoss(diag.teachers, weights=1.0),
        "default": lambda s: umt.UMTLoss.from_diagnosis(diag, s, ENCODERS),
    }
    for name, make in candidates.items():
        torch.manual_seed(seed + 1)
        student = TwoBranch()
        loss = make(student)
        train(student, splits["train"], epochs, seed, loss)
        out[name] = evaluate(student, splits)
    out["_failures"] = {
        "img": float("img" in diag.failures),
        "code": float("code" in diag.failures),
    }
    return out


def closure_where_called(runs: list[dict[str, dict[str, float]]]) -> dict[str, float] | None:
    """Over the seeds where ``umt.diagnose`` called the weak encoder's failure (the seeds where
    ``from_diagnosis`` distils it): the mean probe gap teacher − joint (points) and the share of
    it the default closes (default − joint over that gap, from the means); None where none."""
    called = [r for r in runs if r["_failures"]["img"]]
    if not called:
        return None
    gap = statistics.mean(r["teacher"]["probe_img"] - r["joint"]["probe_img"] for r in called)
    gain = statistics.mean(r["default"]["probe_img"] - r["joint"]["probe_img"] for r in called)
    return {"seeds": len(called), "gap": 100 * gap, "closed": 100 * gain / gap if gap else 0.0}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path, nargs="?", default=Path("check_runs/user_loop"))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--img-noise", type=float, default=0.3, help="the weak modality's noise")
    p.add_argument("--code-noise", type=float, default=0.7, help="the strong modality's noise")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    _userloop(args.out / "data", args.img_noise, args.code_noise)
    root = args.out / "data" / "userloop"
    runs = [run_seed(root, s, args.epochs) for s in args.seeds]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "user_loop_runs.json").write_text(json.dumps(runs, indent=1))
    rows = {}
    for name in runs[0]:
        if name.startswith("_"):
            continue
        row = {}
        for key in ("probe_img", "fused"):
            vals = [100 * r[name][key] for r in runs]
            if any(v != v for v in vals):  # NaN: the teacher has no fused score
                row[key] = (float("nan"), float("nan"))
                continue
            row[key] = (statistics.mean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0)
        rows[name] = row
        print(
            f"{name:10s} weak-encoder probe {row['probe_img'][0]:.1f} ± {row['probe_img'][1]:.1f}"
            f"   fused test {row['fused'][0]:.1f} ± {row['fused'][1]:.1f}"
        )
    print("diagnosed failing:", [r["_failures"] for r in runs])
    called = closure_where_called(runs)
    if called:
        print(
            f"where img's failure was called ({called['seeds']} of {len(runs)} seeds): gap "
            f"teacher − joint {called['gap']:.1f} points, the default closes {called['closed']:.0f} %"
        )
    summary = {"rows": rows, "runs": runs, "where_called": called}
    (args.out / "user_loop.json").write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
