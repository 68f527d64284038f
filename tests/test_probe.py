"""The linear probe: separable features are read perfectly, noise is not, L2 is chosen on val."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from umt.data.base import ArrayDataset, DataBundle
from umt.errors import UMTError
from umt.probe import ProbeConfig, ProbeResult, extract_features, fit_linear, linear_probe
from umt.tasks import probe


def _separable(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    # Three classes at the corners of a triangle, 5 noise dimensions; margins of several units.
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    centers = torch.tensor([[6.0, 0.0], [-3.0, 5.2], [-3.0, -5.2]])
    signal = centers[y] + 0.5 * torch.randn(n, 2, generator=g)
    return torch.cat([signal, torch.randn(n, 5, generator=g)], dim=1), y


def test_linear_probe_reads_separable_features_perfectly() -> None:
    result = linear_probe(_separable(60, 0), _separable(30, 1), _separable(90, 2), 3)
    assert isinstance(result, ProbeResult)
    assert result.val_acc == 1.0
    assert result.test_acc == 1.0
    assert result.feature_dim == 7


def test_linear_probe_on_noise_with_random_labels_stays_near_chance() -> None:
    g = torch.Generator().manual_seed(0)

    def noise(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.randn(n, 10, generator=g), torch.randint(0, 2, (n,), generator=g)

    result = linear_probe(noise(200), noise(200), noise(2000), 2)
    # Chance is 0.5; with 2000 test samples the standard error is about 0.011.
    assert abs(result.test_acc - 0.5) < 0.05, result


def _val_picks(l2_grid: tuple[float, ...], val: tuple[torch.Tensor, torch.Tensor]) -> ProbeResult:
    # Train: 30 of class 0 at x = -1, 10 of class 1 at x = +1 (class 0 is the majority).
    x = torch.cat([torch.full((30, 1), -1.0), torch.full((10, 1), 1.0)])
    y = torch.cat([torch.zeros(30, dtype=torch.long), torch.ones(10, dtype=torch.long)])
    return linear_probe((x, y), val, val, 2, ProbeConfig(l2=l2_grid, max_iter=50))


def test_linear_probe_chooses_a_weak_l2_when_val_rewards_the_feature() -> None:
    # val follows the feature: only a classifier that uses it (small L2) gets class 1 right.
    val = (torch.tensor([[-1.0], [1.0], [1.0], [1.0]]), torch.tensor([0, 1, 1, 1]))
    result = _val_picks((100.0, 1e-4), val)
    assert result.l2 == 1e-4
    assert result.val_acc == 1.0


def test_linear_probe_chooses_a_strong_l2_when_val_punishes_the_feature() -> None:
    # val is all class 0 at x = +1: a strong L2 leaves only the bias (majority class 0), right;
    # a weak one follows the feature to class 1, wrong.
    val = (torch.full((4, 1), 1.0), torch.zeros(4, dtype=torch.long))
    result = _val_picks((1e-4, 100.0), val)
    assert result.l2 == 100.0
    assert result.val_acc == 1.0


def test_linear_probe_ties_keep_the_first_l2() -> None:
    data = _separable(30, 0), _separable(30, 1), _separable(30, 2)
    result = linear_probe(*data, 3, ProbeConfig(l2=(1e-2, 1e-4)))
    assert result.val_acc == 1.0  # both strengths are perfect on val: a tie
    assert result.l2 == 1e-2


def test_fit_linear_is_deterministic() -> None:
    x, y = _separable(30, 0)
    a = fit_linear(x, y, 3, l2=1e-3, max_iter=20)
    b = fit_linear(x, y, 3, l2=1e-3, max_iter=20)
    assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)


def test_probe_result_as_dict() -> None:
    r = ProbeResult(val_acc=0.5, test_acc=0.25, l2=0.1, feature_dim=3)
    assert r.as_dict() == {"val_acc": 0.5, "test_acc": 0.25, "l2": 0.1}


# -- probe() on an encoder over a data set ---------------------------------------------------


class Identity(nn.Identity):
    """An encoder that returns its input, recording the mode it ran in."""

    def __init__(self, feature_dim: int) -> None:
        super().__init__()
        self.feature_dim = feature_dim
        self.modes: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.modes.append(self.training)
        return x


def _bundle() -> DataBundle:
    def split(n: int, seed: int) -> ArrayDataset:
        rng = np.random.default_rng(seed)
        y = np.arange(n) % 2
        # "good": the label at +-4 in dimension 0; "noise": unrelated to the label.
        good = rng.standard_normal((n, 3)).astype(np.float32)
        good[:, 0] += np.where(y == 1, 4.0, -4.0)
        noise = rng.standard_normal((n, 3)).astype(np.float32)
        return ArrayDataset({"good": good, "noise": noise}, y)

    return DataBundle("tiny", split(40, 0), split(20, 1), split(200, 2), num_classes=2)


def test_probe_of_an_identity_encoder_reads_the_informative_modality() -> None:
    data = _bundle()
    good = probe(Identity(3), data, "good", ProbeConfig(batch_size=16))
    assert good.test_acc == 1.0
    assert good.feature_dim == 3
    noise = probe(Identity(3), data, "noise", ProbeConfig(batch_size=16))
    assert abs(noise.test_acc - 0.5) < 0.15, noise  # 200 test samples: sd about 0.035


def test_probe_unknown_modality_names_it_and_the_valid_ones() -> None:
    with pytest.raises(UMTError, match=r"'audio' is not in data set 'tiny'.*good.*noise"):
        probe(Identity(3), _bundle(), "audio")


@pytest.mark.parametrize("training", [True, False])
def test_extract_features_runs_in_eval_mode_and_restores_the_mode(training: bool) -> None:
    enc = Identity(3).train(training)
    data = _bundle()
    x, y = extract_features(enc, data.train, "good", batch_size=16)
    assert enc.modes == [False, False, False]  # 40 samples in batches of 16, all in eval mode
    assert enc.training is training
    assert x.shape == (40, 3) and y.shape == (40,)
    assert torch.equal(x, torch.from_numpy(data.train.arrays["good"]))
    assert torch.equal(y, torch.from_numpy(data.train.labels))


def test_extract_features_flattens_maps_and_needs_no_gradient() -> None:
    enc = nn.Sequential(nn.Linear(3, 4), nn.Unflatten(1, (2, 2)))
    x, _ = extract_features(enc, _bundle().val, "good")
    assert x.shape == (20, 4)
    assert not x.requires_grad


def test_extract_features_keeps_batchnorm_statistics() -> None:
    enc = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)).train()
    before = enc[1].running_mean.clone()
    extract_features(enc, _bundle().train, "good", batch_size=8)
    assert torch.equal(enc[1].running_mean, before)
    assert enc.training


# -- against a reference solver: scikit-learn's logistic regression ---------------------------


def _overlapping(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    # Three classes whose clouds overlap (centres 1.5 apart, unit noise): the regularised optimum
    # is finite and unique, so two solvers must meet at the same weights.
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    centers = torch.tensor([[1.5, 0.0, 0.0], [0.0, 1.5, 0.0], [0.0, 0.0, 1.5]])
    x = torch.cat([centers[y], torch.zeros(n, 3)], dim=1) + torch.randn(n, 6, generator=g)
    return x.double(), y


def _sklearn(x: torch.Tensor, y: torch.Tensor, l2: float) -> Any:
    """scikit-learn's multinomial logistic regression minimising our objective.

    Ours (``fit_linear``): ``mean_i CE_i + l2 * ||W||^2``, bias not penalised. scikit-learn's:
    ``C * sum_i CE_i + ||W||^2 / 2``, intercept not penalised. Times ``N`` ours is
    ``sum_i CE_i + N * l2 * ||W||^2``: the same minimiser when ``1 / (2 C) = N * l2``.
    """
    linear_model = pytest.importorskip("sklearn.linear_model")
    c = 1.0 / (2.0 * len(y) * l2)
    clf = linear_model.LogisticRegression(C=c, tol=1e-12, max_iter=10_000)  # lbfgs, multinomial
    return clf.fit(x.numpy(), y.numpy())


@pytest.mark.parametrize("l2", [1e-3, 1e-2, 1e-1])
def test_fit_linear_matches_sklearn_logistic_regression(l2: float) -> None:
    x, y = _overlapping(90, 0)
    ours = fit_linear(x.float(), y, 3, l2=l2, max_iter=500)
    ref = _sklearn(x, y, l2)
    weight, bias = ours.weight.detach().double(), ours.bias.detach().double()
    ref_w, ref_b = torch.from_numpy(ref.coef_), torch.from_numpy(ref.intercept_)
    # Softmax is unchanged by a constant added to every class's bias; sklearn's intercepts
    # are not centred when unpenalised, so compare the biases centred.
    torch.testing.assert_close(weight, ref_w, atol=2e-3, rtol=0)
    torch.testing.assert_close(bias - bias.mean(), ref_b - ref_b.mean(), atol=2e-3, rtol=0)

    def objective(w: torch.Tensor, b: torch.Tensor) -> float:
        return (F.cross_entropy(x @ w.T + b, y) + l2 * w.pow(2).sum()).item()

    assert objective(weight, bias) == pytest.approx(objective(ref_w, ref_b), abs=1e-6)
    x_test, _ = _overlapping(300, 1)
    ours_pred = ours(x_test.float()).argmax(1).numpy()
    assert (ours_pred == ref.predict(x_test.numpy())).mean() >= 299 / 300  # a tie at most


def test_linear_probe_matches_sklearn_on_fixed_features() -> None:
    train, val, test = _overlapping(90, 0), _overlapping(60, 1), _overlapping(300, 2)
    grid = (1e-3, 1e-2, 1e-1, 1.0)
    result = linear_probe(
        *((x.float(), y) for x, y in (train, val, test)), 3, ProbeConfig(l2=grid, max_iter=500)
    )
    # The same protocol by hand: standardise with the train mean and (unbiased) std, fit each
    # strength, keep the first best on val, read test once.
    mean, std = train[0].mean(0), train[0].std(0)
    best: tuple[float, float, Any] | None = None
    for l2 in grid:
        ref = _sklearn((train[0] - mean) / std, train[1], l2)
        acc = float((ref.predict(((val[0] - mean) / std).numpy()) == val[1].numpy()).mean())
        if best is None or acc > best[0]:
            best = (acc, l2, ref)
    assert best is not None
    val_acc, l2, ref = best
    test_acc = float((ref.predict(((test[0] - mean) / std).numpy()) == test[1].numpy()).mean())
    assert result.l2 == l2
    assert result.val_acc == pytest.approx(val_acc, abs=1e-6)
    assert result.test_acc == pytest.approx(test_acc, abs=1 / 300 + 1e-6)  # one tie at most
    assert 0.55 < result.test_acc < 0.95  # overlapping classes: neither chance nor trivial
