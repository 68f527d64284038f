"""``kill -9`` at every write point of a tiny study (issue 28): the rerun's numbers equal the
uninterrupted run's.

An uninterrupted ``umt run`` lists every fault point it passes (``UMT_FAULT_TRACE``): inside each
atomic write after its first bytes (``write:<n>``: inside ``torch.save`` for a checkpoint or a
model), right after each rename (``written:<n>``), while each epoch's checkpoint is made
(``checkpoint:``), after each stage is marked finished (``done:``), and at training steps
(``step:``). A run killed (SIGKILL) at one of them, then run again, must give the summary of the
run that was never killed, bit for bit on CPU. The default run kills at one write of each kind of
file; the ``slow`` test at every point (the steps: the first and a middle one of each stage).
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest
from helpers.runs import TINY, half_written, numbers, umt_command

from umt.search import run_study
from umt.study import load_config

# The kinds of file the fast test kills a write of, each once (the first write of it).
FAST_KINDS = ("best.ckpt", "features-train.npy", "result.json")
ALL_KINDS = (*FAST_KINDS, "last.ckpt", "model.pt", "metrics.csv", "summary.json", "config.yaml")


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], list[str]]:
    """The uninterrupted run's numbers and the fault points it passed (``point [file]``)."""
    out = tmp_path_factory.mktemp("whole")
    trace = out / "trace.txt"
    done = umt_command(out / "runs", env={"UMT_FAULT_TRACE": str(trace)})
    assert done.returncode == 0, done.stderr
    summary = run_study(load_config(overrides=TINY), out / "runs", log=lambda _: None).summary
    return numbers(summary), trace.read_text().splitlines()


def _kill_and_rerun(point: str, out: Path, expected: dict[str, Any]) -> None:
    killed = umt_command(out, env={"UMT_FAULT": point})
    assert killed.returncode == -signal.SIGKILL, (point, killed.stderr[-2000:])
    again = run_study(load_config(overrides=TINY), out, log=lambda _: None)
    assert numbers(again.summary) == expected, point
    assert half_written(out) == [], point


def _all_points(trace: list[str]) -> list[str]:
    """Every write and stage point, and two training steps of each stage."""
    points, steps = [], {}
    for line in trace:
        point = line.split(" ", 1)[0]
        if point.startswith("step:"):
            steps.setdefault(point.rsplit(":", 1)[0], []).append(point)
        else:
            points.append(point)
    for stage_steps in steps.values():
        points += sorted({stage_steps[0], stage_steps[len(stage_steps) // 2]})
    return list(dict.fromkeys(points))


def test_the_trace_lists_the_write_points(traced: tuple[dict[str, Any], list[str]]) -> None:
    _, trace = traced
    kinds = {Path(line.split(" ", 1)[1]).name for line in trace if line.startswith("write:")}
    assert set(ALL_KINDS) <= kinds, kinds
    assert any(line.startswith("checkpoint:") for line in trace)
    assert any(line.startswith("done:") for line in trace)


def test_killed_inside_a_write_of_each_kind_of_file_resumes_to_the_same_numbers(
    traced: tuple[dict[str, Any], list[str]], tmp_path: Path
) -> None:
    expected, trace = traced
    for kind in FAST_KINDS:
        line = next(x for x in trace if x.startswith("write:") and x.endswith("/" + kind))
        _kill_and_rerun(line.split(" ", 1)[0], tmp_path / kind, expected)


@pytest.mark.slow
def test_killed_at_every_write_point_resumes_to_the_same_numbers(
    traced: tuple[dict[str, Any], list[str]], tmp_path: Path
) -> None:
    expected, trace = traced
    for i, point in enumerate(_all_points(trace)):
        _kill_and_rerun(point, tmp_path / str(i), expected)
