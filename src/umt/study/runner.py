"""One study's stages, run with caching: the teachers of a seed, then each method (``run_study``
drives it; ``umt.study.parallel`` runs shares of it in worker processes). How each stage is
trained, evaluated, probed and cached is :class:`umt.study.stages.Stages`'.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from umt.config import config_hash, key_dict
from umt.data import DataBundle
from umt.engine import agree, save_model
from umt.errors import UMTError
from umt.methods import METHODS, Ensemble, Joint, MethodContext
from umt.methods.base import ResolvesSettings
from umt.methods.joint import HeadOnly
from umt.models.base import seed_for
from umt.models.pretrained import file_digest, load_teacher_state, read_teacher
from umt.report.trust import HEAD_GAP
from umt.study.cache import (
    cached,
    finish_stage,
    read_record,
)
from umt.study.inputs import model_key
from umt.study.select import harms, pooled, select
from umt.study.stages import INIT, Log, StageFailed, Stages


class Runner(Stages):
    """Runs one study's stages with caching. Internal to ``run_study``.

    Read top to bottom: the stages of a seed (teachers, then each method), then how a stage is
    trained, evaluated and probed, then the cache of finished stages.

    Under DDP every process runs the study (each ``fit`` is collective); only the main process
    evaluates, probes and writes, so the run directory is written once. ``self.main`` is that
    one test: the other processes take part in training and return empty results.
    """

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

        # Joint training first: UMT chooses what to distil against its encoders (umt.select).
        for method in sorted(methods, key=lambda m: m != "joint"):
            spec = METHODS[method]
            if spec.uses_teachers and missing:
                out["failed"][method] = f"skipped: it needs {', '.join(missing)}, which failed"
                continue
            if spec.build is None:  # UME: combines the teachers, trains nothing, has no fusion
                out["stages"][method] = self.ume_stage(seed, teachers, list(keys.values()))
                self.keep_example(method, Ensemble(teachers, self.cfg.settings("ume")))
                continue
            for name, fusion in self.cfg.fusion_stages(method):
                self._method(seed, method, name, fusion, teachers, keys, teacher_features, out)
        return out

    def _method(
        self,
        seed: int,
        method: str,
        name: str,
        fusion: str,
        teachers: dict[str, nn.Module],
        keys: dict[str, str],
        features: Callable[[str], np.ndarray],
        out: dict[str, Any],
    ) -> None:
        """One trained method's stage of one fusion. For UMT with ``select: better``: what to
        distil, decided on validation; and where the trained stage ends below joint training on
        validation beyond noise (``umt.decline``), the attempt is kept as ``<stage>.declined``
        and the same distillation tried again from the same seed's trained joint model (all of
        it: encoders and head); where that too is below joint's, it is kept as
        ``<stage>.declined2`` and the stage trained with nothing distilled, every encoder from
        joint's."""
        joint = _joint_of(method, name)
        settings, distilled = select(
            self.cfg.settings(method), self._select_seeds(seed, method), joint, list(teachers)
        )
        seed_dir = self.run_dir / f"seed{seed}"
        guard = bool(distilled) and getattr(settings, "decline", False)
        # Started from the teachers, the fused head fits the training split through the
        # teachers' features of it, which they have learnt by heart: on small data it can trust
        # a weak modality more than it earns (tri: 5-14 val points below joint on 3 seeds of 6).
        # Started from joint's model, the head begins where joint's generalised.
        for attempt, kept in enumerate((".declined", ".declined2")[: 2 if guard else 1]):
            model, step, parts = self._method_stage(
                seed,
                method,
                name,
                fusion,
                settings,
                distilled,
                teachers,
                keys,
                features,
                whole=attempt == 1,
            )
            declined = seed_dir / f"{name}{kept}"
            # Whether this attempt was declined before: the main process's files decide.
            if guard and agree(_key_of(declined) == self.stage_key(seed, name, self.data, parts)):
                self.log(f"[seed {seed}] {name}: declined before (kept as {declined.name})")
                continue
            result = self._train_and_probe(seed, name, model, step, self.data, parts, out)
            worse = harms(seed_dir, name, joint) if guard and result else None
            if worse is None:
                return
            # Below joint training on validation beyond noise: the distillation cost what the
            # fused task uses. Declined; the attempt is kept beside.
            then = ("tried again from joint's trained model", "trained with nothing distilled")
            self.log(
                f"[seed {seed}] {name}: distilling {', '.join(distilled or [])} cost "
                f"val {100 * worse[0]:.2f} % against joint's {100 * worse[1]:.2f} %: "
                f"declined (kept as {declined.name}); {then[attempt]}"
            )
            if self.main:
                shutil.rmtree(declined, ignore_errors=True)
                (seed_dir / name).rename(declined)
        nothing = dataclasses.replace(
            settings, weights={**settings.weights, **{m: 0.0 for m in teachers}}
        )
        model, step, parts = self._method_stage(
            seed, method, name, fusion, nothing, [], teachers, keys, features
        )
        parts["declined"] = distilled
        self._train_and_probe(seed, name, model, step, self.data, parts, out)

    def _select_seeds(self, seed: int, method: str) -> list[Path]:
        """The seed directories UMT's ``select: better`` decides on: this seed's, then the
        study's other seeds', whose teachers and joint training are trained first where they
        are not yet (one decision for every seed, whichever seed's UMT trains first)."""
        others = [s for s in self.cfg.seeds if s != seed]
        if pooled(self.cfg, method):
            for s in others:
                if s not in self.ready:
                    self.teachers(s, {"stages": {}, "probes": {}, "failed": {}})
                    self.run_seed(s, ["joint"])
                    self.ready.add(s)
        return [self.run_dir / f"seed{s}" for s in (seed, *others)]

    def _method_stage(
        self,
        seed: int,
        method: str,
        name: str,
        fusion: str,
        settings: Any,
        distilled: list[str] | None,
        teachers: dict[str, nn.Module],
        keys: dict[str, str],
        features: Callable[[str], np.ndarray],
        *,
        whole: bool = False,
    ) -> tuple[nn.Module, Any, dict[str, Any]]:
        """One method stage to train: its model (encoders started where ``select`` says; with
        ``whole``, all of it from the same seed's trained joint model), its training step and
        its cache key's parts."""
        spec = METHODS[method]
        model = self.task.build_model(
            self.cfg.model,
            self.data.input_shapes,
            self.data.num_classes,
            fusion=fusion,
            init_seed=seed_for(seed, name),  # every stage and part its own init
        )
        start, joint = None, _joint_of(method, name)
        if whole:  # nothing from the teachers: joint's encoders and head
            settings = dataclasses.replace(settings, init_from_teacher=False)
            start = self._start_from_joint(seed, joint, model, list(teachers), whole=True)
        elif distilled is not None and settings.init_from_teacher:
            rest = [m for m in teachers if m not in distilled]
            start = self._start_from_joint(seed, joint, model, rest)
        context = MethodContext(
            settings,
            model,
            teachers,
            self.data,
            seed,
            features,
            epochs=self.cfg.train_for(method).epochs,
        )
        step = spec.build(context)  # type: ignore[misc]
        resolved = step.resolved_settings() if isinstance(step, ResolvesSettings) else settings
        key_parts: dict[str, Any] = {
            "method": method,
            "settings": key_dict(resolved),  # new settings at default: old keys
            "fusion": fusion,
            "init": INIT,
        }
        if spec.uses_teachers:
            key_parts["teachers"] = list(keys.values())
        if distilled is not None:
            key_parts["distilled"] = distilled
            shown = ", ".join(distilled) or "no modality"
            self.log(f"[seed {seed}] {name}: distils {shown} (umt.select: better)")
        if start is not None:  # the encoders not distilled start from joint's
            key_parts["start"] = start
        return model, step, key_parts

    def _start_from_joint(
        self, seed: int, joint: str, model: nn.Module, modalities: list[str], whole: bool = False
    ) -> dict[str, Any] | None:
        """UMT's encoders of ``modalities`` (those ``select`` does not distil) copied from the
        same seed's trained joint model: each encoder starts from the better of its yardsticks,
        the teacher where it is distilled, joint's encoder elsewhere. Left from scratch beside
        encoders started from their teachers, such an encoder trains in their shadow (the
        three-modality check set: its dominant modality's probe fell 4 points below joint's and
        the fused model 23 points). ``whole``: the fusion and head too (the model as joint
        training left it). ``None`` where there is nothing to copy."""
        stage_dir = self.run_dir / f"seed{seed}" / joint
        key = _key_of(stage_dir)
        if not modalities or key is None:
            return None
        try:
            state = torch.load(stage_dir / "model.pt", map_location="cpu", weights_only=True)
        except (OSError, ValueError, RuntimeError):
            return None  # a damaged joint stage: retrained and then used on the next run
        if whole:
            model.load_state_dict(state)
            return {"joint": key, "modalities": modalities, "whole": True}
        for m in modalities:
            prefix = f"encoders.{m}."
            part = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
            model.encoders[m].load_state_dict(part)  # type: ignore[index, operator, union-attr]
        return {"joint": key, "modalities": modalities}

    def teachers(
        self, seed: int, out: dict[str, Any], modalities: Sequence[str] | None = None
    ) -> tuple[dict[str, nn.Module], dict[str, str]]:
        """Train (or reuse) the uni-modal model of each modality (or of ``modalities``); their
        cache keys."""
        teachers: dict[str, nn.Module] = {}
        keys: dict[str, str] = {}
        for m in self.data.modalities if modalities is None else modalities:
            model = self.task.build_model(
                self.cfg.model,
                {m: self.data.input_shapes[m]},
                self.data.num_classes,
                uni=True,
                init_seed=seed_for(seed, f"teacher-{m}"),
            )
            if m in self.cfg.teachers:  # from a file (umt.study.inputs)
                model, result = self._loaded_teacher(seed, m, model, out)
            else:
                parts = {"method": "unimodal", "modality": m, "init": INIT}
                data = self.data.restrict([m])
                result = self._train_and_probe(
                    seed, f"teacher-{m}", model, Joint(), data, parts, out
                )
                if result is not None:
                    result = self._fit_head(seed, m, model, data, result, out)
                    result = self._same_head(seed, m, model, result)
            if result is not None:
                # What builds on a teacher is keyed on its head too (UME, UMT's readout).
                refit = "/head-refit" if result.get("head_refit") else ""
                teachers[m], keys[m] = model, result["key"] + refit
        return teachers, keys

    def _same_head(
        self, seed: int, m: str, model: nn.Module, result: dict[str, Any]
    ) -> dict[str, Any]:
        """Under DDP, every process's teacher gets the main process's head (refit there alone,
        saved before this collective): UMT's readout target and the keys of what builds on the
        teacher must be one across processes."""
        refit = agree(bool(result.get("head_refit")))
        if refit and not result.get("head_refit"):  # another process of a DDP run
            path = self.run_dir / f"seed{seed}" / f"teacher-{m}" / "model.pt"
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            result = {**result, "head_refit": True}
        return result

    def _fit_head(
        self,
        seed: int,
        m: str,
        model: nn.Module,
        data: DataBundle,
        result: dict[str, Any],
        out: dict[str, Any],
    ) -> dict[str, Any]:
        """A teacher fit for its job: where its head scores more than ``HEAD_GAP`` below the
        linear probe on its own features on validation, the head is replaced by the probe's
        classifier (the features, what UMT distils, are unchanged; UME and the diagnosis then
        rest on the better head) and the stage re-evaluated. Its result records ``head_refit``
        (the head's scores before). The task decides whether it can (segmentation cannot)."""
        name, k = f"teacher-{m}", self.task.metric
        probe = out["probes"].get(name, {}).get(m)
        if not self.main or probe is None or result.get("head_refit"):
            return result
        if result[f"val_{k}"] >= probe[f"val_{k}"] - HEAD_GAP:
            return result
        outcome = self.task.probe_model(model, data, m, self.cfg.probe, device=self.device)
        if not self.task.refit_head(model, outcome):
            return result
        before = {f"val_{k}": result[f"val_{k}"], f"test_{k}": result[f"test_{k}"]}
        fresh = self._evaluate(model, data, result["key"], name, seed)
        new = {**result, **fresh, "head_refit": before}
        stage_dir = self.run_dir / f"seed{seed}" / name
        save_model(model, stage_dir / "model.pt")
        finish_stage(stage_dir, new)  # the refit model's hash recorded with it
        self.log(
            f"[seed {seed}] {name}: head refit from the probe (val {100 * before[f'val_{k}']:.1f}"
            f" -> {100 * new[f'val_{k}']:.1f} %)"
        )
        out["stages"][name] = new
        return new

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
                finish_stage(self.run_dir / f"seed{seed}" / name, result)
            return model, result
        stage_dir = self.run_dir / f"seed{seed}" / name
        key = config_hash(self.data_key, model_key(self.cfg.model, shapes, self.task), parts)
        result = cached(stage_dir, key, self.log)
        if result is None and self.main:
            self.begin(stage_dir, key, {"stage": name, "seed": seed, **parts})
            result = {**self._evaluate(model, data, key, name, seed), **extra}
            save_model(model, stage_dir / "model.pt")
            finish_stage(stage_dir, result)
        result = result if result is not None else {"key": key}
        self.log(f"[seed {seed}] {name}: loaded from {path}")
        out["stages"][name] = result
        out["probes"][name] = self.probe_stage(seed, name, model, key)
        self.keep_example(name, model)
        return model, result


__all__ = ["INIT", "Log", "Runner", "StageFailed"]


def _joint_of(method: str, name: str) -> str:
    """The joint stage of the same fusion as ``method``'s stage ``name``: ``umt-sum`` ->
    ``joint-sum``."""
    return name.replace(method, "joint", 1)


def _key_of(stage_dir: Path) -> str | None:
    """The key of a finished stage kept at ``stage_dir`` (``None``: none there)."""
    key = (read_record(stage_dir / "result.json") or {}).get("key")
    return key if isinstance(key, str) else None
