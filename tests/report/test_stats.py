"""Intervals (``umt.report.stats``): hand-computed cases of both parts of the standard error, the
normal approximation, pairing, and the edge cases. Coverage: ``test_coverage.py``."""

from __future__ import annotations

import math

import numpy as np
import pytest

from umt.report.stats import Interval, paired_interval, seed_interval, within_noise


def _acc(o: np.ndarray) -> float:
    return float(o.mean())


def test_identical_outcomes_give_zero_interval() -> None:
    rng = np.random.default_rng(1)
    a = [rng.integers(0, 2, 50).astype(np.uint8) for _ in range(3)]
    for additive in (True, False):
        iv = paired_interval(a, [x.copy() for x in a], _acc, n_boot=100, additive=additive)
        assert iv.mean_diff == 0.0 and abs(iv.lo) < 1e-6 and abs(iv.hi) < 1e-6
        assert within_noise(iv)


def test_one_seed_is_the_samples_part_alone_by_hand() -> None:
    # Per-sample differences (1, 0, 0, 0): mean 0.25, sample variance 0.25, so the variance of
    # the mean is 0.25 / 4 and the 95 % interval 0.25 ± 1.96 * 0.25 (z: no seed variance).
    iv = paired_interval([np.array([1, 0, 0, 0])], [np.zeros(4)], _acc, additive=True)
    assert iv.mean_diff == 0.25
    assert iv.lo == pytest.approx(0.25 - 1.959964 * 0.25)
    assert iv.hi == pytest.approx(0.25 + 1.959964 * 0.25)


def test_three_seeds_by_hand() -> None:
    # Seeds' differences 0.0, 0.5, 1.0 on 4 samples each, every sample alike within a seed:
    # the samples' part (shared and within) is 0, the seeds' part var(0, .5, 1) / 3 = 0.25 / 3;
    # t(2) = 4.302653.
    ones, zeros = np.ones(4), np.zeros(4)
    half = np.array([1, 1, 0, 0.0])
    a, b = [zeros, ones, ones], [zeros, ones - half, zeros]
    iv = paired_interval(a, b, _acc, additive=True)
    assert iv.mean_diff == pytest.approx(0.5)
    # Seed 1's differences (1, 1, 0, 0) carry within-seed noise: the two-way decomposition's
    # shared part is var(D_i) / N with D_i the seed-mean difference per sample, less the overlap.
    d = np.stack([x - y for x, y in zip(a, b, strict=True)])
    v_seed = d.mean(1).var(ddof=1) / 3
    v_item = d.mean(0).var(ddof=1) / 4
    w = d.var(axis=1, ddof=1).mean() / 4
    se = math.sqrt(v_seed + v_item - max(0.0, (w - v_item) / 2))
    assert iv.hi - iv.mean_diff == pytest.approx(4.302653 * se, rel=1e-6)


def test_pairing_uses_the_same_samples_for_both() -> None:
    # A is B plus one correct sample more on 40 samples: a paired interval is narrow around
    # 1/40; an unpaired one would be as wide as both accuracies' noise.
    rng = np.random.default_rng(2)
    b = rng.integers(0, 2, 40).astype(np.uint8)
    b[0] = 0
    a = b.copy()
    a[0] = 1
    iv = paired_interval([a], [b], _acc, additive=True)
    assert iv.mean_diff == pytest.approx(1 / 40)
    assert iv.hi - iv.lo < 0.2  # unpaired: about 2 * 1.96 * sqrt(2 * 0.25 / 40) = 0.62


def test_large_case_matches_the_normal_approximation_and_resampling_agrees() -> None:
    rng = np.random.default_rng(3)
    n = 5000
    b = (rng.random(n) < 0.8).astype(np.uint8)
    flip = rng.random(n) < 0.1  # A differs from B on 10 % of the samples, more often right
    a = np.where(flip, (rng.random(n) < 0.7).astype(np.uint8), b)
    d = a.astype(float) - b.astype(float)
    m, half = d.mean(), 1.959964 * d.std(ddof=1) / math.sqrt(n)
    exact = paired_interval([a], [b], _acc, additive=True)
    assert exact.mean_diff == pytest.approx(m, abs=1e-12)
    assert exact.lo == pytest.approx(m - half, rel=1e-9)
    resampled = paired_interval([a], [b], _acc, n_boot=2000, seed=5)
    assert resampled.lo == pytest.approx(m - half, abs=0.1 * half)


def test_mismatched_outcomes_are_refused() -> None:
    with pytest.raises(ValueError, match="same non-empty shape"):
        paired_interval([np.ones(3)], [np.ones(4)], _acc)
    with pytest.raises(ValueError, match="number"):
        paired_interval([np.ones(3)], [], _acc)


def test_seed_interval_is_student_t() -> None:
    # Three differences 1, 2, 3 (points): mean 2, sd 1, t(2, 0.975) = 4.3027: 2 ± 2.484.
    iv = seed_interval([0.01, 0.02, 0.03])
    assert iv is not None
    assert iv.mean_diff == pytest.approx(0.02)
    assert iv.lo == pytest.approx(0.02 - 4.302653 * 0.01 / math.sqrt(3), abs=1e-7)
    assert iv.hi == pytest.approx(0.02 + 4.302653 * 0.01 / math.sqrt(3), abs=1e-7)
    assert seed_interval([0.01]) is None
    assert within_noise(Interval(0.0, 0.0, 0.0))
    assert not within_noise(Interval(-0.03, -0.05, -0.01))
