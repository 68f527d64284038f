"""One search unit's trials with Optuna: a study in the run directory's storage, a seeded sampler,
the pruner, and a trial run as a share of an ordinary study (``umt.study.runner.Runner``) at the
search's own training seed.

Resumable and deterministic: trials run one after another; the start-up trials follow a scrambled
Halton sequence seeded from ``(tune.seed, unit)``, and the sampler (TPE) of each later n-th
finished trial is seeded from ``(tune.seed, unit, n)``, so a search killed at any point
(``kill -9`` included) and run again asks for the same values in the same order; a trial that was
running when the process died is asked again with its values, and its stage resumes from its last
checkpoint.
"""

from __future__ import annotations

import math
import shutil
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, Trial, TrialState

from umt.config import config_hash
from umt.engine import DivergenceError
from umt.errors import UMTError
from umt.models.base import seed_for
from umt.search.space import Choice, Range, Space, at_edge
from umt.study.runner import StageFailed

optuna.logging.set_verbosity(optuna.logging.WARNING)

#: A trial's objective: its values and the Optuna trial (for pruning) -> the validation score.
Objective = Callable[[dict[str, Any], Trial, Path], float]


@dataclass
class Unit:
    """One search unit: its name, space, first trial (the configured values) and budget."""

    name: str
    space: Space
    first: dict[str, Any]
    budget: int
    noise_of: int = 0  # validation samples: the trials within one SE of the best are ties
    ties: str = "cost"  # which tie wins: "cost" (the cheapest) or "first" (the configured values)
    trials: list[dict[str, Any]] = field(default_factory=list)
    chosen: dict[str, Any] = field(default_factory=dict)

    def entry(self) -> dict[str, Any]:
        """The unit in ``summary.json``: every trial, the chosen values, the keys chosen at an
        end of what could be tried, and the space."""
        return {
            "trials": self.trials,
            "chosen": self.chosen,
            "edge": at_edge(self.space, self.chosen),
            "space": {k: _describe(d) for k, d in self.space.items()},
        }


def _describe(dist: Choice | Range) -> Any:
    return list(dist.values) if isinstance(dist, Choice) else {"low": dist.low, "high": dist.high}


def suggest(trial: Trial, space: Space) -> dict[str, Any]:
    """The trial's values: define-by-run, so an encoder's width is asked only for its kind."""
    values: dict[str, Any] = {}
    kind = None
    kinds = space.get("encoder")
    if isinstance(kinds, Choice):
        kind = values["encoder"] = trial.suggest_categorical("encoder", list(kinds.values))
    for key, dist in space.items():
        if key == "encoder":
            continue
        if "." in key and key.split(".")[0] in ("mlp", "cnn", "cnn1d"):
            if kind is not None and key.split(".")[0] != kind:
                continue
        if isinstance(dist, Range):
            values[key] = trial.suggest_float(key, dist.low, dist.high, log=True)
        else:
            values[key] = trial.suggest_categorical(key, list(dist.values))
    return values


class Trials:
    """The Optuna studies of one search, in ``storage`` (several processes may share it)."""

    def __init__(
        self,
        storage: str,
        prefix: str,
        seed: int,
        pruner: str,
        *,
        own: bool,
        after: Callable[[], None] = lambda: None,
    ) -> None:
        self.storage, self.prefix, self.seed, self.pruner = storage, prefix, seed, pruner
        self.own = own  # our run directory's storage: trials left running were killed
        self.after = after  # called around every trial (the search's clock saves its seconds)

    def _study(self, unit: str) -> optuna.Study:
        pruner: optuna.pruners.BasePruner = (
            optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=2)
            if self.pruner == "median"
            else optuna.pruners.NopPruner()
        )
        return optuna.create_study(
            study_name=f"{self.prefix}/{unit}",
            storage=self.storage,
            direction="maximize",
            load_if_exists=True,
            pruner=pruner,
        )

    def run(
        self,
        unit: Unit,
        objective: Objective,
        root: Path,
        deadline: float,
        log: Callable[[str], None],
    ) -> None:
        """Run ``unit``'s trials up to its budget (or the deadline); fill ``unit.trials`` and
        ``unit.chosen`` (the configured values where nothing finished)."""
        study = self._study(unit.name)
        if self.own:  # a run killed mid-trial: ask its values again (its stage resumes)
            for stale in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                study.enqueue_trial(dict(stale.params), skip_if_exists=False)
                study._storage.set_trial_user_attr(stale._trial_id, "killed", True)
                study.tell(stale.number, state=TrialState.FAIL)
        done = _finished(study)
        if not study.trials or all(
            x.state == TrialState.FAIL and x.user_attrs.get("killed") for x in study.trials
        ):
            study.enqueue_trial(unit.first)  # the configured values are always tried first
        while len(done) < unit.budget and time.monotonic() < deadline:
            n = len(done)
            study.sampler = _sampler(self.seed, unit, n)
            trial = study.ask()
            values = suggest(trial, unit.space)
            where = root / unit.name / config_hash(unit.name, values)
            log(f"search: {unit.name} trial {n + 1}/{unit.budget}: {_text(values)}")
            self.after()
            try:
                value = objective(values, trial, where)
            except optuna.TrialPruned:
                study.tell(trial, state=TrialState.PRUNED)
            except (StageFailed, DivergenceError) as e:
                log(f"search: {unit.name} trial {n + 1} failed: {e}")
                trial.set_user_attr("failed", str(e))
                study.tell(trial, state=TrialState.FAIL)
            else:
                study.tell(trial, value)
            self.after()
            done = _finished(study)
        unit.trials = [_record(x) for x in study.trials if not x.user_attrs.get("killed")]
        unit.trials = [r for r in unit.trials if r["state"] != "waiting"]
        complete = [x for x in study.trials if x.state == TrialState.COMPLETE]
        if complete:
            val = {x.number: float(x.value or 0.0) for x in complete}
            best = max(complete, key=lambda x: (val[x.number], -x.number))
            if unit.noise_of:  # accuracy first; within one SE of the best, the tie rule
                p = val[best.number]
                band = math.sqrt(max(p * (1 - p), 1e-12) / unit.noise_of)
                near = [x for x in complete if val[x.number] >= p - band]
                best = _tie(unit, near) or best
            unit.chosen = dict(best.params)
        else:
            unit.chosen = dict(unit.first)


