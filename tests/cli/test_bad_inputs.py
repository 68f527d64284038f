"""Every bad input is refused before anything trains: one clear error (rc 2) naming the key.

The table below is the list of bad inputs tried (issue 16); each must give exactly one
``umt: error: ...`` line, no traceback, and leave no trained stage behind. A failed attempt must
not delete the valid cached stages of an earlier run either.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from umt.cli import main

# A study that would train in seconds if it got that far.
BASE = [
    "seeds=[0]",
    "data.name=synthetic",
    "train.epochs=1",
    "train.progress=false",
    "train.threads=1",
    "data.synthetic.n_train=120",
    "data.synthetic.n_val=40",
    "data.synthetic.n_test=40",
    "model.encoder.hidden=16",
    "model.encoder.feature_dim=8",
    "model.head_hidden=8",
    "probe.max_iter=5",
]

# (override(s), text the error message must contain: the key)
BAD_INPUTS: list[tuple[list[str], str]] = [
    (["train.lr=-1"], "train.lr"),
    (["train.lr=0"], "train.lr"),
    (["train.batch_size=0"], "train.batch_size"),
    (["train.batch_size=-5"], "train.batch_size"),
    (["train.weight_decay=-1"], "train.weight_decay"),
    (["train.momentum=-0.5"], "train.momentum"),
    (["train.precision=foo"], "train.precision"),
    (["train.optimizer=foo"], "train.optimizer"),
    (["train.scheduler=foo"], "train.scheduler"),
    (["train.accelerator=foo"], "train.accelerator"),
    (["train.threads=-1"], "train.threads"),
    (["train.num_workers=-1"], "train.num_workers"),
    (["train.epochs=0"], "train.epochs"),
    (["train.lrr=0.1"], "train.lrr"),
    (["probe.l2=[]"], "probe.l2"),
    (["probe.l2=[-1]"], "probe.l2"),
    (["probe.max_iter=0"], "probe.max_iter"),
    (["umt.loss=foo"], "umt.loss"),
    (["umt.cache_teachers=maybe"], "umt.cache_teachers"),
    (["umt.weight=-1"], "umt.weight"),
    (["umt.weights={weak: -1}"], "umt.weights.weak"),
    (["umt.weights={bogus: 1}"], "umt.weights"),  # no such modality: checked once data loads
    (["ume.combine=foo"], "ume.combine"),
    (["ume.weights={bogus: 1}"], "ume.weights"),
    (["choice.compare=foo"], "choice.compare"),
    (["choice.split=test"], "choice.split"),
    (["seeds=[0,0]"], "seeds"),
    (["seeds=[]"], "seeds"),
    (["name=../escape"], "name"),
    (["name="], "name"),
    (["name=a/b"], "name"),
    (["methods=[foo]"], "methods"),
    (["mask_fill=foo"], "mask_fill"),
    (["fusion=[foo]"], "fusion"),
    (["data.name=nope"], "data.name"),
    (["data.root=/some/folder"], "data.name=folder"),  # a root the built-in set would ignore
    (["umt.train=5"], "umt.train"),  # a method's recipe must be a section (found by fuzzing)
    (["data.synthetic.n_train=1"], "data.synthetic.n_train"),
    (["data.synthetic.n_train=65", "train.batch_size=64"], "train.batch_size"),  # a batch of 1
    # A "fusion" study of a data set with one modality.
    (["data.synthetic.modalities=[only]", "data.synthetic.strengths=[5.0]"], "methods"),
]
if not torch.cuda.is_available():
    BAD_INPUTS.append((["train.accelerator=gpu"], "train.accelerator"))
    BAD_INPUTS.append((["train.sync_batchnorm=true"], "train.sync_batchnorm"))  # GPUs only
BAD_INPUTS.append((["train.sync_batchnorm=true", "train.accelerator=cpu"], "train.sync_batchnorm"))


def _run(out: Path, overrides: list[str], *extra: str) -> int:
    args = ["run", "--out", str(out), *extra]
    for o in [*BASE, *overrides]:
        args += ["--set", o]
    return main(args)


@pytest.mark.parametrize(("overrides", "key"), BAD_INPUTS, ids=[" ".join(o) for o, _ in BAD_INPUTS])
def test_bad_input_is_one_clear_error_before_any_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], overrides: list[str], key: str
) -> None:
    out = tmp_path / "runs"
    assert _run(out, overrides) == 2
    err = capsys.readouterr().err
    assert err.startswith("umt: error:") and err.count("umt: error:") == 1, err
    assert "Traceback" not in err
    assert key in err, err
    trained = [*out.rglob("result.json"), *out.rglob("*.ckpt")] if out.exists() else []
    assert trained == []
    assert not (tmp_path / "escape").exists()  # name=../escape wrote nothing beside --out


def test_unwritable_out_is_one_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    assert _run(blocker / "runs", ["methods=[]"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("umt: error: --out:") and str(blocker / "runs") in err, err


def test_a_refused_run_keeps_the_cached_stages(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = ["methods=[joint, umt]"]
    assert _run(tmp_path, good) == 0
    done = sorted(p.parent.name for p in tmp_path.rglob("result.json"))
    assert done == ["joint", "teacher-strong", "teacher-weak", "umt"]
    for bad in (["umt.loss=foo"], ["umt.weights={bogus: 1}"], ["ume.combine=foo"]):
        assert _run(tmp_path, [*good, *bad]) == 2
    capsys.readouterr()
    assert _run(tmp_path, good) == 0
    assert "0 stage(s) trained" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("split", "value", "shown"), [("train", float("nan"), "NaN"), ("test", float("inf"), "inf")]
)
def test_data_folder_with_nan_or_inf_is_refused_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], split: str, value: float, shown: str
) -> None:
    """``umt run`` is as thorough as ``umt data check``: the file and sample are named."""
    from umt.data import load_data
    from umt.data.folder import export_folder
    from umt.study import load_config

    data = tmp_path / "data"
    sizes = ["data.synthetic.n_train=120", "data.synthetic.n_val=40", "data.synthetic.n_test=40"]
    export_folder(load_data(load_config(overrides=["data.name=synthetic", *sizes]).data), data)
    path = data / split / "weak.npy"
    arr = np.load(path)
    arr[5, 3] = value
    np.save(path, arr)
    out = tmp_path / "runs"
    folder = ["data.name=folder", f"data.root={data}"]
    assert _run(out, folder) == 2
    err = capsys.readouterr().err
    assert err.startswith("umt: error: data.root:") and f"{split}/weak.npy, sample 5" in err, err
    assert shown in err and "Traceback" not in err
    assert [*out.rglob("result.json"), *out.rglob("*.ckpt")] == []
