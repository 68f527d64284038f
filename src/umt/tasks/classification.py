"""Classification: one label per sample, scored by top-1 accuracy; encoders give ``(B, D)``
vectors, probed by multinomial logistic regression (:mod:`umt.probe`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from torch import nn
from torchmetrics import Metric
from torchmetrics.classification import MulticlassAccuracy

from umt.data.base import ArrayDataset, Batch, DataBundle, make_loader
from umt.models.encoders import EncoderFactory
from umt.models.multimodal import ModelConfig, build_model
from umt.probe import (
    ProbeConfig,
    ProbeResult,
    encode_model_split,
    extract_features,
    linear_probe,
)
from umt.tasks.base import Predict, ProbeOutcome, ReportText


@torch.no_grad()
def accuracy(
    predict: Predict,
    dataset: ArrayDataset,
    num_classes: int,
    *,
    device: torch.device | str = "cpu",
    batch_size: int = 512,
    transform: Callable[[Batch], Batch] | None = None,
) -> float:
    """Top-1 accuracy of ``predict`` (a model in eval mode) on ``dataset``."""
    if isinstance(predict, nn.Module):
        predict.eval().to(device)
    # Process-local: under DDP only the main process evaluates, on the whole split.
    metric = MulticlassAccuracy(num_classes=num_classes, average="micro", sync_on_compute=False)
    metric = metric.to(device)
    for batch in make_loader(dataset, batch_size=batch_size, shuffle=False, shard=False):
        batch = {k: v.to(device) for k, v in batch.items()}
        if transform is not None:
            batch = transform(batch)
        metric.update(predict(batch), batch["label"])
    return float(metric.compute())


@torch.no_grad()
def correct_outcomes(
    predict: Predict,
    dataset: ArrayDataset,
    *,
    device: torch.device | str = "cpu",
    batch_size: int = 512,
) -> np.ndarray:
    """Per test sample, 1 if ``predict``'s top-1 class is its label else 0: ``(N,)`` uint8, in
    the dataset's order (what a paired bootstrap resamples)."""
    if isinstance(predict, nn.Module):
        predict.eval().to(device)
    out = []
    for batch in make_loader(dataset, batch_size=batch_size, shuffle=False, shard=False):
        batch = {k: v.to(device) for k, v in batch.items()}
        out.append((predict(batch).argmax(1) == batch["label"]).cpu().numpy())
    return np.concatenate(out).astype(np.uint8)


def accuracy_of(outcomes: np.ndarray) -> float:
    """Accuracy from per-sample 1/0 outcomes, divided in float32 as torchmetrics divides, so
    that it equals :func:`accuracy` on the same predictions exactly.

    Example:
        >>> accuracy_of(np.array([1, 0, 1], dtype=np.uint8)) == float(np.float32(2) / np.float32(3))
        True
    """
    return float(np.float32(outcomes.sum()) / np.float32(len(outcomes)))


class Classification:
    """The classification task (see :class:`umt.tasks.base.Task`)."""

    name = "classification"
    metric = "acc"
    metric_name = "accuracy"
    column = "acc"
    fusion_sweep = True
    additive = True  # accuracy: the mean of 1/0 per sample
    report = ReportText(
        score_heading="Accuracy",
        score="test accuracy",
        sizes_unit="",
        selection="Checkpoints are selected on the validation split; the test split is read "
        "once per model.",
        probe="A linear classifier is trained on each frozen encoder's features (train split, "
        "L2 chosen on val); the table gives its test accuracy. An encoder of the fused model "
        "below its teacher's has learned less of its modality alone: modality failure.",
    )

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
        if fusion is not None:
            cfg = replace(cfg, fusion=fusion)
        return build_model(
            cfg, shapes, num_classes, linear_head=uni, encoders=encoders, init_seed=init_seed
        )

    def val_metric(self, num_classes: int) -> Metric:
        return MulticlassAccuracy(num_classes=num_classes, average="micro")

    def scores(
        self,
        predict: Predict,
        dataset: ArrayDataset,
        num_classes: int,
        *,
        device: torch.device | str = "cpu",
        transform: Callable[[Batch], Batch] | None = None,
    ) -> dict[str, Any]:
        acc = accuracy(predict, dataset, num_classes, device=device, transform=transform)
        return {"acc": acc}

    def split_results(self, val: dict[str, Any], test: dict[str, Any]) -> dict[str, Any]:
        return {"val_acc": val["acc"], "test_acc": test["acc"]}

    def outcomes(
        self,
        predict: Predict,
        dataset: ArrayDataset,
        num_classes: int,
        *,
        device: torch.device | str = "cpu",
    ) -> np.ndarray:
        return correct_outcomes(predict, dataset, device=device)

    def score_of(self, outcomes: np.ndarray) -> float:
        return accuracy_of(outcomes)

    def probe(
        self,
        encoder: nn.Module,
        data: DataBundle,
        modality: str,
        cfg: ProbeConfig,
        *,
        device: torch.device | str = "cpu",
    ) -> ProbeResult:
        splits = [
            extract_features(
                encoder, data.eval_split(s), modality, batch_size=cfg.batch_size, device=device
            )
            for s in ("train", "val", "test")
        ]
        return linear_probe(splits[0], splits[1], splits[2], data.num_classes, cfg)

    def refit_head(self, model: nn.Module, outcome: ProbeOutcome) -> bool:
        head, fitted = getattr(model, "head", None), getattr(outcome, "head", None)
        if not isinstance(head, nn.Linear) or not isinstance(fitted, nn.Linear):
            return False
        if head.weight.shape != fitted.weight.shape:
            return False
        with torch.no_grad():
            head.weight.copy_(fitted.weight)
            head.bias.copy_(fitted.bias)
        return True

    def probe_model(
        self,
        model: nn.Module,
        data: DataBundle,
        modality: str,
        cfg: ProbeConfig,
        *,
        device: torch.device | str = "cpu",
    ) -> ProbeResult:
        splits = []
        for s in ("train", "val", "test"):
            x, y = encode_model_split(
                model, data.eval_split(s), modality, batch_size=cfg.batch_size, device=device
            )
            splits.append((x.flatten(1), y))  # (N, D), as extract_features
        return linear_probe(splits[0], splits[1], splits[2], data.num_classes, cfg)

    def summary_extras(self, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
        return {}

    def data_extras(self, data: DataBundle) -> dict[str, Any]:
        return {}

    def examples_figure(
        self, models: Mapping[str, nn.Module], data: DataBundle, *, device: torch.device | str
    ) -> bytes | None:
        return None
