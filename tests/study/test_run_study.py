"""End to end: a tiny study through the Python API and the CLI; stage caching."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import assert_summary_is_the_stage_results, quiet

from umt.cli import main
from umt.data import load_data
from umt.errors import UMTError
from umt.models import build_model
from umt.report import markdown
from umt.study import StudyResult, load_config, run_study


def test_study_writes_its_run_directory(tmp_path: Path, easy_overrides: list[str]) -> None:
    cfg = load_config(overrides=easy_overrides)
    result = run_study(cfg, tmp_path, log=quiet)
    run = tmp_path / "default"
    assert result.run_dir == run
    for name in ("study.yaml", "summary.json", "report.md", "report.html", "figures/probes.png"):
        assert (run / name).is_file(), name
    for stage in ("teacher-strong", "teacher-weak", "joint", "umt", "ume"):
        stage_dir = run / "seed0" / stage
        assert (stage_dir / "result.json").is_file(), stage
        assert (stage_dir / "config.yaml").is_file(), stage
    for stage in ("teacher-strong", "teacher-weak", "joint", "umt"):
        stage_dir = run / "seed0" / stage
        assert (stage_dir / "model.pt").is_file()
        assert (stage_dir / "metrics.csv").is_file()
        assert (stage_dir / "checkpoints" / "best.ckpt").is_file()
        assert (stage_dir / "probe.json").is_file()

    summary = json.loads((run / "summary.json").read_text())
    assert summary["data"]["modalities"] == ["strong", "weak"]
    assert set(summary["methods"]) == {"teacher-strong", "teacher-weak", "joint", "umt", "ume"}
    for name, entry in summary["methods"].items():
        # 4 classes (chance 0.25); seeds 0-4 gave 0.50-1.00 for every stage (conftest).
        assert entry["test_acc"]["mean"] >= 0.4, (name, entry["test_acc"])
        assert entry["test_acc"]["values"] and len(entry["test_acc"]["values"]) == 1
    assert summary["probes"]["strong"]["teacher"]["mean"] >= 0.8  # seeds 0-4: 0.93-1.00
    assert_summary_is_the_stage_results(run, summary)
    # The joint model on disk predicts the recorded test outcomes: the number is its own.
    data = load_data(cfg.data)
    model = build_model(cfg.model, data.input_shapes, data.num_classes)
    model.load_state_dict(torch.load(run / "seed0" / "joint" / "model.pt", weights_only=True))
    test = data.test
    with torch.no_grad():
        batch = {m: torch.from_numpy(test.arrays[m]) for m in data.modalities}
        right = model.eval()(batch).argmax(1) == torch.from_numpy(test.labels)
    assert np.array_equal(right.numpy(), np.load(run / "seed0" / "joint" / "test-outcomes.npy"))
    assert set(summary["methods"]["joint"]["modality_test_acc"]) == {"strong", "weak"}
    assert set(summary["probes"]["weak"]) == {"teacher", "joint", "umt"}
    assert summary["choice"]["method"] in ("ume", "umt")
    assert summary["choice"]["split"] == "val"
    report = (run / "report.md").read_text()
    assert "## Verdict" in report and "Evidence, the papers' UMT/UME rule" in report


def test_second_run_trains_nothing_and_changes_retrain_only_dependents(
    tmp_path: Path, tiny_overrides: list[str]
) -> None:
    first = run_study(load_config(overrides=tiny_overrides), tmp_path, log=quiet)
    assert len(first.trained) == 4  # two teachers, joint, umt (UME trains nothing)

    again = run_study(load_config(overrides=tiny_overrides), tmp_path, log=quiet)
    assert again.trained == []
    assert again.summary["methods"] == first.summary["methods"]

    changed = run_study(
        load_config(overrides=[*tiny_overrides, "umt.weight=3.0"]), tmp_path, log=quiet
    )
    assert changed.trained == ["seed0/umt"]

    teachers_changed = run_study(
        load_config(overrides=[*tiny_overrides, "umt.weight=3.0", "train.lr=0.002"]),
        tmp_path,
        log=quiet,
    )
    assert sorted(teachers_changed.trained) == [
        "seed0/joint",
        "seed0/teacher-strong",
        "seed0/teacher-weak",
        "seed0/umt",
    ]


def test_study_with_three_modalities(tmp_path: Path, tiny_overrides: list[str]) -> None:
    cfg = load_config(overrides=[*tiny_overrides, "data.synthetic.preset=three"])
    summary = run_study(cfg, tmp_path, log=quiet, report=False).summary
    assert summary["data"]["modalities"] == ["strong", "medium", "weak"]
    assert set(summary["probes"]) == {"strong", "medium", "weak"}
    assert set(summary["methods"]["umt"]["modality_test_acc"]) == {"strong", "medium", "weak"}


def test_methods_subset_skips_choice(tmp_path: Path, tiny_overrides: list[str]) -> None:
    cfg = load_config(overrides=[*tiny_overrides, "methods=[umt]"])
    summary = run_study(cfg, tmp_path, log=quiet, report=False).summary
    assert set(summary["methods"]) == {"teacher-strong", "teacher-weak", "umt"}
    assert summary["choice"] is None


def test_cli_run_prints_tables(
    tmp_path: Path, tiny_overrides: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["run", "--out", str(tmp_path)]
    for o in tiny_overrides:
        args += ["--set", o]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "Linear-probe test accuracy" in out
    assert "| UMT |" in out
    last = out.rstrip().splitlines()[-1]  # one verdict, the last line
    assert last.startswith(("Use ", "A tie between ")) and "Chosen:" not in out
    assert (tmp_path / "default" / "summary.json").is_file()


def test_same_config_and_seed_give_the_same_numbers(
    tmp_path: Path, tiny_overrides: list[str]
) -> None:
    overrides = [*tiny_overrides, "data.synthetic.n_train=600", "train.epochs=5"]
    a = run_study(load_config(overrides=overrides), tmp_path / "a", log=quiet, report=False)
    b = run_study(load_config(overrides=overrides), tmp_path / "b", log=quiet, report=False)

    def numbers(result: StudyResult) -> dict[str, object]:
        methods = {
            name: {k: v for k, v in entry.items() if k != "train_seconds"}  # timing varies
            for name, entry in result.summary["methods"].items()
        }
        return {"methods": methods, "probes": result.summary["probes"]}

    assert numbers(a) == numbers(b)  # bit-identical on CPU
    assert a.summary["methods"]["umt"]["test_acc"]["mean"] > 0.3  # it learned something
    other_seed = [*overrides, "seeds=[1]"]
    c = run_study(load_config(overrides=other_seed), tmp_path / "c", log=quiet, report=False)
    assert numbers(c) != numbers(a)


def test_fusion_sweep_runs_each_method_per_fusion(
    tmp_path: Path, tiny_overrides: list[str]
) -> None:
    cfg = load_config(overrides=[*tiny_overrides, "fusion=[concat,sum,attention]"])
    result = run_study(cfg, tmp_path, log=quiet)
    methods = result.summary["methods"]
    for f in ("concat", "sum", "attention"):
        assert f"joint-{f}" in methods and f"umt-{f}" in methods
        assert f"umt-{f}" in result.summary["probes"]["weak"]
    assert "ume" in methods and "ume-sum" not in methods  # UME has no fusion module
    assert (
        result.summary["choice"]["joint-concat_acc"] == methods["joint-concat"]["val_acc"]["mean"]
    )
    report = (tmp_path / "default" / "report.md").read_text()
    assert "## UMT across fusion modules" in report
    assert "| attention |" in report
    assert "it is the one row `UME` above" in report
    without_ume = {**result.summary, "methods": {k: v for k, v in methods.items() if k != "ume"}}
    assert "`UME`" not in markdown(without_ume)  # a sweep without UME does not point to it


def test_unknown_fusion_in_a_sweep_is_refused_before_training(tiny_overrides: list[str]) -> None:
    with pytest.raises(UMTError, match=r"fusion: unknown \['fim'\]"):
        load_config(overrides=[*tiny_overrides, "fusion=[concat,fim]"])


def test_compiled_encoders_train_to_the_same_numbers(
    tmp_path: Path, tiny_overrides: list[str]
) -> None:
    # The 'eager' backend traces each encoder with TorchDynamo but runs it op by op, so the
    # numbers must equal an uncompiled run's; 'inductor' (the real compiler) takes tens of seconds
    # to compile on a CPU, too slow for a test.
    overrides = [*tiny_overrides, "methods=[joint]"]
    plain = run_study(load_config(overrides=overrides), tmp_path / "a", log=quiet, report=False)
    compiled = run_study(
        load_config(overrides=[*overrides, "train.compile=eager"]),
        tmp_path / "b",
        log=quiet,
        report=False,
    )
    for stage in ("teacher-strong", "joint"):
        assert (
            compiled.summary["methods"][stage]["test_acc"]
            == plain.summary["methods"][stage]["test_acc"]
        )
    assert compiled.summary["probes"] == plain.summary["probes"]


def test_unknown_compile_backend_is_refused(tmp_path: Path, tiny_overrides: list[str]) -> None:
    cfg = load_config(overrides=[*tiny_overrides, "train.compile=inductr"])
    with pytest.raises(UMTError, match=r"train.compile: unknown backend 'inductr'.*'inductor'"):
        run_study(cfg, tmp_path, log=quiet)


def test_compile_wraps_every_encoder_in_place() -> None:
    from umt.engine.fit import _compile_encoders
    from umt.models import ModelConfig, build_model

    model = build_model(ModelConfig(), {"a": (4,), "b": (1, 8, 8)}, 3)
    keys = list(model.state_dict())
    _compile_encoders(model, "eager")
    for encoder in model.encoders.values():
        assert encoder._compiled_call_impl is not None  # what nn.Module.compile sets
    assert list(model.state_dict()) == keys  # checkpoints keep their keys
