"""Intervals for the differences a study's report draws: pure functions over numpy arrays.

A comparison "A beats B" is made on the same test samples and the same seeds, so its uncertainty
is that of a *paired* difference. Two sources of noise are in it: which test samples were drawn
(the test split is a sample of the data) and which seeds trained the models. Two tools:

- :func:`paired_bootstrap` resamples test samples, the same resample for both methods, within each
  seed; with three seeds or more it also resamples the seeds (a hierarchical bootstrap), so the
  interval holds the training noise too. It needs per-sample test outcomes (a task's
  ``outcomes``: 1/0 correct per sample, or per-image intersection and union counts).
- :func:`seed_interval` is a Student-t interval over the per-seed differences alone, for
  comparisons where only a score per seed is kept (the probes); with one seed there is none.

Both give an :class:`Interval`; :func:`within_noise` says whether it covers zero.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

#: Seeds at or above which :func:`paired_bootstrap` resamples seeds as well as test samples.
MIN_SEEDS_TO_RESAMPLE = 3


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


def paired_bootstrap(
    a_outcomes_per_seed: Sequence[np.ndarray],
    b_outcomes_per_seed: Sequence[np.ndarray],
    score_fn: Callable[[np.ndarray], float],
    n_boot: int = 2000,
    seed: int = 0,
) -> Interval:
    """Paired bootstrap of ``score(A) − score(B)``, averaged over seeds; 95 % percentile interval.

    What is resampled: in each of ``n_boot`` replicates, within every seed, the test samples
    (rows of the outcome arrays, drawn with replacement, as many as there are), *the same rows
    for A and B* (paired: both methods were tested on the same samples, and most of the sampling
    noise is shared). With ``MIN_SEEDS_TO_RESAMPLE`` (3) seeds or more the seeds are resampled
    too, first (a hierarchical bootstrap: seeds, then samples within each drawn seed), so that the
    interval also holds how much the difference moves from one training run to the next. With
    one or two seeds the seeds are kept as they are: a bootstrap over two values has three
    distinct outcomes and would say nothing reliable about training noise; the interval then
    holds the test-sampling noise only.

    Args:
        a_outcomes_per_seed: per seed, method A's per-sample test outcomes ``(N_s, ...)``.
        b_outcomes_per_seed: per seed, method B's, on the same ``N_s`` samples in the same order.
        score_fn: the score of a set of outcomes (a task's ``score_of``: mean accuracy, mIoU).
        n_boot: bootstrap replicates.
        seed: of the resampling's random generator (the interval is reproducible).

    Returns:
        ``mean_diff``: the observed difference (mean over seeds of ``score(A_s) − score(B_s)``);
        ``lo``, ``hi``: the 2.5 and 97.5 percentiles of the replicates' differences.

    Example:
        >>> a, b = [np.array([1, 1, 1, 1])], [np.array([0, 0, 0, 0])]  # A right, B wrong on all
        >>> paired_bootstrap(a, b, lambda o: float(o.mean()))
        Interval(mean_diff=1.0, lo=1.0, hi=1.0)
        >>> paired_bootstrap(a, a, lambda o: float(o.mean()))  # the same outcomes: no difference
        Interval(mean_diff=0.0, lo=0.0, hi=0.0)
    """
    if len(a_outcomes_per_seed) != len(b_outcomes_per_seed) or not a_outcomes_per_seed:
        raise ValueError(
            f"paired_bootstrap: expected the same number (>= 1) of seeds for A and B, got "
            f"{len(a_outcomes_per_seed)} and {len(b_outcomes_per_seed)}"
        )
    a_s = [np.asarray(x) for x in a_outcomes_per_seed]
    b_s = [np.asarray(x) for x in b_outcomes_per_seed]
    for i, (a, b) in enumerate(zip(a_s, b_s, strict=True)):
        if a.shape != b.shape or len(a) == 0:
            raise ValueError(
                f"paired_bootstrap: seed {i}: A's outcomes {a.shape} and B's {b.shape} must be "
                "the same non-empty shape (the same test samples, in the same order)"
            )
    observed = [score_fn(a) - score_fn(b) for a, b in zip(a_s, b_s, strict=True)]
    n_seeds = len(a_s)
    rng = np.random.default_rng(seed)
    diffs = np.empty(n_boot)
    for r in range(n_boot):
        if n_seeds >= MIN_SEEDS_TO_RESAMPLE:
            picked = rng.integers(0, n_seeds, size=n_seeds)
        else:
            picked = np.arange(n_seeds)
        total = 0.0
        for s in picked:
            rows = rng.integers(0, len(a_s[s]), size=len(a_s[s]))  # the same rows for A and B
            total += score_fn(a_s[s][rows]) - score_fn(b_s[s][rows])
        diffs[r] = total / n_seeds
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    return Interval(statistics.fmean(observed), float(lo), float(hi))


def _t975(df: int) -> float:
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
