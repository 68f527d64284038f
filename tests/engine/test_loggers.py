"""``train.logger``: CSV by default, TensorBoard / wandb / mlflow as extras, outside the cache key."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from umt.config import config_hash
from umt.engine import TrainConfig
from umt.engine.loggers import build_loggers, check_loggers
from umt.errors import UMTError
from umt.study import load_config, run_study
from umt.study.cache import train_key as _hash_train

HAS_TENSORBOARD = any(importlib.util.find_spec(p) for p in ("tensorboard", "tensorboardX"))


def test_logger_is_not_part_of_the_stage_key() -> None:
    plain, logged = TrainConfig(), TrainConfig(logger=("csv", "tensorboard", "wandb"))
    assert config_hash(_hash_train(plain)) == config_hash(_hash_train(logged))
    assert config_hash(_hash_train(plain)) != config_hash(_hash_train(TrainConfig(lr=0.1)))


def test_config_reads_one_or_several_loggers() -> None:
    assert load_config().train.logger == ("csv",)
    assert load_config(overrides=["train.logger=tensorboard"]).train.logger == ("tensorboard",)
    both = load_config(overrides=["train.logger=[csv, mlflow]"]).train.logger
    assert both == ("csv", "mlflow")


def test_unknown_logger_lists_the_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(UMTError, match=r"unknown logger 'tensorbord'; expected some of \['csv'"):
        check_loggers(["csv", "tensorbord"])
    cfg = load_config(overrides=["train.logger=[csv, comet]", "data.name=synthetic"])
    with pytest.raises(UMTError, match="unknown logger 'comet'"):
        run_study(cfg, tmp_path, log=lambda _: None)  # refused before anything trains
    assert not (tmp_path / "default").exists()


@pytest.mark.parametrize(
    ("logger", "packages"),
    [
        ("wandb", ["wandb"]),
        ("mlflow", ["mlflow"]),
        ("tensorboard", ["tensorboard", "tensorboardX"]),
    ],
)
def test_missing_package_names_the_extra(
    logger: str, packages: list[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for p in packages:
        monkeypatch.setitem(sys.modules, p, None)  # `import p` now raises ImportError
    with pytest.raises(UMTError, match=rf"pip install 'unimodal-teacher\[{logger}\]'"):
        check_loggers(["csv", logger])
    with pytest.raises(UMTError, match=rf"train.logger: '{logger}' needs the package"):
        build_loggers([logger], tmp_path)


def test_csv_logger_writes_metrics_csv_in_the_stage(tmp_path: Path) -> None:
    (logger,) = build_loggers(["csv", "csv"], tmp_path / "seed0" / "joint")  # each name once
    logger.log_metrics({"val/acc": 0.5}, step=0)
    logger.save()
    lines = (tmp_path / "seed0" / "joint" / "metrics.csv").read_text().splitlines()
    assert lines == ["step,val/acc", "0,0.5"]


@pytest.mark.skipif(not HAS_TENSORBOARD, reason="needs tensorboard or tensorboardX (extra)")
def test_study_logs_to_csv_and_tensorboard(tmp_path: Path, tiny_overrides: list[str]) -> None:
    cfg = load_config(
        overrides=[*tiny_overrides, "methods=[joint]", "train.logger=[csv, tensorboard]"]
    )
    plain = run_study(
        load_config(overrides=[*tiny_overrides, "methods=[joint]"]),
        tmp_path / "a",
        log=lambda _: None,
    )
    logged = run_study(cfg, tmp_path / "b", log=lambda _: None)
    stage = logged.run_dir / "seed0" / "joint"
    assert (stage / "metrics.csv").is_file()
    events = list((stage / "tensorboard").rglob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0
    # The same numbers and keys as without the extra logger.
    assert (
        logged.summary["per_seed"]["0"]["stages"]["joint"]["key"]
        == (plain.summary["per_seed"]["0"]["stages"]["joint"]["key"])
    )
    assert (
        logged.summary["methods"]["joint"]["test_acc"]
        == plain.summary["methods"]["joint"]["test_acc"]
    )


@pytest.mark.parametrize(("logger", "folder"), [("wandb", "wandb"), ("mlflow", "mlruns")])
def test_wandb_and_mlflow_write_under_the_stage(logger: str, folder: str, tmp_path: Path) -> None:
    if importlib.util.find_spec(logger) is None:
        pytest.skip(f"needs {logger} (extra)")
    stage = tmp_path / "study" / "seed0" / "joint"
    (lg,) = build_loggers([logger], stage)
    lg.log_metrics({"val/acc": 0.5}, step=0)
    lg.finalize("success")
    assert any(p.is_file() for p in (stage / folder).rglob("*"))  # local files, no server
