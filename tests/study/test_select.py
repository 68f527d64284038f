"""UMT's ``select: better`` decides from the probes' per-sample validation outcomes on disk."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest
import torch

from umt.methods.umt import UMTConfig
from umt.study.select import harms, select

GOOD, SAME, POOR = "1" * 90 + "0" * 10, "1" * 70 + "0" * 30, "1" * 50 + "0" * 50


def _seed_dir(tmp_path: Path, teachers: dict[str, str], joint: dict[str, str]) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    for m, outcomes in teachers.items():
        (tmp_path / f"teacher-{m}").mkdir()
        (tmp_path / f"teacher-{m}" / "probe.json").write_text(
            json.dumps({"val_correct": {m: outcomes}})
        )
    (tmp_path / "joint").mkdir()
    (tmp_path / "joint" / "probe.json").write_text(json.dumps({"val_correct": joint}))
    return tmp_path


def test_no_gap_beyond_noise_distils_nothing(tmp_path: Path) -> None:
    seed_dir = _seed_dir(tmp_path, {"a": SAME, "b": POOR}, {"a": SAME, "b": SAME})
    settings, chosen = select(UMTConfig(), [seed_dir], "joint", ["a", "b"])
    assert chosen == [] and settings.weights == {"a": 0.0, "b": 0.0}


def test_a_gap_distils_every_teacher_not_worse_than_joint(tmp_path: Path) -> None:
    # a: the gap (90 vs 70); b: a tie (70 vs 70), distilled; c: worse (50 vs 70), left out.
    teachers = {"a": GOOD, "b": SAME, "c": POOR}
    seed_dir = _seed_dir(tmp_path, teachers, {"a": SAME, "b": SAME, "c": SAME})
    settings, chosen = select(UMTConfig(weight=2.0), [seed_dir], "joint", ["a", "b", "c"])
    assert chosen == ["a", "b"]
    assert [settings.weight_of(m) for m in "abc"] == [2.0, 2.0, 0.0]


def test_one_decision_over_the_seeds_finds_a_gap_one_seed_cannot(tmp_path: Path) -> None:
    """Each seed's teacher 6 points above its joint encoder on 100 validation samples (right on
    12 samples joint gets wrong, wrong on 6 it gets right: one-sided z 1.4 alone, noise), on other
    samples at each seed; over four seeds the gap is beyond noise, and every seed distils."""
    base = "10" * 12 + "01" * 6 + "11" * 64 + "00" * 18  # (teacher, joint) per sample
    dirs = []
    for s in range(4):
        pairs = [base[i : i + 2] for i in range(0, 200, 2)]
        pairs = pairs[25 * s :] + pairs[: 25 * s]  # other samples at each seed
        ahead, behind = ("".join(p[k] for p in pairs) for k in (0, 1))
        dirs.append(
            _seed_dir(tmp_path / f"seed{s}", {"a": ahead, "b": SAME}, {"a": behind, "b": SAME})
        )
    assert select(UMTConfig(), dirs[:1], "joint", ["a", "b"])[1] == []
    for own in range(4):
        order = [dirs[own], *(d for i, d in enumerate(dirs) if i != own)]
        assert select(UMTConfig(), order, "joint", ["a", "b"])[1] == ["a", "b"]
    # A seed whose files are missing is left out; the stage's own seed decides alone then.
    assert select(UMTConfig(), [dirs[0], tmp_path / "gone"], "joint", ["a", "b"])[1] == []
    assert select(UMTConfig(), [tmp_path / "gone", *dirs], "joint", ["a", "b"])[1] is None


def test_nothing_to_decide_on_keeps_the_settings(tmp_path: Path) -> None:
    cfg = UMTConfig()
    assert select(cfg, [tmp_path], "joint", ["a"]) == (cfg, None)  # no probe files
    seed_dir = _seed_dir(tmp_path, {"a": GOOD}, {"a": SAME})
    every = UMTConfig(select="all")
    assert select(every, [seed_dir], "joint", ["a"]) == (every, None)


def test_the_encoders_not_distilled_start_from_joints(tmp_path: Path) -> None:
    from umt.data import load_data
    from umt.study import load_config
    from umt.study.runner import Runner
    from umt.tasks import task_of

    cfg = load_config(overrides=["data.name=synthetic", "seeds=[0]", "model.encoder.hidden=8"])
    data = load_data(cfg.data)
    task = task_of(data)
    runner = Runner(cfg, data, task, tmp_path, lambda _: None)

    def build(seed: int) -> torch.nn.Module:
        model = task.build_model(cfg.model, data.input_shapes, data.num_classes, init_seed=seed)
        return cast(torch.nn.Module, model)

    joint, umt = build(1), build(2)
    assert runner._start_from_joint(0, "joint", umt, ["weak"]) is None  # no joint stage yet
    (tmp_path / "seed0" / "joint").mkdir(parents=True)
    torch.save(joint.state_dict(), tmp_path / "seed0" / "joint" / "model.pt")
    (tmp_path / "seed0" / "joint" / "result.json").write_text(json.dumps({"key": "k1"}))
    before = {k: v.clone() for k, v in umt.state_dict().items()}
    start = runner._start_from_joint(0, "joint", umt, ["weak"])
    assert start == {"joint": "k1", "modalities": ["weak"]}  # in the stage's key
    for k, v in umt.state_dict().items():  # weak's encoder is joint's; the rest untouched
        assert torch.equal(
            v, joint.state_dict()[k] if k.startswith("encoders.weak.") else before[k]
        )
    assert any(k.startswith("encoders.weak.") for k in before)


def _outcomes(stage_dir: Path, correct: str) -> None:
    stage_dir.mkdir(parents=True, exist_ok=True)
    np.save(stage_dir / "val-outcomes.npy", np.array([int(c) for c in correct], dtype=np.uint8))


def test_a_umt_below_joint_on_validation_beyond_noise_harms(tmp_path: Path) -> None:
    _outcomes(tmp_path / "joint", GOOD)
    _outcomes(tmp_path / "umt", POOR)  # 50 vs 90 of 100: beyond noise
    _outcomes(tmp_path / "umt-2", "1" * 88 + "0" * 12)  # 88 vs 90: noise
    assert harms(tmp_path, "umt", "joint") == (0.5, 0.9)
    assert harms(tmp_path, "umt-2", "joint") is None
    assert harms(tmp_path, "absent", "joint") is None  # nothing to decide on
    np.save(tmp_path / "umt" / "val-outcomes.npy", np.full(100, 0.4, dtype=np.float32))
    assert harms(tmp_path, "umt", "joint") is None  # not right/wrong outcomes (segmentation)


def _forced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, harmful: int
) -> tuple[Any, Any, list[str]]:
    """A tiny study whose UMT distils every modality and whose first ``harmful`` UMT attempts
    are judged below joint (``harms`` forced): the result, its config and the stages judged."""
    import umt.study.runner as runner_module
    from tests.helpers.runs import TINY
    from umt.study import load_config, run_study

    calls: list[str] = []

    def forced(seed_dir: Path, stage: str, joint: str) -> tuple[float, float] | None:
        calls.append(stage)
        return (0.1, 0.9) if len(calls) <= harmful else None

    monkeypatch.setattr(runner_module, "harms", forced)
    monkeypatch.setattr(runner_module, "select", _distil_all)
    cfg = load_config(overrides=[*TINY, "methods=[joint,umt]"])
    return run_study(cfg, tmp_path, log=lambda _: None), cfg, calls


def test_a_harmful_distillation_is_declined_and_the_decision_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the trained UMT stage harms (forced here, both attempts), the attempts are kept as
    ``umt.declined`` (from the teachers) and ``umt.declined2`` (from joint's whole model), UMT
    is trained again with nothing distilled from joint's encoders, the report flags it, and a
    rerun trains nothing (the decisions are known from the kept attempts)."""
    from umt.study import run_study

    first, cfg, calls = _forced(tmp_path, monkeypatch, harmful=2)
    seed_dir = first.run_dir / "seed0"
    kept = json.loads((seed_dir / "umt.declined" / "result.json").read_text())
    kept2 = json.loads((seed_dir / "umt.declined2" / "result.json").read_text())
    final = json.loads((seed_dir / "umt" / "result.json").read_text())
    assert kept["distilled"] == ["strong", "weak"] and "declined" not in kept
    assert kept2["distilled"] == ["strong", "weak"] and kept2["restarted"]
    assert "restarted" not in kept and len({kept["key"], kept2["key"], final["key"]}) == 3
    assert final["declined"] == ["strong", "weak"] and "restarted" not in final
    assert final["warm_start"]  # every encoder from joint's
    assert any("distillation declined" in f for f in first.summary["methods"]["umt"]["flags"])
    assert calls == ["umt", "umt"]
    lines: list[str] = []
    again = run_study(cfg, tmp_path, log=lines.append)
    assert calls == ["umt", "umt"]  # not trained nor judged again
    assert any("declined before" in line for line in lines)
    assert (
        again.summary["methods"]["umt"]["test_acc"] == first.summary["methods"]["umt"]["test_acc"]
    )


