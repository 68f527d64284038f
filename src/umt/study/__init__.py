"""A study: teachers -> naive joint fusion -> UMT / UME / peers -> probes -> summary -> report.

- ``config``: ``StudyConfig`` (every key of ``umt config``) and ``load_config``;
- ``run``: ``run_study``, the pipeline; ``runner``: the stages of a seed, cached by a hash of
  their settings and data; ``parallel``: independent stages in worker processes;
- ``inputs`` and ``preflight``: what a study takes and the checks made before anything trains;
- ``summary`` and ``provenance``: what ``summary.json`` holds.

The recipe search (``umt.search``) wraps a study from above; nothing here imports it.
"""

from umt.study.config import MASK_FILLS, StudyConfig, TuneConfig, load_config
from umt.study.run import StudyResult, run_study
from umt.study.runner import Log, StageFailed

__all__ = [
    "MASK_FILLS",
    "Log",
    "StageFailed",
    "StudyConfig",
    "StudyResult",
    "TuneConfig",
    "load_config",
    "run_study",
]
