"""The recipe search: on validation, within a budget, before the study trains for real. It wraps a
study from above (``umt.study`` never imports it): :func:`run_study` here is the entry point the
CLI and ``umt.run_study`` use.

1. Each teacher's recipe (``teacher-<modality>``: encoder kind where ``auto`` chooses, width,
   learning rate, weight decay), ``tune.teacher_budget`` trials per modality, pruned by their
   validation curves. The fused models' encoders share the chosen kind and width.
2. Each method (``tune.budget`` trials each, the same for every method), joint training first:
   its registry entry's ``search_space`` and its learning rate; UME: its members' weights and
   combination. A method on the study's recipe (UMT: joint training plus a term) starts from
   joint's chosen learning rate; a peer from its authors' (SGD).
3. The study itself, with the chosen values, at its own seeds: every reported stage is trained
   afresh (the trials ran at ``tune.seed``), so no number is the maximum the search selected.

Optuna (``umt.search.trials``) keeps every trial in ``<run>/search/optuna.db``: a killed search
resumes where it stopped. ``tune.enabled: auto`` searches unless the data set ships a recipe found
by this same search (the built-in sets); ``false`` runs the recipe as configured.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from optuna.trial import Trial

from umt.data import DataBundle, UserData
from umt.errors import UMTError
from umt.io import read_json, write_json
from umt.models import EncoderFactory
from umt.models.base import macs
from umt.search.space import (
    method_first,
    method_space,
    teacher_first,
    teacher_space,
    with_method,
    with_teacher,
)
from umt.search.trials import Trials, Unit, copy_stage
from umt.study import Log, StudyConfig, StudyResult, TuneConfig
from umt.study import run_study as run_plain_study
from umt.study.config import recipe_source
from umt.study.inputs import UserEncoders, data_key, study_inputs
from umt.study.preflight import check_data_values, claim_run_dir
from umt.study.runner import Runner


def run_study(
    cfg: StudyConfig,
    out: str | Path = "runs",
    *,
    log: Log = print,
    report: bool = True,
    data: UserData | DataBundle | None = None,
    encoders: Mapping[str, EncoderFactory] | None = None,
) -> StudyResult:
    """Search the recipe on validation (``cfg.tune``), then run (or resume) the study with the
    chosen values under ``out/cfg.name``; the study alone where nothing is searched
    (:func:`umt.study.run_study`: the same arguments). The summary's ``search`` entry holds every
    trial, the chosen values and the budget spent.

    Example::

        cfg = umt.load_config(overrides=["seeds=[0]"])   # the default study: avdigits
        result = umt.run_study(cfg, "runs")
        result.summary["probes"]["visual"]   # teacher / joint / umt probe accuracies
    """
    if recipe_source(cfg, data) != "searched":  # the study writes where its recipe came from
        return run_plain_study(cfg, out, log=log, report=report, data=data, encoders=encoders)
    final, entry = Search(cfg, Path(out) / cfg.name, log, data, encoders).run()
    result = run_plain_study(final, out, log=log, report=False, data=data, encoders=encoders)
    if not result.main:
        return result
    result.summary["search"] = entry
    write_json(result.run_dir / "summary.json", result.summary)
    if report:
        from umt.report import write_report

        write_report(result.summary, result.run_dir)
    return result


class Search:
    """One study's search: its units in order, each unit's trials run by :class:`Trials`."""

    def __init__(
        self,
        cfg: StudyConfig,
        run_dir: Path,
        log: Log,
        data: UserData | DataBundle | None,
        encoders: Mapping[str, EncoderFactory] | None,
    ) -> None:
        self.cfg, self.run_dir, self.log = cfg, run_dir, log
        self.root = run_dir / "search"
        self.pool = self.root / "chosen"  # the chosen stages later trials build on
        self.data, self.task = study_inputs(cfg, data, encoders)  # checked before anything
        self.seed = cfg.tune.seed
        # Validation samples, for the noise band that makes trials ties (accuracy: additive).
        self.noise_of = len(self.data.val) if self.task.additive else 0
        # Every trial: one seed (the search's), no worker processes, no search of its own.
        self.base = dataclasses.replace(
            cfg,
            seeds=(self.seed,),
            tune=TuneConfig(enabled=False),
            jobs=1,
            train=dataclasses.replace(cfg.train, progress=False),
        )

    def run(self) -> tuple[StudyConfig, dict[str, Any]]:
        """The study's config with the chosen values, and the summary's ``search`` entry."""
        start = time.monotonic()
        cap = self.cfg.tune.minutes
        deadline = start + 60 * cap if cap > 0 else float("inf")
        with claim_run_dir(self.run_dir, log=self.log):
            clock = _Clock(self.root / "seconds.json")  # the seconds of the processes before
            key = data_key(self.cfg.data, self.data, self.run_dir)
            check_data_values(self.cfg.data, key, self.run_dir)  # NaN/inf, labels: before trials
            own = self.cfg.tune.storage is None
            self.root.mkdir(parents=True, exist_ok=True)
            storage = self.cfg.tune.storage or f"sqlite:///{(self.root / 'optuna.db').resolve()}"
            trials = Trials(
                storage, self.cfg.name, self.seed, self.cfg.tune.pruner, own=own, after=clock.save
            )
            units = self._teachers(trials, key, deadline)
            units += self._methods(trials, key, deadline)
            clock.save()
        final = self.cfg
        for unit in units:
            final = _apply(final, unit)
        spent = [t for u in units for t in u.trials]
        entry = {
            "source": "searched",
            "seed": self.seed,
            "budget": self.cfg.tune.budget,
            "teacher_budget": self.cfg.tune.teacher_budget,
            "units": {u.name: u.entry() for u in units},
            "trials_spent": len(spent),
            "pruned": sum(t["state"] == "pruned" for t in spent),
            "seconds": clock.seconds(),  # every process's, a killed one's included
        }
        self.log(
            f"search: {len(spent)} trial(s) in {entry['seconds']:.0f} s; the study now trains "
            "the chosen values at its own seeds"
        )
        return final, entry

    # -- the teachers ---------------------------------------------------------------------------
    def _teachers(self, trials: Trials, key: str, deadline: float) -> list[Unit]:
        budget = self.cfg.tune.teacher_budget
        units = []
        builds = not isinstance(self.task, UserEncoders) and self.task.fusion_sweep
        for m in self.data.modalities:
            if m in self.cfg.teachers or budget == 0:
                continue
            shape = self.data.input_shapes[m]
            space = teacher_space(self.base, m, shape, builds)
            first = teacher_first(self.base, m, space, shape)
            unit = Unit(f"teacher-{m}", space, first, budget, noise_of=self.noise_of)
            trials.run(unit, self._teacher_objective(m, key), self.root, deadline, self.log)
            if not any(t["state"] == "complete" for t in unit.trials):
                raise UMTError(
                    f"search: no trial of {unit.name} finished (see the log); check the data, or "
                    "set tune.enabled=false to train the configured recipe"
                )
            self.base = with_teacher(self.base, m, unit.chosen)
            best = self.root / unit.name / _best_dir(unit) / f"seed{self.seed}" / unit.name
            copy_stage(best, self.pool / f"seed{self.seed}" / unit.name)
            units.append(unit)
        return units

    def _teacher_objective(self, m: str, key: str) -> Any:
        def objective(values: dict[str, Any], trial: Trial, where: Path) -> float:
            cfg = with_teacher(self.base, m, values)
            runner = self._runner(cfg, where, key, trial)
            out: dict[str, Any] = {"stages": {}, "probes": {}, "failed": {}}
            teachers, _ = runner.teachers(self.seed, out, [m])
            score = self._score(out, f"teacher-{m}")
            # Its cost: multiply-accumulates per sample x training samples x epochs run.
            result = out["stages"][f"teacher-{m}"]
            epochs = int(result.get("stopped_epoch", cfg.train.epochs - 1)) + 1
            sample = self.data.eval_split("train")[[0]]  # one sample, as evaluation sees it
            per = macs(teachers[m], {m: sample[m]})
            trial.set_user_attr("cost", per * len(self.data.train) * epochs)
            return score

        return objective

    # -- the methods ----------------------------------------------------------------------------
    def _methods(self, trials: Trials, key: str, deadline: float) -> list[Unit]:
        units = []
        # Joint training first: its chosen stage is what UMT's select compares the teachers with.
        for method in sorted(self.cfg.methods, key=lambda m: m != "joint"):
            space = method_space(self.base, method, self.data.modalities)
            first = method_first(self.base, method, space)
            unit = Unit(
                method, space, first, self.cfg.tune.budget, noise_of=self.noise_of, ties="first"
            )
            if unit.budget == 0 or not space:
                continue
            trials.run(unit, self._method_objective(method, key), self.root, deadline, self.log)
            if method == "joint" and any(t["state"] == "complete" for t in unit.trials):
                stage = f"seed{self.seed}/joint"
                copy_stage(self.root / "joint" / _best_dir(unit) / stage, self.pool / stage)
                # UMT is joint training plus a term: the methods on the study's recipe start
                # their search from joint's chosen one (their first trial; the same budget).
                lr = unit.chosen.get("train.lr", self.base.train.lr)
                self.base = dataclasses.replace(
                    self.base, train=dataclasses.replace(self.base.train, lr=lr)
                )
            units.append(unit)
        return units

    def _method_objective(self, method: str, key: str) -> Any:
        def objective(values: dict[str, Any], trial: Trial, where: Path) -> float:
            cfg = with_method(self.base, method, values)
            # The chosen teachers (and joint training's chosen stage), trained once, copied in.
            for src in sorted((self.pool / f"seed{self.seed}").glob("*")):
                if src.name != method and not src.name.endswith(".part"):
                    copy_stage(src, where / f"seed{self.seed}" / src.name)
            runner = self._runner(cfg, where, key, trial)
            out = runner.run_seed(self.seed, [method])
            names = [n for n, _ in cfg.fusion_stages(method)] if method in _trained() else [method]
            scores = [self._score(out, n) for n in names]
            return sum(scores) / len(scores)

        return objective

    # -- shared ---------------------------------------------------------------------------------
    def _runner(self, cfg: StudyConfig, where: Path, key: str, trial: Trial) -> Runner:
        runner = Runner(cfg, self.data, self.task, where, lambda _: None, key=key)
        if self.cfg.tune.pruner != "none":
            from optuna_integration import PyTorchLightningPruningCallback

            monitor = f"val/{self.task.metric}"
            runner.callbacks = [PyTorchLightningPruningCallback(trial, monitor=monitor)]
        return runner

    def _score(self, out: dict[str, Any], stage: str) -> float:
        if stage not in out["stages"]:
            from umt.study.runner import StageFailed

            raise StageFailed(stage, str(out["failed"].get(stage, "did not finish")))
        return float(out["stages"][stage][f"val_{self.task.metric}"])


class _Clock:
    """The search's wall time over every process that worked on it: what the processes before
    this one spent (``path``, saved after every trial) plus this one's."""

    def __init__(self, path: Path) -> None:
        self.path, self.start = path, time.monotonic()
        self.before = float(read_json(path)["seconds"]) if path.is_file() else 0.0

    def seconds(self) -> float:
        return round(self.before + time.monotonic() - self.start, 1)

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_json(self.path, {"seconds": self.seconds()})


def _trained() -> set[str]:
    from umt.methods import METHODS

    return {m for m, spec in METHODS.items() if spec.build is not None}


def _best_dir(unit: Unit) -> str:
    from umt.config import config_hash

    return config_hash(unit.name, unit.chosen)


def _apply(cfg: StudyConfig, unit: Unit) -> StudyConfig:
    if unit.name.startswith("teacher-"):
        return with_teacher(cfg, unit.name.removeprefix("teacher-"), unit.chosen)
    return with_method(cfg, unit.name, unit.chosen)


__all__ = ["Search", "run_study", "source"]

source = recipe_source  # where the recipe comes from (``umt.study.config.recipe_source``)
