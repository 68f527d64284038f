"""Intervals for the differences a study's report draws: pure functions over numpy arrays.

A comparison "A beats B" is made on the same samples and the same seeds, so its uncertainty is
that of a *paired* difference, with two sources of noise: which training seeds made the models,
and which samples the evaluation split happened to hold. :func:`paired_interval` is a Student-t
interval whose standard error has both:

- the seeds' part, ``var(d_s) / S`` over the per-seed differences ``d_s`` (seeds are the unit);
- the samples' part, the variance of the seed-averaged difference when the evaluation samples
  are resampled (the same rows for A, B and every seed: the samples are shared), less the
  within-seed sampling noise that the seeds' part already holds (a two-way decomposition);

with Satterthwaite's degrees of freedom. With fewer than three seeds the seed-to-seed variance is
not measured: the interval is the samples' part alone, and says so. ``tests/report/
test_coverage.py`` simulates both: at 3, 5 and 10 seeds the nominal 95 % interval covers the true
difference 92-98 % of the time; at 2 seeds (samples' part only) it covers less (documented there).

:func:`seed_interval` is the t-interval over per-seed differences alone, for what is kept as one
score per seed (the probes); :func:`within_noise` says whether an interval covers zero.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

#: Seeds at or above which :func:`paired_interval` measures the seed-to-seed variance.
MIN_SEEDS = 3


@dataclass(frozen=True)
class Interval:
    """A difference ``mean_diff`` (A − B, averaged over seeds) and its 95 % interval
    ``[lo, hi]``."""

    mean_diff: float
    lo: float
    hi: float


def within_noise(interval: Interval) -> bool:
    """Whether the interval covers zero: the data cannot tell the two apart.

    Example:
        >>> within_noise(Interval(0.004, -0.011, 0.019)), within_noise(Interval(0.02, 0.008, 0.039))
        (True, False)
    """
    return interval.lo <= 0.0 <= interval.hi


def paired_interval(
    a_outcomes_per_seed: Sequence[np.ndarray],
    b_outcomes_per_seed: Sequence[np.ndarray],
    score_fn: Callable[[np.ndarray], float],
    n_boot: int = 400,
    seed: int = 0,
    *,
    additive: bool = False,
) -> Interval:
    """95 % interval of ``score(A) − score(B)``, averaged over seeds (see the module docstring).

    Args:
        a_outcomes_per_seed: per seed, method A's per-sample outcomes ``(N, ...)``.
        b_outcomes_per_seed: per seed, method B's, on the same ``N`` samples in the same order
            (every seed evaluates the same split).
        score_fn: the score of a set of outcomes (a task's ``score_of``: mean accuracy, mIoU).
        n_boot: bootstrap replicates of the samples' part.
        seed: of the resampling's random generator (the interval is reproducible).
        additive: the score is the mean of per-sample values (accuracy): the samples' part is
            then computed exactly from the per-sample differences instead of by resampling.

    Example:
        >>> a, b = [np.array([1, 1, 1, 1])], [np.array([0, 0, 0, 0])]  # A right, B wrong on all
        >>> paired_interval(a, b, lambda o: float(o.mean()))
        Interval(mean_diff=1.0, lo=1.0, hi=1.0)
    """
    if len(a_outcomes_per_seed) != len(b_outcomes_per_seed) or not a_outcomes_per_seed:
        raise ValueError(
            f"paired_interval: expected the same number (>= 1) of seeds for A and B, got "
            f"{len(a_outcomes_per_seed)} and {len(b_outcomes_per_seed)}"
        )
    a_s = [np.asarray(x) for x in a_outcomes_per_seed]
    b_s = [np.asarray(x) for x in b_outcomes_per_seed]
    n = len(a_s[0])
    for i, (a, b) in enumerate(zip(a_s, b_s, strict=True)):
        if a.shape != b.shape or len(a) != n or n == 0:
            raise ValueError(
                f"paired_interval: seed {i}: A's outcomes {a.shape} and B's {b.shape} must be the "
                f"same non-empty shape, the same samples ({n}) in every seed"
            )
    d = np.array([score_fn(a) - score_fn(b) for a, b in zip(a_s, b_s, strict=True)])
    s = len(d)
    if additive:  # per-sample differences e (S, N): the resampling's variances, exactly
        e = np.stack(
            [
                a.reshape(n, -1).mean(1) - b.reshape(n, -1).mean(1)
                for a, b in zip(a_s, b_s, strict=True)
            ]
        )
        v_item = float(e.mean(0).var(ddof=1)) / n
        w = float(e.var(axis=1, ddof=1).mean()) / n
    else:
        v_item, w = _resampled(a_s, b_s, score_fn, n_boot, seed)
    mean = float(d.mean())
    if s < MIN_SEEDS:  # the seed-to-seed variance is not measured: the samples' part alone
        half = 1.959964 * math.sqrt(v_item)
        return Interval(mean, mean - half, mean + half)
    v_seed = float(d.var(ddof=1)) / s
    # The within-seed sampling noise is in both parts (var(d_s) holds it, and so does the shared
    # resample's): w = mean_s var(own resample) = (item + within) / N, v_item = (item +
    # within / S) / N, so within / (N S) = (w - v_item) / (S - 1).
    overlap = max(0.0, (w - v_item) / (s - 1))
    var = max(v_seed + v_item - overlap, 1e-18)
    # Seeds are the unit: S - 1 degrees of freedom (Satterthwaite's, which the samples' part
    # would raise, under-covered at 3 seeds in the simulation: 91 %).
    half = _t975(s - 1) * math.sqrt(var)
    return Interval(mean, mean - half, mean + half)


def _resampled(
    a_s: list[np.ndarray],
    b_s: list[np.ndarray],
    score_fn: Callable[[np.ndarray], float],
    n_boot: int,
    seed: int,
) -> tuple[float, float]:
    """By resampling the samples: the variance of the seed-mean difference with the rows shared
    by every seed, and the mean over seeds of each seed's difference's variance on its own rows."""
    n, s = len(a_s[0]), len(a_s)
    rng = np.random.default_rng(seed)
    shared = np.empty(n_boot)
    own = np.empty((n_boot, s))
    for r in range(n_boot):
        rows = rng.integers(0, n, size=n)
        per = [score_fn(a[rows]) - score_fn(b[rows]) for a, b in zip(a_s, b_s, strict=True)]
        shared[r] = float(np.mean(per))
        for j in range(s):
            rows_j = rng.integers(0, n, size=n)
            own[r, j] = score_fn(a_s[j][rows_j]) - score_fn(b_s[j][rows_j])
    return float(shared.var(ddof=1)), float(own.var(axis=0, ddof=1).mean())


def _t975(df: float) -> float:
    """The 97.5 % quantile of Student's t with ``df`` degrees of freedom."""
    from scipy.stats import t  # scipy comes with scikit-learn and matplotlib's stack

    return float(t.ppf(0.975, df))


def seed_interval(diffs: Sequence[float]) -> Interval | None:
    """A 95 % Student-t interval for the mean of per-seed differences; ``None`` for one seed.

    For comparisons kept as one score per seed (no per-sample outcomes): the interval holds the
    seed-to-seed noise only, and with few seeds it is wide (t with 1 degree of freedom: 12.7).

    Example:
        >>> iv = seed_interval([0.01, 0.03])  # sd 0.01414, sd / sqrt(2) = 0.01
        >>> round(iv.mean_diff, 3), round(iv.lo, 3), round(iv.hi, 3)  # 0.02 ± 12.706 * 0.01
        (0.02, -0.107, 0.147)
        >>> seed_interval([0.02]) is None
        True
    """
    if len(diffs) < 2:
        return None
    mean = statistics.fmean(diffs)
    half = _t975(len(diffs) - 1) * statistics.stdev(diffs) / math.sqrt(len(diffs))
    return Interval(mean, mean - half, mean + half)
