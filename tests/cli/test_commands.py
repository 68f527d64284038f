"""The ``umt`` command, called in-process: help, config, errors without tracebacks, data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from umt.cli import main
from umt.config import from_dict
from umt.errors import UMTError
from umt.study import StudyConfig, load_config

EXPORT = [
    "--set",
    "synthetic.n_train=20",
    "--set",
    "synthetic.n_val=10",
    "--set",
    "synthetic.n_test=10",
    "--set",
    "synthetic.dim=8",
    "--set",
    "synthetic.signal_dim=2",
]


@pytest.fixture(autouse=True)
def _no_debug_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("UMT_DEBUG", raising=False)


def _help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--help"], ["run", "config", "data", "datasets", "modality failure", "--debug"]),
        (["run", "--help"], ["--config", "--set", "--out", "KEY=VALUE", "cached"]),
        (["config", "--help"], ["--config", "--set", "configuration"]),
        (["data", "--help"], ["check", "export", "umt-folder"]),
        (["data", "check", "--help"], ["PATH", "meta.json", "Exits 1"]),
        (["data", "export", "--help"], ["NAME", "PATH", "--set", "--overwrite"]),
        (["datasets", "--help"], ["List data sets"]),
    ],
)
def test_help_exits_zero_and_names_the_options(
    argv: list[str], words: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    out = _help(argv, capsys)
    assert out.startswith("usage: umt")
    for word in words:
        assert word in out, f"{argv}: {word!r} missing from the help"


def test_no_command_prints_the_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    assert "usage: umt" in capsys.readouterr().out


def test_config_prints_yaml_that_load_config_accepts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["config", "--set", "train.epochs=3", "--set", "seeds=[4]"]) == 0
    text = capsys.readouterr().out
    raw = yaml.safe_load(text)
    assert raw["train"]["epochs"] == 3 and raw["seeds"] == [4]
    path = tmp_path / "printed.yaml"
    path.write_text(text)
    cfg = load_config(path)
    assert cfg == load_config(overrides=["train.epochs=3", "seeds=[4]"])
    assert from_dict(StudyConfig, raw) == cfg


def test_config_of_a_file_with_overrides(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("name: from-file\ntrain:\n  epochs: 9\n")
    assert main(["config", "--config", str(path), "--set", "train.lr=1e-2"]) == 0
    raw = yaml.safe_load(capsys.readouterr().out)
    assert raw["name"] == "from-file"
    assert raw["train"]["epochs"] == 9
    assert raw["train"]["lr"] == 0.01


@pytest.mark.parametrize("command", ["config", "run"])
def test_unknown_set_key_exits_2_with_a_message_and_no_traceback(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [command, "--set", "train.epoch=3"]
    if command == "run":
        argv += ["--out", str(tmp_path)]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("umt: error: unknown key 'train.epoch'")
    assert "did you mean 'train.epochs'" in captured.err
    assert "Traceback" not in captured.err
    assert captured.out == ""
    assert list(tmp_path.iterdir()) == []  # nothing ran


def test_missing_config_file_exits_2_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.yaml"
    assert main(["config", "--config", str(missing)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("umt: error:") and str(missing) in err
    assert "Traceback" not in err


def test_debug_after_the_command_shows_the_exception() -> None:
    with pytest.raises(UMTError, match="train.epoch"):
        main(["config", "--set", "train.epoch=3", "--debug"])


def test_umt_debug_environment_variable_shows_the_exception(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("UMT_DEBUG", "1")
    with pytest.raises(UMTError, match="train.epoch"):
        main(["config", "--set", "train.epoch=3"])


def test_debug_before_the_command_shows_the_exception() -> None:
    with pytest.raises(UMTError, match="train.epoch"):
        main(["--debug", "config", "--set", "train.epoch=3"])


def test_datasets_lists_the_data_sets_and_marks_the_default(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["datasets"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    names = [line.split()[0] for line in lines]
    assert {"synthetic", "folder", "avdigits"} <= set(names)
    assert [line.split()[0] for line in lines if line.endswith("(default)")] == ["avdigits"]


def test_data_export_then_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "synth"
    assert main(["data", "export", "synthetic", str(path), *EXPORT]) == 0
    assert "wrote synthetic" in capsys.readouterr().out
    assert (path / "meta.json").is_file()
    train = np.load(path / "train" / "strong.npy")
    assert train.shape == (20, 8)
    assert np.load(path / "val" / "labels.npy").shape == (10,)

    assert main(["data", "check", str(path)]) == 0
    assert "no problems found" in capsys.readouterr().out


def test_data_export_refuses_to_overwrite_without_the_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "synth"
    assert main(["data", "export", "synthetic", str(path), *EXPORT]) == 0
    assert main(["data", "export", "synthetic", str(path), *EXPORT]) == 2
    assert "umt: error:" in capsys.readouterr().err
    assert main(["data", "export", "synthetic", str(path), *EXPORT, "--overwrite"]) == 0


def test_data_export_unknown_setting_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["data", "export", "synthetic", str(tmp_path / "x"), "--set", "synthetic.n_trian=5"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "unknown key 'data.synthetic.n_trian'" in err and "Traceback" not in err


def test_data_check_of_a_broken_folder_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "synth"
    assert main(["data", "export", "synthetic", str(path), *EXPORT]) == 0
    capsys.readouterr()
    (path / "val" / "weak.npy").unlink()
    assert main(["data", "check", str(path)]) == 1
    out = capsys.readouterr().out
    assert "val/weak.npy" in out and "missing" in out


def test_data_check_of_an_empty_folder_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["data", "check", str(tmp_path)]) == 1
    assert "meta.json" in capsys.readouterr().out
