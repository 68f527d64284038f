"""Tasks: what differs between classification and segmentation, behind one protocol.

``TASKS`` names them as data sets do (``DataBundle.task``); :func:`task_of` finds a data set's or
a summary's task, with an error that lists the valid ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from umt.data.base import DataBundle
from umt.errors import UMTError
from umt.probe import DEFAULT_PROBE, ProbeConfig
from umt.tasks.base import ProbeOutcome, ReportText, Task, mean_std, modality_scores
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


def task_of_summary(summary: Mapping[str, Any]) -> Task:
    """The task of a study, from its summary (``summary.json``) alone.

    Example:
        >>> task_of_summary({"data": {"task": "segmentation"}}).column
        'mIoU'
    """
    return task_named(summary["data"].get("task", "classification"), what="the study")


def probe(
    encoder: nn.Module,
    data: DataBundle,
    modality: str,
    cfg: ProbeConfig = DEFAULT_PROBE,
    *,
    device: torch.device | str = "cpu",
) -> ProbeOutcome:
    """Linear evaluation of a frozen ``encoder`` of ``modality`` on ``data``; ``.as_dict()``
    gives the probe's ``val_<metric>``, ``test_<metric>`` and chosen ``l2``.

    Works on any encoder mapping the modality's batch tensor to features, e.g. one taken from a
    fusion model trained elsewhere: ``umt.probe(my_model.audio_net, data, "audio")``. The data
    set's task decides the probe: a linear classifier on ``(B, D)`` features scored by accuracy
    (:func:`umt.probe.linear_probe`), or, for segmentation, a per-position classifier on feature
    maps ``(B, C, h, w)`` scored by mean IoU (:func:`umt.tasks.seg_probe.linear_probe_maps`).
    """
    if modality not in data.modalities:
        raise UMTError(f"modality {modality!r} is not in data set {data.name!r} {data.modalities}")
    return task_of(data).probe(encoder, data, modality, cfg, device=device)


__all__ = [
    "CLASSIFICATION",
    "SEGMENTATION",
    "TASKS",
    "ReportText",
    "Task",
    "accuracy",
    "mean_std",
    "modality_scores",
    "probe",
    "segmentation_scores",
    "task_named",
    "task_of",
    "task_of_summary",
]
