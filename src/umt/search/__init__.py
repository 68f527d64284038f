"""The recipe search: on validation, within a budget, before the study runs for real. It wraps a
study from above (``umt.study`` never imports it): ``run_study`` here is the entry point the CLI
and ``umt.run_study`` use; with nothing to search it is the study alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from umt.data import DataBundle, UserData
from umt.models import EncoderFactory
from umt.search.tune import run_tuned
from umt.study import Log, StudyConfig, StudyResult
from umt.study import run_study as run_plain_study


def run_study(
    cfg: StudyConfig,
    out: str | Path = "runs",
    *,
    log: Log = print,
    report: bool = True,
    data: UserData | DataBundle | None = None,
    encoders: Mapping[str, EncoderFactory] | None = None,
) -> StudyResult:
    """Search what ``cfg.tune`` asks for on validation, then run (or resume) the study with the
    chosen values under ``out/cfg.name``; without a search, the study alone
    (:func:`umt.study.run_study`: the same arguments).

    Example::

        cfg = umt.load_config(overrides=["seeds=[0]"])   # the default study: avdigits
        result = umt.run_study(cfg, "runs")
        result.summary["probes"]["visual"]   # teacher / joint / umt probe accuracies
    """
    if cfg.tune.searches:
        return run_tuned(cfg, out, log=log, report=report, data=data, encoders=encoders)
    return run_plain_study(cfg, out, log=log, report=report, data=data, encoders=encoders)


__all__ = ["run_study"]
