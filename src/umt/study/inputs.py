"""What a study takes beyond its config, and the checks made before anything trains.

- Your data: ``run_study(cfg, out, data=UserData(...))`` (or a ``DataBundle``) instead of
  ``cfg.data``. Its stages are keyed on a hash of its content (``DataBundle.info["content_hash"]``),
  and the summary's ``data`` section says ``"source": "user"``.
- Your encoders: ``run_study(..., encoders={modality: factory})``; the study's task is wrapped in
  :class:`UserEncoders`, so every model it builds (teachers and fused) uses them.
- Files (``teachers: {m: PATH}``, ``model.encoder.weights: {m: PATH}``): keyed on their content;
  :func:`loaded_teacher` is the stage of a teacher taken from a file.

Stage keys leave out every option that is not used (:func:`model_key`), so that a study that uses
none of them keeps the keys (and the cached stages) it had before they existed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

from torch import nn

from umt.config import to_dict
from umt.data import DataBundle, DataConfig, load_data
from umt.data.fingerprint import data_key as folder_data_key
from umt.data.user import UserData, content_hash
from umt.engine.loggers import check_loggers
from umt.errors import UMTError
from umt.models.encoders import EncoderFactory, encoder_kind
from umt.models.multimodal import ModelConfig
from umt.models.pretrained import file_digest
from umt.study.config import StudyConfig
from umt.study.preflight import check_before_training
from umt.tasks import Task, task_of


class UserEncoders:
    """A task whose models use the user's encoder factories for their modalities (any other
    part of the task is the wrapped one's).

    Example:
        >>> from umt.tasks import CLASSIFICATION
        >>> task = UserEncoders(CLASSIFICATION, {"a": lambda shape: nn.Linear(shape[0], 5)})
        >>> model = task.build_model(ModelConfig(), {"a": (3,), "b": (4,)}, 2)
        >>> type(model.encoders["a"]).__name__, model.encoders["a"].feature_dim, task.metric
        ('Linear', 5, 'acc')
    """

    def __init__(self, task: Task, encoders: Mapping[str, EncoderFactory]) -> None:
        self.task, self.encoders = task, dict(encoders)
        self._examples: dict[tuple[str, tuple[int, ...]], nn.Module] = {}

    def __getattr__(self, name: str) -> Any:  # name, metric, scores, probe...: the task's
        if name.startswith("__") or name == "task":  # copy/pickle probes: not delegated
            raise AttributeError(name)
        return getattr(self.task, name)

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
        mine = {**self.encoders, **(encoders or {})}
        return self.task.build_model(
            cfg, shapes, num_classes, uni=uni, fusion=fusion, encoders=mine, init_seed=init_seed
        )

    def describe(self, modality: str, shape: tuple[int, ...]) -> str:
        """The user's encoder of ``modality`` by its class and architecture (``repr``)."""
        key = (modality, tuple(shape))
        if key not in self._examples:
            self._examples[key] = self.encoders[modality](tuple(shape))
        e = self._examples[key]
        return f"{type(e).__module__}.{type(e).__qualname__}: {e!r}"


def study_inputs(
    cfg: StudyConfig,
    data: UserData | DataBundle | None,
    encoders: Mapping[str, EncoderFactory] | None,
) -> tuple[DataBundle, Task]:
    """The study's data set and task, every input checked before anything trains."""
    if data is None:
        bundle = load_data(cfg.data)
    else:
        if isinstance(data, UserData):
            data = data.bundle()
        if not isinstance(data, DataBundle):
            raise UMTError(
                f"run_study(data=...): expected umt.UserData or umt.DataBundle, got "
                f"{type(data).__name__}"
            )
        bundle = dataclasses.replace(data, info={**data.info, "content_hash": content_hash(data)})
    task = task_of(bundle)
    check_before_training(cfg, bundle, task)  # the task, the machine, the values
    check_inputs(cfg, bundle, encoders)
    if encoders:
        task = cast(Task, UserEncoders(task, encoders))
    return bundle, task


def data_key(
    cfg: DataConfig, data: DataBundle, run_dir: Path | None = None, *, update: bool = True
) -> str:
    """What keys the data of every stage: the user data's content, else a data folder's files'
    content, else the data config (:func:`umt.data.fingerprint.data_key`)."""
    if data.info.get("content_hash"):
        return str(data.info["content_hash"])
    return folder_data_key(cfg, run_dir, update=update)


def model_key(
    cfg: ModelConfig, shapes: Mapping[str, tuple[int, ...]], task: Task
) -> dict[str, Any]:
    """The model settings that change the numbers of a model over the modalities of ``shapes``:
    unset options left out (a study that does not use them keeps its cache keys); a weights file
    by its content, not its path; the user's encoders by their class and architecture. Only the
    options of these modalities count: a teacher's key ignores the other modalities'.

    Example:
        >>> from umt.tasks import CLASSIFICATION
        >>> model_key(ModelConfig(), {"a": (3,)}, CLASSIFICATION) == to_dict(ModelConfig())
        False
        >>> "weights" in model_key(ModelConfig(), {"a": (3,)}, CLASSIFICATION)["encoder"]
        False
    """
    d = to_dict(cfg)
    for later, before in (("stride", 1), ("norm", "batch")):  # later options at the values of
        if d["encoder"].get(later) == before:  # the time before them: earlier keys unchanged
            del d["encoder"][later]
    if all(encoder_kind(cfg.encoder_of(m), s) != "mlp" for m, s in shapes.items()):
        d["encoder"].pop("norm", None)  # only the MLP has a norm (CNN studies keep their keys)
    modality = {m: o for m, o in sorted(d.pop("modality").items()) if m in shapes and o}
    if modality:  # per-modality encoder settings: only these modalities', only where set
        d["modality"] = modality
    weights = {m: p for m, p in d["encoder"].pop("weights").items() if m in shapes}
    if weights:
        d["encoder"]["weights"] = {m: file_digest(p) for m, p in sorted(weights.items())}
    if isinstance(task, UserEncoders):
        mine = {m: task.describe(m, s) for m, s in sorted(shapes.items()) if m in task.encoders}
        if mine:
            d["user_encoders"] = mine
    return d


def check_inputs(
    cfg: StudyConfig, data: DataBundle, encoders: Mapping[str, EncoderFactory] | None
) -> None:
    """Refuse a file, an encoder or a logger the study cannot use, naming its key."""
    for key, named in (
        ("teachers", cfg.teachers),
        ("model.encoder.weights", cfg.model.encoder.weights),
        ("run_study(encoders=...)", encoders or {}),
    ):
        unknown = [m for m in named if m not in data.modalities]
        if unknown:
            raise UMTError(
                f"{key}: {unknown} are not modalities of data set {data.name!r}; it has "
                f"{list(data.modalities)}"
            )
    files = {"teachers": cfg.teachers, "model.encoder.weights": cfg.model.encoder.weights}
    for key, paths in files.items():
        for m, path in paths.items():
            if not Path(path).expanduser().is_file():
                raise UMTError(f"{key}.{m}: the file {str(path)!r} does not exist")
    check_loggers(cfg.train.logger)
