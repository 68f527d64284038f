"""The report's figures (issue 16): the probe figure's legend clear of the bars, its y-axis from
0, its error bars defined in the caption, an SVG beside the PNG; training curves from each
stage's ``metrics.csv``, checked against the files on a tiny study."""

from __future__ import annotations

import csv
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from umt.probe import ProbeResult
from umt.report import markdown, write_report
from umt.report.figures import draw_curves, draw_probes, probe_caption, render
from umt.study import load_config, run_study
from umt.yours.diagnosis import Diagnosis, ModalityDiagnosis


def _s(mean: float, std: float = 0.0) -> dict[str, Any]:
    return {"mean": mean, "std": std, "values": [mean - std, mean + std]}


def _summary() -> dict[str, Any]:
    """High bars everywhere: a legend inside the axes could only sit over one."""
    return {
        "study": "figs",
        "data": {
            "name": "toy",
            "description": "toy",
            "modalities": ["a", "b"],
            "num_classes": 2,
            "sizes": {"train": 4, "val": 4, "test": 4},
        },
        "seeds": [0, 1],
        "mask_fill": "zero",
        "methods": {"joint": {"val_acc": _s(0.9), "test_acc": _s(0.9)}},
        "probes": {
            "a": {"teacher": _s(0.97, 0.01), "joint": _s(0.95, 0.02), "umt": _s(0.96)},
            "b": {"teacher": _s(0.93), "joint": _s(0.91), "umt": _s(0.94, 0.01)},
        },
        "choice": None,
        "failed": {},
    }


def test_probe_legend_covers_no_bar_and_the_axis_starts_at_zero() -> None:
    fig = draw_probes(_summary())
    fig.canvas.draw()
    ax = fig.axes[0]
    assert ax.get_ylim()[0] == 0.0
    legend = ax.get_legend().get_window_extent()
    bars = [p.get_window_extent() for p in ax.patches]
    assert len(bars) == 6  # 3 encoders x 2 modalities
    assert not any(legend.overlaps(b) for b in bars)
    render(fig)  # closes it


def test_diagnosis_legend_covers_no_bar() -> None:
    """``umt diagnose``'s figure: bars near 100 % in both modalities, the legend beside them."""
    probe = ProbeResult(val_acc=0.98, test_acc=0.97, l2=1e-3, feature_dim=8)
    mods = {m: ModalityDiagnosis(m, f"enc.{m}", probe, probe, "trained", 0.02) for m in ("a", "v")}
    fig = Diagnosis(mods, num_classes=10, sizes={}, margin=0.02, seconds=0.0).draw()
    fig.canvas.draw()
    ax = fig.axes[0]
    legend = ax.get_legend().get_window_extent()
    bars = [p.get_window_extent() for p in ax.patches]
    assert len(bars) == 4 and ax.get_ylim()[0] == 0.0
    assert not any(legend.overlaps(b) for b in bars)
    render(fig)


def test_probe_caption_defines_the_error_bars() -> None:
    text = probe_caption(_summary())
    assert "± one standard deviation" in text and "2 seeds" in text
    assert "No error bars: one seed" in probe_caption({**_summary(), "seeds": [0]})


def test_report_writes_the_probe_svg_and_links_it(tmp_path: Path) -> None:
    write_report(_summary(), tmp_path)
    svg = tmp_path / "figures" / "probes.svg"
    assert ET.parse(svg).getroot().tag.endswith("svg")
    md = (tmp_path / "report.md").read_text()
    assert "[figures/probes.svg](figures/probes.svg)" in md
    assert probe_caption(_summary()) in md
    assert '<a href="figures/probes.svg">' in (tmp_path / "report.html").read_text()
    assert not (tmp_path / "figures" / "curves.png").exists()  # no stage logged metrics.csv
    assert "Training curves" not in md


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    overrides = [
        "seeds=[0]",
        "data.name=synthetic",
        "train.epochs=3",
        "train.progress=false",
        "train.threads=1",
        "data.synthetic.n_train=48",
        "data.synthetic.n_val=24",
        "data.synthetic.n_test=24",
        "model.encoder.hidden=16",
        "model.encoder.feature_dim=8",
        "model.head_hidden=8",
        "probe.max_iter=10",
    ]
    out = tmp_path_factory.mktemp("curves")
    result = run_study(load_config(overrides=overrides), out, log=lambda _: None)
    return result.run_dir, result.summary


def test_training_curves_follow_each_stages_metrics_csv(
    tiny_run: tuple[Path, dict[str, Any]],
) -> None:
    run, summary = tiny_run
    assert ET.parse(run / "figures" / "curves.svg").getroot().tag.endswith("svg")
    assert (run / "figures" / "curves.png").read_bytes()[:4] == b"\x89PNG"
    md = (run / "report.md").read_text()
    assert "![training curves](figures/curves.png)" in md
    assert "[figures/curves.svg](figures/curves.svg)" in md and "validation accuracy" in md
    fig = draw_curves(summary, run)
    assert fig is not None
    top, bottom = fig.axes[0], fig.axes[1]  # one seed: val score above, train loss below
    logged = [s for s in summary["methods"] if (run / "seed0" / s / "metrics.csv").is_file()]
    assert "ume" not in logged and len(logged) == 4  # UME trains nothing: no curve
    assert len(top.lines) == len(logged) == len(bottom.lines)
    for stage, val_line, loss_line in zip(logged, top.lines, bottom.lines, strict=True):
        with (run / "seed0" / stage / "metrics.csv").open() as f:
            rows = list(csv.DictReader(f))
        val = [100 * float(r["val/acc"]) for r in rows if r["val/acc"]]
        loss = [float(r["train/loss"]) for r in rows if r["train/loss"]]
        assert len(val) == 3 and list(val_line.get_xdata()) == [1, 2, 3]
        assert list(val_line.get_ydata()) == pytest.approx(val)
        assert list(loss_line.get_ydata()) == pytest.approx(loss)
    render(fig)
    assert "Training curves" in markdown(summary, curves=True)
