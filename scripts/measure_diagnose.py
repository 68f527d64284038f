"""Time of ``umt.yours.diagnose`` against the same probes inside a study (README, "Use it with your
own model"), on ``avdigits`` with the default study's model, one CPU thread.

The study probes each encoder of a model with ``umt.probe`` (the project's batched arrays);
``umt.yours.diagnose`` runs the whole model's forward with hooks on the encoders, over a plain
``Dataset`` of dict samples (one ``__getitem__`` per sample, the default collate), or over the
project's ``ArrayDataset``. Both are given the same two teachers, so no training is timed: four
probes (two encoders, two teachers) each; CPU time of the one thread (the machine is shared,
so wall time is noise). The probe numbers must agree. Run from the repository
root:

    python scripts/measure_diagnose.py
"""

import time
from typing import Any

import torch
from torch.utils.data import Dataset

import umt
from umt.models import build_model
from umt.study import StudyConfig

torch.set_num_threads(1)
data = umt.load_data(umt.DataConfig(name="avdigits"))
cfg = StudyConfig().model
torch.manual_seed(0)
model = build_model(cfg, data.input_shapes, data.num_classes)
teachers = {
    m: build_model(cfg, {m: s}, data.num_classes, linear_head=True).encoders[m]
    for m, s in data.input_shapes.items()
}
encoders = {m: f"encoders.{m}" for m in data.modalities}


class Samples(Dataset[dict[str, Any]]):
    """A user's Dataset: one dict per sample."""

    def __init__(self, split: str) -> None:
        self.ds = data.split(split)

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {
            **{m: torch.from_numpy(a[i]).float() for m, a in self.ds.arrays.items()},
            "label": int(self.ds.labels[i]),
        }


start = time.process_time()
builtin = {
    (who, m): umt.probe(enc, data, m).test_acc
    for m in data.modalities
    for who, enc in (("model", model.encoders[m]), ("teacher", teachers[m]))
}
t_builtin = time.process_time() - start
sizes = {s: len(data.split(s)) for s in ("train", "val", "test")}
print(f"avdigits {sizes}, modalities {data.modalities}")
print(f"built-in probes (4): {t_builtin:.1f} s CPU")
for name, splits in (
    ("plain Dataset of dicts", [Samples(s) for s in ("train", "val", "test")]),
    ("ArrayDataset", [data.train, data.val, data.test]),
):
    start = time.process_time()
    diag = umt.yours.diagnose(model, *splits, encoders=encoders, teachers=teachers)
    seconds = time.process_time() - start
    same = all(
        abs(getattr(diag[m], who).test_acc - acc) < 1e-6 for (who, m), acc in builtin.items()
    )
    print(f"umt.yours.diagnose, {name}: {seconds:.1f} s CPU (probe numbers equal: {same})")
