"""Clear error or correct run, never a traceback (issue 28): ``umt run`` over random study settings
and random edits of a data folder's ``meta.json`` and labels (Hypothesis).

Each example runs the command in this process (``umt.cli.main``) on a study that trains in
about a second. Its exit status is 0 (and then the summary's numbers are the stage folders'
own), 1 (a stage failed, said in the summary and on stderr) or 2 (one error line, ``umt:
error: ...``); any other exception fails the test. The default run tries 12 + 12 examples; the
``slow`` tests 150 + 100.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import assert_summary_is_the_stage_results
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from umt.cli import main
from umt.data.folder.template import write_template

# A study of about a second: the values drawn below replace these.
BASE = [
    "seeds=[0]",
    "methods=[joint, umt, ume]",
    "data.name=synthetic",
    "data.synthetic.n_train=48",
    "data.synthetic.n_val=24",
    "data.synthetic.n_test=24",
    "train.epochs=1",
    "train.progress=false",
    "train.threads=1",
    "jobs=1",
    "model.encoder.hidden=8",
    "model.encoder.feature_dim=4",
    "model.head_hidden=4",
    "probe.max_iter=5",
]

NUMBERS = [-1, 0, 1, 2, 3, 7, 64]
FLOATS = [float("nan"), float("inf"), -1.0, 0.0, 1e-9, 0.01, 1.0, 100.0]

SETTINGS: dict[str, list[Any]] = {
    "seeds": [[-1], [0], [0, 0], [2**32 - 1], [2**32], [], [1, 2]],
    "methods": [[], ["joint"], ["umt"], ["ume"], ["joint", "umt", "ume"], ["ogm_ge"], ["bogus"]],
    "train.epochs": NUMBERS,
    "train.batch_size": [*NUMBERS, 47, 1000],
    "train.lr": FLOATS,
    "train.patience": [-1, 0, 1],
    "train.devices": [0, 1, 64, "auto"],  # not 2: DDP would start this test again
    "train.optimizer": ["adam", "sgd", "bogus"],
    "train.scheduler": ["none", "cosine", "plateau", "bogus"],
    "model.encoder.feature_dim": NUMBERS,
    "model.encoder.hidden": NUMBERS,
    "model.encoder.depth": [-1, 0, 1, 2],
    "model.encoder.dropout": [-0.1, 0.0, 0.5, 1.0],
    "model.encoder.tokens": [0, 1, 3],
    "model.head_hidden": [-1, 0, 4],
    "model.fusion": ["concat", "sum", "gated", "film", "attention", "bogus"],
    "model.fusion_dim": [0, 1, 6, 8],
    "model.attention_heads": [0, 1, 3, 4],
    "choice.margin": FLOATS,
    "mask_fill": ["zero", "mean", "bogus"],
    "umt.weight": FLOATS,
    "data.synthetic.n_train": [0, 1, 2, 3, 9, 48],
    "data.synthetic.n_val": [0, 1, 5],
    "data.synthetic.num_classes": [0, 1, 2, 5],
    "data.synthetic.dim": [0, 1, 4],
    "probe.max_iter": [0, 1, 5],
}


def _text(value: Any) -> str:
    """A value as ``--set`` reads it (YAML)."""
    if isinstance(value, float) and math.isnan(value):
        return ".nan"
    if isinstance(value, float) and math.isinf(value):
        return ".inf" if value > 0 else "-.inf"
    if isinstance(value, list):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return str(value)


def _run(out: Path, overrides: list[str], capsys: pytest.CaptureFixture[str]) -> int:
    args = ["run", "--out", str(out)]
    for o in overrides:
        args += ["--set", o]
    capsys.readouterr()
    status = main(args)  # anything but UMTError or a full disk propagates: the test fails
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    if status == 2:
        errors = [line for line in err.splitlines() if line.startswith("umt: error: ")]
        assert errors, err
    elif status == 1:
        assert "stage(s) failed" in err, err
    else:
        assert status == 0, (status, err)
        run_dir = out / "default"
        summary = json.loads((run_dir / "summary.json").read_text())
        assert_summary_is_the_stage_results(run_dir, summary)
    return status


changes = st.dictionaries(
    st.sampled_from(sorted(SETTINGS)), st.integers(0, 99), min_size=1, max_size=4
).map(lambda d: {k: SETTINGS[k][i % len(SETTINGS[k])] for k, i in d.items()})


def _study_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], chosen: dict[str, Any]
) -> None:
    out = Path(tempfile.mkdtemp(dir=tmp_path))
    try:
        _run(out, [*BASE, *(f"{k}={_text(v)}" for k, v in chosen.items())], capsys)
    finally:
        shutil.rmtree(out, ignore_errors=True)


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(chosen=changes)
def test_study_settings_give_a_clear_error_or_a_correct_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], chosen: dict[str, Any]
) -> None:
    _study_settings(tmp_path, capsys, chosen)


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(chosen=changes)
def test_study_settings_many(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], chosen: dict[str, Any]
) -> None:
    _study_settings(tmp_path, capsys, chosen)


# -- a data folder's metadata and labels --------------------------------------------------------

META: dict[str, list[Any]] = {
    "num_classes": [-1, 0, 1, 2, 3, 4, 24, 25, 10**9, "3", None, 2.5],
    "task": ["classification", "segmentation", "bogus", None],
    "class_names": [["a", "b", "c"], ["a"], [], "abc", [1, 2, 3]],
    "label_shape": [[], [8, 8], [0], "x"],
    "ignore_index": [None, -1, 255, "x"],
    "modalities": [
        {"audio": {"shape": [1, 8, 8], "dtype": "float32"}},
        {"audio": {"shape": [1, 8, 9], "dtype": "float32"}, "visual": {"shape": [3, 8, 8]}},
        {"audio": {"shape": [1, 8, 8], "dtype": "int64"}, "visual": {"shape": [3, 8, 8]}},
        {},
        "audio",
    ],
}
LABELS = ["as written", "one class", "out of range", "negative", "float", "2-D", "empty"]


def _edit_labels(path: Path, how: str) -> None:
    y = np.load(path)
    new = {
        "as written": y,
        "one class": np.full_like(y, 1),
        "out of range": np.where(np.arange(len(y)) == 3, 7, y),
        "negative": np.where(np.arange(len(y)) == 0, -1, y),
        "float": y.astype(np.float32) + 0.5,
        "2-D": y[:, None],
        "empty": y[:0],
    }[how]
    np.save(path, new)


folders = st.tuples(
    st.dictionaries(st.sampled_from(sorted(META)), st.integers(0, 99), max_size=3).map(
        lambda d: {k: META[k][i % len(META[k])] for k, i in d.items()}
    ),
    st.sampled_from(LABELS),
    st.sampled_from(["train", "val", "test"]),
)


def _folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], edit: tuple[dict[str, Any], str, str]
) -> None:
    meta_changes, labels, split = edit
    work = Path(tempfile.mkdtemp(dir=tmp_path))
    try:
        root = work / "data"
        write_template(root)
        meta = json.loads((root / "meta.json").read_text())
        meta.update(meta_changes)
        (root / "meta.json").write_text(json.dumps(meta))
        _edit_labels(root / split / "labels.npy", labels)
        capsys.readouterr()
        status = main(["data", "check", str(root)])
        assert status in (0, 1) and "Traceback" not in capsys.readouterr().err
        overrides = [*BASE, "data.name=folder", f"data.root={root}", "train.batch_size=8"]
        _run(work / "runs", [o for o in overrides if not o.startswith("data.synthetic")], capsys)
    finally:
        shutil.rmtree(work, ignore_errors=True)


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(edit=folders)
def test_folder_metadata_gives_a_clear_error_or_a_correct_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], edit: tuple[dict[str, Any], str, str]
) -> None:
    _folder(tmp_path, capsys, edit)


@pytest.mark.slow
@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(edit=folders)
def test_folder_metadata_many(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], edit: tuple[dict[str, Any], str, str]
) -> None:
    _folder(tmp_path, capsys, edit)
