"""The benchmark suite runs end to end on tiny sizes and reports every section (no timing checks:
numbers on a shared machine say nothing about correctness)."""

from __future__ import annotations

import copy
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers import ROOT
from torch import nn

if str(ROOT) not in sys.path:  # `benchmarks` lives beside `src`, not in the installed package
    sys.path.insert(0, str(ROOT))

from benchmarks.__main__ import main  # noqa: E402
from benchmarks.suite import UMT_LOOPS  # noqa: E402

#: Keys whose numbers are durations, rates or ratios of them: all must be positive.
POSITIVE = {"median_s", "min_s", "max_s", "runs_s", "per_s", "runs_per_s", "ratio", "total_s"}
POSITIVE |= {"train_samples_per_s", "raw_read_samples_per_s", "train_over_raw", "default_wall_s"}


def _numbers(node: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], float]]:
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _numbers(v, (*path, str(k)))
    elif isinstance(node, list):
        for v in node:
            yield from _numbers(v, path)
    elif isinstance(node, int | float) and not isinstance(node, bool):
        yield path, float(node)


def test_quick_run_reports_every_section(tmp_path: Path, capsys: Any) -> None:
    assert main(["--quick", "--out", str(tmp_path), "--threads", "1"]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    markdown = (tmp_path / "results.md").read_text()
    assert capsys.readouterr().out.strip() == markdown.strip()
    for n in range(1, 7):
        assert f"## {n}." in markdown

    setups = {"mlp", "cnn"}
    assert set(results["setups"]) == setups
    for section in ("overhead", "profile", "umt", "loading"):
        assert set(results[section]) == setups, section
    for name in setups:
        over = results["overhead"][name]
        for variant in ("bare", "fit", "fit_epoch_logging", "fit_checkpoint_at_end", "fit_both"):
            assert over[variant]["per_s"] > 0
        umt = results["umt"][name]
        for loop in UMT_LOOPS:
            assert set(umt[loop]["epoch_s"]) == {"joint", "umt_online", "umt_cached"}
            assert set(umt[loop]["ratio"]) == {"umt_online", "umt_cached"}
        assert set(results["loading"][name]["loader"]) == {"0", "1", "2"}
        assert results["profile"][name]["parts_s"]["method.step (forward, loss)"] > 0
    assert set(results["overhead_model"]["mlp"]["batches"]) == {"8", "16"}
    order = results["layer_order"]["cnn"]  # our CNN blocks against the textbook layer order
    assert order["ratio"] == order["textbook"]["median_s"] / order["ours"]["median_s"] > 0
    assert "### ReLU after the max-pool" in markdown
    scaling = results["scaling"]["mlp"]
    assert set(scaling["fit"]["ratio"]) == {"1", "2"}
    assert results["meta"]["threads"] == 1 and results["meta"]["wall_s"] > 0
    loader = results["loader"]  # issue 17: the prepared loader against the raw read
    assert set(loader["workers"]) == {"0", "1", "2"}
    assert loader["train_samples_per_s"] == loader["workers"]["0"]["per_s"]
    ratio = loader["train_samples_per_s"] / loader["raw_read_samples_per_s"]
    assert abs(loader["train_over_raw"] - ratio) < 1e-9
    paired = loader["paired"]  # each batch next to the raw read of its rows
    assert paired["ratio"]["min"] <= loader["train_over_raw_paired"] <= paired["ratio"]["max"]
    assert paired["workers"] == 0 and paired["train_per_s"]["median"] > 0
    assert loader["shapes"] == {"audio": [1, 8, 20], "visual": [2, 3, 16, 16]}
    assert loader["bytes_per_sample"] == 8 * 20 * 2 + 2 * 3 * 16 * 16
    study = results["study"]  # the default-study hook, on a tiny study here
    assert study["default_wall_s"] > study["stages_train_sum_s"] > 0 and study["seeds"] == 1
    assert set(study["stages_train_s"]) >= {"seed0/joint", "seed0/umt"}

    checked = 0
    for path, value in _numbers(results):
        if POSITIVE & set(path):
            assert value > 0, "/".join(path)
            checked += 1
    assert checked > 100


@pytest.mark.slow  # about a minute on 2 quiet cores (two DDP processes start)
def test_gpu_check_runs_tiny_on_the_cpu(tmp_path: Path) -> None:
    pytest.importorskip("av")  # the check writes and prepares clips (the `video` extra)
    from benchmarks.gpu_check import TINY
    from benchmarks.gpu_check import main as gpu_check

    threads = torch.get_num_threads()
    try:
        assert gpu_check(["--tiny", "--out", str(tmp_path)]) == 0
    finally:
        torch.set_num_threads(threads)
    result = json.loads((tmp_path / "gpu_check.json").read_text())
    runs = result["runs"]
    assert [(r["method"], r["precision"]) for r in runs] == [
        (m, p) for m in ("joint", "umt") for p in TINY.precisions
    ]
    for r in runs:
        assert "error" not in r and r["samples_per_s"] > 0 and r["steps_timed"] > 0
        assert 0 <= r["data_wait_share"] < 1
    assert result["ddp"]["ok"] and result["ddp"]["same_weights"]
    table = (tmp_path / "gpu_check.md").read_text()
    assert (
        "| joint | bf16-mixed | none | 0 |" in table and "DDP on one device (gloo): passed" in table
    )


def test_textbook_order_swaps_every_pool_relu_pair_back() -> None:
    from benchmarks.suite import textbook_order
    from umt.models import CNNEncoder

    enc = CNNEncoder((1, 8, 8), feature_dim=4, width=2)
    kinds = [type(m).__name__ for m in textbook_order(enc).features]
    assert kinds == ["Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d"] * 3


@pytest.mark.parametrize(
    "case",
    ["cnn-even", "cnn-odd", "resnet-stem", "seg-stem"],
)
def test_relu_after_max_pool_is_the_textbook_block_bit_for_bit(case: str) -> None:
    """The encoders apply ReLU after max-pooling (4x fewer values): outputs and every gradient
    equal those of the usual conv-BN-ReLU-pool order exactly, in training mode."""
    from benchmarks.suite import textbook_order
    from umt.models import CNNEncoder
    from umt.models.resnet import ResNet18Trunk
    from umt.models.segmentation import _stem

    torch.manual_seed(0)
    seq: nn.Sequential
    if case.startswith("cnn"):
        hw = (12, 15) if case == "cnn-odd" else (16, 16)  # odd sizes: ceil_mode's partial windows
        seq, x = CNNEncoder((2, *hw), feature_dim=4, width=3).features, torch.randn(6, 2, *hw)
    elif case == "resnet-stem":
        seq, x = ResNet18Trunk(3, width=0.25).stem, torch.randn(4, 3, 19, 22)
    else:
        seq, x = _stem(4, 8, 4), torch.randn(4, 4, 17, 20)
    assert any(isinstance(m, nn.MaxPool2d) for m in seq)
    textbook = textbook_order(copy.deepcopy(seq))  # the same weights, the usual order
    assert [type(m) for m in textbook] != [type(m) for m in seq]  # the swap happened
    outs, grads = [], []
    for net in (seq, textbook):
        net.train().zero_grad()
        xi = x.clone().requires_grad_()
        y = net(xi)
        (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
        outs.append(y.detach())
        grads.append([xi.grad, *(p.grad for p in net.parameters())])
    assert torch.equal(outs[0], outs[1])
    assert (outs[0] == 0).any() and (outs[0] > 0).any()  # the ReLU did cut something
    for a, b in zip(grads[0], grads[1], strict=True):
        assert torch.equal(a, b)
