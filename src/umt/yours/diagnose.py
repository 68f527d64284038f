"""``umt.yours.diagnose``: does a fusion model of the user's own suffer modality failure?

The model is the user's, unmodified; the data are the user's ``Dataset``s or ``DataLoader``s.
For each modality the named encoder's output is taken by a forward hook while the model runs its
own ``forward`` (eval mode, ``no_grad``), mean-pooled to a vector, and linearly probed exactly as
the built-in study probes its encoders (:func:`umt.probe.linear_probe`: standardised features,
the L2 strength chosen on ``val``, ``test`` read once). The same probe of a uni-modal teacher's
encoder is the reference: an encoder whose probe is more than ``margin`` below its teacher's has
learned less of its modality than it would alone: **modality failure** (Du et al.).

The teachers are the user's (frozen feature extractors, e.g. pre-trained) or trained here: a deep
copy of the model's encoder, re-initialised, plus a linear head, trained on that modality alone
(Adam, the epoch with the best validation accuracy kept), as the study trains its teachers.

Example::

    diag = umt.yours.diagnose(model, train, val, test, encoders={"audio": "aud", "visual": "vis"})
    print(diag.table())                 # probe accuracies, gap, verdict per modality
    umt_loss = umt.UMTLoss(diag.teachers, weights=5.0)   # then fix it in your own loop
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from umt.data.base import ArrayDataset, make_loader
from umt.errors import UMTError
from umt.probe import linear_probe
from umt.yours.diagnosis import DiagnoseConfig, Diagnosis, ModalityDiagnosis
from umt.yours.hooks import capture_features, pool, submodule

#: ``{modality: callable(batch dict) -> the encoder's input tensor}``
InputFns = Mapping[str, Callable[[dict[str, Any]], torch.Tensor]]
Data = Dataset[Any] | DataLoader[Any]
SPLITS = ("train", "val", "test")


# --- batches ------------------------------------------------------------------------------


def _loader(data: Any, split: str, batch_size: int, *, shuffle: bool, seed: int) -> Iterable[Any]:
    """Batches of ``data``: a DataLoader as it is; a Dataset batched here."""
    if isinstance(data, DataLoader):
        return data
    if isinstance(data, ArrayDataset):  # the project's own: it returns whole batches
        return make_loader(data, batch_size=batch_size, shuffle=shuffle, seed=seed, shard=False)
    if not (hasattr(data, "__getitem__") and hasattr(data, "__len__")):
        raise UMTError(
            f"diagnose: {split} is a {type(data).__name__}; expected a torch Dataset (with "
            "__getitem__ and __len__) or a DataLoader"
        )
    gen = torch.Generator().manual_seed(seed) if shuffle else None
    return DataLoader(data, batch_size=batch_size, shuffle=shuffle, generator=gen)


def _as_dict(
    batch: Any, split: str, modalities: Sequence[str] | None
) -> tuple[dict[str, Any], tuple[Any, ...] | None]:
    """``(batch dict with "label", positional inputs of the model or None for a dict batch)``."""
    if isinstance(batch, Mapping):
        if "label" not in batch:
            raise UMTError(
                f"diagnose: a {split} batch has no 'label' (its keys: {sorted(batch)}); dict "
                "samples need {modality: tensor, ..., 'label': int}"
            )
        return dict(batch), None
    if isinstance(batch, list | tuple):
        if modalities is None:
            raise UMTError(
                f"diagnose: the {split} samples are tuples; pass modalities=[...] naming their "
                "positions (the label last), or give dict samples"
            )
        if len(batch) != len(modalities) + 1:
            raise UMTError(
                f"diagnose: a {split} sample has {len(batch)} entries but modalities="
                f"{list(modalities)} names {len(modalities)} (+ the label last)"
            )
        out = dict(zip(modalities, batch[:-1], strict=True))
        out["label"] = batch[-1]
        return out, tuple(batch[:-1])
    raise UMTError(
        f"diagnose: a {split} batch is a {type(batch).__name__}; expected a dict "
        "{modality: tensor, 'label': ...} or a tuple (with modalities=[...])"
    )


def _to(x: Any, device: torch.device) -> Any:
    if isinstance(x, torch.Tensor):
        return x.to(device)
    if isinstance(x, Mapping):
        return {k: _to(v, device) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return type(x)(_to(v, device) for v in x)
    return x


def _labels(d: Mapping[str, Any]) -> torch.Tensor:
    return torch.as_tensor(d["label"]).long().view(-1).cpu()


def _check_modalities(d: Mapping[str, Any], split: str, needed: Iterable[str]) -> None:
    missing = [m for m in needed if m not in d]
    if missing:
        raise UMTError(
            f"diagnose: a {split} batch has no modality {missing} (its keys: {sorted(d)}); "
            "each modality of `encoders` must be a key of the samples (or pass "
            "inputs={modality: callable(batch) -> tensor})"
        )


def _input_fn(m: str, inputs: InputFns) -> Callable[[dict[str, Any]], torch.Tensor]:
    return inputs[m] if m in inputs else (lambda d: d[m])


class _Modes:
    """Every submodule's train/eval flag, restored on exit (not ``train(was)`` of the root,
    which would unfreeze submodules the user keeps in eval mode)."""

    def __init__(self, *modules: nn.Module) -> None:
        self.modes = [(m, m.training) for mod in modules for m in mod.modules()]

    def __enter__(self) -> _Modes:
        return self

    def __exit__(self, *exc: object) -> None:
        for m, training in self.modes:
            m.training = training


def _device(model: nn.Module) -> torch.device:
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


# --- features -----------------------------------------------------------------------------


@torch.no_grad()
def model_features(
    model: nn.Module,
    batches: Iterable[Any],
    encoders: Mapping[str, str],
    *,
    split: str = "data",
    modalities: Sequence[str] | None = None,
    inputs: InputFns | None = None,
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """The pooled outputs ``{modality: (N, D)}`` of the named submodules in the model's own
    forward pass (eval mode, ``no_grad``) over ``batches``, and the labels ``(N,)``, on the CPU.

    Example:
        >>> net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
        >>> feats, y = model_features(net, [(torch.zeros(5, 3), torch.zeros(5))], {"a": "1"},
        ...                           modalities=["a"])
        >>> tuple(feats["a"].shape), tuple(y.shape), net.training
        ((5, 4), (5,), True)
    """
    device = _device(model)
    feats: dict[str, list[torch.Tensor]] = {m: [] for m in encoders}
    labels = []
    with _Modes(model), capture_features(model, encoders) as captured:
        model.eval()
        for batch in batches:
            d, args = _as_dict(batch, split, modalities)
            if args is None:
                _check_modalities(d, split, [m for m in encoders if m not in (inputs or {})])
            captured.reset()
            if args is None:
                model(_to(d, device))
            else:
                model(*_to(args, device))
            captured.check()
            for m in encoders:
                feats[m].append(captured[m].float().cpu())
            labels.append(_labels(d))
    if not labels:
        raise UMTError(f"diagnose: the {split} data gave no batch")
    return {m: torch.cat(f) for m, f in feats.items()}, torch.cat(labels)


@torch.no_grad()
def teacher_features(
    teacher: nn.Module,
    batches: Iterable[Any],
    modality: str,
    *,
    split: str = "data",
    modalities: Sequence[str] | None = None,
    inputs: InputFns | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The frozen teacher's pooled features ``(N, D)`` of ``modality`` and the labels ``(N,)``."""
    device = _device(teacher)
    take = _input_fn(modality, inputs or {})
    feats, labels = [], []
    with _Modes(teacher):
        teacher.eval()
        for batch in batches:
            d, _ = _as_dict(batch, split, modalities)
            if modality not in (inputs or {}):
                _check_modalities(d, split, [modality])
            feats.append(pool(teacher(_to(take(d), device))).float().cpu())
            labels.append(_labels(d))
    return torch.cat(feats), torch.cat(labels)


