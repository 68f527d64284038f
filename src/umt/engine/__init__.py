"""The engine: one stage's training (Lightning at the edge), its recipe, checkpoints and loggers.

``fit(model, method, data, cfg, stage_dir, task=..., seed=..., stage=...)`` trains one stage with
``TrainConfig`` ``cfg`` and keeps its best validation epoch; ``StageModule`` is the thin Lightning
adapter that calls the method's ``step``. Shared mechanics (devices, precision, DDP, checkpoints,
resumption, loggers) are written once, here, for every method.
"""

from umt.engine.config import TrainConfig
from umt.engine.fit import (
    FitResult,
    agree,
    eval_device,
    fit,
    is_converged,
    is_main_process,
    save_model,
)
from umt.engine.module import DivergenceError, StageModule

__all__ = [
    "DivergenceError",
    "FitResult",
    "StageModule",
    "TrainConfig",
    "agree",
    "eval_device",
    "fit",
    "is_converged",
    "is_main_process",
    "save_model",
]
