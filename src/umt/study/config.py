"""A study's configuration: ``StudyConfig`` (YAML and ``--set key=value`` in, a frozen dataclass
out) and ``load_config``. A method's settings section comes from its ``METHODS`` entry."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from umt.config import apply_overrides, from_dict, read_yaml, recipe_file, to_dict
from umt.data import DATASETS, DataConfig, dataset
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
from umt.methods.base import SGD_RECIPE
from umt.models import FUSIONS, ModelConfig
from umt.probe import ProbeConfig

MASK_FILLS = ("zero", "mean")


#: The search's pruners: ``median`` stops a trial whose validation curve falls below the median of
#: the earlier trials' at the same epoch (Optuna's ``MedianPruner``); ``none`` runs every trial out.
PRUNERS = ("median", "none")


@dataclass(frozen=True)
class TuneConfig:
    """The recipe search (``umt.search``): on validation, within a budget, before the study trains
    for real at its own seeds.

    Attributes:
        enabled: ``auto`` (search, unless the data set ships a recipe found by this same
            search: the built-in sets), ``true`` (search) or ``false`` (the recipe as configured,
            without a shipped one; the report says it was not searched).
        budget: trials per method, the same for every method: its key hyper-parameters and its
            learning rate (UME: its members' weights). The configured values are always the
            first trial, so the search never ends below them on validation.
        teacher_budget: trials per modality for its teacher's recipe (encoder kind and width,
            learning rate, weight decay), which the fused models' encoders then share; 0: not
            searched.
        minutes: a cap on the search's wall time (0: none): no trial starts after it.
        seed: the training seed of every trial. The study then retrains the chosen values at its
            own ``seeds``: no reported number is the maximum the search selected.
        pruner: ``median`` or ``none`` (see ``PRUNERS``).
        space: overrides of the search spaces: ``{teacher: {key: [values]}, <method>: {key:
            [values]}}``; a key is ``train.<field>``, a field of the method's settings, or for
            the teachers ``encoder`` (kinds), ``mlp.hidden``, ``cnn.channels``,
            ``cnn1d.channels``, ``lr``, ``weight_decay``.
        storage: an Optuna storage URL several processes or machines share (e.g.
            ``postgresql://...``); default: SQLite in the run directory (``search/optuna.db``).
    """

    enabled: Literal["auto"] | bool = "auto"
    budget: int = 4
    teacher_budget: int = 8
    minutes: float = 0.0
    seed: int = 1000
    pruner: str = "median"
    space: dict[str, dict[str, tuple[Any, ...]]] = field(default_factory=dict)
    storage: str | None = None

    def __post_init__(self) -> None:
        if self.enabled not in ("auto", True, False):
            raise UMTError(f"tune.enabled: expected auto, true or false, got {self.enabled!r}")
        for key in ("budget", "teacher_budget"):
            if not isinstance(getattr(self, key), int) or getattr(self, key) < 0:
                raise UMTError(
                    f"tune.{key}: expected a number of trials >= 0, got {getattr(self, key)!r}"
                )
        if not self.minutes >= 0:
            raise UMTError(f"tune.minutes: expected 0 (no cap) or more, got {self.minutes}")
        if self.pruner not in PRUNERS:
            raise UMTError(f"tune.pruner: expected one of {list(PRUNERS)}, got {self.pruner!r}")
        for unit, keys in self.space.items():
            if unit != "teacher" and (unit not in METHODS or not isinstance(keys, dict)):
                raise UMTError(
                    f"tune.space.{unit}: expected teacher or a method of {list(METHODS)}, with "
                    "{key: [values]}"
                )
            for key, values in keys.items():
                if not values:
                    raise UMTError(f"tune.space.{unit}.{key}: expected at least one value")


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
        recipes: per method (or ``teacher-<modality>``), the ``train`` fields it overrides
            (``{ogm_ge: {optimizer: sgd}, teacher-audio: {lr: 0.003}}``).
        tune: the recipe search (:class:`TuneConfig`).
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
        """The training recipe of ``method``'s stages (or of ``teacher-<modality>``): ``train``,
        then the optimiser its authors' code uses (``SGD_RECIPE`` for ``MethodSpec.optimizer:
        sgd``), then ``recipes[method]`` on top.

        Example:
            >>> cfg = load_config(overrides=["data.name=synthetic", "ogm_ge.train.lr=0.02"])
            >>> cfg.train_for("ogm_ge").optimizer, cfg.train_for("ogm_ge").lr, cfg.train_for("joint").lr
            ('sgd', 0.02, 0.001)
        """
        spec = METHODS.get(method)
        authors = SGD_RECIPE if spec is not None and spec.optimizer == "sgd" else {}
        override = {**authors, **self.recipes.get(method, {})}
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
            if method not in METHODS and not method.startswith("teacher-"):
                raise UMTError(
                    f"recipes: unknown method {method!r}; expected one of {list(METHODS)} or "
                    "teacher-<modality>"
                )
            self.train_for(method)  # unknown keys or wrong types fail here, named
        if self.jobs != "auto" and not (isinstance(self.jobs, int) and self.jobs >= 1):
            raise UMTError(f"jobs: expected auto or a number >= 1, got {self.jobs!r}")


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


def recipe_source(cfg: StudyConfig, data: object = None) -> str:
    """Where the study's recipe comes from: ``searched`` (``tune.enabled: true``, or ``auto`` on
    data read from a folder or given as your own), ``shipped`` (a built-in set's recipe, found
    by this same search), ``configured`` (a built-in set without one) or ``off``."""
    if cfg.tune.enabled is False:
        return "off"
    if cfg.tune.enabled is True or data is not None:
        return "searched"
    spec = dataset(cfg.data.name)  # an unknown name: the one clear error
    if spec.reads_folder:
        return "searched"
    return "shipped" if spec.recipe is not None else "configured"


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> StudyConfig:
    """A study config from an optional YAML file plus ``key=value`` overrides.

    Example:
        >>> load_config(overrides=["train.epochs=3", "seeds=[1]"]).train.epochs
        3
    """
    raw = read_yaml(path) if path is not None else {}
    raw = apply_overrides(raw, list(overrides))
    data = raw.get("data")
    name = data.get("name", DataConfig.name) if isinstance(data, dict) else DataConfig.name
    tune = raw.get("tune")
    off = isinstance(tune, dict) and tune.get("enabled") is False  # the recipe as configured
    shipped = {} if off else shipped_recipe(name)
    return from_dict(StudyConfig, _move_recipes(merged(shipped, raw)))


def shipped_recipe(name: str) -> dict[str, Any]:
    """The settings of a built-in data set's shipped recipe (``DatasetSpec.recipe``: found by the
    recipe search, ``umt/configs/recipes/<recipe>.yaml``), a layer under the user's; ``{}``
    for other data sets.

    Example:
        >>> shipped_recipe("folder")
        {}
    """
    spec = DATASETS.get(name) if isinstance(name, str) else None
    if spec is None or spec.recipe is None:
        return {}
    settings = read_yaml(recipe_file(spec.recipe)).get("settings") or {}
    if not isinstance(settings, dict):
        raise UMTError(f"{recipe_file(spec.recipe)}: settings: expected a mapping of keys")
    return settings


def merged(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """``top`` over ``base``, section by section (a nested mapping merges, anything else wins).

    Example:
        >>> merged({"train": {"lr": 0.01, "epochs": 5}}, {"train": {"lr": 0.1}, "seeds": [0]})
        {'train': {'lr': 0.1, 'epochs': 5}, 'seeds': [0]}
    """
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


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
