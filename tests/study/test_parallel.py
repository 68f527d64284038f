"""Stages trained at once in worker processes (``jobs``): the plan (joint training and the
teachers first, each stage after what it needs) and how many workers pay."""

from __future__ import annotations

import os

import pytest

from umt.errors import UMTError
from umt.study import load_config
from umt.study.parallel import AUTO_MIN_WORK, Job, needs, plan, resolve_jobs


def test_plan_orders_joint_then_teachers_first_and_umt_waits_for_them() -> None:
    cfg = load_config(overrides=["seeds=[0,1]", "methods=[joint,umt,ume,ogm_ge]"])
    jobs = plan(cfg, ("audio", "visual"))
    names = [j.name for j in jobs]
    assert names == [
        "seed0/joint",
        "seed1/joint",
        "seed0/teacher-audio",
        "seed0/teacher-visual",
        "seed1/teacher-audio",
        "seed1/teacher-visual",
        "seed0/umt",
        "seed0/ogm_ge",
        "seed1/umt",
        "seed1/ogm_ge",
    ]  # UME trains nothing: the main process makes it
    umt1 = next(j for j in jobs if j.name == "seed1/umt")
    # UMT chooses what to distil against joint's encoders, once over every seed.
    assert needs(umt1, cfg, ("audio", "visual")) == {
        *(Job(s, modality=m) for s in (0, 1) for m in ("audio", "visual")),
        *(Job(s, method="joint") for s in (0, 1)),
    }
    assert needs(Job(0, method="joint"), cfg, ("audio", "visual")) == set()
    given = load_config(overrides=["seeds=[0]", "teachers={audio: a.pt}"])
    assert [j.name for j in plan(given, ("audio", "visual"))] == [
        "seed0/joint",
        "seed0/teacher-visual",
        "seed0/umt",
    ]  # a teacher read from a file is the main process's


def test_auto_jobs_only_where_workers_pay_and_never_under_ddp(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    cfg = load_config(overrides=["train.epochs=20", "train.accelerator=cpu"])
    shares = plan(cfg, ("audio", "visual"))  # 3 seeds x (2 teachers, joint, umt)
    assert len(shares) == 12
    big = -(-AUTO_MIN_WORK // (12 * 20))  # 12 shares x 20 epochs x `big` scalar samples: the bar
    assert resolve_jobs(cfg, shares, big) == 8
    assert resolve_jobs(cfg, shares, big - 1) == 1  # a tiny study: starting workers costs more
    assert resolve_jobs(cfg, shares[:3], 4 * big) == 3  # no more workers than shares
    assert resolve_jobs(cfg, shares[:3], big) == 1  # fewer shares left to train: under the bar
    assert resolve_jobs(cfg, shares, big // 100 + 1, sample_values=100) == 8  # few, large samples
    # A method's own recipe counts at its own epochs: joint at 200 puts the same study over.
    long_joint = load_config(overrides=["train.epochs=20", "joint.train.epochs=200"])
    assert resolve_jobs(long_joint, plan(long_joint, ("audio", "visual")), big // 3) == 8
    # A fusion sweep trains each fused method once per fusion module.
    sweep = load_config(overrides=["train.epochs=20", "fusion=[concat,sum,gated]"])
    assert resolve_jobs(sweep, plan(sweep, ("audio", "visual")), big // 2) == 8
    assert resolve_jobs(load_config(overrides=["jobs=4"]), shares, 10) == 4  # asked for: given
    ddp = load_config(overrides=["jobs=4", "train.devices=2", "train.strategy=ddp"])
    assert resolve_jobs(ddp, shares, big) == 1
    with pytest.raises(UMTError, match="jobs: expected auto or a number >= 1"):
        load_config(overrides=["jobs=0"])
