"""The report: tables from a hand-made summary (shaped like ``umt.study.summarize``'s) and files."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import pytest

from umt.report import markdown, tables, write_report
from umt.report.tables import accuracy_table, missing_table, pm, probe_table
from umt.report.verdict import comparison_line, rule_text, verdict_text

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _s(mean: float, std: float = 0.0) -> dict[str, Any]:
    return {"mean": mean, "std": std, "values": [mean]}


def _summary() -> dict[str, Any]:
    return {
        "study": "hand",
        "data": {
            "name": "synthetic",
            "description": "synthetic preset 'imbalanced'",
            "modalities": ["strong", "weak"],
            "num_classes": 10,
            "sizes": {"train": 20, "val": 10, "test": 10},
        },
        "seeds": [0, 1],
        "mask_fill": "zero",
        "methods": {
            "teacher-strong": {"val_acc": _s(0.9), "test_acc": _s(0.8, 0.02)},
            "teacher-weak": {"val_acc": _s(0.6), "test_acc": _s(0.5)},
            "joint": {
                "val_acc": _s(0.95),
                "test_acc": _s(0.9, 0.01),
                "modality_test_acc": {"strong": _s(0.85), "weak": _s(0.2)},
                "missing_test_acc": {"strong": _s(0.2), "weak": _s(0.85)},
            },
            "umt": {
                "val_acc": _s(0.97),
                "test_acc": _s(0.93),
                "modality_test_acc": {"strong": _s(0.86), "weak": _s(0.45)},
                "missing_test_acc": {"strong": _s(0.45), "weak": _s(0.86)},
            },
            "ume": {"val_acc": _s(0.9), "test_acc": _s(0.88)},
        },
        "probes": {
            "strong": {"teacher": _s(0.8), "joint": _s(0.79), "umt": _s(0.81)},
            "weak": {"teacher": _s(0.5, 0.05), "joint": _s(0.3, 0.1), "umt": _s(0.48)},
        },
        "choice": {
            "method": "umt",
            "reason": "UME val accuracy 0.9000 < joint 0.9500 - margin 0.0: joint wins",
            "ume_acc": 0.9,
            "joint_acc": 0.95,
            "split": "val",
        },
        "failed": {},
    }


def _rows(table: str) -> list[list[str]]:
    lines = table.splitlines()
    assert lines[1].startswith("|---")
    return [[c.strip() for c in ln.strip("|").split("|")] for ln in [lines[0], *lines[2:]]]


@pytest.mark.parametrize(
    ("stats", "text"),
    [
        ({"mean": 0.5, "std": 0.01}, "50.00 ± 1.00"),
        ({"mean": 0.12345, "std": 0.0}, "12.35 ± 0.00"),
        ({"mean": 1.0, "std": 0.123}, "100.00 ± 12.30"),
    ],
)
def test_pm_is_percent_mean_plus_minus_std(stats: dict[str, float], text: str) -> None:
    assert pm(stats) == text


def test_pm_scale() -> None:
    assert pm({"mean": 0.5, "std": 0.25}, scale=1.0) == "0.50 ± 0.25"


def test_accuracy_table_rows_and_columns() -> None:
    rows = _rows(accuracy_table(_summary()))
    assert rows[0] == [
        "method",
        "val acc",
        "test acc",
        "test acc, strong only",
        "test acc, weak only",
    ]
    by_name = {r[0]: r[1:] for r in rows[1:]}
    assert list(by_name) == [
        "uni-modal strong (teacher)",
        "uni-modal weak (teacher)",
        "joint (naive fusion)",
        "UMT",
        "UME",
    ]
    assert by_name["uni-modal strong (teacher)"] == ["90.00 ± 0.00", "80.00 ± 2.00", "", ""]
    assert by_name["joint (naive fusion)"] == [
        "95.00 ± 0.00",
        "90.00 ± 1.00",
        "85.00 ± 0.00",
        "20.00 ± 0.00",
    ]
    assert by_name["UMT"][3] == "45.00 ± 0.00"


def test_probe_table_gap_columns() -> None:
    rows = _rows(probe_table(_summary()))
    assert rows[0] == [
        "encoder",
        "teacher",
        "joint (naive fusion)",
        "UMT",
        "joint (naive fusion) − teacher",
        "UMT − teacher",
    ]
    # weak: joint 30 - teacher 50 = -20.00, umt 48 - 50 = -2.00
    assert rows[2] == ["weak", "50.00 ± 5.00", "30.00 ± 10.00", "48.00 ± 0.00", "-20.00", "-2.00"]
    # strong: 79 - 80 = -1.00, 81 - 80 = +1.00
    assert rows[1][0] == "strong"
    assert rows[1][4:] == ["-1.00", "+1.00"]


def test_probe_table_without_teachers_has_no_gap_columns() -> None:
    summary = _summary()
    summary["probes"] = {"strong": {"joint": _s(0.7)}, "weak": {"joint": _s(0.3)}}
    rows = _rows(probe_table(summary))
    assert rows[0] == ["encoder", "joint (naive fusion)"]
    assert rows[1:] == [["strong", "70.00 ± 0.00"], ["weak", "30.00 ± 0.00"]]


def test_missing_table_drops() -> None:
    rows = _rows(missing_table(_summary()))
    assert rows[0] == ["method", "all modalities", "without strong (drop)", "without weak (drop)"]
    assert [r[0] for r in rows[1:]] == ["joint (naive fusion)", "UMT"]  # fused models only
    # joint: 90 -> 20 without strong (-70.00), 85 without weak (-5.00)
    assert rows[1][1:] == ["90.00 ± 1.00", "20.00 ± 0.00 (-70.00)", "85.00 ± 0.00 (-5.00)"]


def test_rule_text_is_evidence_and_without_a_choice_is_empty() -> None:
    text = rule_text(_summary())
    assert text.startswith("Evidence, the papers' UMT/UME rule") and "points to UMT" in text
    summary = _summary()
    summary["choice"] = None
    assert rule_text(summary) == ""


def test_tables_gathers_the_parts() -> None:
    text = tables(_summary())
    assert "over 2 seed(s)" in text
    assert accuracy_table(_summary()) in text
    assert probe_table(_summary()) in text
    assert rule_text(_summary()) in text and "Chosen:" not in text


def test_markdown_lists_the_data_and_failures() -> None:
    summary = _summary()
    summary["failed"] = {"seed1/umt": "loss became nan"}
    md = markdown(summary)
    assert md.startswith("# Study `hand`")
    assert "train 20, val 10, test 10" in md
    assert "`seed1/umt`: loss became nan" in md


def test_write_report_writes_markdown_html_and_png(tmp_path: Path) -> None:
    summary = _summary()
    write_report(summary, tmp_path)

    png = (tmp_path / "figures" / "probes.png").read_bytes()
    assert png.startswith(PNG_SIGNATURE)
    assert len(png) > 1000

    md = (tmp_path / "report.md").read_text()
    assert md.endswith("\n")
    assert accuracy_table(summary) in md
    assert probe_table(summary) in md
    assert "![probe accuracies](figures/probes.png)" in md

    page = (tmp_path / "report.html").read_text()
    assert page.startswith("<!doctype html>") and page.rstrip().endswith("</html>")
    found = re.search(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert found is not None
    assert base64.b64decode(found.group(1)) == png  # the same figure, inlined
    assert page.count("<table>") == 3  # accuracy, probes, missing modalities
    assert "<th>UMT − teacher</th>" in page
    assert "<td>-20.00</td>" in page
    assert "<code>hand</code>" in page
    assert "**" not in page
    # A real Markdown renderer: the comparisons' list is a list, each table a table.
    listed = _with_comparisons()
    write_report(listed, tmp_path)
    page = (tmp_path / "report.html").read_text()
    assert page.count("<li>") >= len(listed["comparisons"]) and "<ul>" in page


def test_write_report_overwrites_an_earlier_report(tmp_path: Path) -> None:
    write_report(_summary(), tmp_path)
    summary = _summary()
    summary["study"] = "second"
    write_report(summary, tmp_path)
    assert (tmp_path / "report.md").read_text().startswith("# Study `second`")


def _with_comparisons() -> dict[str, Any]:
    """The hand-made summary plus what ``run_study`` adds: comparisons and a recommendation."""
    summary = _summary()
    summary["comparisons"] = [
        {
            "name": "UMT − joint (naive fusion)",
            "what": "test_acc",
            "a": "umt",
            "b": "joint",
            "modality": None,
            "per_seed": [0.02, 0.026],
            "mean_diff": 0.023,
            "lo": 0.008,
            "hi": 0.039,
            "within_noise": False,
            "interval": "paired bootstrap over test samples within each seed",
        },
        {
            "name": "weak probe: UMT − joint (naive fusion)",
            "what": "probe_test_acc",
            "a": "umt",
            "b": "joint",
            "modality": "weak",
            "per_seed": [-0.001, 0.009],
            "mean_diff": 0.004,
            "lo": -0.011,
            "hi": 0.019,
            "within_noise": True,
            "interval": "Student t over the per-seed differences",
        },
    ]
    summary["verdict"] = {
        "method": "umt",
        "split": "val",
        "val_acc": 0.97,
        "runner_up": "joint",
        "runner_up_val_acc": 0.95,
        "difference": {"mean_diff": 0.02, "lo": 0.01, "hi": 0.03, "within_noise": False},
        "tie": False,
        "tied_with": [],
        "cheaper": None,
        "cost": {"umt": 20.0, "joint": 10.0},
    }
    return summary


def test_comparison_lines_say_within_noise_where_the_interval_covers_zero() -> None:
    first, second = (comparison_line(c) for c in _with_comparisons()["comparisons"])
    assert "+2.3 points [0.8, 3.9];" in first and "within noise" not in first
    assert "per seed +2.0, +2.6" in first
    assert "+0.4 points [−1.1, 1.9], within noise; per seed −0.1, +0.9" in second
    assert second.startswith("- weak probe: UMT − joint (naive fusion) (probe test acc):")


def test_comparison_without_an_interval_says_why() -> None:
    c = {**_with_comparisons()["comparisons"][0], "lo": None, "hi": None, "within_noise": None}
    c["interval"] = None
    assert "points (no interval: one seed" in comparison_line(c)


def test_report_and_tables_have_the_comparisons_and_one_verdict() -> None:
    summary = _with_comparisons()
    md, text = markdown(summary), tables(summary)
    assert "## Comparisons on test (95 % intervals)" in md and "## Verdict" in md
    for line in (comparison_line(c) for c in summary["comparisons"]):
        assert line in md and line in text
    verdict = verdict_text(summary)
    assert verdict.startswith("**Use UMT**: the best on validation (97.0 % vs 95.0 %")
    assert verdict in md and text.rstrip().endswith(verdict_text(summary, bold=False))
    assert "## Comparisons" not in markdown(_summary())  # an older summary: no such section


def test_a_tie_names_both_and_the_cheaper() -> None:
    summary = _with_comparisons()
    summary["verdict"].update(
        tie=True,
        tied_with=["joint"],
        cheaper="joint",
        difference={"mean_diff": 0.02, "lo": -0.01, "hi": 0.05, "within_noise": True},
    )
    verdict = verdict_text(summary, bold=False)
    assert verdict.startswith("A tie between UMT and joint (naive fusion)")
    assert "joint (naive fusion) is the cheaper to train (10 s vs 20 s)" in verdict


def test_the_search_text_names_the_value_kept_and_why_when_it_is_not_the_best() -> None:
    from umt.report.trust import search_text

    def trial(lr: float, val: float | None) -> dict[str, Any]:
        return {"values": {"train.lr": lr}, "val": val, "state": "complete"}

    units = {
        "umt": {"trials": [trial(1e-3, 0.980), trial(2e-3, 0.985)], "chosen": {"train.lr": 1e-3}},
        "joint": {"trials": [trial(1e-3, 0.90), trial(2e-3, None)], "chosen": {"train.lr": 1e-3}},
    }
    search = {"source": "searched", "seed": 1000, "trials_spent": 4, "pruned": 1, "seconds": 3.0}
    search |= {"teacher_budget": 8, "budget": 2, "units": units}
    text = search_text({"search": search})
    assert (
        "umt: chose train.lr=0.001 (val 98.00 %), the configured values within one standard "
        "error of the best (val 98.50 %)" in text
    )
    assert "joint: chose train.lr=0.001 (val 90.00 %), from 2 trial(s)" in text
