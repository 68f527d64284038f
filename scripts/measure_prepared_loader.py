"""Samples/s of the prepared-data loader with 0, 1, 2 workers (README, audio-visual benchmarks).

Writes 96 two-second clips in VGGSound's raw layout (with the tests' clip generator: PyAV, the
`video` extra), prepares them with the default settings (3 frames at 224x224, 128-band log-mel of
10 s) and times epochs of the augmented training loader, batch 16. Run from the repository root:

    python scripts/measure_prepared_loader.py
"""

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import torch
from test_prepare import write_clip

from umt.data import DataConfig, load_data, make_loader
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
for workers in (0, 1, 2):
    loader = make_loader(data.train, batch_size=16, shuffle=True, num_workers=workers)
    for _ in loader:  # warm-up epoch (starts the workers)
        pass
    best = 0.0
    for _ in range(3):
        t = time.perf_counter()
        n = sum(len(b["label"]) for b in loader)
        best = max(best, n / (time.perf_counter() - t))
    print(f"loader, {workers} workers: {best:.0f} augmented samples/s (best of 3 epochs of {n})")
