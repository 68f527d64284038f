"""The pure functions of the UMT family (STYLE 6): feature distances, UMT's feature distillation
(vectors and segmentation stage maps), the T²-scaled logit distillation and G2D's prioritisation
coefficients. Their equations are in ``umt.methods.umt``'s docstring."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F

from umt.errors import UMTError

DISTILL_LOSSES = ("mse", "l1", "cosine")


def feature_distance(
    student: torch.Tensor, teacher: torch.Tensor, kind: str = "mse"
) -> torch.Tensor:
    """Distance between student and teacher features, averaged over all elements.

    Args:
        student: ``(B, D)`` (or ``(B, C, H, W)``) student features.
        teacher: the same shape, from the frozen teacher.
        kind: ``mse``, ``l1``, ``cosine`` (1 - cosine similarity per sample, averaged) or ``kl``
            (the features are logits ``(B, K)``: ``KL(softmax(teacher) || softmax(student))``).

    Example:
        >>> s, t = torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0, 0.0]])
        >>> feature_distance(s, t).item(), feature_distance(s, t, "l1").item()
        (2.5, 1.5)
    """
    if student.shape != teacher.shape:
        raise UMTError(
            f"student features have shape {tuple(student.shape)} but the teacher's have "
            f"{tuple(teacher.shape)}; UMT needs the same feature shape (set the student's encoder "
            "to the teacher's architecture)"
        )
    if kind == "mse":
        return F.mse_loss(student, teacher)
    if kind == "l1":
        return F.l1_loss(student, teacher)
    if kind == "cosine":
        return (1 - F.cosine_similarity(student.flatten(1), teacher.flatten(1), dim=1)).mean()
    if kind == "kl":  # logits (B, K): the teacher's read-out of both (UMT's ``readout`` target)
        return logit_distill_loss(student, teacher)
    raise UMTError(
        f"unknown distillation loss {kind!r} (umt.loss); expected one of {DISTILL_LOSSES}"
    )


def umt_distill_loss(
    student: Mapping[str, torch.Tensor],
    teacher: Mapping[str, torch.Tensor],
    weights: Mapping[str, float],
    kind: str = "mse",
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``sum_m lambda_m * D(student_m, teacher_m)`` over the teachers' modalities.

    Returns:
        The weighted sum, and the unweighted distance per modality (for logging).

    Example:
        >>> s = {"a": torch.ones(2, 3), "b": torch.zeros(2, 3)}
        >>> t = {"a": torch.zeros(2, 3), "b": torch.zeros(2, 3)}
        >>> total, per = umt_distill_loss(s, t, {"a": 2.0, "b": 10.0})
        >>> total.item(), per["a"].item(), per["b"].item()
        (2.0, 1.0, 0.0)
    """
    per = {m: feature_distance(student[m], teacher[m], kind) for m in teacher}
    total = sum((weights[m] * d for m, d in per.items()), torch.zeros(()))
    return total, per


def umt_stage_distill_loss(
    student: Mapping[str, Sequence[torch.Tensor]],
    teacher: Mapping[str, Sequence[torch.Tensor]],
    weights: Mapping[str, float],
    stages: tuple[int, ...] = (),
    kind: str = "mse",
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``sum_m lambda_m * mean_{k in stages} D(student_m[k], teacher_m[k])`` (segmentation).

    Args:
        student, teacher: modality -> the encoder's stage maps ``[(B, C_k, H_k, W_k)]``.
        weights: lambda_m.
        stages: stage indices distilled; empty: all.
        kind: the distance (see :func:`feature_distance`).

    Example:
        >>> s = {"d": [torch.ones(1, 2, 2, 2), torch.zeros(1, 4, 1, 1)]}
        >>> t = {"d": [torch.zeros(1, 2, 2, 2), torch.zeros(1, 4, 1, 1)]}
        >>> umt_stage_distill_loss(s, t, {"d": 2.0})[0].item()   # 2 * (1 + 0) / 2
        1.0
        >>> umt_stage_distill_loss(s, t, {"d": 2.0}, stages=(0,))[0].item()
        2.0
    """
    per = {}
    for m in teacher:
        ks = stages or tuple(range(len(teacher[m])))
        bad = [k for k in ks if not -len(teacher[m]) <= k < len(teacher[m])]
        if bad:
            raise UMTError(
                f"umt.stages: {bad} out of range; the encoder of {m!r} has stages "
                f"0..{len(teacher[m]) - 1}"
            )
        dists = [feature_distance(student[m][k], teacher[m][k], kind) for k in ks]
        per[m] = torch.stack(dists).mean()
    total = sum((weights[m] * d for m, d in per.items()), torch.zeros(()))
    return total, per


def logit_distill_loss(
    student: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """``T^2 * KL(softmax(teacher / T) || softmax(student / T))``, averaged over the batch.

    The classic knowledge-distillation term (Hinton et al. 2015); the ``T^2`` keeps its gradient's
    scale independent of T. G2D's code computes the same (``kl_div(..., "batchmean") * T**2``).

    Args:
        student: ``(B, K)`` student logits (gradient flows into them).
        teacher: ``(B, K)`` the frozen teacher's logits.
        temperature: T > 0.

    Example:
        >>> s, t = torch.tensor([[0.0, 0.0]]), torch.tensor([[3.0, 1.0]]).log()
        >>> round(logit_distill_loss(s, t).item(), 4)  # 0.75 ln 1.5 + 0.25 ln 0.5
        0.1308
        >>> round(logit_distill_loss(s, t, temperature=2.0).item(), 4)
        0.1454
    """
    if temperature <= 0:
        raise UMTError(f"umt.temperature: expected a number > 0, got {temperature}")
    log_p_student = F.log_softmax(student / temperature, dim=-1)
    p_teacher = F.softmax(teacher.detach() / temperature, dim=-1)
    kl = F.kl_div(log_p_student, p_teacher, reduction="batchmean")
    return kl * temperature**2


def priority_coefficients(scores: Mapping[str, float | torch.Tensor]) -> dict[str, float]:
    """G2D's modality prioritisation: 1 for the modality that trains now, 0 for the others.

    ``s_hat_m = sum_i softmax(l_hat_m(x_i))[y_i]`` is the confidence of modality m's *teacher* on
    the batch (G2D's code, ``utils.modulate_gradients_based_on_scores_from_two_modalities``). The
    least confident modality is prioritised: its coefficient is 1; every other encoder's weight
    gradients are multiplied by 0. With two modalities this is exactly the code (the one whose
    teacher scores higher gets 0); with more, all but the weakest are held. Ties for the lowest
    score keep every tied modality (the code raises on an exact tie of two).

    Example:
        >>> priority_coefficients({"audio": 12.0, "visual": 7.5})
        {'audio': 0.0, 'visual': 1.0}
        >>> priority_coefficients({"a": 3.0, "b": 1.0, "c": 1.0})
        {'a': 0.0, 'b': 1.0, 'c': 1.0}
    """
    s = {m: float(v) for m, v in scores.items()}
    low = min(s.values())
    return {m: 1.0 if v == low else 0.0 for m, v in s.items()}
