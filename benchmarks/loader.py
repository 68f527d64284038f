"""The ``prepared`` training loader at VGGSound's real sizes (issue 17), against the raw read of
the same bytes from the memory maps, and the on-device step on its own.

The folder is written from random arrays in ``umt prepare``'s layout (``visual.npy`` uint8
``(N, frames, 3, side, side)``, ``audio.npy`` float16 ``(N, 1, mels, steps)``, ``prepared.json``):
a loader's cost depends on the shapes and bytes, not on the pictures, and no video decoder is
needed. ``scripts/measure_prepared_loader.py`` measures the same on clips that ``umt prepare``
made from videos (PyAV).

- *raw read*: each batch's rows copied out of the memory maps (sorted indices, ``np.asarray``),
  nothing else: the physical limit of any loader here.
- *train loader*: ``make_loader(train.for_device())``, what ``fit`` iterates: whole collated
  batches of uint8 frames and float16 spectrograms, each sample's crop box and flip drawn.
- *CPU route*: ``make_loader(train)``: the same batches finished in the loader, on the CPU (what
  ``data.train[rows]`` gives, e.g. to probes).
- *paired*: the headline loader's batches each timed next to the raw read of the same rows
  (alternating which goes first), so that a change in the machine's load touches both within
  milliseconds: ``train_over_raw_paired`` is the median over epochs of raw-read time / loader
  time, with its spread; on a shared machine it is steadier than the ratio of whole epochs.
- *on-device step*: ``train.on_device`` alone (crop + resize, flip, normalisation, audio
  standardisation) on the evaluation device (the CPU here), over batches already there.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.timing import interleaved, summary
from umt.data import DataConfig, load_data
from umt.data.base import ArrayDataset, DataBundle, ShardedBatchSampler, make_loader
from umt.data.folder import export_folder
from umt.data.prepared import FORMAT, PREPARED_FILE


def write_random_prepared(
    root: Path, *, n: int, frames: int, side: int, mels: int, steps: int, seed: int = 0
) -> Path:
    """A prepared folder of ``n`` random training clips (``n // 4`` for val and for test)."""
    rng = np.random.default_rng(seed)

    def split(k: int) -> ArrayDataset:
        visual = rng.integers(0, 256, (k, frames, 3, side, side), dtype=np.uint8)
        audio = rng.standard_normal((k, 1, mels, steps), dtype=np.float32).astype(np.float16)
        return ArrayDataset({"audio": audio, "visual": visual}, rng.integers(0, 10, k))

    small = max(1, n // 4)
    export_folder(DataBundle("random-clips", split(n), split(small), split(small), 10), root)
    info = {"format": FORMAT, "audio_stats": {"mean": 0.0, "std": 1.0}}
    (root / PREPARED_FILE).write_text(json.dumps(info))
    return root


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def prepared_loader(
    root: Path,
    *,
    batch_size: int,
    warmup: int,
    repeats: int,
    workers: tuple[int, ...],
    device: torch.device,
) -> dict[str, Any]:
    """Samples/s of the raw read, the training loader (per worker count; the first is the
    headline), the CPU route and the on-device step, on the training split of ``root``."""

    train = load_data(DataConfig(name="prepared", root=str(root))).train
    n = len(train)
    stored = {m: np.load(root / "train" / f"{m}.npy", mmap_mode="r") for m in train.modalities}
    sampler = ShardedBatchSampler(n, batch_size, shuffle=True, seed=0)
    loaders = {
        f"train/{w}": make_loader(
            train.for_device(), batch_size=batch_size, shuffle=True, num_workers=w
        )
        for w in workers
    }
    loaders["cpu_route"] = make_loader(train, batch_size=batch_size, shuffle=True)
    epoch = 0

    def raw_read() -> Callable[[], object]:
        nonlocal epoch
        epoch += 1
        sampler.set_epoch(epoch)

        def run() -> None:
            for rows in sampler:
                idx = np.sort(np.asarray(rows))  # as the loader reads them
                for arr in stored.values():
                    np.asarray(arr[idx])

        return run

    def iterate(name: str) -> Callable[[], Callable[[], object]]:
        def prepare() -> Callable[[], object]:
            nonlocal epoch
            epoch += 1
            loader = loaders[name]
            assert isinstance(loader.sampler, ShardedBatchSampler)
            loader.sampler.set_epoch(epoch)
            return lambda: sum(len(b["label"]) for b in loader)

        return prepare

    variants = {"raw_read": raw_read} | {name: iterate(name) for name in loaders}
    times = interleaved(variants, warmup=warmup, repeats=repeats)
    loaders.clear()  # stops the persistent workers
    rates = {name: summary(t, n) for name, t in times.items()}

    paired = _paired(train.for_device(), stored, batch_size, workers[0], warmup, repeats)
    batches = [  # the on-device step alone, over raw batches already on the device
        {k: v.to(device) for k, v in b.items()}
        for b in make_loader(train.for_device(), batch_size=batch_size, shuffle=True)
    ]
    seconds = []
    for i in range(warmup + repeats):
        _sync(device)
        start = time.perf_counter()
        for b in batches:
            train.on_device(b)
        _sync(device)
        if i >= warmup:
            seconds.append(time.perf_counter() - start)
    on_device = summary(seconds, n)
    head, raw = rates[f"train/{workers[0]}"]["per_s"], rates["raw_read"]["per_s"]
    return {
        "train_samples_per_s": head,
        "raw_read_samples_per_s": raw,
        "train_over_raw": head / raw,
        "train_over_raw_paired": paired["ratio"]["median"],
        "paired": paired,
        "on_device_samples_per_s": on_device["per_s"],
        "cpu_route_samples_per_s": rates["cpu_route"]["per_s"],
        "cpu_route_over_raw": rates["cpu_route"]["per_s"] / raw,
        "train_workers": workers[0],
        "workers": {str(w): rates[f"train/{w}"] for w in workers},
        "raw_read": rates["raw_read"],
        "cpu_route": rates["cpu_route"],
        "on_device": {**on_device, "device": str(device)},
        "samples": n,
        "batch_size": batch_size,
        "bytes_per_sample": int(sum(a[0].nbytes for a in stored.values())),
        "shapes": {m: list(a.shape[1:]) for m, a in stored.items()},
    }


def _paired(
    train: Any,
    stored: dict[str, np.ndarray],
    batch_size: int,
    workers: int,
    warmup: int,
    repeats: int,
) -> dict[str, Any]:
    """Each batch of the loader timed next to the raw read of its rows (the order alternating
    batch by batch); per epoch, raw-read seconds / loader seconds. The loop holds the previous
    batch while the next is read, as a training loop does."""
    loader = make_loader(train, batch_size=batch_size, shuffle=True, num_workers=workers)
    assert isinstance(loader.sampler, ShardedBatchSampler)
    n = len(train)
    ratios, train_rates, raw_rates = [], [], []
    for epoch in range(warmup + repeats):
        loader.sampler.set_epoch(1000 + epoch)
        rows = [np.sort(np.asarray(r)) for r in loader.sampler]
        batches = iter(loader)
        seconds, batch = {"train": 0.0, "raw": 0.0}, None
        for i, idx in enumerate(rows):
            for part in ("raw", "train") if i % 2 else ("train", "raw"):
                start = time.perf_counter()
                if part == "train":
                    batch = next(batches)
                else:
                    for arr in stored.values():
                        np.asarray(arr[idx])
                seconds[part] += time.perf_counter() - start
        del batch, batches
        if epoch >= warmup:
            ratios.append(seconds["raw"] / seconds["train"])
            train_rates.append(n / seconds["train"])
            raw_rates.append(n / seconds["raw"])

    def spread(values: list[float]) -> dict[str, Any]:
        return {"median": statistics.median(values), "min": min(values), "max": max(values)}

    return {
        "ratio": spread(ratios),
        "train_per_s": spread(train_rates),
        "raw_read_per_s": spread(raw_rates),
        "workers": workers,
    }
