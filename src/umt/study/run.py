"""A study: teachers -> naive joint fusion -> UMT / UME -> probes -> choice -> report.

Every stage is cached in the run directory under a hash of everything it depends on (its own
settings, the data, the seed, and the hashes of the stages it builds on). Running the same study
again reuses finished stages; changing a setting retrains only the stages that depend on it.

    runs/<study>/
      study.yaml                  the resolved configuration
      seed<k>/<stage>/            teacher-<m>, joint, umt, ume
        config.yaml  metrics.csv  checkpoints/  model.pt  result.json  probe.json  test-outcomes.npy
      summary.json  report.md  report.html  figures/probes.png
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from umt.config import to_dict
from umt.data import DATASETS, DataBundle, UserData
from umt.engine import is_main_process
from umt.io import write_bytes, write_json, write_text
from umt.models import EncoderFactory
from umt.report.compare import add_comparisons
from umt.study.config import StudyConfig, recipe_source
from umt.study.inputs import study_inputs
from umt.study.parallel import prefill
from umt.study.preflight import check_data_values, claim_run_dir
from umt.study.provenance import provenance, run_history
from umt.study.runner import Log, Runner
from umt.study.summary import summarize
from umt.tasks import Task


@dataclass
class StudyResult:
    """What a study produced: the summary (also in ``summary.json``) and where it lives."""

    run_dir: Path
    summary: dict[str, Any]
    trained: list[str] = field(default_factory=list)  # stages trained by this call (not cached)
    main: bool = True  # False in the other processes of a DDP run (their summary is empty)


def run_study(
    cfg: StudyConfig,
    out: str | Path = "runs",
    *,
    log: Log = print,
    report: bool = True,
    data: UserData | DataBundle | None = None,
    encoders: Mapping[str, EncoderFactory] | None = None,
) -> StudyResult:
    """Run (or resume) the study ``cfg`` under ``out/cfg.name`` and write its summary and report,
    with the recipe ``cfg`` gives (the search, ``umt.search.run_study``, wraps this from above).
    ``data``: your own data instead of ``cfg.data``; ``encoders``: your own encoder factories by
    modality (see ``umt.study.inputs``).

    Example::

        cfg = umt.load_config(overrides=["seeds=[0]"])   # the default study: avdigits
        result = umt.run_study(cfg, "runs")
        result.summary["probes"]["visual"]   # teacher / joint / umt probe accuracies
    """
    start = time.perf_counter()
    if cfg.train.threads > 0:
        torch.set_num_threads(cfg.train.threads)
    own = data is not None or encoders is not None  # objects of this process: not for workers
    data, task = study_inputs(cfg, data, encoders)  # checked before anything trains
    run_dir = Path(out) / cfg.name
    with claim_run_dir(
        run_dir, is_main_process(), log=log
    ):  # created, writable, locked: one run at once
        return _run(cfg, data, task, run_dir, log, report, start, workers=not own)


def _run(
    cfg: StudyConfig,
    data: DataBundle,
    task: Task,
    run_dir: Path,
    log: Log,
    report: bool,
    t: float,
    *,
    workers: bool,
) -> StudyResult:
    runner = Runner(cfg, data, task, run_dir, log)
    if runner.main:
        check_data_values(cfg.data, runner.data_key, run_dir)  # as `umt data check`, once
        write_text(run_dir / "study.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False))
    if workers:  # stages trained in worker processes (jobs); the pass below finds them cached
        values = sum(math.prod(shape) for shape in data.input_shapes.values())
        runner.trained += prefill(cfg, run_dir, data.modalities, len(data.train), log, values)
    per_seed = {seed: runner.run_seed(seed) for seed in cfg.seeds}
    if not runner.main:
        return StudyResult(run_dir=run_dir, summary={}, trained=runner.trained, main=False)
    summary = summarize(cfg, data, task, per_seed)
    add_comparisons(summary, task, run_dir, fusion=cfg.model.fusion, compare=cfg.choice.compare)
    # Where the recipe came from; this study searches nothing (``umt.search`` wraps it, and
    # writes its own entry over this one where it searched).
    source = recipe_source(cfg, None if workers else data)
    source = "configured" if source == "searched" else source
    summary["search"] = {"source": source}
    if source == "shipped":
        summary["search"]["recipe"] = DATASETS[cfg.data.name].recipe
    summary["wall_seconds"] = round(time.perf_counter() - t, 2)
    summary["provenance"] = provenance(cfg)  # versions, machine, date, key settings
    summary["provenance"]["runs"] = run_history(per_seed, runner.trained, summary["wall_seconds"])
    write_json(run_dir / "summary.json", summary)
    if report:
        from umt.report import write_report

        png = task.examples_figure(runner.examples, data, device=runner.device)
        if png is not None:
            write_bytes(run_dir / "figures" / "examples.png", png)
        write_report(summary, run_dir)
    return StudyResult(run_dir=run_dir, summary=summary, trained=runner.trained)
