"""The ten silent traps of issue 27, each reproduced as a user meets it: each now works or is
one clear error naming the fix. Every test here failed on the code before the fix (the new
names are imported inside the tests, after the trap itself is set up)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset, IterableDataset

import umt
from umt.errors import UMTError
from umt.probe import ProbeConfig
from umt.yours.hooks import capture_features

K = 3
FAST = umt.DiagnoseConfig(epochs=2, lr=1e-2, probe=ProbeConfig(l2=(1e-3,), max_iter=20))


class Pairs(Dataset[dict[str, Any]]):
    """``{"a": (4,), "b": (4,), "label": int}``; the class shows in both modalities."""

    def __init__(self, n: int, seed: int, label: Any = None) -> None:
        g = torch.Generator().manual_seed(seed)
        self.y = torch.randint(0, K, (n,), generator=g)
        self.a = torch.randn(n, 4, generator=g) + F.one_hot(self.y, 4) * 2.0
        self.b = torch.randn(n, 4, generator=g) + F.one_hot(self.y, 4) * 1.0
        self.label = label

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> dict[str, Any]:
        y = int(self.y[i]) if self.label is None else self.label(int(self.y[i]))
        return {"a": self.a[i], "b": self.b[i], "label": y}


class Two(nn.Module):
    def __init__(self, enc_a: nn.Module | None = None) -> None:
        super().__init__()
        self.ea = enc_a or nn.Sequential(nn.Linear(4, 8), nn.ReLU())
        self.eb = nn.Sequential(nn.Linear(4, 8), nn.ReLU())
        self.head = nn.Linear(16, K)
        self.skip_b = False

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        fa = self.ea(batch["a"])
        fb = torch.zeros_like(fa) if self.skip_b else self.eb(batch["b"])
        return self.head(torch.cat([fa, fb], 1))


ENC = {"a": "ea", "b": "eb"}


def splits(n: tuple[int, int, int] = (60, 30, 30), **kw: Any) -> list[Pairs]:
    return [Pairs(size, seed, **kw) for seed, size in enumerate(n)]


def teachers() -> dict[str, nn.Module]:
    torch.manual_seed(3)
    return {m: nn.Sequential(nn.Linear(4, 8), nn.Tanh()) for m in "ab"}


def batch(n: int = 5, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"a": torch.randn(n, 4, generator=g), "b": torch.randn(n, 4, generator=g)}


# 1. an optimiser built before UMTLoss(student_dims=...): the projector never trains
def test_1_a_projector_left_out_of_the_optimiser_is_an_error_at_the_next_step() -> None:
    model = Two()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)  # built first: no projector in it
    loss_fn = umt.UMTLoss({"a": nn.Linear(4, 4)}, student_dims={"a": 8})
    with capture_features(model, {"a": "ea"}) as feats:
        x = batch()
        model(x)
        loss_fn(x, feats)["loss"].backward()
        opt.step()
        x = batch(seed=1)
        model(x)
        with pytest.raises(UMTError, match=r"optimiser stepped without the projectors.*\['a'\]"):
            loss_fn(x, feats)
    # built after, with both modules' parameters: no error, and the projector trains
    loss_fn = umt.UMTLoss({"a": nn.Linear(4, 4)}, student_dims={"a": 8})
    opt = torch.optim.SGD([*model.parameters(), *loss_fn.parameters()], lr=0.1)
    before = loss_fn.projectors["a"].weight.detach().clone()
    with capture_features(model, {"a": "ea"}) as feats:
        for seed in range(3):
            x = batch(seed=seed)
            model(x)
            opt.zero_grad()
            loss_fn(x, feats)["loss"].backward()
            opt.step()
    assert not torch.equal(before, loss_fn.projectors["a"].weight)


# 2. a Conv1d encoder's (B, C, L) output was averaged over C, as if it were tokens
def test_2_a_conv1d_output_is_pooled_over_its_length_not_its_channels() -> None:
    from umt.yours.diagnose import model_features

    class Audio(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.ea = nn.Sequential(nn.Conv1d(1, 6, 3), nn.ReLU())  # (B, 6, L - 2)

        def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
            return self.ea(batch["a"]).mean((1, 2))

    model = Audio()
    x = {"a": torch.randn(5, 1, 12), "label": torch.zeros(5, dtype=torch.long)}
    feats, _ = model_features(model, [x], {"a": "ea"})
    expected = model.ea(x["a"]).mean(2)  # (B, C): over the length
    assert feats["a"].shape == (5, 6) and torch.allclose(feats["a"], expected, atol=1e-6)
    teacher = nn.Sequential(nn.Conv1d(1, 6, 3), nn.ReLU())
    loss_fn = umt.UMTLoss({"a": teacher})
    with capture_features(model, {"a": "ea"}) as captured:
        model(x)
        got = loss_fn(x, captured)["loss"]
    want = F.mse_loss(model.ea(x["a"]).mean(2), teacher(x["a"]).mean(2))
    assert got.item() == pytest.approx(want.item(), rel=1e-5)


# 3. an extra no_grad forward between model(batch) and umt_loss(...)
def test_3_an_extra_no_grad_forward_does_not_change_what_is_distilled() -> None:
    model = Two()
    loss_fn = umt.UMTLoss(teachers())
    with capture_features(model, ENC) as feats:
        x = batch(seed=0)
        model(x)
        with torch.no_grad():
            model(batch(seed=1))  # e.g. an accuracy on another batch
        got = loss_fn(x, feats)["loss"]
    assert got.requires_grad  # distillation on: the training forward's features
    with capture_features(model, ENC) as feats:
        model(x)
        want = loss_fn(x, feats)["loss"]
    assert got.item() == pytest.approx(want.item())
    with capture_features(model, ENC) as feats:  # the same batch re-run under no_grad
        model(x)
        with torch.no_grad():
            model(x)
        again = loss_fn(x, feats)["loss"]
    assert again.requires_grad and again.item() == pytest.approx(want.item())
    # inputs the model never received, after two forwards: which pass is meant is unknown
    with capture_features(model, ENC) as feats:
        model(x)
        with torch.no_grad():
            model(batch(seed=1))
        with pytest.raises(UMTError, match=r"2 forward passes ran .*call the loss right after"):
            loss_fn({k: v.clone() for k, v in x.items()}, feats)
        model(x)
        loss_fn(x, feats)
        with pytest.raises(UMTError, match=r"no forward pass of the model ran since"):
            loss_fn(x, feats)  # that pass was taken already: its graph is used once


# 4. modality dropout: an encoder skipped on a step kept the previous step's feature
def test_4_an_encoder_skipped_on_a_step_has_no_term_in_that_step() -> None:
    model = Two()
    loss_fn = umt.UMTLoss(teachers())
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with capture_features(model, ENC) as feats:
        for step in range(3):
            model.skip_b = step == 1  # modality b dropped on step 1
            x = batch(seed=step)
            out = model(x)
            terms = loss_fn(x, feats)
            opt.zero_grad()
            (out.sum() + terms["loss"]).backward()  # no "backward through the graph twice"
            opt.step()
            assert ("distill/b" in terms) == (step != 1)


# 5. a float label 3.7 was truncated to 3; one-hot labels gave a raw ValueError
def test_5_labels_that_are_not_class_indices() -> None:
    with pytest.raises(UMTError, match=r"a train label is 2.7.*class indices"):
        umt.diagnose(Two(), *splits(label=lambda y: y + 0.7), encoders=ENC, teachers=teachers(), config=FAST)  # fmt: skip
    plain = umt.diagnose(Two(), *splits(), encoders=ENC, teachers=teachers(), config=FAST)  # fmt: skip
    torch.manual_seed(0)
    onehot = umt.diagnose(
        Two(), *splits(label=lambda y: F.one_hot(torch.tensor(y), K).float()), encoders=ENC,
        teachers=teachers(), config=FAST,
    )  # fmt: skip
    assert onehot.num_classes == K
    assert onehot["b"].teacher.test_acc == pytest.approx(plain["b"].teacher.test_acc)


# 6. a tuple batch passed to UMTLoss: the error message itself crashed
def test_6_a_tuple_batch_is_one_clear_error() -> None:
    loss_fn = umt.UMTLoss(teachers())
    with pytest.raises(UMTError, match=r"inputs is a tuple; expected a dict"):
        loss_fn((torch.randn(2, 4), torch.randn(2, 4)), {m: torch.randn(2, 8) for m in "ab"})  # type: ignore[arg-type]


# 7. a BatchNorm encoder with len(train) % batch == 1: a raw ValueError in teacher training
def test_7_a_last_batch_of_one_sample_does_not_break_batchnorm_teachers() -> None:
    enc = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU())
    cfg = umt.DiagnoseConfig(epochs=1, batch_size=16, probe=FAST.probe)
    diag = umt.diagnose(Two(enc), *splits((49, 30, 30)), encoders={"a": "ea"}, config=cfg)  # fmt: skip
    assert diag["a"].teacher_source == "trained"


# 8. an IterableDataset with __len__: a raw DataLoader error
def test_8_iterable_datasets_are_read_in_their_own_order() -> None:
    class Stream(IterableDataset[dict[str, Any]]):
        def __init__(self, pairs: Pairs) -> None:
            self.pairs = pairs

        def __len__(self) -> int:
            return len(self.pairs)

        def __iter__(self) -> Any:
            return (self.pairs[i] for i in range(len(self.pairs)))

    data = [Stream(p) for p in splits()]
    diag = umt.diagnose(Two(), *data, encoders={"b": "eb"}, config=FAST)
    assert diag.sizes == {"train": 60, "val": 30, "test": 30}


# 9. teacher re-initialisation only called reset_parameters(); epochs=0 was accepted
def test_9_a_bare_parameter_is_not_silently_kept_from_the_joint_model() -> None:
    class WithScale(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(4, 8)
            self.scale = nn.Parameter(torch.full((8,), 7.0))  # no reset_parameters() for it

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.relu(self.lin(x)) * self.scale

    model = Two(WithScale())
    with pytest.raises(
        UMTError, match=r"keep the joint model's values of \['scale'\].*teacher_init="
    ):
        umt.diagnose(model, *splits(), encoders={"a": "ea"}, config=FAST)

    def init(enc: nn.Module) -> None:
        enc.lin.reset_parameters()  # type: ignore[operator]
        nn.init.ones_(enc.scale)  # type: ignore[arg-type]

    diag = umt.diagnose(model, *splits(), encoders={"a": "ea"}, config=FAST, teacher_init=init)  # fmt: skip
    assert diag.teachers["a"].module.scale.detach().ne(7.0).all()
    with pytest.raises(UMTError, match=r"epochs=0: expected 1 or more"):
        umt.DiagnoseConfig(epochs=0)


# 10. no device= argument (TypeError); the device was the model's first parameter's
def test_10_device_and_precision_are_arguments() -> None:
    model = Two()
    diag = umt.diagnose(
        model, *splits(), encoders=ENC, teachers=teachers(), config=FAST, device="cpu",
        precision="bf16-mixed", progress=False,
    )  # fmt: skip
    assert set(diag.modalities) == {"a", "b"}
    assert next(model.parameters()).device.type == "cpu"
    with pytest.raises(UMTError, match=r"precision='fp8'"):
        umt.diagnose(model, *splits(), encoders=ENC, config=FAST, precision="fp8", progress=False)
