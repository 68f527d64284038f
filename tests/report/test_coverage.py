"""The intervals cover what they say (issue 30): a simulation with seed-level and sample-level
noise, no training. A study's 95 % interval of a paired difference must cover the true difference
(over the population of samples and of training seeds) 92-98 % of the time with 3, 5 and 10
seeds; with 2 seeds the seed-to-seed variance is not measured and it covers less (documented)."""

from __future__ import annotations

import numpy as np
import pytest

from umt.report.stats import paired_interval

# A population of samples: method B is right on sample i with probability p_i, method A with
# q_i = p_i + 2 points + a per-sample difference (SD tau); each training seed moves A by a seed
# effect (SD sigma_seed). A study draws N test samples once and trains every seed on them.
POPULATION = 200_000


def coverage(seeds: int, n: int, sigma_seed: float, tau: float, reps: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    p = rng.beta(8, 2, size=POPULATION)
    q = np.clip(p + 0.02 + rng.normal(0, tau, size=POPULATION), 0, 1)
    truth = float((q - p).mean())
    hits = 0
    for r in range(reps):
        rows = rng.integers(0, POPULATION, size=n)
        a, b = [], []
        for _ in range(seeds):
            shift = rng.normal(0, sigma_seed)
            a.append((rng.random(n) < np.clip(q[rows] + shift, 0, 1)).astype(float))
            b.append((rng.random(n) < p[rows]).astype(float))
        iv = paired_interval(a, b, lambda o: float(o.mean()), seed=r, additive=True)
        hits += iv.lo <= truth <= iv.hi
    return hits / reps


@pytest.mark.parametrize("seeds", [3, 5, 10])
@pytest.mark.parametrize(("sigma_seed", "tau", "n"), [(0.01, 0.1, 2000), (0.02, 0.03, 500)])
def test_nominal_95_percent_intervals_cover_92_to_98_percent(
    seeds: int, sigma_seed: float, tau: float, n: int
) -> None:
    # 1,000 simulated studies each: the coverage's own sampling SD is 0.7 points.
    assert 0.92 <= coverage(seeds, n, sigma_seed, tau, reps=1000, seed=seeds) <= 0.98


def test_two_seeds_do_not_measure_the_seed_variance_and_cover_less() -> None:
    # Measured: 0.86-0.87 (the samples' part alone); the report says so for 1-2 seeds.
    assert 0.80 <= coverage(2, 2000, 0.01, 0.1, reps=1000, seed=2) < 0.92


def test_the_resampled_samples_part_equals_the_exact_one_for_a_mean() -> None:
    rng = np.random.default_rng(0)
    a = [(rng.random(300) < 0.8).astype(float) for _ in range(3)]
    b = [(rng.random(300) < 0.75).astype(float) for _ in range(3)]
    exact = paired_interval(a, b, lambda o: float(o.mean()), additive=True)
    resampled = paired_interval(a, b, lambda o: float(o.mean()), n_boot=3000)
    assert resampled.mean_diff == exact.mean_diff
    assert abs((resampled.hi - resampled.lo) / (exact.hi - exact.lo) - 1) < 0.05
