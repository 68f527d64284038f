"""``umt.yours.diagnose`` on a user's own model and plain Datasets: the built-in probe's numbers, the
verdict, the files, and one clear error per bad input."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

import umt
from umt.data.base import ArrayDataset, DataBundle
from umt.errors import UMTError
from umt.probe import ProbeConfig, extract_features
from umt.tasks import probe
from umt.yours.diagnose import DiagnoseConfig, model_features

K = 4
FAST = DiagnoseConfig(epochs=10, lr=1e-2, probe=ProbeConfig(max_iter=50))


def make_arrays(n: int, seed: int) -> dict[str, np.ndarray]:
    """Audio: easy (one-hot class + noise). Visual: the class bits are signs of products of
    coordinate pairs (XOR): a linear probe of random features reads little of it, a trained
    encoder most of it."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, K, n)
    audio = rng.normal(size=(n, 6)).astype(np.float32)
    audio[np.arange(n), y] += 4.0
    v = rng.normal(size=(n, 6)).astype(np.float32)
    for bit, (i, j) in enumerate([(0, 1), (2, 3)]):
        v[:, j] = np.abs(v[:, j]) * np.sign(v[:, i]) * (2.0 * ((y >> bit) & 1) - 1)
    return {"audio": audio, "visual": v, "label": y}


class DictDataset(Dataset[dict[str, Any]]):
    """A user's plain Dataset: one dict per sample."""

    def __init__(self, arrays: dict[str, np.ndarray], drop: str | None = None) -> None:
        self.arrays = arrays
        self.drop = drop

    def __len__(self) -> int:
        return len(self.arrays["label"])

    def __getitem__(self, i: int) -> dict[str, Any]:
        out: dict[str, Any] = {
            m: torch.from_numpy(self.arrays[m][i]) for m in ("audio", "visual") if m != self.drop
        }
        out["label"] = int(self.arrays["label"][i])
        return out


class MyFusion(nn.Module):
    """A user's model (not from umt.models): encoders ``aud`` and ``vis``, late fusion."""

    def __init__(self) -> None:
        super().__init__()
        self.aud = nn.Sequential(nn.Linear(6, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 8))
        self.vis = nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Linear(32, 8), nn.ReLU())
        self.unused = nn.Linear(6, 8)  # never called in forward
        self.head = nn.Linear(16, K)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.head(torch.cat([self.aud(batch["audio"]), self.vis(batch["visual"])], 1))


