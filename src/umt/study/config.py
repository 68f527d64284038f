"""A study's configuration: ``StudyConfig`` (YAML and ``--set key=value`` in, a frozen dataclass
out) and ``load_config``. A method's settings section comes from its ``METHODS`` entry."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from umt.config import apply_overrides, from_dict, read_yaml, to_dict
from umt.data import DataConfig
from umt.engine import TrainConfig
from umt.errors import UMTError
from umt.methods import (
    METHODS,
    ChoiceConfig,
    G2DConfig,
    GBlendConfig,
    InfoRegConfig,
    MLAConfig,
    MMParetoConfig,
    OGMGEConfig,
    PMRConfig,
    ReconBoostConfig,
    RelearnConfig,
    UMEConfig,
    UMTConfig,
)
from umt.models import FUSIONS, ModelConfig
from umt.probe import ProbeConfig

MASK_FILLS = ("zero", "mean")


@dataclass(frozen=True)
class TuneConfig:
    """An equal tuning budget: each method's grid is run on validation (mean over seeds) and the
    best value kept, before the study itself runs with the chosen values.

    Attributes:
        enabled: run the search (off by default: it multiplies the study's cost by ``trials``).
        trials: values tried per method, the same for every method (each grid list has this
            length).
        grid: ``{method: {key: [values]}}``; ``key`` is a field of the method's settings, or
            ``train.<field>`` for its training recipe. Empty: each of the study's methods'
            ``search_space`` (its ``METHODS`` entry).
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


@dataclass(frozen=True)
class StudyConfig:
    """Everything a study does. ``umt run --set key=value`` sets any field by its dotted name.

    Attributes:
        name: the run directory's name under ``--out``.
        seeds: training seeds; every number is reported as mean ± std over them.
        methods: which of ``umt.methods.METHODS`` to run: ``joint``, ``umt``, ``ume`` and the
            peers (``umt methods`` lists them all); teachers always run.
        data, model, train: the data set, the architecture, the training recipe.
        probe, choice: the linear probe, the UMT/UME rule.
        mask_fill: how a modality is removed to measure a fused model per modality
            (``zero`` or its training ``mean``).
        fusion: a sweep over fusion modules (e.g. ``[concat, sum, gated, film, attention]``):
            each trained method runs once per fusion, as stage ``<method>-<fusion>``. Empty:
            ``model.fusion`` alone, stages named ``<method>``.
        umt, ume, gblend, ...: each method's settings, a section named as the method, with the
            dataclass its ``METHODS`` entry names. A
            section may carry ``train: {...}``, that method's training recipe on top of
            ``train`` (e.g. ``ogm_ge: {train: {optimizer: sgd, lr: 0.05}}``); ``load_config``
            moves it to ``recipes``.
        recipes: per method, the ``train`` fields it overrides (``{ogm_ge: {optimizer: sgd}}``).
        tune: the equal tuning budget (:class:`TuneConfig`), off by default.
        teachers: modality -> a file with that teacher (not trained then); see ``umt.study.inputs``.
        jobs: stages trained at once, each in its own worker process (``umt.study.parallel``):
            ``auto`` (one per CPU core when training on the CPU, 1 on a GPU or under DDP) or a
            number (1: one after another). The numbers do not depend on it.
    """

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
    # Each method's settings, a section named as the method, of the dataclass its ``METHODS``
    # entry names (tests/test_structure.py checks the two agree).
    umt: UMTConfig = field(default_factory=UMTConfig)
    gblend: GBlendConfig = field(default_factory=GBlendConfig)
    ogm_ge: OGMGEConfig = field(default_factory=OGMGEConfig)
    mmpareto: MMParetoConfig = field(default_factory=MMParetoConfig)
    mla: MLAConfig = field(default_factory=MLAConfig)
    pmr: PMRConfig = field(default_factory=PMRConfig)
    reconboost: ReconBoostConfig = field(default_factory=ReconBoostConfig)
    g2d: G2DConfig = field(default_factory=G2DConfig)
    inforeg: InfoRegConfig = field(default_factory=InfoRegConfig)
    relearn: RelearnConfig = field(default_factory=RelearnConfig)
    ume: UMEConfig = field(default_factory=UMEConfig)

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

    def fusion_stages(self, method: str) -> list[tuple[str, str]]:
        """``(stage name, fusion)`` of each stage ``method`` trains: ``<method>`` for one fusion
        module, ``<method>-<fusion>`` for each of a sweep (``fusion``).

        Example:
            >>> load_config(overrides=["fusion=[sum, gated]"]).fusion_stages("umt")
            [('umt-sum', 'sum'), ('umt-gated', 'gated')]
        """
        fusions = self.fusion or (self.model.fusion,)
        return [(method if len(fusions) == 1 else f"{method}-{f}", f) for f in fusions]

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
        if method not in METHODS or not METHODS[method].search_space:
            raise UMTError(
                f"tune.grid: cannot tune {method!r}; expected some of "
                f"{[m for m, s in METHODS.items() if s.search_space]}"
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


def check_name(name: str) -> None:
    """Refuse a study name that is not one plain directory name (it is a folder of ``--out``).

    Example:
        >>> check_name("my-study")
        >>> check_name("../escape")
        Traceback (most recent call last):
        umt.errors.UMTError: name: expected a plain directory name (no '/', not '.' or '..', not empty), got '../escape'
    """
    bad = not name or name in (".", "..") or any(c in name for c in ("/", "\\", "\0"))
    if bad or name != name.strip():
        raise UMTError(
            "name: expected a plain directory name (no '/', not '.' or '..', not empty), "
            f"got {name!r}"
        )


def check_fields(cfg: StudyConfig) -> None:
    """``StudyConfig``: seeds without repeats, a plain name, a known ``choice.compare``."""
    if len(set(cfg.seeds)) != len(cfg.seeds):
        raise UMTError(f"seeds: each seed once, got {list(cfg.seeds)}")
    bad = [s for s in cfg.seeds if not 0 <= s < 2**32]  # what the random generators take
    if bad:
        raise UMTError(f"seeds: {bad} out of range; a seed is an integer in 0..{2**32 - 1}")
    check_name(cfg.name)
    if cfg.choice.compare not in METHODS or cfg.choice.compare == "ume":
        raise UMTError(
            f"choice.compare: expected a method UME is compared with, one of "
            f"{[m for m in METHODS if m != 'ume']}, got {cfg.choice.compare!r}"
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
