"""The `prepared` training loader of issue 17: raw batches (uint8 frames, the augmentation drawn on
the CPU) finished on the device, against today's transforms, the augmentation's statistics, the
seeded generator (resume), and `fit` end to end. The folders are written from arrays (no PyAV)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from umt.data import DataConfig, load_data
from umt.data.base import (
    ArrayDataset,
    DataBundle,
    ShardedBatchSampler,
    is_modality_key,
    make_loader,
)
from umt.data.crops import random_boxes, resized_crops
from umt.data.folder import export_folder
from umt.data.prepared import (
    FORMAT,
    IMAGENET_MEAN,
    IMAGENET_STD,
    PREPARED_FILE,
    BatchBuffers,
    PreparedConfig,
    take_rows,
)
from umt.engine import TrainConfig, fit
from umt.methods import Joint
from umt.models import EncoderConfig, ModelConfig, build_model
from umt.models.multimodal import mask_batch
from umt.tasks import CLASSIFICATION

T, SIZE, MELS, STEPS = 4, 16, 8, 20
MEAN, STD = -40.0, 10.0


def write_prepared(root: Path, sizes: tuple[int, int, int] = (40, 12, 12), seed: int = 0) -> Path:
    """A prepared folder as `umt prepare` lays it out: frame i of every clip is bright ``10 i``
    plus noise (so the order of the frames given to the model can be read back)."""
    rng = np.random.default_rng(seed)

    def split(n: int) -> ArrayDataset:
        frames = np.arange(T).reshape(1, T, 1, 1, 1) * 60  # frame i: 60 i + 0..49
        visual = (frames + rng.integers(0, 50, (n, T, 3, SIZE, SIZE))).astype(np.uint8)
        audio = rng.normal(MEAN, STD, (n, 1, MELS, STEPS)).astype(np.float16)
        return ArrayDataset({"audio": audio, "visual": visual}, rng.integers(0, 3, n))

    bundle = DataBundle("tiny-prepared", *(split(n) for n in sizes), num_classes=3)
    export_folder(bundle, root)
    stats = {"mean": MEAN, "std": STD}
    (root / PREPARED_FILE).write_text(json.dumps({"format": FORMAT, "audio_stats": stats}))
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_prepared(tmp_path_factory.mktemp("prep") / "data")


def load(folder: Path, **kw: object) -> DataBundle:
    cfg = PreparedConfig(**kw)  # type: ignore[arg-type]
    return load_data(DataConfig(name="prepared", root=str(folder), prepared=cfg))


def today_eval_frames(stored: np.ndarray, rows: np.ndarray, frames: int, crop: int) -> torch.Tensor:
    """`FramesView.eval_batch` before issue 17, verbatim in what it computes (the reference)."""
    t = stored.shape[1]
    centre = np.floor((np.arange(frames) + 0.5) * t / frames).astype(int)
    x = torch.from_numpy(np.ascontiguousarray(stored[rows][:, centre]))
    h, w = x.shape[-2:]
    y0, x0 = (h - crop) // 2, (w - crop) // 2
    x = x[..., y0 : y0 + crop, x0 : x0 + crop]
    std = torch.tensor(IMAGENET_STD).view(1, 1, 3, 1, 1) * 255.0
    scale, shift = 1.0 / std, -torch.tensor(IMAGENET_MEAN).view(1, 1, 3, 1, 1) * 255.0 / std
    return torch.empty(x.shape, dtype=torch.float32).copy_(x).mul_(scale).add_(shift)


@pytest.mark.parametrize(("frames", "crop"), [(0, 0), (2, 12), (3, 9)])
def test_evaluation_batches_equal_todays_transforms(folder: Path, frames: int, crop: int) -> None:
    data = load(folder, frames=frames, crop=crop)
    rows = np.array([0, 3, 5, 11])
    for name in ("val", "test"):
        split = data.split(name)
        stored = np.load(folder / name / "visual.npy")
        raw = split.for_device()[rows.tolist()]
        # raw: the stored bytes, centre frames and crop cut on the CPU, nothing drawn
        assert raw["visual"].dtype == torch.uint8 and raw["audio"].dtype == torch.float16
        assert set(raw) == {"audio", "visual", "label"}
        done = split.on_device(raw)
        expected = today_eval_frames(stored, rows, frames or T, crop or SIZE)
        torch.testing.assert_close(done["visual"], expected, rtol=0, atol=1e-6)
        audio = (np.load(folder / name / "audio.npy")[rows].astype(np.float32) - MEAN) / STD
        torch.testing.assert_close(done["audio"], torch.from_numpy(audio), rtol=0, atol=1e-6)
        assert torch.equal(split[rows.tolist()]["visual"], done["visual"])  # the CPU route
        assert torch.equal(done["label"], split[rows.tolist()]["label"])
    last = len(data.val) - 1  # negative and out-of-range rows behave as numpy's indexing
    assert torch.equal(data.val[[-1]]["visual"], data.val[[last]]["visual"])
    with pytest.raises(IndexError):
        data.val[[last + 1]]


def test_batched_crops_equal_per_clip_interpolation() -> None:
    torch.manual_seed(0)
    for h, size in ((16, 16), (16, 12), (40, 10)):  # boxes resized up, and down (antialiased)
        x = torch.randint(0, 256, (24, 2, 3, h, h + 4), dtype=torch.uint8)
        box, flip = random_boxes(24, h, h + 4, (0.08, 1.0)), torch.rand(24) < 0.5
        batched = resized_crops(x, box, flip, size, batched=True)
        per_clip = resized_crops(x, box, flip, size, batched=False)  # uint8: each pass rounded
        for i, ((y0, x0, ch, cw), f) in enumerate(zip(box.tolist(), flip.tolist(), strict=True)):
            crop = x[i, :, :, y0 : y0 + ch, x0 : x0 + cw].float()
            ref = F.interpolate(crop, size=(size, size), mode="bilinear", antialias=True)
            ref = ref.flip(-1) if f else ref
            torch.testing.assert_close(batched[i], ref, rtol=0, atol=1e-3)
        assert per_clip.dtype == torch.uint8
        assert (per_clip.float() - batched).abs().max() <= 1 + 1e-3


def test_crop_boxes_follow_the_scale_and_aspect_ranges() -> None:
    torch.manual_seed(0)
    h = w = 64
    box = random_boxes(20000, h, w, (0.25, 0.5))  # every first attempt fits at this scale
    ch, cw = box[:, 2].double(), box[:, 3].double()
    share, aspect = ch * cw / (h * w), cw / ch
    slack = (ch + cw + 1) / (2 * h * w)  # sides rounded to whole pixels
    assert bool((share >= 0.25 - slack).all() and (share <= 0.5 + slack).all())
    assert abs(float(share.mean()) - 0.375) < 0.005  # uniform in the area range
    slack = 1 / ch + 1 / cw  # rounding of both sides
    assert bool((aspect >= 3 / 4 - slack).all() and (aspect <= 4 / 3 + slack).all())
    assert abs(float(aspect.log().mean())) < 0.005  # log-uniform, centred on 1
    y0, x0 = box[:, 0], box[:, 1]
    assert bool((y0 >= 0).all() and (y0 + box[:, 2] <= h).all() and (x0 + box[:, 3] <= w).all())
    assert int(y0.min()) == 0 and bool((y0 + box[:, 2] == h).any())  # both edges reached
    # the whole range: small boxes are often rejected (then another attempt); all must fit
    wide = random_boxes(5000, 30, 50, (0.08, 1.0))
    assert bool((wide[:, 0] + wide[:, 2] <= 30).all() and (wide[:, 1] + wide[:, 3] <= 50).all())
    # no attempt can fit (area of the whole 16x40 frame at aspect <= 4/3): the centre square
    assert random_boxes(3, 16, 40, (1.0, 1.0)).tolist() == [[0, 12, 16, 16]] * 3


def test_training_draws_flips_frames_in_order_and_masks(folder: Path) -> None:
    data = load(folder, frames=2, crop=12, freq_mask=3, time_mask=5, masks=2)
    train = data.train.for_device()
    torch.manual_seed(0)
    rows = list(range(len(train)))
    flips, pairs = [], set()
    for _ in range(50):
        raw = train[rows]
        assert raw["visual"].dtype == torch.uint8 and raw["visual"].shape == (40, 2, 3, 16, 16)
        flips.append(raw["visual:flip"])
        level = raw["visual"].float().mean((2, 3, 4)) // 60  # (B, 2): the stored frame index
        assert bool((level[:, 1] > level[:, 0]).all())  # two distinct frames, in temporal order
        pairs |= {tuple(p) for p in level.long().tolist()}
        for key, width_max, size in (("audio:freq_masks", 3, MELS), ("audio:time_masks", 5, 20)):
            start, width = raw[key].unbind(-1)  # (B, masks)
            assert raw[key].shape == (40, 2, 2)
            assert bool((width >= 0).all() and (width <= width_max).all())
            assert bool((start >= 0).all() and (start + width <= size).all())
    assert pairs == {(i, j) for i in range(T) for j in range(i + 1, T)}  # every choice occurs
    rate = float(torch.cat(flips).float().mean())
    assert abs(rate - 0.5) < 0.025  # 2000 draws: std 0.011
    # the masks land where drawn, filled with 0 (the training mean); boxes resize to the crop
    raw = train[rows]
    done = train.on_device(raw)
    assert set(done) == {"audio", "visual", "label"}
    assert done["visual"].shape == (40, 2, 3, 12, 12) and done["visual"].dtype == torch.float32
    start, width = raw["audio:time_masks"][0, 0].tolist()
    assert bool((done["audio"][0, :, :, start : start + width] == 0).all())
    assert not load(folder, flip=False).train.for_device()[rows]["visual:flip"].any()


def test_parameter_keys_are_not_modalities(folder: Path) -> None:
    raw = load(folder, time_mask=4).train.for_device()[[0, 1]]
    assert sorted(raw) == [
        "audio",
        "audio:time_masks",
        "label",
        "visual",
        "visual:box",
        "visual:flip",
    ]
    assert [k for k in raw if is_modality_key(k)] == ["audio", "visual"]
    masked = mask_batch(raw, ["audio"])
    assert torch.equal(masked["visual:box"], raw["visual:box"])  # left alone
    assert not masked["visual"].any() and torch.equal(masked["audio"], raw["audio"])


def test_draws_are_seeded_and_both_routes_agree(folder: Path) -> None:
    data = load(folder, time_mask=4)
    rows = [1, 4, 9, 20]
    torch.manual_seed(3)
    state = torch.get_rng_state()  # what a checkpoint keeps
    a = data.train.for_device()[rows]
    torch.set_rng_state(state)  # what a resumed run restores
    b = data.train.for_device()[rows]
    assert all(torch.equal(a[k], b[k]) for k in a)
    torch.set_rng_state(state)
    direct = data.train[rows]  # data.train[...] draws the same and finishes on the CPU
    finished = data.train.on_device(a)
    assert all(torch.equal(direct[k], finished[k]) for k in direct)
    assert not torch.equal(data.train.for_device()[rows]["visual:box"], a["visual:box"])
    restricted = data.restrict(["visual"]).train.for_device().indexed()
    assert restricted.augmented and sorted(restricted[rows]) == [
        "index",
        "label",
        "visual",
        "visual:box",
        "visual:flip",
    ]
    assert not make_loader(data.train, batch_size=4, shuffle=False, pin_memory=False).pin_memory


def _epoch_rows(stage_dir: Path, epoch: int) -> list[str]:
    """The metrics logged for ``epoch`` (full float precision: equal rows, equal runs)."""
    lines = (stage_dir / "metrics.csv").read_text().splitlines()
    return sorted(line for line in lines[1:] if line.startswith(f"{epoch},"))


def test_fit_trains_on_device_batches_and_resumes_bit_identically(
    folder: Path, tmp_path: Path
) -> None:
    torch.set_num_threads(1)
    data = load(folder, frames=2, crop=12, time_mask=4)
    enc = EncoderConfig(name="resnet18", width=0.0625, feature_dim=8)
    cfg = TrainConfig(epochs=2, batch_size=16, progress=False, threads=1)

    def run(stage_dir: Path, epochs: int) -> None:
        torch.manual_seed(0)
        model = build_model(ModelConfig(encoder=enc, head_hidden=0), data.input_shapes, 3)
        fit(
            model,
            Joint(),
            data,
            replace(cfg, epochs=epochs),
            stage_dir,
            task=CLASSIFICATION,
            seed=0,
            stage="joint",
        )

    run(tmp_path / "whole", 2)
    run(tmp_path / "resumed", 1)  # stopped after epoch 1 ...
    run(tmp_path / "resumed", 2)  # ... and resumed from its last checkpoint
    whole = _epoch_rows(tmp_path / "whole", 1)
    assert len(whole) == 2 and "," in whole[0]  # the training row and the validation row
    # the second epoch's augmented batches, losses and validation equal the uninterrupted run's
    assert _epoch_rows(tmp_path / "resumed", 1) == whole
    # epoch 0 is not redone: its rows are the first run's, kept once across the resume (issue 16)
    assert _epoch_rows(tmp_path / "resumed", 0) == _epoch_rows(tmp_path / "whole", 0)


def test_batch_buffers_are_reused_only_when_no_batch_holds_them() -> None:
    stored = np.arange(6 * 2 * 3, dtype=np.uint8).reshape(6, 2, 3)
    ring = BatchBuffers(depth=2)
    a = ring.take(stored, np.array([0, 1]))
    view = a[1:]  # a view keeps the buffer as held as the batch itself
    del a
    b = ring.take(stored, np.array([2, 3]))
    c = ring.take(stored, np.array([4, 5]))  # both buffers held: fresh memory, not kept
    assert len({view.data_ptr() - 6, b.data_ptr(), c.data_ptr()}) == 3
    assert view.tolist() == stored[[1]].tolist() and b.tolist() == stored[[2, 3]].tolist()
    assert c.tolist() == stored[[4, 5]].tolist()
    ptr = b.data_ptr()
    del b
    d = ring.take(stored, np.array([5]))  # b's buffer is free again: reused, not allocated
    assert d.data_ptr() == ptr and d.tolist() == stored[[5]].tolist()
    assert view.tolist() == stored[[1]].tolist()  # still untouched
    del view, c
    e = ring.take(stored, np.arange(6))  # larger than the free buffers: one replaced
    assert e.tolist() == stored.tolist() and d.tolist() == stored[[5]].tolist()
    with pytest.raises(IndexError):  # numpy's index errors, not a clipped read
        take_rows(stored, np.array([6]), ring)


def test_loader_batches_held_by_the_consumer_are_never_overwritten(folder: Path) -> None:
    data = load(folder, frames=2, time_mask=4)
    stored = {m: np.load(folder / "train" / f"{m}.npy") for m in ("audio", "visual")}
    for name, split in (("train", data.train.for_device()), ("val", data.val.for_device())):
        if name == "val":
            stored = {m: np.load(folder / "val" / f"{m}.npy") for m in ("audio", "visual")}
        loader = make_loader(split, batch_size=5, shuffle=True, pin_memory=False)
        assert isinstance(loader.sampler, ShardedBatchSampler)
        held = []
        for epoch in range(3):  # more batches held at once than the ring has buffers
            loader.sampler.set_epoch(epoch)
            held += [(list(rows), b) for rows, b in zip(loader.sampler, loader, strict=True)]
        pointers = set()
        for rows, b in held:
            idx = np.sort(rows)
            assert np.array_equal(b["audio"].numpy(), stored["audio"][idx])
            if name == "val":  # evaluation: the centre frames of 2 segments of the 4, 1 and 3
                assert np.array_equal(b["visual"].numpy(), stored["visual"][idx][:, [1, 3]])
            else:  # 2 of the 4 stored frames of each clip, in temporal order
                frame = b["visual"].float().mean((2, 3, 4)) // 60  # (B, 2): stored frame index
                picked = stored["visual"][idx[:, None], frame.long().numpy()]
                assert np.array_equal(b["visual"].numpy(), picked)
            pointers.add(b["audio"].data_ptr())
        assert len(pointers) == len(held)  # each held batch has memory of its own
    # consumed one at a time, the batches come from the ring's few buffers (no new memory)
    loader = make_loader(data.train.for_device(), batch_size=5, shuffle=True, pin_memory=False)
    seen = {b["audio"].data_ptr() for b in loader} | {b["audio"].data_ptr() for b in loader}
    assert len(seen) <= 2  # the loop's variable holds one batch while the next is read


@pytest.mark.parametrize("workers", [0, 1])
def test_batches_are_deterministic_for_a_seed_and_equal_across_workers(
    folder: Path, workers: int
) -> None:
    data = load(folder, frames=0, time_mask=4)  # all frames: read through take_rows

    def epoch(split: ArrayDataset, seed: int) -> list[dict[str, torch.Tensor]]:
        torch.manual_seed(seed)
        loader = make_loader(split, batch_size=8, shuffle=True, num_workers=workers)
        return list(loader)

    for split in (data.train.for_device(), data.val.for_device()):
        a, b = epoch(split, 0), epoch(split, 0)
        assert all(torch.equal(x[k], y[k]) for x, y in zip(a, b, strict=True) for k in x)
        inline = epoch(split, 0) if workers == 0 else None
        if inline is None:  # the stored bytes through shared memory equal the in-process read
            inline = list(make_loader(split, batch_size=8, shuffle=True, num_workers=0))
        for x, y in zip(a, inline, strict=True):
            assert torch.equal(x["visual"], y["visual"]) and torch.equal(x["audio"], y["audio"])
