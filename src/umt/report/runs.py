"""What the report says of a study resumed or repeated in the same run directory: which trained
stages an earlier run made (``summary["provenance"]["runs"]``, ``umt.study.provenance``), since
the date, machine and wall time of the provenance are this run's only."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def earlier_runs_text(runs: Mapping[str, Any]) -> str:
    """A sentence (with a leading space) where stages came from an earlier run; else ``""``.

    Example:
        >>> runs = {"from_earlier_runs": ["seed0/joint"], "wall_seconds_now": 3.5,
        ...         "train_seconds_all_runs": 40.0}
        >>> print(earlier_runs_text(runs).strip())
        1 trained stage(s) come from an earlier run in this directory (`seed0/joint`), not this one: this run took 3.5 s; the training time of every stage, over all runs, is 40.0 s.
        >>> earlier_runs_text({"from_earlier_runs": []})
        ''
    """
    earlier = list(runs.get("from_earlier_runs") or [])
    if not earlier:
        return ""
    shown = ", ".join(f"`{s}`" for s in earlier[:8]) + (", ..." if len(earlier) > 8 else "")
    return (
        f" {len(earlier)} trained stage(s) come from an earlier run in this directory ({shown}), "
        f"not this one: this run took {runs.get('wall_seconds_now')} s; the training time of "
        f"every stage, over all runs, is {runs.get('train_seconds_all_runs')} s."
    )