class TupleFusion(MyFusion):
    def forward(self, audio: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().forward({"audio": audio, "visual": visual})


ENCODERS = {"audio": "aud", "visual": "vis"}


@pytest.fixture(scope="module")
def arrays() -> dict[str, dict[str, np.ndarray]]:
    return {"train": make_arrays(400, 0), "val": make_arrays(150, 1), "test": make_arrays(150, 2)}


@pytest.fixture(scope="module")
def splits(arrays: dict[str, dict[str, np.ndarray]]) -> dict[str, DictDataset]:
    return {s: DictDataset(a) for s, a in arrays.items()}


def bundle_of(arrays: dict[str, dict[str, np.ndarray]]) -> DataBundle:
    ds = {
        s: ArrayDataset({m: a[m] for m in ("audio", "visual")}, a["label"])
        for s, a in arrays.items()
    }
    return DataBundle("mine", ds["train"], ds["val"], ds["test"], num_classes=K)


def frozen_teachers() -> dict[str, nn.Module]:
    torch.manual_seed(1)
    return {m: nn.Sequential(nn.Linear(6, 12), nn.Tanh()) for m in ("audio", "visual")}


def test_diagnose_gives_the_builtin_probe_numbers_on_a_users_model(
    arrays: dict[str, dict[str, np.ndarray]], splits: dict[str, DictDataset]
) -> None:
    torch.manual_seed(0)
    model = MyFusion()
    model.train()
    model.vis[0].eval()  # a submodule the user keeps in eval mode stays so
    teachers = frozen_teachers()
    diag = umt.yours.diagnose(
        model, splits["train"], splits["val"], splits["test"], encoders=ENCODERS,
        teachers=teachers, config=FAST,
    )  # fmt: skip
    assert model.training and not model.vis[0].training and model.aud[1].training
    assert all(not mod._forward_hooks for mod in model.modules())
    data = bundle_of(arrays)
    for m, name in ENCODERS.items():
        enc = getattr(model, name)
        ref = probe(enc, data, m, FAST.probe)
        ref_t = probe(teachers[m], data, m, FAST.probe)
        d = diag[m]
        assert d.model.test_acc == pytest.approx(ref.test_acc, abs=1e-6), m
        assert d.model.val_acc == pytest.approx(ref.val_acc, abs=1e-6), m
        assert d.model.l2 == ref.l2 and d.model.feature_dim == 8
        assert d.teacher.test_acc == pytest.approx(ref_t.test_acc, abs=1e-6), m
        assert d.teacher_source == "given"
        assert d.gap == pytest.approx(ref_t.test_acc - ref.test_acc, abs=1e-6)
        # the features themselves: the hooked output of the model's forward in eval mode
        mine, y = model_features(model, DataLoader(splits["test"], batch_size=64), {m: name})
        theirs, y_ref = extract_features(enc, data.test, m)
        assert torch.allclose(mine[m], theirs, atol=1e-5) and torch.equal(y, y_ref)
    assert diag.num_classes == K and diag.sizes == {"train": 400, "val": 150, "test": 150}


def test_tuples_and_dataloaders_give_the_same_diagnosis(
    arrays: dict[str, dict[str, np.ndarray]], splits: dict[str, DictDataset]
) -> None:
    torch.manual_seed(0)
    model = TupleFusion()
    teachers = frozen_teachers()
    as_dicts = umt.yours.diagnose(
        _DictView(model), *splits.values(),
        encoders={"audio": "m.aud", "visual": "m.vis"}, teachers=teachers, config=FAST,
    )  # fmt: skip
    tensors = {
        s: TensorDataset(*(torch.from_numpy(a[k]) for k in ("audio", "visual", "label")))
        for s, a in arrays.items()
    }
    loaders = [DataLoader(t, batch_size=100) for t in tensors.values()]
    as_tuples = umt.yours.diagnose(
        model, *loaders, encoders=ENCODERS, teachers=teachers, config=FAST,
        modalities=["audio", "visual"],
    )  # fmt: skip
    for m in ENCODERS:
        assert as_tuples[m].model.test_acc == pytest.approx(as_dicts[m].model.test_acc, abs=1e-6)
        assert as_tuples[m].teacher.test_acc == pytest.approx(as_dicts[m].teacher.test_acc)


class _DictView(nn.Module):
    """Wraps the tuple model so it takes the dict (the dict path of the same weights)."""

    def __init__(self, m: TupleFusion) -> None:
        super().__init__()
        self.m = m

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.m(batch["audio"], batch["visual"])


def train_jointly(model: nn.Module, data: Dataset[Any], epochs: int) -> None:
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        for batch in DataLoader(data, batch_size=32, shuffle=True, generator=gen):
            loss = F.cross_entropy(model(batch), batch["label"])
            opt.zero_grad()
            loss.backward()
            opt.step()


def test_an_undertrained_encoder_is_reported_as_failure(
    splits: dict[str, DictDataset], tmp_path: Path
) -> None:
    torch.manual_seed(0)
    model = MyFusion()
    train_jointly(model, splits["train"], epochs=6)
    for mod in model.vis.modules():  # the visual encoder: back to random, untrained
        if hasattr(mod, "reset_parameters"):
            mod.reset_parameters()  # type: ignore[operator]
    before = copy.deepcopy(model.state_dict())
    diag = umt.yours.diagnose(model, *splits.values(), encoders=ENCODERS, config=FAST, out=tmp_path)
    assert diag.failures == ["visual"], diag.table()
    assert diag["visual"].failure and not diag["audio"].failure
    assert diag["visual"].teacher_source == "trained"
    assert diag["visual"].teacher.test_acc > diag["visual"].model.test_acc + 0.2, diag.table()
    # the model itself is untouched (the teachers are copies)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert set(diag.teachers) == {"audio", "visual"} and diag.teachers["visual"] is not model.vis
    # the files a study writes
    saved = json.loads((tmp_path / "diagnosis.json").read_text())
    assert saved["failures"] == ["visual"]
    assert saved["modalities"]["visual"]["gap"] == pytest.approx(diag["visual"].gap)
    assert diag.table() in (tmp_path / "report.md").read_text()
    assert "modality failure" in (tmp_path / "report.html").read_text()
    assert (tmp_path / "figures" / "probes.png").read_bytes()[:4] == b"\x89PNG"
    # a margin above the gap changes the verdict
    assert not umt.yours.diagnose(
        model, *splits.values(), encoders={"visual": "vis"}, teachers={"visual": diag.teachers["visual"]},
        config=DiagnoseConfig(margin=0.99, probe=FAST.probe),
    )["visual"].failure  # fmt: skip


def test_a_teacher_input_taken_by_a_function(splits: dict[str, DictDataset]) -> None:
    class Reshaping(MyFusion):
        def __init__(self) -> None:
            super().__init__()
            self.vis = nn.Sequential(nn.Flatten(), nn.Linear(6, 8), nn.ReLU())

        def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
            v = batch["visual"].view(-1, 2, 3)  # the encoder's input is not batch["visual"]
            return self.head(torch.cat([self.aud(batch["audio"]), self.vis(v)], 1))

    cfg = DiagnoseConfig(epochs=1, probe=FAST.probe)
    model = Reshaping()
    with pytest.raises(UMTError, match=r"inputs=\{'visual'"):
        umt.yours.diagnose(
            model, *splits.values(), encoders={"visual": "vis"}, config=cfg,
            inputs={"visual": lambda b: b["visual"][:, :2]},
        )  # fmt: skip
    diag = umt.yours.diagnose(
        model, *splits.values(), encoders={"visual": "vis"}, config=cfg,
        inputs={"visual": lambda b: b["visual"].view(-1, 2, 3)},
    )  # fmt: skip
    assert diag["visual"].teacher.feature_dim == 8


# --- one clear error per bad input ----------------------------------------------------------


def test_a_submodule_name_that_does_not_exist_names_the_close_match(
    splits: dict[str, DictDataset],
) -> None:
    with pytest.raises(
        UMTError, match=r"encoders\['visual'\].*no submodule 'viz'.*did you mean 'vis'"
    ):
        umt.yours.diagnose(MyFusion(), *splits.values(), encoders={"audio": "aud", "visual": "viz"})


def test_a_hook_that_never_fired(splits: dict[str, DictDataset]) -> None:
    with pytest.raises(UMTError, match=r"'unused' did not run in the model's forward"):
        umt.yours.diagnose(
            MyFusion(), *splits.values(), encoders={"audio": "aud", "visual": "unused"}
        )


def test_a_batch_missing_a_modality(arrays: dict[str, dict[str, np.ndarray]]) -> None:
    data = [DictDataset(a, drop="visual") for a in arrays.values()]
    with pytest.raises(UMTError, match=r"train batch has no modality \['visual'\]"):
        umt.yours.diagnose(MyFusion(), *data, encoders=ENCODERS)


def test_tuples_without_modalities(arrays: dict[str, dict[str, np.ndarray]]) -> None:
    data = [TensorDataset(torch.zeros(4, 6), torch.zeros(4, 6), torch.zeros(4)) for _ in range(3)]
    with pytest.raises(UMTError, match=r"pass modalities=\[\.\.\.\]"):
        umt.yours.diagnose(TupleFusion(), *data, encoders=ENCODERS)


def test_a_teacher_for_an_unknown_modality(splits: dict[str, DictDataset]) -> None:
    with pytest.raises(UMTError, match=r"teachers name \['depth'\]"):
        umt.yours.diagnose(
            MyFusion(), *splits.values(), encoders=ENCODERS, teachers={"depth": nn.Identity()}
        )
