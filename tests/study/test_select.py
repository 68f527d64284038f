"""UMT's ``select: better`` decides from the probes' per-sample validation outcomes on disk."""

from __future__ import annotations

import json
from pathlib import Path
from typing import cast

import torch

from umt.methods.umt import UMTConfig
from umt.study.select import select

GOOD, SAME, POOR = "1" * 90 + "0" * 10, "1" * 70 + "0" * 30, "1" * 50 + "0" * 50


def _seed_dir(tmp_path: Path, teachers: dict[str, str], joint: dict[str, str]) -> Path:
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
    settings, chosen = select(UMTConfig(), seed_dir, "joint", ["a", "b"])
    assert chosen == [] and settings.weights == {"a": 0.0, "b": 0.0}


def test_a_gap_distils_every_teacher_not_worse_than_joint(tmp_path: Path) -> None:
    # a: the gap (90 vs 70); b: a tie (70 vs 70), distilled; c: worse (50 vs 70), left out.
    teachers = {"a": GOOD, "b": SAME, "c": POOR}
    seed_dir = _seed_dir(tmp_path, teachers, {"a": SAME, "b": SAME, "c": SAME})
    settings, chosen = select(UMTConfig(weight=2.0), seed_dir, "joint", ["a", "b", "c"])
    assert chosen == ["a", "b"]
    assert [settings.weight_of(m) for m in "abc"] == [2.0, 2.0, 0.0]


def test_nothing_to_decide_on_keeps_the_settings(tmp_path: Path) -> None:
    cfg = UMTConfig()
    assert select(cfg, tmp_path, "joint", ["a"]) == (cfg, None)  # no probe files
    seed_dir = _seed_dir(tmp_path, {"a": GOOD}, {"a": SAME})
    every = UMTConfig(select="all")
    assert select(every, seed_dir, "joint", ["a"]) == (every, None)


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
