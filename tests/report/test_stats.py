"""Intervals (``umt.report.stats``): hand-checkable cases, a normal approximation, and the edge cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from umt.report.stats import Interval, paired_bootstrap, seed_interval, within_noise


def _acc(o: np.ndarray) -> float:
    return float(o.mean())


def test_identical_outcomes_give_zero_interval() -> None:
    rng = np.random.default_rng(1)
    a = [rng.integers(0, 2, 50).astype(np.uint8) for _ in range(3)]
    iv = paired_bootstrap(a, [x.copy() for x in a], _acc, n_boot=200)
    assert iv == Interval(0.0, 0.0, 0.0)
    assert within_noise(iv)


def test_two_samples_by_hand() -> None:
    # One seed, A right on sample 0 only, B wrong on both: a resample of 2 rows holds sample 0
    # twice (p 1/4: diff 1), once (p 1/2: diff 0.5) or never (p 1/4: diff 0). The 2.5 and
    # 97.5 percentiles of 20000 replicates are then 0 and 1; the observed difference is 0.5.
    iv = paired_bootstrap([np.array([1, 0])], [np.array([0, 0])], _acc, n_boot=20000)
    assert iv == Interval(0.5, 0.0, 1.0)
    assert within_noise(iv)


def test_pairing_uses_the_same_rows_for_both() -> None:
    # A is B plus one correct sample more on each of 2 seeds' 40 samples: A - B is 1/40 on the
    # whole set, and on any resample it is (copies of that sample) / 40 >= 0, never below 0.
    # Unpaired resampling would produce negative differences.
    rng = np.random.default_rng(2)
    b = [rng.integers(0, 2, 40).astype(np.uint8) for _ in range(2)]
    for x in b:
        x[0] = 0
    a = [x.copy() for x in b]
    for x in a:
        x[0] = 1
    iv = paired_bootstrap(a, b, _acc, n_boot=2000)
    assert iv.mean_diff == pytest.approx(1 / 40)
    assert iv.lo >= 0.0


def test_large_case_matches_the_normal_approximation() -> None:
    # One seed, 20000 samples, correlated outcomes: the per-sample difference d = a - b has
    # mean m and sd s; the bootstrap interval of the mean difference should be close to
    # m ± 1.96 s / sqrt(n) (central limit theorem), here within 10 % of the half-width.
    rng = np.random.default_rng(3)
    n = 20000
    b = (rng.random(n) < 0.8).astype(np.uint8)
    flip = rng.random(n) < 0.1  # A differs from B on 10 % of the samples, more often right
    a = np.where(flip, (rng.random(n) < 0.7).astype(np.uint8), b)
    d = a.astype(float) - b.astype(float)
    m, half = d.mean(), 1.96 * d.std(ddof=1) / math.sqrt(n)
    iv = paired_bootstrap([a], [b], _acc, n_boot=2000, seed=5)
    assert iv.mean_diff == pytest.approx(m, abs=1e-12)
    assert iv.lo == pytest.approx(m - half, abs=0.1 * half)
    assert iv.hi == pytest.approx(m + half, abs=0.1 * half)


def test_three_seeds_resample_seeds_too() -> None:
    # With 3 seeds the seeds are resampled: per-seed differences of 0, 0.5 and 1 (each constant
    # on every resample of its samples) give replicate means in {0, 1/6, ..., 1}: the interval
    # reaches the extremes 0 and 1 (each with probability 1/27 per replicate). With 2 seeds
    # the seeds are kept, and the interval is the single point 0.5.
    ones, zeros = np.ones(4, np.uint8), np.zeros(4, np.uint8)
    half = np.array([1, 1, 0, 0], np.uint8)
    a, b = [zeros, ones, ones], [zeros, ones - half, zeros]
    iv = paired_bootstrap(a, b, _acc, n_boot=4000)
    assert iv.mean_diff == pytest.approx(0.5)
    assert iv.lo == 0.0 and iv.hi == 1.0
    kept = paired_bootstrap([zeros, ones], [zeros, zeros], _acc, n_boot=500)
    assert kept == Interval(0.5, 0.5, 0.5)


def test_mismatched_outcomes_are_refused() -> None:
    with pytest.raises(ValueError, match="same non-empty shape"):
        paired_bootstrap([np.ones(3)], [np.ones(4)], _acc)
    with pytest.raises(ValueError, match="number"):
        paired_bootstrap([np.ones(3)], [], _acc)


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
