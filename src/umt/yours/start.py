"""UMT in your own loop with the study's defaults (issue 26): from a diagnosis, distil only the
modalities whose teacher is a better yardstick than your jointly trained encoder (the diagnosis
found a failure: the probe gap's interval excludes 0), and start those encoders of your new
student from their teachers' weights.

    diag = umt.diagnose(model, train, val, test, encoders={"visual": "vis", "audio": "aud"})
    student = MyModel()
    umt_loss = umt.UMTLoss.from_diagnosis(diag, student, {"visual": "vis", "audio": "aud"})

On the user-loop example of issue 26 (``benchmarks/user_loop.py``) this closed the weak encoder's
probe gap where MSE distillation into a student trained from scratch fell below joint training.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from torch import nn

from umt.errors import UMTError
from umt.yours.hooks import submodule

if TYPE_CHECKING:
    from umt.yours.diagnosis import Diagnosis

#: The study's λ (``umt.weight``): the distilled modalities' weight unless given.
WEIGHT = 5.0


def from_diagnosis(
    cls: Any,
    diag: Diagnosis,
    student: nn.Module,
    encoders: Mapping[str, str],
    *,
    weights: float | Mapping[str, float] = WEIGHT,
    init_from_teacher: bool = True,
    **options: Any,
) -> Any:
    """A ``UMTLoss`` (``cls``) over ``diag``'s teachers: weight ``weights`` for each modality the diagnosis
    found failing and 0 for the others; each failing modality's encoder of ``student`` (at the
    dotted name ``encoders[m]``) starts from its teacher's weights (``init_from_teacher``).
    ``options``: :class:`umt.UMTLoss`'s other keywords."""
    if not diag.teachers:
        raise UMTError(
            "UMTLoss.from_diagnosis: the diagnosis holds no teachers (a diagnosis loaded without "
            "them?); load it with Diagnosis.load(path, model=...) or run umt.diagnose again"
        )
    unknown = sorted(set(diag.teachers) - set(encoders))
    if unknown:
        raise UMTError(
            f"UMTLoss.from_diagnosis: encoders names no student encoder for {unknown}; give "
            f"{{modality: 'dotted.submodule'}} for each of {sorted(diag.teachers)}"
        )
    failing = set(diag.failures)
    given = weights if isinstance(weights, Mapping) else dict.fromkeys(diag.teachers, weights)
    per = {m: float(given.get(m, WEIGHT)) if m in failing else 0.0 for m in diag.teachers}
    if init_from_teacher:
        for m in failing:
            target = submodule(student, encoders[m], what=f"encoders[{m!r}]")
            teacher = getattr(diag.teachers[m], "module", diag.teachers[m])
            try:
                target.load_state_dict(teacher.state_dict())
            except RuntimeError as e:
                raise UMTError(
                    f"UMTLoss.from_diagnosis: the student's {encoders[m]!r} and the teacher of "
                    f"{m!r} differ in architecture, so the student cannot start from the "
                    f"teacher's weights ({str(e).splitlines()[0]}); pass init_from_teacher=False"
                ) from e
    return cls(diag.teachers, weights=per, **options)
