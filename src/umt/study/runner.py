"""One study's stages, run with caching: the teachers of a seed, then each method, then how a
stage is trained, evaluated and probed, and the cache of finished stages (``run_study`` drives
it; ``umt.study.parallel`` runs shares of it in worker processes).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from umt.config import config_hash, key_dict, to_dict
from umt.data import DataBundle
from umt.engine import DivergenceError, eval_device, fit, is_main_process, save_model
from umt.engine.checkpoints import start_message
from umt.errors import UMTError
from umt.io import fault_point, write_json
from umt.methods import METHODS, Ensemble, Joint, Method, MethodContext
from umt.methods.base import ResolvesSettings
from umt.methods.joint import HeadOnly
from umt.models.pretrained import file_digest, load_teacher_state, read_teacher
from umt.probe import extract_features
from umt.report.compare import write_outcomes
from umt.study import cache
from umt.study.cache import begin_stage, cached, cached_features, load_weights, train_key
from umt.study.config import StudyConfig
from umt.study.inputs import data_key, model_key
from umt.tasks import Task, modality_scores

PROBE_VERSION = 2  # in probe.json keys; version 1 read augmented inputs, seg branches alone


Log = Callable[[str], None]


def _silent(_: str) -> None:
    pass


class Runner:
    """Runs one study's stages with caching. Internal to ``run_study``.

    Read top to bottom: the stages of a seed (teachers, then each method), then how a stage is
    trained, evaluated and probed, then the cache of finished stages.

    Under DDP every process runs the study (each ``fit`` is collective); only the main process
    evaluates, probes and writes, so the run directory is written once. ``self.main`` is that
    one test: the other processes take part in training and return empty results.
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
    ) -> None:
        self.cfg, self.data, self.task, self.run_dir = cfg, data, task, run_dir
        self.main = is_main_process()
        self.log = log if self.main else _silent
        self.device = eval_device(cfg.train)
        self.means = data.modality_means() if cfg.mask_fill == "mean" else None
        self.trained: list[str] = []
        # The user's data: its content's hash; a data folder: its files' content (a changed file
        # retrains); else the data's settings. A worker (umt.study.parallel) reads the main process's.
        self.data_key = data_key(cfg.data, data, run_dir, update=self.main and not worker)
        self.examples: dict[str, nn.Module] = {}  # first seed's models, for the task's figure

    # -- the stages of one seed -----------------------------------------------------------------
    def run_seed(self, seed: int, methods: Sequence[str] | None = None) -> dict[str, Any]:
        """The seed's teachers and methods, into ``{"stages", "probes", "failed"}``.

        ``methods``: only these (a worker's share, ``umt.study.parallel``); the teachers are then
        built only if one of them uses teachers (trained already: read from the cache).
        """
        out: dict[str, Any] = {"stages": {}, "probes": {}, "failed": {}}
        share = methods is not None
        methods = self.cfg.methods if methods is None else methods
        teachers: dict[str, nn.Module] = {}
        keys: dict[str, str] = {}
        if not share or any(METHODS[m].uses_teachers for m in methods):
            teachers, keys = self.teachers(seed, out)
        missing = [f"teacher-{m}" for m in self.data.modalities if m not in teachers]

        def teacher_features(m: str) -> np.ndarray:
            return self.teacher_features(seed, m, teachers[m], keys[m])

        for method in methods:
            spec = METHODS[method]
            if spec.uses_teachers and missing:
                out["failed"][method] = f"skipped: it needs {', '.join(missing)}, which failed"
                continue
            if spec.build is None:  # UME: combines the teachers, trains nothing, has no fusion
                out["stages"][method] = self.ume_stage(seed, teachers, list(keys.values()))
                self.keep_example(method, Ensemble(teachers, self.cfg.settings("ume")))
                continue
            for name, fusion in self.cfg.fusion_stages(method):
                torch.manual_seed(seed)
                model = self.task.build_model(
                    self.cfg.model, self.data.input_shapes, self.data.num_classes, fusion=fusion
                )
                settings = self.cfg.settings(method)
                context = MethodContext(
                    settings, model, teachers, self.data, seed, teacher_features
                )
                step = spec.build(context)
                if isinstance(step, ResolvesSettings):  # `auto` keyed as what it resolved to
                    settings = step.resolved_settings()
                key_parts: dict[str, Any] = {
                    "method": method,
                    "settings": key_dict(settings),  # new settings at default: old keys
                    "fusion": fusion,
                }
                if spec.uses_teachers:
                    key_parts["teachers"] = list(keys.values())
                self._train_and_probe(seed, name, model, step, self.data, key_parts, out)
        return out

    def teachers(
        self, seed: int, out: dict[str, Any], modalities: Sequence[str] | None = None
    ) -> tuple[dict[str, nn.Module], dict[str, str]]:
        """Train (or reuse) the uni-modal model of each modality (or of ``modalities``); their
        cache keys."""
        teachers: dict[str, nn.Module] = {}
        keys: dict[str, str] = {}
        for m in self.data.modalities if modalities is None else modalities:
            torch.manual_seed(seed)
            model = self.task.build_model(
                self.cfg.model, {m: self.data.input_shapes[m]}, self.data.num_classes, uni=True
            )
            if m in self.cfg.teachers:  # from a file (umt.study.inputs)
                model, result = self._loaded_teacher(seed, m, model, out)
            else:
                parts = {"method": "unimodal", "modality": m}
                data = self.data.restrict([m])
                result = self._train_and_probe(
                    seed, f"teacher-{m}", model, Joint(), data, parts, out
                )
            if result is not None:
                teachers[m], keys[m] = model, result["key"]
        return teachers, keys

    def _loaded_teacher(
        self, seed: int, m: str, model: nn.Module, out: dict[str, Any]
    ) -> tuple[nn.Module, dict[str, Any] | None]:
        """The stage ``teacher-<m>`` from its file (``teachers.<m>``), into ``out`` like any stage.

        A whole uni-modal model is evaluated as it is; an encoder alone (a state dict, or a
        TorchScript module) gets its head trained with the encoder frozen (:class:`HeadOnly`).
        Keyed on the file's content; the result records ``source`` (the path) and ``loaded``
        (``model`` or ``encoder``). Returns the teacher and its result (``None`` if it failed).
        """
        path, what = self.cfg.teachers[m], f"teachers.{m}"
        name, data, shapes = f"teacher-{m}", self.data.restrict([m]), {m: self.data.input_shapes[m]}
        loaded = read_teacher(path, what=what)
        if isinstance(loaded, nn.Module):  # TorchScript: the encoder, with a fresh head
            try:
                model = self.task.build_model(
                    self.cfg.model,
                    shapes,
                    self.data.num_classes,
                    uni=True,
                    encoders={m: lambda _: loaded.train()},
                )
            except UMTError as e:
                raise UMTError(
                    f"{what}: {path!r} is a TorchScript module, taken as the encoder of {m!r} "
                    f"(inputs (B, *{shapes[m]}) -> features (B, D)), and it does not fit: {e}"
                ) from e
            kind = "encoder"
        else:
            kind = load_teacher_state(model, loaded, modality=m, what=what, source=path)
        parts = {"method": "loaded", "modality": m, "file": file_digest(path), "loaded": kind}
        extra = {"source": str(path), "loaded": kind}
        if kind == "encoder":  # train the head alone, as any stage (cached, checkpointed)
            result = self._train_and_probe(seed, name, model, HeadOnly(model), data, parts, out)
            if result is not None and result.get("source") != extra["source"] and self.main:
                result.update(extra)
                cache.finish_stage(self.run_dir / f"seed{seed}" / name, result)
            return model, result
        stage_dir = self.run_dir / f"seed{seed}" / name
        key = config_hash(self.data_key, model_key(self.cfg.model, shapes, self.task), parts)
        result = cached(stage_dir, key, self.log)
        if result is None and self.main:
            self.begin(stage_dir, key, {"stage": name, "seed": seed, **parts})
            result = {**self._evaluate(model, data, key, name, seed), **extra}
            save_model(model, stage_dir / "model.pt")
            cache.finish_stage(stage_dir, result)
        result = result if result is not None else {"key": key}
        self.log(f"[seed {seed}] {name}: loaded from {path}")
        out["stages"][name] = result
        out["probes"][name] = self.probe_stage(seed, name, model, key)
        self.keep_example(name, model)
        return model, result

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
        # A method's own recipe (``recipes``, a section's ``train:``); the teachers use ``train``.
        method_name = key_parts.get("method", "")
        train = self.cfg.train_for(method_name) if method_name in METHODS else self.cfg.train
        model_cfg = model_key(self.cfg.model, data.input_shapes, self.task)  # options in use
        key = config_hash(self.data_key, train_key(train), model_cfg, seed, key_parts)
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
        save_model(model, stage_dir / "model.pt")
        cache.finish_stage(stage_dir, result)  # written last: marks the stage finished
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
        cache.finish_stage(stage_dir, result)
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
        if (done := cache.cached_probe(path, key)) is not None:  # None: absent, other, damaged
            return done
        cfg, dev = self.cfg.probe, self.device  # each branch as the model computes it:
        probes = {  # (forward_features, on the evaluation view; the FusionModel contract)
            m: self.task.probe_model(model, self.data, m, cfg, device=dev).as_dict()
            for m in model.encoders  # type: ignore[union-attr]
        }
        write_json(path, {"key": key, "encoders": probes})
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
