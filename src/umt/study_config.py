"""A study's configuration: ``StudyConfig`` (YAML and ``--set key=value`` in, a frozen dataclass
out) and ``load_config``. A method's settings section comes from its ``METHODS`` entry."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from umt.config import apply_overrides, from_dict, read_yaml, to_dict
from umt.data import DataConfig
from umt.engine import TrainConfig
from umt.errors import UMTError
from umt.methods import METHODS, ChoiceConfig
from umt.models import FUSIONS, ModelConfig
from umt.preflight import check_fields
from umt.probe import ProbeConfig

MASK_FILLS = ("zero", "mean")

#: Each method's key hyper-parameter(s) and the values ``tune`` tries by default: the same
#: number of trials (3) for every method; ``train.<field>`` is the method's training recipe
#: (joint training's learning rate). UME trains nothing and is not tuned.
DEFAULT_GRIDS: dict[str, dict[str, tuple[Any, ...]]] = {
    "joint": {"train.lr": (3e-4, 1e-3, 3e-3)},
    "umt": {"weight": (1.0, 5.0, 20.0)},
    "ogm_ge": {"alpha": (0.3, 0.8, 1.5)},
    "gblend": {"every": (2, 5, 10)},
    "pmr": {"alpha": (0.5, 1.0, 2.0)},
    "mmpareto": {"gamma": (1.0, 1.5, 2.5)},
    "mla": {"alpha": (0.03, 0.1, 0.3)},
    "reconboost": {"reconcile": (0.1, 0.25, 0.5)},
    "g2d": {"weight": (1.0, 5.0, 20.0)},
    "inforeg": {"strength": (0.1, 0.5, 0.95)},
    "relearn": {"strength": (0.5, 1.0, 3.0)},
}

#: Methods whose mechanism scales per-encoder gradients, which Adam's per-parameter
#: normalisation largely undoes: their papers train with SGD (momentum). A study that runs them
#: under Adam says so in its report.
SGD_METHODS = ("ogm_ge", "mmpareto")


@dataclass(frozen=True)
class TuneConfig:
    """An equal tuning budget: each method's grid is run on validation (mean over seeds) and the
    best value kept, before the study itself runs with the chosen values.

    Attributes:
        enabled: run the search (off by default: it multiplies the study's cost by ``trials``).
        trials: values tried per method, the same for every method (each grid list has this
            length).
        grid: ``{method: {key: [values]}}``; ``key`` is a field of the method's settings, or
            ``train.<field>`` for its training recipe. Empty: :data:`DEFAULT_GRIDS` for the
            study's methods.
        teacher_lr: learning rates tried for the teachers (empty: no search), with or without
            ``enabled``; the one with the best mean teacher val score becomes the study's
            ``train.lr`` (teachers and fused models alike; a method's ``train:`` still wins).
        teacher_grid: more of the teachers' recipe searched with ``teacher_lr``: ``{key:
            [values]}`` with ``key`` a ``train.<field>`` or ``model.<field>`` (dotted, e.g.
            ``model.encoder.channels``, ``model.encoder.name: [mlp, cnn]``); every combination
            (with each ``teacher_lr``) trains the teachers once, and the best mean teacher val
            score sets those keys for the whole study.
    """

    enabled: bool = False
    trials: int = 3
    grid: dict[str, dict[str, tuple[Any, ...]]] = field(default_factory=dict)
    teacher_lr: tuple[float, ...] = ()
    teacher_grid: dict[str, tuple[Any, ...]] = field(default_factory=dict)

    @property
    def searches(self) -> bool:
        """Whether anything is searched before the study runs."""
        return self.enabled or bool(self.teacher_lr) or bool(self.teacher_grid)


_STUDY_DOC = """Everything a study does. ``umt run --set key=value`` sets any field by its dotted name.

    Attributes:
        name: the run directory's name under ``--out``.
        seeds: training seeds; every number is reported as mean ± std over them.
        methods: which of ``umt.methods.METHODS`` to run (``joint``, ``umt``, ``ume``, and the
            peers ``gblend``, ``ogm_ge``, ``mmpareto``, ``mla``, ``pmr``, ``reconboost``); teachers
            always run.
        data, model, train: the data set, the architecture, the training recipe.
        probe, choice: the linear probe, the UMT/UME rule.
        mask_fill: how a modality is removed to measure a fused model per modality
            (``zero`` or its training ``mean``).
        fusion: a sweep over fusion modules (e.g. ``[concat, sum, gated, film, attention]``):
            each trained method runs once per fusion, as stage ``<method>-<fusion>``. Empty:
            ``model.fusion`` alone, stages named ``<method>``.
        umt, ume, gblend, ...: each method's settings, a section named as the method, with the
            dataclass its ``METHODS`` entry names (added to this class from the registry). A
            section may carry ``train: {...}``, that method's training recipe on top of
            ``train`` (e.g. ``ogm_ge: {train: {optimizer: sgd, lr: 0.05}}``); ``load_config``
            moves it to ``recipes``.
        recipes: per method, the ``train`` fields it overrides (``{ogm_ge: {optimizer: sgd}}``).
        tune: the equal tuning budget (:class:`TuneConfig`), off by default.
        teachers: modality -> a file with that teacher (not trained then); see ``umt.inputs``.
        jobs: stages trained at once, each in its own worker process (``umt.parallel``):
            ``auto`` (one per CPU core when training on the CPU, 1 on a GPU or under DDP) or a
            number (1: one after another). The numbers do not depend on it.
    """


@dataclass(frozen=True)
class _StudyFields:
    """The fields of ``StudyConfig`` that are not a method's settings."""

    name: str = "default"
    seeds: tuple[int, ...] = (0, 1, 2)
    methods: tuple[str, ...] = ("joint", "umt", "ume")
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    choice: ChoiceConfig = field(default_factory=ChoiceConfig)
    mask_fill: str = "zero"
    fusion: tuple[str, ...] = ()
    teachers: dict[str, str] = field(default_factory=dict)
    recipes: dict[str, dict[str, Any]] = field(default_factory=dict)
    tune: TuneConfig = field(default_factory=TuneConfig)
    jobs: Literal["auto"] | int = "auto"

    def train_for(self, method: str) -> TrainConfig:
        """The training recipe of ``method``'s stages: ``train`` with ``recipes[method]`` on top.

        Example:
            >>> cfg = load_config(overrides=["ogm_ge.train.optimizer=sgd", "ogm_ge.train.lr=0.05"])
            >>> cfg.train_for("ogm_ge").optimizer, cfg.train_for("ogm_ge").lr, cfg.train_for("joint").lr
            ('sgd', 0.05, 0.001)
        """
        override = self.recipes.get(method)
        if not override:
            return self.train
        return from_dict(TrainConfig, {**to_dict(self.train), **override}, prefix="train")

    def settings(self, method: str) -> Any:
        """The settings section of ``method`` (``None`` for a method without settings)."""
        return getattr(self, method) if METHODS[method].config is not None else None

    def __post_init__(self) -> None:
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise UMTError(f"methods: unknown {unknown}; expected some of {list(METHODS)}")
        if len(set(self.methods)) != len(self.methods):
            raise UMTError(f"methods: each method once, got {list(self.methods)}")
        if not self.seeds:
            raise UMTError("seeds: give at least one seed")
        check_fields(self)  # seeds, name, choice.compare
        if self.mask_fill not in MASK_FILLS:
            raise UMTError(f"mask_fill: expected one of {MASK_FILLS}, got {self.mask_fill!r}")
        if self.choice.split == "test":
            raise UMTError("choice.split: the rule must not look at the test split; use 'val'")
        if self.choice.split not in ("train", "val"):
            raise UMTError(f"choice.split: expected 'val' (or 'train'), got {self.choice.split!r}")
        bad = [f for f in (*self.fusion, self.model.fusion) if f not in FUSIONS]
        if bad:
            raise UMTError(f"fusion: unknown {bad}; expected some of {sorted(FUSIONS)}")
        if self.train.epochs < 1:
            raise UMTError(f"train.epochs: expected at least 1, got {self.train.epochs}")
        if self.train.patience < 0:
            raise UMTError(f"train.patience: expected 0 (off) or more, got {self.train.patience}")
        for method in self.recipes:
            if method not in METHODS:
                raise UMTError(
                    f"recipes: unknown method {method!r}; expected one of {list(METHODS)}"
                )
            self.train_for(method)  # unknown keys or wrong types fail here, named
        _check_tune(self.tune)
        if self.jobs != "auto" and not (isinstance(self.jobs, int) and self.jobs >= 1):
            raise UMTError(f"jobs: expected auto or a number >= 1, got {self.jobs!r}")


def _check_tune(tune: TuneConfig) -> None:
    if tune.trials < 1:
        raise UMTError(f"tune.trials: expected at least 1, got {tune.trials}")
    for method, keys in tune.grid.items():
        if method not in METHODS or method == "ume":
            raise UMTError(
                f"tune.grid: cannot tune {method!r}; expected some of {list(DEFAULT_GRIDS)}"
            )
        for key, values in keys.items():
            if len(values) != tune.trials:
                raise UMTError(
                    f"tune.grid.{method}.{key}: {len(values)} values; every method gets the same "
                    f"budget, tune.trials={tune.trials}"
                )
    for key, values in tune.teacher_grid.items():
        if key.split(".")[0] not in ("train", "model") or "." not in key:
            raise UMTError(
                f"tune.teacher_grid: key {key!r}; expected train.<field> or model.<field> "
                "(e.g. model.encoder.channels)"
            )
        if key == "train.lr" and tune.teacher_lr:
            raise UMTError("tune.teacher_grid: train.lr is tune.teacher_lr's; give it once")
        if not values:
            raise UMTError(f"tune.teacher_grid.{key}: expected at least one value")


# A method is registered once, in ``METHODS``: its settings section is added here from there.
if TYPE_CHECKING:
    StudyConfig = _StudyFields
else:
    StudyConfig = dataclasses.make_dataclass(
        "StudyConfig",
        [
            (name, spec.config, field(default_factory=spec.config))
            for name, spec in METHODS.items()
            if spec.config is not None
        ],
        bases=(_StudyFields,),
        frozen=True,
        namespace={"__module__": __name__, "__doc__": _STUDY_DOC},
    )


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> StudyConfig:
    """A study config from an optional YAML file plus ``key=value`` overrides.

    Example:
        >>> load_config(overrides=["train.epochs=3", "seeds=[1]"]).train.epochs
        3
    """
    raw = read_yaml(path) if path is not None else {}
    raw = apply_overrides(raw, list(overrides))
    return from_dict(StudyConfig, _move_recipes(raw))


def _move_recipes(raw: dict[str, Any]) -> dict[str, Any]:
    """Each method section's ``train:`` moved to ``recipes.<method>`` (``joint:`` may hold only
    that: joint training has no settings section)."""
    raw = dict(raw)
    recipes = dict(raw.get("recipes") or {})
    for method in METHODS:
        section = raw.get(method)
        if isinstance(section, dict) and "train" in section:
            section = dict(section)
            recipe = section.pop("train")
            if not isinstance(recipe, dict):
                raise UMTError(
                    f"{method}.train: expected a section of train settings (e.g. "
                    f"{{optimizer: sgd, lr: 0.05}}), got {recipe!r}"
                )
            recipes[method] = {**recipes.get(method, {}), **recipe}
            if METHODS[method].config is None and not section:
                del raw[method]
            else:
                raw[method] = section
    if recipes:
        raw["recipes"] = recipes
    return raw