def test_a_declined_distillation_is_tried_again_from_joints_whole_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where only the first attempt harms, the second (the same distillation from joint's
    trained model, head included) is the stage, recorded and flagged as restarted."""
    from umt.study.inputs import study_inputs
    from umt.study.runner import Runner

    result, cfg, calls = _forced(tmp_path, monkeypatch, harmful=1)
    seed_dir = result.run_dir / "seed0"
    final = json.loads((seed_dir / "umt" / "result.json").read_text())
    assert calls == ["umt", "umt"] and not (seed_dir / "umt.declined2").exists()
    assert final["restarted"] and final["distilled"] == ["strong", "weak"]
    assert "declined" not in final
    assert any("distillation restarted" in f for f in result.summary["methods"]["umt"]["flags"])
    # What the second attempt starts from: joint's trained model, every weight of it.
    data, task = study_inputs(cfg, None, None)
    runner = Runner(cfg, data, task, result.run_dir, lambda _: None)
    model = task.build_model(cfg.model, data.input_shapes, data.num_classes, fusion="concat")
    start = runner._start_from_joint(0, "joint", model, ["strong", "weak"], whole=True)
    joint = torch.load(seed_dir / "joint" / "model.pt", weights_only=True)
    assert start is not None and start["whole"]
    assert all(torch.equal(v, joint[k]) for k, v in model.state_dict().items())


def test_decline_false_keeps_umt_as_trained(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import umt.study.runner as runner_module
    from tests.helpers.runs import TINY
    from umt.study import load_config, run_study

    calls: list[str] = []
    monkeypatch.setattr(runner_module, "harms", lambda *a: calls.append(a[1]) or (0.1, 0.9))
    monkeypatch.setattr(runner_module, "select", _distil_all)
    cfg = load_config(overrides=[*TINY, "methods=[joint,umt]", "umt.decline=false"])
    result = run_study(cfg, tmp_path, log=lambda _: None)
    assert calls == [] and not (result.run_dir / "seed0" / "umt.declined").exists()
    assert json.loads((result.run_dir / "seed0" / "umt" / "result.json").read_text())[
        "distilled"
    ] == ["strong", "weak"]


def _distil_all(settings: Any, seed_dir: Path, joint: str, modalities: list[str]) -> Any:
    if getattr(settings, "select", "all") != "better":
        return settings, None  # not UMT
    return settings, list(modalities)  # as select where a teacher beats joint


def test_umt_decides_once_every_seeds_teachers_and_joint_are_trained(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whichever seed's UMT trains first, it decides on every seed's probes: the runner trains
    the other seeds' teachers and joint training first (one decision for all seeds)."""
    import umt.study.runner as runner_module
    from tests.helpers.runs import TINY
    from umt.study import load_config
    from umt.study.inputs import study_inputs
    from umt.study.runner import Runner

    seen: list[tuple[list[str], bool]] = []

    def recorded(settings: Any, seed_dirs: list[Path], joint: str, modalities: list[str]) -> Any:
        if getattr(settings, "select", None) == "better":  # UMT's (every method asks)
            probes = [d / n / "probe.json" for d in seed_dirs for n in (joint, "teacher-weak")]
            seen.append(([d.name for d in seed_dirs], all(p.is_file() for p in probes)))
        return select(settings, seed_dirs, joint, modalities)

    monkeypatch.setattr(runner_module, "select", recorded)
    cfg = load_config(overrides=[*TINY, "seeds=[0, 1]", "methods=[joint,umt]"])
    data, task = study_inputs(cfg, None, None)
    runner = Runner(cfg, data, task, tmp_path, lambda _: None)
    later = runner.run_seed(1)
    assert seen == [(["seed1", "seed0"], True)]
    assert (tmp_path / "seed0" / "joint" / "result.json").is_file()
    assert not (tmp_path / "seed0" / "umt").exists()  # only what the decision reads
    first = runner.run_seed(0)  # its teachers and joint cached; the same decision
    assert seen[1] == (["seed0", "seed1"], True)
    distilled = [r["stages"]["umt"].get("distilled") for r in (later, first)]
    assert distilled[0] == distilled[1]
