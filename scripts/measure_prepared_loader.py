"""Samples/s of the prepared-data loader with 0, 1, 2 workers (README, audio-visual benchmarks).

Writes 96 two-second clips in VGGSound's raw layout (with the tests' clip generator: PyAV, the
`video` extra), prepares them with the default settings (3 frames at 224x224, 128-band log-mel of
10 s) and times epochs of the training loader `fit` uses (raw batches, finished on the device),
against the raw memory-map read of the same rows, the CPU route and the on-device step alone
(`benchmarks/loader.py`, which `python -m benchmarks` runs on random arrays of the same shapes),
batch 16. Run from the repository root:

    python scripts/measure_prepared_loader.py
"""

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from test_prepare import write_clip

from benchmarks.loader import prepared_loader
from umt.data import DataConfig, load_data
from umt.data.prepare import PrepareConfig, prepare

torch.set_num_threads(1)
root = Path(tempfile.mkdtemp())
src, out = root / "raw", root / "data"
rows = []
N = 96
for i in range(N):
    ytid = f"v{i:04d}xxxxxx"[:11]
    label, split = ["dog barking", "people marching"][i % 2], "test" if i >= 80 else "train"
    rows.append(f"{ytid},{i + 1},{label},{split}\n")
    write_clip(src / "video" / f"{ytid}_{i + 1:06d}.mp4", seconds=2.0, hz=300 + 50 * (i % 7))
(src / "vggsound.csv").write_text("".join(rows))
t = time.perf_counter()
prepare(
    PrepareConfig(dataset="vggsound", src=str(src), out=str(out), progress=False),
    log=lambda _: None,
)
print(f"prepare: {N} clips in {time.perf_counter() - t:.1f} s (1 worker, default settings)")
data = load_data(DataConfig(name="prepared", root=str(out)))
print("shapes", data.input_shapes, "train", len(data.train))
r = prepared_loader(
    out, batch_size=16, warmup=1, repeats=3, workers=(0, 1, 2), device=torch.device("cpu")
)
print(f"raw memory-map read: {r['raw_read_samples_per_s']:.0f} samples/s")
for w, rate in r["workers"].items():
    print(f"training loader, {w} workers: {rate['per_s']:.0f} samples/s (uint8, boxes drawn)")
print(f"training loader / raw read: {r['train_over_raw']:.2f}x")
print(f"CPU route (finished in the loader): {r['cpu_route_samples_per_s']:.0f} samples/s")
print(f"on-device step alone, on the CPU: {r['on_device_samples_per_s']:.0f} samples/s")
