"""What differs between tasks (classification, segmentation), behind one ``Task`` protocol.

A task says how its score is named and computed, how a model is built for it, how a frozen encoder
is probed, what a stage's result and the study's summary hold beyond the score, and the texts of
its report. Study, engine and report call the task; none of them tests a task's name.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn
from torchmetrics import Metric

from umt.data.base import ArrayDataset, Batch, DataBundle
from umt.models.encoders import EncoderFactory
from umt.models.multimodal import ModelConfig, mask_batch
from umt.probe import ProbeConfig

Predict = Callable[[Batch], torch.Tensor] | nn.Module


@dataclass(frozen=True)
class ReportText:
    """The parts of a study's report that read differently per task.

    Attributes:
        score_heading: the heading of the main table (``Accuracy``).
        score: the score in prose (``test accuracy``).
        sizes_unit: appended to the split sizes (`` images``).
        selection: what checkpoints are selected on, and how the score is defined.
        probe: how the probe works, under the modality-failure heading.
        class_table: a per-class table (``test_iou``) follows the main one.
        examples: an examples figure (``figures/examples.png``) follows the probes.
    """

    score_heading: str
    score: str
    sizes_unit: str
    selection: str
    probe: str
    class_table: bool = False
    examples: bool = False


class ProbeOutcome(Protocol):
    """A probe's result: ``as_dict()`` gives ``val_<metric>``, ``test_<metric>``, ``l2``..."""

    @property
    def feature_dim(self) -> int: ...

    def as_dict(self) -> dict[str, float]: ...