def train_teacher(
    encoder: nn.Module,
    modality: str,
    train: Iterable[Any],
    val: Iterable[Any],
    num_classes: int,
    cfg: DiagnoseConfig,
    *,
    modalities: Sequence[str] | None = None,
    inputs: InputFns | None = None,
    name: str = "",
) -> tuple[nn.Module, float]:
    """A uni-modal teacher from ``encoder``: a re-initialised deep copy plus a linear head,
    trained on ``modality`` alone with Adam; the epoch with the best validation accuracy is kept.

    Returns:
        The teacher's encoder (frozen, eval mode) and its best validation accuracy.
    """
    torch.manual_seed(cfg.seed)
    device = _device(encoder)
    enc = copy.deepcopy(encoder)
    for module in enc.modules():  # re-initialise: the teacher learns from scratch
        reset = getattr(module, "reset_parameters", None)
        if callable(reset):
            reset()
    enc.requires_grad_(True).eval()
    take = _input_fn(modality, inputs or {})

    def batch_xy(batch: Any, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        d, _ = _as_dict(batch, split, modalities)
        if modality not in (inputs or {}):
            _check_modalities(d, split, [modality])
        return _to(take(d), device), _labels(d).to(device)

    x0, _ = batch_xy(next(iter(train)), "train")
    try:
        with torch.no_grad():
            dim = pool(enc(x0)).shape[1]
    except UMTError:
        raise
    except Exception as e:
        raise UMTError(
            f"diagnose: the teacher of {modality!r} (a copy of submodule {name!r}) failed on the "
            f"batch's {modality!r} input of shape {tuple(x0.shape)}: {e}. If the submodule "
            f"takes something else, pass inputs={{{modality!r}: lambda batch: ...}}"
        ) from e
    head = nn.Linear(dim, num_classes).to(device)
    params = [*enc.parameters(), *head.parameters()]
    opt = torch.optim.Adam(params, lr=cfg.lr)
    best: tuple[float, dict[str, Any]] | None = None
    for _ in range(cfg.epochs):
        enc.train()
        for batch in train:
            x, y = batch_xy(batch, "train")
            loss = F.cross_entropy(head(pool(enc(x))), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        enc.eval()
        correct = total = 0
        with torch.no_grad():
            for batch in val:
                x, y = batch_xy(batch, "val")
                correct += int((head(pool(enc(x))).argmax(1) == y).sum())
                total += len(y)
        acc = correct / max(1, total)
        if best is None or acc > best[0]:
            best = (acc, copy.deepcopy(enc.state_dict()))
    if best is not None:
        enc.load_state_dict(best[1])
    enc.eval().requires_grad_(False)
    return enc, best[0] if best is not None else float("nan")


# --- the diagnosis ------------------------------------------------------------------------


def diagnose(
    model: nn.Module,
    train: Data,
    val: Data,
    test: Data,
    *,
    encoders: Mapping[str, str],
    num_classes: int | None = None,
    teachers: Mapping[str, nn.Module] | None = None,
    config: DiagnoseConfig | None = None,
    out: str | Path | None = None,
    modalities: Sequence[str] | None = None,
    inputs: InputFns | None = None,
) -> Diagnosis:
    """Linear probes of the model's encoders against uni-modal teachers: modality failure or not.

    Args:
        model: any ``nn.Module``, unmodified; it is run as ``model(batch)`` with the batch dict
            (``model(*inputs)`` for tuple samples), in eval mode under ``no_grad``, and left in
            the modes it had.
        train, val, test: ``Dataset`` (batched here) or ``DataLoader``
            of dict samples ``{modality: tensor, ..., "label": int}``, or of tuples
            ``(x_1, ..., x_M, label)`` with ``modalities`` naming the positions.
        encoders: ``{modality: "dotted.submodule.name"}``: the submodule whose output in the
            model's forward pass is the modality's feature (maps and token sequences are
            mean-pooled to vectors, see :func:`umt.yours.hooks.pool`).
        num_classes: the number of classes; ``None``: the largest label + 1.
        teachers: ``{modality: nn.Module}`` frozen feature extractors taking the modality's
            tensor (e.g. pre-trained); a modality without one gets a teacher trained here from
            a re-initialised copy of its encoder (``config.epochs``, ``config.lr``).
        config: :class:`DiagnoseConfig` (margin, teacher training, probe settings).
        out: a directory: writes ``diagnosis.json``, ``report.md``, ``report.html`` and
            ``figures/probes.png``.
        modalities: the positions of tuple samples (label last).
        inputs: ``{modality: callable(batch dict) -> tensor}``: the teacher's input, where it
            is not ``batch[modality]``.

    Returns:
        A :class:`Diagnosis`; ``.table()`` is markdown, ``.teachers`` the teachers' encoders.
    """
    start = time.perf_counter()
    cfg = config or DiagnoseConfig()
    if not encoders:
        raise UMTError("diagnose: encoders is empty; give {modality: 'dotted.submodule.name'}")
    given = dict(teachers or {})
    unknown = sorted(set(given) - set(encoders))
    if unknown:
        raise UMTError(
            f"diagnose: teachers name {unknown}, which encoders does not; encoders names "
            f"{list(encoders)}"
        )
    unknown = sorted(set(inputs or {}) - set(encoders))
    if unknown:
        raise UMTError(f"diagnose: inputs name {unknown}; encoders names {list(encoders)}")
    for m, name in encoders.items():
        submodule(model, name, what=f"encoders[{m!r}]")  # a bad name fails before any work
    data = {"train": train, "val": val, "test": test}
    ordered = {
        s: _loader(d, s, cfg.probe.batch_size, shuffle=False, seed=cfg.seed)
        for s, d in data.items()
    }
    kw: dict[str, Any] = {"modalities": modalities, "inputs": inputs}
    feats = {s: model_features(model, b, encoders, split=s, **kw) for s, b in ordered.items()}
    labels = {s: f[1] for s, f in feats.items()}
    k = num_classes if num_classes is not None else int(max(y.max() for y in labels.values())) + 1
    for s, y in labels.items():
        if int(y.min()) < 0 or int(y.max()) >= k:
            raise UMTError(
                f"diagnose: the {s} labels span {int(y.min())}..{int(y.max())}; with "
                f"num_classes={k} they must be in 0..{k - 1}"
            )

    result: dict[str, ModalityDiagnosis] = {}
    kept: dict[str, nn.Module] = {}
    for m, name in encoders.items():
        xy = [(feats[s][0][m], labels[s]) for s in SPLITS]
        mine = linear_probe(xy[0], xy[1], xy[2], k, cfg.probe)
        val_acc = None
        if m in given:
            teacher = given[m]
        else:
            shuffled = _loader(train, "train", cfg.batch_size, shuffle=True, seed=cfg.seed)
            teacher, val_acc = train_teacher(
                submodule(model, name), m, shuffled, ordered["val"], k, cfg, name=name, **kw
            )
        kept[m] = teacher
        tf = [teacher_features(teacher, ordered[s], m, split=s, **kw) for s in SPLITS]
        theirs = linear_probe(tf[0], tf[1], tf[2], k, cfg.probe)
        result[m] = ModalityDiagnosis(
            modality=m,
            encoder=name,
            model=mine,
            teacher=theirs,
            teacher_source="given" if m in given else "trained",
            margin=cfg.margin,
            teacher_val_acc=val_acc,
        )
    diag = Diagnosis(
        modalities=result,
        num_classes=k,
        sizes={s: len(y) for s, y in labels.items()},
        margin=cfg.margin,
        seconds=time.perf_counter() - start,
        teachers=kept,
    )
    if out is not None:
        diag.write(out)
    return diag
