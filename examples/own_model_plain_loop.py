"""Your own model, data and PyTorch loop: diagnose modality failure, then fix it with UMTLoss.

A two-branch model (encoders ``aud`` and ``vis``) on generated data where audio is easy (the
class is its one-hot, plus noise) and visual is hard (the class is the XOR of coordinate signs:
learnable, but only by a non-linear encoder). Trained jointly, the fused loss is met by audio and
the visual encoder stays lazy; ``umt.yours.diagnose`` finds it, ``umt.UMTLoss`` fixes it.

    python examples/own_model_plain_loop.py      # a few seconds on one CPU core
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

import umt
from umt.yours.hooks import capture_features

ENCODERS = {"audio": "aud", "visual": "vis"}  # modality -> the model's submodule
CLASSES = 4


class PairDataset(Dataset[dict[str, Any]]):
    """``n`` generated samples ``{"audio": (8,), "visual": (8,), "label": int}``."""

    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        y = torch.randint(0, CLASSES, (n,), generator=g)
        self.label = y
        self.audio = torch.randn(n, 8, generator=g)
        self.audio[:, :CLASSES] += 3.0 * F.one_hot(y, CLASSES)  # easy: linear in the input
        v = torch.randn(n, 8, generator=g)
        for bit, (i, j) in enumerate([(0, 1), (2, 3)]):  # hard: sign(v_i * v_j) is a label bit
            sign = 2.0 * ((y >> bit) & 1) - 1
            v[:, j] = v[:, j].abs() * torch.sign(v[:, i]) * sign
        self.visual = v

    def __len__(self) -> int:
        return len(self.label)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"audio": self.audio[i], "visual": self.visual[i], "label": int(self.label[i])}


class TwoBranch(nn.Module):
    """The user's fusion model: one MLP per modality, concatenated, a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.aud = nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, 16), nn.ReLU())
        self.vis = nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, 16), nn.ReLU())
        self.head = nn.Linear(32, CLASSES)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.head(torch.cat([self.aud(batch["audio"]), self.vis(batch["visual"])], 1))


def train(model: nn.Module, loader: DataLoader[Any], epochs: int, umt_loss: Any = None) -> None:
    """The user's own loop; UMT adds the two marked lines."""
    params = [*model.parameters(), *(umt_loss.parameters() if umt_loss else [])]
    opt = torch.optim.Adam(params, lr=1e-3)
    with capture_features(model, ENCODERS) as feats:  # UMT: the encoders' outputs, by hooks
        for _ in range(epochs):
            for batch in loader:
                loss = F.cross_entropy(model(batch), batch["label"])
                if umt_loss is not None:
                    loss = loss + umt_loss(batch, feats)["loss"]  # UMT: the distillation term
                opt.zero_grad()
                loss.backward()
                opt.step()


def main(epochs: int = 10) -> dict[str, umt.Diagnosis]:
    torch.manual_seed(0)
    train_set, val_set, test_set = PairDataset(1000, 0), PairDataset(300, 1), PairDataset(300, 2)
    loader = DataLoader(
        train_set, batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(0)
    )
    joint = TwoBranch()
    train(joint, loader, epochs)
    before = umt.yours.diagnose(joint, train_set, val_set, test_set, encoders=ENCODERS)
    print("Naive joint training:\n" + before.table())

    # The teachers diagnose trained (a re-initialised copy of each encoder, trained alone). The
    # defaults: distil the modalities found failing, their encoders started from the teachers
    # (the paper's setting, every modality from scratch: umt.UMTLoss(before.teachers, weights=5.0)).
    student = TwoBranch()
    umt_loss = umt.UMTLoss.from_diagnosis(before, student, ENCODERS)
    train(student, loader, epochs, umt_loss)
    after = umt.yours.diagnose(
        student, train_set, val_set, test_set, encoders=ENCODERS, teachers=before.teachers
    )
    print("\nWith UMTLoss:\n" + after.table())
    for m in ENCODERS:
        print(
            f"{m}: gap to the teacher {100 * before[m].gap:+.1f} -> {100 * after[m].gap:+.1f} pts"
        )
    return {"before": before, "after": after}


if __name__ == "__main__":
    main()
