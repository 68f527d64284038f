"""Where a stage's training curves go (``train.logger``): Lightning's loggers, all local.

``csv`` (the default) writes ``<stage>/metrics.csv``; ``tensorboard`` writes event files under
``<stage>/tensorboard/``; ``wandb`` writes an offline run under ``<stage>/wandb/`` (upload it with
``wandb sync``); ``mlflow`` writes a file store under ``<stage>/mlruns/`` (browse it with
``mlflow ui --backend-store-uri <stage>/mlruns``). Several may be given; nothing is sent over the
network. The last three are optional dependencies, installed as extras of the same name
(``pip install 'unimodal-teacher[tensorboard]'``).
"""

from __future__ import annotations

import csv
import importlib
import io
import os
from collections.abc import Sequence
from pathlib import Path

from lightning.pytorch.loggers import CSVLogger, Logger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment

from umt.errors import UMTError
from umt.io import write_text

#: Logger name -> the packages that provide it (any one of them) and the extra that installs it.
LOGGERS: dict[str, tuple[tuple[str, ...], str | None]] = {
    "csv": ((), None),
    "tensorboard": (("tensorboard", "tensorboardX"), "tensorboard"),
    "wandb": (("wandb",), "wandb"),
    "mlflow": (("mlflow",), "mlflow"),
}


def _importable(package: str) -> bool:
    try:
        importlib.import_module(package)
    except ImportError:
        return False
    return True


def check_loggers(names: Sequence[str]) -> None:
    """Refuse an unknown logger name, or one whose package is not installed, naming the extra.

    Example:
        >>> check_loggers(["csv"])
        >>> check_loggers(["csv", "tensorbord"])
        Traceback (most recent call last):
        umt.errors.UMTError: train.logger: unknown logger 'tensorbord'; expected some of ['csv', 'tensorboard', 'wandb', 'mlflow']
    """
    for name in names:
        if name not in LOGGERS:
            raise UMTError(
                f"train.logger: unknown logger {name!r}; expected some of {list(LOGGERS)}"
            )
        packages, extra = LOGGERS[name]
        if packages and not any(_importable(p) for p in packages):
            raise UMTError(
                f"train.logger: {name!r} needs the package {' or '.join(packages)}, which is "
                f"not installed; install it with: pip install 'unimodal-teacher[{extra}]'"
            )


class _AtomicCSVWriter(ExperimentWriter):
    """Lightning's ``metrics.csv`` writer, but each save rewrites the whole file atomically
    (``umt.io``): Lightning appends rows in place, so a kill, a Ctrl-C or a full disk during a
    save left a cut-off row in the curves."""

    def __init__(self, log_dir: str) -> None:
        super().__init__(log_dir)  # removes a metrics.csv left there (a link too, not its target)
        self._rows: list[dict[str, float]] = []

    def save(self) -> None:
        if not self.metrics:
            return
        self._record_new_keys()
        self._rows += self.metrics
        self.metrics = []
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self.metrics_keys)
        writer.writeheader()
        writer.writerows(self._rows)
        write_text(self.metrics_file_path, buf.getvalue())


class AtomicCSVLogger(CSVLogger):
    """Lightning's CSV logger, writing ``metrics.csv`` whole or not at all."""

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if not isinstance(self._experiment, _AtomicCSVWriter):
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AtomicCSVWriter(log_dir=self.log_dir)
        return self._experiment


def build_loggers(names: Sequence[str], stage_dir: Path) -> list[Logger]:
    """The Lightning loggers ``names`` for one stage, all writing under ``stage_dir``.

    The run's name in wandb and mlflow is the stage's path under the runs folder
    (``<study>/seed<k>/<stage>``).

    Example:
        >>> import tempfile
        >>> [type(lg).__name__ for lg in build_loggers(["csv"], Path(tempfile.mkdtemp()))]
        ['AtomicCSVLogger']
    """
    check_loggers(names)
    run_name = "/".join(stage_dir.parts[-3:])
    out: list[Logger] = []
    for name in dict.fromkeys(names):  # each once, in the given order
        if name == "csv":
            out.append(AtomicCSVLogger(stage_dir, name="", version=""))  # stage_dir/metrics.csv
        elif name == "tensorboard":
            from lightning.pytorch.loggers import TensorBoardLogger

            out.append(TensorBoardLogger(stage_dir, name="tensorboard", version=""))
        elif name == "wandb":
            import wandb
            from lightning.pytorch.loggers import WandbLogger

            if wandb.run is not None:  # the last stage's run: one run per stage, not one for all
                wandb.finish()

            out.append(WandbLogger(name=run_name, save_dir=stage_dir, offline=True, project="umt"))
        elif name == "mlflow":
            from lightning.pytorch.loggers import MLFlowLogger

            # MLflow 3 refuses its file store unless told (it prefers a database server); a
            # stage's local folder is what we want here. A value the user set is kept.
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")

            out.append(
                MLFlowLogger(
                    experiment_name=stage_dir.parts[-3] if len(stage_dir.parts) >= 3 else "umt",
                    run_name=run_name,
                    tracking_uri=(stage_dir / "mlruns").resolve().as_uri(),
                )
            )
    return out