class Task(Protocol):
    """A task a study can run (``umt.tasks.TASKS``).

    Attributes:
        name: as data sets name it (``DataBundle.task``).
        metric: the key of its score in results and summaries (``acc``, ``miou``).
        metric_name: the score in prose (``accuracy``, ``mIoU``).
        column: the score in table headers (``acc``, ``mIoU``).
        fusion_sweep: whether ``fusion: [...]`` sweeps apply (classification fusion modules).
        additive: whether the score is the mean of a value per sample (accuracy: its intervals
            are then computed exactly, ``umt.report.stats.paired_interval``; mIoU is not).
        report: the report's task-specific texts.
    """

    name: str
    metric: str
    metric_name: str
    column: str
    fusion_sweep: bool
    additive: bool
    report: ReportText

    def build_model(
        self,
        cfg: ModelConfig,
        shapes: Mapping[str, tuple[int, ...]],
        num_classes: int,
        *,
        uni: bool = False,
        fusion: str | None = None,
        encoders: Mapping[str, EncoderFactory] | None = None,
        init_seed: int | None = None,
    ) -> nn.Module:
        """A fresh model (``uni``: a uni-modal teacher; ``fusion``: overrides the config's;
        ``encoders``: the user's encoder factories by modality, instead of ``cfg.encoder``;
        ``init_seed``: each part's initial weights from a generator of its own)."""
        ...

    def val_metric(self, num_classes: int) -> Metric:
        """The torchmetrics metric that selects checkpoints during training."""
        ...

    def scores(
        self,
        predict: Predict,
        dataset: ArrayDataset,
        num_classes: int,
        *,
        device: torch.device | str = "cpu",
        transform: Callable[[Batch], Batch] | None = None,
    ) -> dict[str, Any]:
        """Scores of ``predict`` on ``dataset``; ``[metric]`` is the task's score."""
        ...

    def split_results(self, val: dict[str, Any], test: dict[str, Any]) -> dict[str, Any]:
        """A stage's ``result.json`` entries from its val and test scores."""
        ...

    def outcomes(
        self,
        predict: Predict,
        dataset: ArrayDataset,
        num_classes: int,
        *,
        device: torch.device | str = "cpu",
    ) -> np.ndarray:
        """Per-sample outcomes of ``predict`` on ``dataset``, first axis the samples in order
        (classification: ``(N,)`` uint8 1/0 correct; segmentation: ``(N, 2, K)`` per-class
        intersection and union pixel counts), from which ``score_of`` recomputes the score of
        any resample of the samples (:func:`umt.report.stats.paired_interval`)."""
        ...

    def score_of(self, outcomes: np.ndarray) -> float:
        """The task's score from per-sample ``outcomes`` (equal to ``scores()[metric]`` on the
        same predictions)."""
        ...

    def probe(
        self,
        encoder: nn.Module,
        data: DataBundle,
        modality: str,
        cfg: ProbeConfig,
        *,
        device: torch.device | str = "cpu",
    ) -> ProbeOutcome:
        """Linear evaluation of a frozen encoder run alone (see :func:`umt.probe.probe`), on
        every split's evaluation view (:meth:`DataBundle.eval_split`)."""
        ...

    def refit_head(self, model: nn.Module, outcome: ProbeOutcome) -> bool:
        """Replace the uni-modal ``model``'s head by the probe ``outcome``'s classifier (the
        teacher's head fell short of the probe on its own features); False where the task's
        heads are not a linear read-out of the probed features (segmentation's decoder)."""
        ...

    def probe_model(
        self,
        model: nn.Module,
        data: DataBundle,
        modality: str,
        cfg: ProbeConfig,
        *,
        device: torch.device | str = "cpu",
    ) -> ProbeOutcome:
        """Linear evaluation of branch ``modality`` of a frozen model, on the features the
        model's own forward pass computes for it (``forward_features(batch)[1][modality][-1]``,
        :func:`umt.probe.encode_model_split`), over every split's evaluation view. What a study
        probes: for a uni-modal teacher and a classification model it equals :meth:`probe` of
        the encoder; for a fused segmentation model whose primary branch receives the fused map
        (ESANet) it is that branch's map as the fused model computes it."""
        ...

    def summary_extras(self, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """A stage's summary entries beyond the score, from its per-seed results."""
        ...

    def data_extras(self, data: DataBundle) -> dict[str, Any]:
        """The summary's ``data`` entries beyond the common ones."""
        ...

    def examples_figure(
        self, models: Mapping[str, nn.Module], data: DataBundle, *, device: torch.device | str
    ) -> bytes | None:
        """A PNG of predictions for the report, or ``None`` where the task draws none."""
        ...


def modality_scores(
    task: Task,
    model: nn.Module,
    dataset: ArrayDataset,
    num_classes: int,
    modalities: tuple[str, ...],
    *,
    mode: str = "only",
    fill: str = "zero",
    means: Mapping[str, torch.Tensor] | None = None,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """Per modality m, the fused model's score (the task's metric) with inputs masked.

    ``mode="only"``: every modality but m is masked (what the model gets from m alone).
    ``mode="without"``: only m is masked (what is left when m is missing at test time).
    Masking (``zero`` or the training ``mean``) works for every fusion module.
    """
    if mode not in ("only", "without"):
        raise ValueError(f"mode must be 'only' or 'without', got {mode!r}")
    out = {}
    for m in modalities:
        keep = [m] if mode == "only" else [o for o in modalities if o != m]
        if isinstance(model, ModalitySubset):  # e.g. UME: the members of the kept modalities
            scores = task.scores(model.subset(keep), dataset, num_classes, device=device)
            out[m] = float(scores[task.metric])
            continue

        def transform(b: Batch, keep: list[str] = keep) -> Batch:
            return mask_batch(b, keep, fill=fill, means=means)

        scores = task.scores(model, dataset, num_classes, device=device, transform=transform)
        out[m] = float(scores[task.metric])
    return out


@runtime_checkable
class ModalitySubset(Protocol):
    """A predictor that can do without some modalities by itself (an ensemble of uni-modal
    models: only the members whose modality is present vote), rather than by masked inputs."""

    def subset(self, keep: Sequence[str]) -> nn.Module: ...


def mean_std(values: Sequence[float]) -> dict[str, Any]:
    """``mean``, ``std`` (0 for one value) and the ``values``, as summaries keep every number.

    Example:
        >>> mean_std([0.5, 0.7])["mean"]
        0.6
    """
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "values": list(values),
    }
