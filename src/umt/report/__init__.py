"""The report of a study, from its summary alone: tables, figures, the verdict (recommendation,
the papers' rule, comparisons with intervals), trust flags, ``report.md`` and ``report.html``.

``write_report(summary, run_dir)`` writes the report; ``tables(summary)`` is what ``umt run``
prints. The statistics (``stats``) and per-sample outcomes (``compare``) are computed here too,
from each stage's ``test-outcomes.npy``.
"""

from umt.report.page import html_page, markdown, tables, write_report

__all__ = ["html_page", "markdown", "tables", "write_report"]
