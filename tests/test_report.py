"""The report: tables from a hand-made summary (shaped like ``umt.study.summarize``'s) and files."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import pytest

from umt.report import (
    accuracy_table,
    choice_text,
    markdown,
    missing_table,
    pm,
    probe_table,
    tables,
    write_report,
)

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


def test_choice_text_names_the_chosen_method_and_the_reason() -> None:
    text = choice_text(_summary())
    assert text.startswith("**Chosen: UMT.**")
    assert "0.9000 < joint 0.9500" in text


def test_choice_text_without_a_choice_says_why() -> None:
    summary = _summary()
    summary["choice"] = None
    assert "No choice" in choice_text(summary)
    assert "ume" in choice_text(summary)


def test_tables_gathers_the_parts() -> None:
    text = tables(_summary())
    assert "over 2 seed(s)" in text
    assert accuracy_table(_summary()) in text
    assert probe_table(_summary()) in text
    assert "Chosen: UMT" in text


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
    assert "<b>Chosen: UMT.</b>" in page
    assert "<code>hand</code>" in page
    assert "**" not in page


def test_write_report_overwrites_an_earlier_report(tmp_path: Path) -> None:
    write_report(_summary(), tmp_path)
    summary = _summary()
    summary["study"] = "second"
    write_report(summary, tmp_path)
    assert (tmp_path / "report.md").read_text().startswith("# Study `second`")
