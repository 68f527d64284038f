"""How one stage of a study is trained, evaluated, probed and cached (:class:`Stages`); which
stages a seed runs is ``umt.study.runner.Runner``'s, on top of it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from umt.config import config_hash, to_dict
from umt.data import DataBundle
from umt.engine import DivergenceError, TrainConfig, eval_device, fit, is_main_process, save_model
from umt.engine.checkpoints import start_message
from umt.io import fault_point, write_json
from umt.methods import METHODS, Ensemble, Method
from umt.probe import extract_features
from umt.report.compare import write_outcomes
from umt.study.cache import (
    begin_stage,
    cached,
    cached_features,
    cached_probe,
    finish_stage,
    load_weights,
    train_key,
)
from umt.study.config import StudyConfig
from umt.study.inputs import data_key, model_key
from umt.tasks import Task, modality_scores

PROBE_VERSION = 3  # in probe.json keys; 1 read augmented inputs, seg branches alone; 2 kept no
# per-sample validation outcomes


Log = Callable[[str], None]


def _silent(_: str) -> None:
    pass


#: How a stage's initial weights are drawn, in its key: ``per-part`` (every stage and each of its
#: encoders from a generator of its own, ``umt.models.base.seed_for``). Stages trained when every
#: stage of a seed started from ``torch.manual_seed(seed)`` (the first modality's student then
#: began at its teacher's initial weights) have other keys and are retrained.
INIT = "per-part"


class Stages:
    """One study's stages: how each is trained (``fit``), evaluated (val and test, each modality
    alone and removed), probed, and cached in the run directory. Under DDP every process trains
    (each ``fit`` is collective); only the main process evaluates, probes and writes:
    ``self.main`` is that one test.
    """

    def __init__(
        self,
        cfg: StudyConfig,
        data: DataBundle,
        task: Task,
        run_dir: Path,
        log: Log,
        *,
        worker: bool = False,
        key: str | None = None,
    ) -> None:
        self.cfg, self.data, self.task, self.run_dir = cfg, data, task, run_dir
        self.main = is_main_process()
        self.log = log if self.main else _silent
        self.device = eval_device(cfg.train)
        self.means = data.modality_means() if cfg.mask_fill == "mean" else None
        self.trained: list[str] = []
        # The user's data: its content's hash; a data folder: its files' content (a changed file
        # retrains); else the data's settings. A worker (umt.study.parallel) reads the main process's.
        # ``key``: the data key, computed already (the search's trials).
        self.data_key = key or data_key(cfg.data, data, run_dir, update=self.main and not worker)
        self.examples: dict[str, nn.Module] = {}  # first seed's models, for the task's figure
        self.callbacks: list[Any] = []  # more Lightning callbacks for every stage (the search's)
        self.ready: set[int] = set()  # seeds whose teachers and joint stages select reads

    # -- the stages of one seed -----------------------------------------------------------------

    def _train_and_probe(
        self,
        seed: int,
        name: str,
        model: nn.Module,
        method: Method,
        data: DataBundle,
        key_parts: dict[str, Any],
        out: dict[str, Any],
    ) -> dict[str, Any] | None:
        """Train one stage and probe its encoders into ``out``; ``None`` if it failed."""
        try:
            result = self.train_stage(seed, name, model, method, data, key_parts)
        except StageFailed as e:
            out["failed"][name] = e.message
            return None
        out["stages"][name] = result
        out["probes"][name] = self.probe_stage(seed, name, model, result["key"])
        self.keep_example(name, model)
        return result

    # -- one stage ------------------------------------------------------------------------------
    def _train_config(self, name: str, key_parts: dict[str, Any]) -> TrainConfig:
        # A method's own recipe (``recipes``, a section's ``train:``); a teacher's: ``recipes.teacher-<m>``.
        method_name = key_parts.get("method", "")
        return self.cfg.train_for(method_name if method_name in METHODS else name)

    def stage_key(self, seed: int, name: str, data: DataBundle, key_parts: dict[str, Any]) -> str:
        """The cache key of a stage: what its result depends on."""
        train = self._train_config(name, key_parts)
        model_cfg = model_key(self.cfg.model, data.input_shapes, self.task)  # options in use
        return config_hash(self.data_key, train_key(train), model_cfg, seed, key_parts)

    def train_stage(
        self,
        seed: int,
        name: str,
        model: nn.Module,
        method: Method,
        data: DataBundle,
        key_parts: dict[str, Any],
    ) -> dict[str, Any]:
        stage_dir = self.run_dir / f"seed{seed}" / name
        train = self._train_config(name, key_parts)
        key = self.stage_key(seed, name, data, key_parts)
        k = self.task.metric
        done = cached(stage_dir, key, self.log)
        if done is not None and load_weights(model, stage_dir / "model.pt", self.log):
            write_outcomes(self.task, model, data, stage_dir, self.device, fresh=False)
            self.log(
                f"[seed {seed}] {name}: cached (val {done[f'val_{k}']:.4f}, "
                f"test {done[f'test_{k}']:.4f})"
            )
            return done
        begin = {"stage": name, "seed": seed, **to_dict(key_parts)}
        if train != self.cfg.train:
            begin["train"] = to_dict(train)
        self.begin(stage_dir, key, begin)
        self.log(f"[seed {seed}] {start_message(name, stage_dir, train.epochs)}")
        try:
            fitted = fit(
                model,
                method,
                data,
                train,
                stage_dir,
                task=self.task,
                seed=seed,
                stage=name,
                callbacks=self.callbacks,
            )
        except DivergenceError as e:
            if self.main:
                write_json(stage_dir / "failed.json", {"key": key, "error": str(e)})
            self.log(f"[seed {seed}] {name}: FAILED: {e}")
            raise StageFailed(f"seed{seed}/{name}", str(e)) from e
        if not self.main:
            return {"key": key}
        (stage_dir / "failed.json").unlink(missing_ok=True)
        result = self._evaluate(model, data, key, name, seed)
        result.update(
            **{f"fit_val_{k}": fitted.best_val_score},  # as logged in training (synced)
            best_epoch=fitted.best_epoch,
            stopped_epoch=fitted.stopped_epoch,
            converged=fitted.converged,
            epochs=fitted.epochs,
            optimizer=train.optimizer,
            lr=train.lr,
            train_seconds=round(fitted.seconds, 3),
        )
        for part in ("distilled", "declined"):  # UMT's select: what it distilled, or declined
            if part in key_parts:
                result[part] = key_parts[part]
        if (key_parts.get("start") or {}).get("whole"):  # a declined UMT's second attempt
            result["restarted"] = True
        from_teachers = key_parts.get("distilled") and _settings_hold(
            key_parts, "init_from_teacher"
        )
        if key_parts.get("start") or from_teachers:  # encoders copied from trained ones
            result["warm_start"] = True
        save_model(model, stage_dir / "model.pt")
        finish_stage(stage_dir, result)  # written last: marks the stage finished
        fault_point(f"done:seed{seed}/{name}")
        self.trained.append(f"seed{seed}/{name}")
        self.log(
            f"[seed {seed}] {name}: val {result[f'val_{k}']:.4f}, test {result[f'test_{k}']:.4f}"
        )
        return result

    def ume_stage(
        self, seed: int, teachers: dict[str, nn.Module], teacher_keys: list[str]
    ) -> dict[str, Any]:
        if not self.main:
            return {}
        stage_dir = self.run_dir / f"seed{seed}" / "ume"
        settings = self.cfg.settings("ume")
        key = config_hash(teacher_keys, settings, self.cfg.mask_fill)
        done = cached(stage_dir, key, self.log)
        if done is not None:
            ume = Ensemble(teachers, settings)
            write_outcomes(self.task, ume, self.data, stage_dir, self.device, fresh=False)
            return done
        self.begin(stage_dir, key, {"stage": "ume", "seed": seed, "ume": to_dict(settings)})
        result = self._evaluate(Ensemble(teachers, settings), self.data, key, "ume", seed)
        finish_stage(stage_dir, result)
        k = self.task.metric
        self.log(f"[seed {seed}] ume: val {result[f'val_{k}']:.4f}, test {result[f'test_{k}']:.4f}")
        return result

    def _evaluate(
        self, model: nn.Module, data: DataBundle, key: str, name: str, seed: int
    ) -> dict[str, Any]:
        """The task's val and test scores (the test split read once, here); with two modalities
        or more, the test score with each modality alone (``modality_test_<metric>``) and with
        each one removed (``missing_test_<metric>``)."""
        task, k = self.task, data.num_classes
        val = task.scores(model, data.val, k, device=self.device)
        test = task.scores(model, data.test, k, device=self.device)
        write_outcomes(task, model, data, self.run_dir / f"seed{seed}" / name, self.device)
        result: dict[str, Any] = {"key": key, "stage": name, "seed": seed}
        result.update(task.split_results(val, test))
        if len(data.modalities) < 2:
            return result
        for mode, prefix in (("only", "modality_test"), ("without", "missing_test")):
            result[f"{prefix}_{task.metric}"] = modality_scores(
                task,
                model,
                data.test,
                k,
                data.modalities,
                mode=mode,
                fill=self.cfg.mask_fill,
                means=self.means,
                device=self.device,
            )
        return result

    def probe_stage(self, seed: int, name: str, model: nn.Module, stage_key: str) -> dict[str, Any]:
        if not self.main:
            return {}
        path = self.run_dir / f"seed{seed}" / name / "probe.json"
        key = config_hash(stage_key, self.cfg.probe, PROBE_VERSION)
        done = cached_probe(path, key)  # None if absent, of other settings, or damaged
        if done is not None:
            return done
        cfg, dev = self.cfg.probe, self.device  # each branch as the model computes it:
        outcomes = {  # (forward_features, on the evaluation view; the FusionModel contract)
            m: self.task.probe_model(model, self.data, m, cfg, device=dev)
            for m in model.encoders  # type: ignore[union-attr]
        }
        probes = {m: o.as_dict() for m, o in outcomes.items()}
        # Each probe's right (1) or wrong (0) per validation sample, for UMT's choice of what to
        # distil (``umt.select``); kept here, not in the summary.
        correct = {}
        for m, o in outcomes.items():
            right = getattr(o, "val_correct", None)  # classification probes keep them
            if right is not None:
                correct[m] = "".join("1" if c else "0" for c in right.tolist())
        write_json(path, {"key": key, "encoders": probes, "val_correct": correct})
        k = self.task.metric
        shown = ", ".join(f"{m} {r[f'test_{k}']:.4f}" for m, r in probes.items())
        self.log(f"[seed {seed}] {name}: probe test {self.task.metric_name} {shown}")
        return probes

    def teacher_features(
        self, seed: int, modality: str, teacher: nn.Module, teacher_key: str
    ) -> np.ndarray:
        """The teacher encoder's features of every training sample, computed once per teacher
        and kept memory-mapped beside it (``features-train.npy``)."""
        encoders = teacher.encoders
        assert isinstance(encoders, nn.ModuleDict)  # the FusionModel contract
        encoder = encoders[modality]
        train = self.data.eval_split("train")  # the cache is refused for augmented inputs
        if not self.main:  # other DDP processes compute their own copy, write nothing
            return extract_features(encoder, train, modality, device=self.device)[0].numpy()
        stage_dir = self.run_dir / f"seed{seed}" / f"teacher-{modality}"

        def compute() -> np.ndarray:
            feats = extract_features(encoder, train, modality, device=self.device)[0].numpy()
            self.log(f"[seed {seed}] teacher-{modality}: cached {feats.shape} train features")
            return feats

        return cached_features(stage_dir / "features-train", teacher_key, compute, self.log)

    def begin(self, stage_dir: Path, key: str, settings: dict[str, Any]) -> None:
        """The stage is about to train: its directory made ready (by the main process)."""
        if self.main:
            begin_stage(stage_dir, key, settings, self.log)

    def keep_example(self, name: str, model: nn.Module) -> None:
        """Keep the first seed's models for the task's examples figure (if it draws one)."""
        if self.task.report.examples and self.main:
            self.examples.setdefault(name, model)


class StageFailed(Exception):
    """A stage stopped (e.g. diverged); the study goes on with what does not depend on it."""

    def __init__(self, stage: str, message: str) -> None:
        super().__init__(f"{stage}: {message}")
        self.stage, self.message = stage, message


def _settings_hold(key_parts: dict[str, Any], setting: str) -> bool:
    """Whether a stage's keyed settings hold ``setting`` as true (settings at a default that
    ``key_omits`` are absent)."""
    settings = key_parts.get("settings")
    return isinstance(settings, dict) and settings.get(setting) is True