def _tie(unit: Unit, near: list[FrozenTrial]) -> FrozenTrial | None:
    """Of the trials within noise of the best, the one ``unit.ties`` keeps: the cheapest
    (multiply-accumulates x samples x epochs), or the configured values (a method keeps them
    unless a trial beats them beyond noise: on the ``userloop`` check set UMT's search had
    picked lr 1.9e-3 over the configured 1e-3 by two validation samples of 397)."""
    if unit.ties == "first":
        return next((x for x in near if x.params == unit.first), None)
    costed = [x for x in near if "cost" in x.user_attrs]
    return min(
        costed, key=lambda x: (x.user_attrs["cost"], -(x.value or 0.0), x.number), default=None
    )


def _sampler(seed: int, unit: Unit, n: int) -> optuna.samplers.BaseSampler:
    """The sampler of ``unit``'s ``n``-th trial. The first half of the budget (at least 2 trials,
    the configured values first) is spread over the space by a scrambled Halton sequence seeded
    by ``(seed, unit)``; TPE models the rest. Pseudo-random start-up trials can land next to the
    configured ones: on the ``tri`` check set joint training's second trial drew lr 1.1e-3 beside
    the configured 1e-3, and whether a later trial reached the good region decided joint
    training by 5 points (docs/results.md)."""
    startup = max(2, unit.budget // 2)
    own = seed_for(seed, unit.name, n) % 2**32
    if n >= startup:
        return optuna.samplers.TPESampler(seed=own, n_startup_trials=startup)
    with warnings.catch_warnings():  # "experimental" since Optuna 3.0; its interface is stable
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.QMCSampler(
            qmc_type="halton",
            scramble=True,
            seed=seed_for(seed, unit.name) % 2**32,  # one sequence per unit, across its trials
            independent_sampler=optuna.samplers.RandomSampler(seed=own),  # its categoricals
            warn_independent_sampling=False,
            warn_asynchronous_seeding=False,
        )


def _finished(study: optuna.Study) -> list[FrozenTrial]:
    """The trials that count against the budget: finished, pruned, or failed (not killed)."""
    counted = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    return [x for x in study.trials if x.state in counted and not x.user_attrs.get("killed")]


def _record(t: FrozenTrial) -> dict[str, Any]:
    value = t.value if t.state == TrialState.COMPLETE else None
    steps = sorted(t.intermediate_values)
    return {
        "number": t.number,
        "values": dict(t.params),
        "val": value,
        "state": t.state.name.lower(),
        "epochs": steps[-1] + 1 if steps else None,
        "cost": t.user_attrs.get("cost"),
        "seconds": round(t.duration.total_seconds(), 1) if t.duration is not None else None,
    }


def _text(values: Mapping[str, Any]) -> str:
    return ", ".join(
        f"{k}={v:.3g}" if isinstance(v, float) and not math.isnan(v) else f"{k}={v}"
        for k, v in values.items()
    )


def copy_stage(src: Path, dst: Path) -> None:
    """A finished stage's directory copied whole to ``dst`` (its ``result.json`` records the
    content of its files: a copy without them would not count as finished), unless there."""
    if not (src / "result.json").is_file():
        raise UMTError(f"search: the stage {src} has not finished; run the same command again")
    if not dst.exists():
        part = dst.with_name(dst.name + ".part")
        shutil.rmtree(part, ignore_errors=True)
        shutil.copytree(src, part)
        part.rename(dst)  # whole or absent: a killed copy is made again
