"""A study's configuration: ``StudyConfig`` (YAML and ``--set key=value`` in, a frozen dataclass
out) and ``load_config``. A method's settings section comes from its ``METHODS`` entry."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from umt.config import apply_overrides, from_dict, read_yaml
from umt.data import DataConfig
from umt.engine import TrainConfig
from umt.errors import UMTError
from umt.methods import METHODS, ChoiceConfig
from umt.models import FUSIONS, ModelConfig
from umt.preflight import check_fields
from umt.probe import ProbeConfig

MASK_FILLS = ("zero", "mean")


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
            dataclass its ``METHODS`` entry names (added to this class from the registry).
        teachers: modality -> a file with that teacher (not trained then); see ``umt.inputs``.
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
    return from_dict(StudyConfig, raw)
