"""Every summary and report says which code, machine and settings produced it."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import lightning
import torch

import umt
from umt.study import load_config, run_study
from umt.study.provenance import git_commit

TINY = [
    "seeds=[0]",
    "methods=[]",
    "data.name=synthetic",
    "data.synthetic.n_train=120",
    "data.synthetic.n_val=40",
    "data.synthetic.n_test=40",
    "train.epochs=1",
    "train.lr=0.005",
    "train.progress=false",
    "train.threads=1",
    "model.encoder.hidden=16",
    "model.encoder.feature_dim=8",
    "model.head_hidden=8",
    "probe.max_iter=5",
    "umt.weight=7",
]

# summary.json's keys before provenance: a reader of them must keep working.
KEYS = {"study", "data", "seeds", "mask_fill", "methods", "probes", "choice", "failed"}
KEYS |= {"per_seed", "wall_seconds", "comparisons", "verdict", "search"}  # issues 18, 30, 26


def test_summary_and_report_carry_provenance(tmp_path: Path) -> None:
    run_study(load_config(overrides=TINY), tmp_path, log=lambda _: None)
    summary = json.loads((tmp_path / "default" / "summary.json").read_text())
    assert set(summary) == KEYS | {"provenance"}
    p = summary["provenance"]
    assert p["versions"] == {
        "umt": umt.__version__,
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "numpy": p["versions"]["numpy"],
        "python": platform.python_version(),
    }
    assert p["threads"] == 1 and p["host"] and p["date"].endswith("UTC")
    assert p["settings"]["epochs"] == 1 and p["settings"]["lr"] == 0.005
    assert p["settings"]["umt_lambda"] == 7.0 and p["settings"]["fusion"] == "concat"
    here = git_commit(Path(__file__).parent)
    if here is not None and Path(umt.__file__).resolve().is_relative_to(Path.cwd()):
        assert p["git_commit"] == here  # the package sits in this checkout
    report = (tmp_path / "default" / "report.md").read_text()
    assert "## Provenance" in report
    assert f"torch {torch.__version__}" in report and "epochs 1, batch_size 64" in report
