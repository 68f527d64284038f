"""Helpers several methods share: a modality's confidence on the true class, the same scores on
every DDP process, and a held-out part of the training split."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
import torch.distributed as dist

from umt.errors import UMTError


def true_class_score(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``sum_i softmax(logits_i)[y_i]`` over the batch (the modality's contribution).

    Example:
        >>> true_class_score(torch.tensor([[0.0, 0.0], [0.0, 100.0]]), torch.tensor([0, 1]))
        tensor(1.5000)
    """
    return logits.softmax(-1).gather(1, labels[:, None]).sum()


def split_holdout(
    n: int, share: float, seed: int, *, key: str = "gblend.holdout"
) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``(T, V)`` of a training split of ``n`` samples: V is ``share`` of them, by ``seed``
    (``key``: the setting ``share`` came from, for the error).

    Example:
        >>> t, v = split_holdout(10, 0.2, seed=0)
        >>> len(t), len(v), sorted(set(t) | set(v)) == list(range(10))
        (8, 2, True)
    """
    if not 0.0 < share < 1.0:
        raise UMTError(f"{key}: expected a share in (0, 1), got {share}")
    held = min(n - 1, max(1, round(share * n)))
    rows = np.random.default_rng(seed).permutation(n)
    return np.sort(rows[held:]), np.sort(rows[:held])


def all_reduce_scores(scores: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``scores`` summed over the processes of a DDP run (unchanged in a single process), so
    that every process computes the same coefficients from them.

    Example:
        >>> all_reduce_scores({"a": torch.tensor(1.5)})
        {'a': tensor(1.5000)}
    """
    if not (dist.is_available() and dist.is_initialized()):
        return dict(scores)
    stacked = torch.stack(list(scores.values()))
    dist.all_reduce(stacked)
    return dict(zip(scores, stacked, strict=True))
