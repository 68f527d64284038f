"""Tasks: what differs between classification and segmentation, behind one protocol.

``TASKS`` names them as data sets do (``DataBundle.task``); :func:`task_of` finds a data set's or
a summary's task, with an error that lists the valid ones.
"""

from __future__ import annotations

from umt.data.base import DataBundle
from umt.errors import UMTError
from umt.tasks.base import ReportText, Task, mean_std, modality_scores
from umt.tasks.classification import Classification, accuracy
from umt.tasks.segmentation import Segmentation, segmentation_scores

CLASSIFICATION = Classification()
SEGMENTATION = Segmentation()

#: Every task a study can run, by the name data sets give (``DataBundle.task``).
TASKS: dict[str, Task] = {CLASSIFICATION.name: CLASSIFICATION, SEGMENTATION.name: SEGMENTATION}


def task_named(name: str, *, what: str = "the data set") -> Task:
    """The task called ``name``, or an error naming it and the valid ones.

    Example:
        >>> task_named("segmentation").metric
        'miou'
    """
    if name not in TASKS:
        raise UMTError(f"{what} is a {name!r} task; a study handles {' and '.join(sorted(TASKS))}")
    return TASKS[name]


def task_of(data: DataBundle) -> Task:
    """The task of a data set."""
    return task_named(data.task, what=f"data set {data.name!r}")


__all__ = [
    "CLASSIFICATION",
    "SEGMENTATION",
    "TASKS",
    "ReportText",
    "Task",
    "accuracy",
    "mean_std",
    "modality_scores",
    "segmentation_scores",
    "task_named",
    "task_of",
]
