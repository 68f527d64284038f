"""``umt.yours.diagnose``: does a fusion model of the user's own suffer modality failure?

The model is the user's, unmodified; the data are the user's ``Dataset``s or ``DataLoader``s.
For each modality the named encoder's output is taken by a forward hook while the model runs its
own ``forward`` (eval mode, ``no_grad``) and linearly probed exactly as the built-in study probes
its encoders: vectors by :func:`umt.probe.linear_probe` (maps and tokens averaged), and, where
the labels are maps ``(H, W)`` (segmentation), the encoder's feature map per pixel by
:func:`umt.tasks.seg_probe.linear_probe_maps` (mean IoU). The same probe of a uni-modal teacher's
encoder is the reference: an encoder whose probe is below its teacher's by more than ``margin``,
with a 95 % interval of the gap that excludes 0 (paired over the test samples, and over the
teachers' seeds when three or more are trained: the study's interval, :mod:`umt.report.stats`),
has learned less of its modality than it would alone: **modality failure** (Du et al.).

The teachers are the user's (:class:`umt.yours.Teacher`: a model and the layer to read) or
trained here (:mod:`umt.yours.teacher_fit`).

Example::

    diag = umt.yours.diagnose(model, train, val, test, encoders={"audio": "aud", "visual": "vis"})
    print(diag.table())                 # probe scores, gap [95% CI], verdict per modality
    umt_loss = umt.UMTLoss(diag.teachers, weights=5.0)   # then fix it in your own loop
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from umt.data.base import ArrayDataset
from umt.errors import UMTError
from umt.probe import ProbeConfig, fit_linear, linear_probe
from umt.report import stats
from umt.tasks.classification import accuracy_of
from umt.tasks.seg_probe import fit_pixel_linear, linear_probe_maps
from umt.tasks.segmentation import iou_outcomes, miou_of
from umt.yours import batches as B
from umt.yours.diagnosis import DiagnoseConfig, Diagnosis, ModalityDiagnosis, Probe
from umt.yours.hooks import capture_features, pool, submodule
from umt.yours.teacher_fit import Log, train_teacher
from umt.yours.teachers import Teacher, as_teacher

SPLITS = ("train", "val", "test")
# The study's paired interval of a difference (issue 30 renames paired_bootstrap to it).
paired_interval: Any = getattr(stats, "paired_interval", None) or getattr(
    stats, "paired_bootstrap", None
)
Split = tuple[torch.Tensor, torch.Tensor]  # features (N, D) or maps (N, C, h, w); labels


def _feature(x: torch.Tensor, layout: str | None, dense: bool, what: str) -> torch.Tensor:
    """A vector per sample, or for segmentation the map ``(B, C, h, w)`` as it is."""
    if not dense:
        return pool(x, layout).float().cpu()
    if x.ndim != 4 or layout != "channels":
        raise UMTError(
            f"diagnose: segmentation labels, but {what} gives {tuple(x.shape)} ({layout}); name "
            "a submodule whose output is a feature map (B, C, h, w)"
        )
    return x.float().cpu()


@torch.no_grad()
def model_features(
    model: nn.Module,
    batches: Iterable[Any],
    encoders: Mapping[str, str],
    *,
    split: str = "data",
    modalities: Sequence[str] | None = None,
    inputs: B.InputFns | None = None,
    layouts: Mapping[str, str] | None = None,
    device: torch.device | None = None,
    precision: str = "32",
    ignore_index: int = -100,
    call: str = "dict",
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """The named submodules' outputs in the model's own forward pass (eval mode, ``no_grad``)
    over ``batches``: vectors ``{modality: (N, D)}``, or maps ``(N, C, h, w)`` where the labels
    are maps; and the labels; on the CPU.

    Example:
        >>> net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
        >>> feats, y = model_features(net, [(torch.zeros(5, 3), torch.zeros(5))], {"a": "1"},
        ...                           modalities=["a"])
        >>> tuple(feats["a"].shape), tuple(y.shape), net.training
        ((5, 4), (5,), True)
    """
    device = device or B.device_of(model, None, "the model")
    feats: dict[str, list[torch.Tensor]] = {m: [] for m in encoders}
    labels = []
    with B.Modes(model), capture_features(model, encoders, layouts=layouts) as captured:
        model.eval()
        for batch in batches:
            d, args = B.as_dict(batch, split, modalities)
            y = B.labels(d, split, ignore_index)
            if args is None:
                B.check_modalities(d, split, [m for m in encoders if m not in (inputs or {})])
            captured.reset()
            with B.autocast(device, precision):
                if args is not None:
                    model(*B.to(args, device))
                elif call == "kwargs":  # model(audio=..., visual=...): a Hugging Face model
                    model(**{k: v for k, v in B.to(d, device).items() if k != "label"})
                else:
                    model(B.to(d, device))
            captured.check()
            for m in encoders:
                what = f"encoder {encoders[m]!r}"
                feats[m].append(_feature(captured[m], captured.layouts[m], y.ndim == 3, what))
            labels.append(y)
    if not labels:
        raise UMTError(f"diagnose: the {split} data gave no batch")
    return {m: torch.cat(f) for m, f in feats.items()}, torch.cat(labels)


@torch.no_grad()
def teacher_features(
    teacher: Teacher,
    batches: Iterable[Any],
    modality: str,
    *,
    split: str = "data",
    modalities: Sequence[str] | None = None,
    inputs: B.InputFns | None = None,
    device: torch.device | None = None,
    precision: str = "32",
    ignore_index: int = -100,
) -> Split:
    """The frozen teacher's features of ``modality`` (vectors, or maps for label maps) and
    the labels."""
    device = device or B.device_of(teacher, None, "the teacher")
    take = B.input_fn(modality, inputs or {})
    feats, labels = [], []
    with B.Modes(teacher):
        teacher.eval()
        for batch in batches:
            d, _ = B.as_dict(batch, split, modalities)
            if modality not in (inputs or {}):
                B.check_modalities(d, split, [modality])
            y = B.labels(d, split, ignore_index)
            with B.autocast(device, precision):
                out = teacher(B.to(take(d), device))
            feats.append(_feature(out, teacher.layout, y.ndim == 3, f"the teacher of {modality!r}"))
            labels.append(y)
    return torch.cat(feats), torch.cat(labels)


def probe(xy: Sequence[Split], k: int, cfg: ProbeConfig) -> tuple[Probe, np.ndarray]:
    """The linear probe of train/val/test features (per position for maps) and its per-sample
    test outcomes: 1/0 correct, or per-image intersection and union counts ``(N, 2, K)``.
    The outcomes come from a refit at the chosen L2 (the fit is deterministic: the same
    classifier)."""
    train, val, test = xy
    if train[0].ndim == 2:
        res = linear_probe(train, val, test, k, cfg)
        mean, std = train[0].mean(0), train[0].std(0).clamp_min(1e-6)
        clf = fit_linear((train[0] - mean) / std, train[1], k, l2=res.l2, max_iter=cfg.max_iter)
        with torch.no_grad():
            pred = clf((test[0] - mean) / std).argmax(1)
        return res, (pred == test[1]).numpy().astype(np.int64)
    seg = linear_probe_maps(train, val, test, k, cfg)
    xs = train[0].transpose(0, 1).flatten(1)  # (C, N h w): as linear_probe_maps standardises
    mean, std = xs.mean(1).view(1, -1, 1, 1), xs.std(1).clamp_min(1e-6).view(1, -1, 1, 1)
    pix = fit_pixel_linear((train[0] - mean) / std, train[1], k, l2=seg.l2, max_iter=cfg.max_iter)
    size = tuple(test[1].shape[-2:])
    data = ArrayDataset({"x": ((test[0] - mean) / std).numpy()}, test[1].numpy())

    def predict(b: dict[str, torch.Tensor]) -> torch.Tensor:
        return F.interpolate(pix(b["x"]), size=size, mode="bilinear", align_corners=False)

    return seg, iou_outcomes(predict, data, k)


def diagnose(
    model: nn.Module,
    train: B.Data,
    val: B.Data,
    test: B.Data,
    *,
    encoders: Mapping[str, str],
    num_classes: int | None = None,
    teachers: Mapping[str, nn.Module] | None = None,
    config: DiagnoseConfig | None = None,
    out: str | Path | None = None,
    modalities: Sequence[str] | None = None,
    inputs: B.InputFns | None = None,
    layouts: Mapping[str, str] | None = None,
    teacher_init: Callable[[nn.Module], None] | None = None,
    device: str | torch.device | None = None,
    precision: str = "32",
    progress: bool | Log = True,
    call: str = "dict",
) -> Diagnosis:
    """Linear probes of the model's encoders against uni-modal teachers: modality failure or not.

    Args:
        model: any ``nn.Module``, unmodified; it is run as ``model(batch)`` with the batch dict
            (``model(*inputs)`` for tuple samples), in eval mode under ``no_grad``, and left in
            the modes it had (and on its device).
        train, val, test: ``Dataset`` (batched here), ``IterableDataset`` or ``DataLoader`` of
            dict samples ``{modality: tensor, ..., "label": ...}``, or of tuples
            ``(x_1, ..., x_M, label)`` with ``modalities`` naming the positions. A label is a
            class index, a one-hot row, or a label map ``(H, W)`` (segmentation).
        encoders: ``{modality: "dotted.submodule.name"}``: the submodule whose output in the
            model's forward pass is the modality's feature.
        num_classes: the number of classes; ``None``: the largest label + 1.
        teachers: ``{modality: nn.Module}``: frozen feature extractors taking the modality's
            tensor, or :class:`umt.yours.Teacher` (a full model and the layer to read); a
            modality without one gets a teacher trained here from a re-initialised copy of its
            encoder (``config.epochs``, ``config.lr``, ``config.teacher_seeds``).
        config: :class:`DiagnoseConfig` (margin, teacher training, interval, probe settings).
        out: a directory: writes ``diagnosis.json``, ``report.md``, ``report.html``,
            ``figures/probes.png`` and the teachers (:meth:`Diagnosis.load` reads them back).
        modalities: the positions of tuple samples (label last).
        inputs: ``{modality: callable(batch dict) -> tensor}``: the teacher's input, where it
            is not ``batch[modality]``.
        layouts: ``{modality: "vector" | "tokens" | "channels"}`` where an encoder's output
            layout cannot be read off it (a 3-d output, see :mod:`umt.yours.hooks`).
        teacher_init: ``callable(encoder copy)`` re-initialising a teacher's copy, where
            ``reset_parameters()`` does not reach every parameter.
        device: where to run (the model and teachers are moved there for the diagnosis, and
            the model back after); ``None``: the model's device.
        precision: ``32``, ``16-mixed`` or ``bf16-mixed`` (autocast) for features and teachers.
        progress: print progress to stderr (or a ``callable(str)`` to send it to).
        call: how a dict batch is given to the model: ``dict`` (``model(batch)``) or ``kwargs``
            (``model(**batch)`` without the label, as Hugging Face models take it).

    Returns:
        A :class:`Diagnosis`; ``.table()`` is markdown, ``.teachers`` the teachers.
    """
    start = time.perf_counter()
    cfg = config or DiagnoseConfig()
    log: Log = progress if callable(progress) else _stderr if progress else lambda _: None
    if not encoders:
        raise UMTError("diagnose: encoders is empty; give {modality: 'dotted.submodule.name'}")
    given = dict(teachers or {})
    for what, names in (("teachers", given), ("inputs", inputs or {}), ("layouts", layouts or {})):
        unknown = sorted(set(names) - set(encoders))
        if unknown:
            raise UMTError(
                f"diagnose: {what} name {unknown}, which encoders does not; encoders names "
                f"{list(encoders)}"
            )
    for m, name in encoders.items():
        submodule(model, name, what=f"encoders[{m!r}]")  # a bad name fails before any work
    dev = B.device_of(model, device, "the model")
    B.autocast(dev, precision)  # a bad precision fails before any work
    if call not in ("dict", "kwargs"):
        raise UMTError(f"diagnose: call={call!r}; expected 'dict' or 'kwargs'")
    data = {"train": train, "val": val, "test": test}
    ordered = {
        s: B.loader(d, s, cfg.probe.batch_size, shuffle=False, seed=cfg.seed)
        for s, d in data.items()
    }
    kw: dict[str, Any] = {"modalities": modalities, "inputs": inputs, "device": dev}
    kw |= {"precision": precision, "ignore_index": cfg.ignore_index}
    with B.on_device([model], dev):
        log(f"diagnose: features of {list(encoders)} on {dev}")
        feats = {
            s: model_features(model, b, encoders, split=s, layouts=layouts, call=call, **kw)
            for s, b in ordered.items()
        }
    labels = {s: f[1] for s, f in feats.items()}
    k = num_classes if num_classes is not None else max(int(y.max()) for y in labels.values()) + 1
    for s, y in labels.items():
        valid = y[y != -100]  # unlabelled pixels
        if len(valid) and (int(valid.min()) < 0 or int(valid.max()) >= k):
            raise UMTError(
                f"diagnose: the {s} labels span {int(valid.min())}..{int(valid.max())}; with "
                f"num_classes={k} they must be in 0..{k - 1}"
            )
    score_of = accuracy_of if labels["train"].ndim == 1 else miou_of

    result: dict[str, ModalityDiagnosis] = {}
    kept: dict[str, nn.Module] = {}
    for m, name in encoders.items():
        mine, mine_out = probe([(feats[s][0][m], labels[s]) for s in SPLITS], k, cfg.probe)
        candidates: list[tuple[Teacher, float | None]] = []
        if m in given:
            candidates.append((as_teacher(given[m], m, num_classes=k).to(dev), None))
        for seed in range(cfg.seed, cfg.seed + cfg.teacher_seeds) if m not in given else ():
            shuffled = B.loader(train, "train", cfg.batch_size, shuffle=True, seed=seed)
            candidates.append(
                train_teacher(
                    submodule(model, name),
                    m,
                    shuffled,
                    ordered["val"],
                    k,
                    cfg,
                    name=name,
                    seed=seed,
                    init=teacher_init,
                    log=log,
                    **kw,
                )  # fmt: skip
            )
        probed = []
        for teacher, val_score in candidates:
            log(f"diagnose: linear probes of {m!r} and its teacher")
            tf = [teacher_features(teacher, ordered[s], m, split=s, **kw) for s in SPLITS]
            probed.append((teacher, val_score, *probe(tf, k, cfg.probe)))
        interval = paired_interval(
            [p[3] for p in probed], [mine_out] * len(probed), score_of, n_boot=cfg.n_boot,
            seed=cfg.seed,
        )  # fmt: skip
        best = max(probed, key=lambda p: -1.0 if p[1] is None else p[1])  # the best on val
        kept[m] = best[0]
        result[m] = ModalityDiagnosis(
            modality=m,
            encoder=name,
            model=mine,
            teacher=best[2],
            teacher_source="given" if m in given else "trained",
            margin=cfg.margin,
            teacher_val_acc=best[1],
            interval=interval,
            teacher_scores=tuple(score_of(p[3]) for p in probed),
        )
    diag = Diagnosis(
        modalities=result,
        num_classes=k,
        sizes={s: len(y) for s, y in labels.items()},
        margin=cfg.margin,
        seconds=time.perf_counter() - start,
        teachers=kept,
    )
    log(f"diagnose: done in {diag.seconds:.1f} s; failures: {diag.failures or 'none'}")
    if out is not None:
        diag.write(out)
    return diag


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
