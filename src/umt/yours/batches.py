"""The user's data as ``diagnose`` reads it: batches, labels, devices and precision.

Samples are dicts ``{modality: tensor, ..., "label": ...}`` or tuples ``(x_1, ..., x_M, label)``
(with ``modalities=[...]``). A label is a class index (an int, or a float holding a whole
number), a one-hot row (read as its index), or a label map ``(H, W)`` of class indices
(segmentation; unlabelled pixels ``ignore_index``). Anything else is an error that says so.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset

from umt.data.base import ArrayDataset, make_loader
from umt.data.segmentation import IGNORE_INDEX
from umt.errors import UMTError

#: ``{modality: callable(batch dict) -> the encoder's input tensor}``
InputFns = Mapping[str, Callable[[dict[str, Any]], torch.Tensor]]
Data = Dataset[Any] | DataLoader[Any]
PRECISIONS = {"32": None, "32-true": None, "16-mixed": torch.float16, "16": torch.float16}
PRECISIONS |= {"bf16-mixed": torch.bfloat16, "bf16": torch.bfloat16}


def loader(data: Any, split: str, batch_size: int, *, shuffle: bool, seed: int) -> Iterable[Any]:
    """Batches of ``data``: a DataLoader as it is; a Dataset batched here (shuffled batches
    drop a last batch of one sample, which BatchNorm cannot train on)."""
    if isinstance(data, DataLoader):
        return data
    if isinstance(data, ArrayDataset):  # the project's own: it returns whole batches
        return make_loader(data, batch_size=batch_size, shuffle=shuffle, seed=seed, shard=False)
    if isinstance(data, IterableDataset):  # its own order: a sampler cannot shuffle it
        return DataLoader(data, batch_size=batch_size)
    if not (hasattr(data, "__getitem__") and hasattr(data, "__len__")):
        raise UMTError(
            f"diagnose: {split} is a {type(data).__name__}; expected a torch Dataset (with "
            "__getitem__ and __len__), an IterableDataset or a DataLoader"
        )
    gen = torch.Generator().manual_seed(seed) if shuffle else None
    drop_last = shuffle and len(data) % batch_size == 1
    return DataLoader(
        data, batch_size=batch_size, shuffle=shuffle, generator=gen, drop_last=drop_last
    )


def as_dict(
    batch: Any, split: str, modalities: Sequence[str] | None
) -> tuple[dict[str, Any], tuple[Any, ...] | None]:
    """``(batch dict with "label", positional inputs of the model or None for a dict batch)``."""
    if isinstance(batch, Mapping):
        if "label" not in batch:
            raise UMTError(
                f"diagnose: a {split} batch has no 'label' (its keys: {sorted(map(str, batch))});"
                " dict samples need {modality: tensor, ..., 'label': int}"
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


def to(x: Any, device: torch.device) -> Any:
    if isinstance(x, torch.Tensor):
        return x.to(device)
    if isinstance(x, Mapping):
        return {k: to(v, device) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return type(x)(to(v, device) for v in x)
    return x


def labels(d: Mapping[str, Any], split: str, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """The batch's labels as class indices on the CPU: ``(B,)``, or label maps ``(B, H, W)``
    with unlabelled pixels ``IGNORE_INDEX``.

    Example:
        >>> labels({"label": torch.tensor([[0.0, 1.0], [1.0, 0.0]])}, "train").tolist()  # one-hot
        [1, 0]
        >>> labels({"label": torch.tensor([2.0, 3.0])}, "train").tolist()
        [2, 3]
    """
    y = torch.as_tensor(d["label"]).cpu()
    if y.ndim == 0:
        y = y.view(1)
    if y.ndim == 2:  # (B, K): one-hot rows, read as their index; anything else is refused
        binary = bool(((y == 0) | (y == 1)).all())
        if not (binary and bool((y.sum(1) == 1).all())):
            kind = "probabilities (soft labels)" if y.is_floating_point() else "rows"
            raise UMTError(
                f"diagnose: the {split} labels have shape {tuple(y.shape)}: {kind}, not one-hot; "
                "give class indices (B,), one-hot rows, or label maps (B, H, W)"
            )
        return y.argmax(1)
    if y.ndim not in (1, 3):
        raise UMTError(
            f"diagnose: the {split} labels have shape {tuple(y.shape)}; expected class indices "
            "(B,), one-hot rows (B, K) or label maps (B, H, W)"
        )
    if y.is_floating_point():
        if not bool((y == y.round()).all()):
            bad = float(y[y != y.round()].flatten()[0])
            raise UMTError(
                f"diagnose: a {split} label is {bad}: labels are class indices (whole numbers "
                "0..K-1), not regression targets"
            )
    y = y.long()
    if y.ndim == 3 and ignore_index != IGNORE_INDEX:
        y = torch.where(y == ignore_index, torch.full_like(y, IGNORE_INDEX), y)
    return y


def check_modalities(d: Mapping[str, Any], split: str, needed: Iterable[str]) -> None:
    missing = [m for m in needed if m not in d]
    if missing:
        raise UMTError(
            f"diagnose: a {split} batch has no modality {missing} (its keys: "
            f"{sorted(map(str, d))}); each modality of `encoders` must be a key of the samples "
            "(or pass inputs={modality: callable(batch) -> tensor})"
        )


def input_fn(m: str, inputs: InputFns) -> Callable[[dict[str, Any]], torch.Tensor]:
    return inputs[m] if m in inputs else (lambda d: d[m])


class Modes:
    """Every submodule's train/eval flag, restored on exit (not ``train(was)`` of the root,
    which would unfreeze submodules the user keeps in eval mode)."""

    def __init__(self, *modules: nn.Module) -> None:
        self.modes = [(m, m.training) for mod in modules for m in mod.modules()]

    def __enter__(self) -> Modes:
        return self

    def __exit__(self, *exc: object) -> None:
        for m, training in self.modes:
            m.training = training


def device_of(model: nn.Module, device: str | torch.device | None, what: str) -> torch.device:
    """``device`` where given; else the one device all of ``model``'s tensors are on."""
    if device is not None:
        return torch.device(device)
    found = {t.device for t in [*model.parameters(), *model.buffers()]}
    if len(found) > 1:
        raise UMTError(
            f"diagnose: {what} has tensors on {sorted(map(str, found))}; pass device= to say "
            "where to run (the model is moved there for the diagnosis and back after)"
        )
    return found.pop() if found else torch.device("cpu")


@contextlib.contextmanager
def on_device(modules: Sequence[nn.Module], device: torch.device) -> Iterator[None]:
    """The modules on ``device`` for the block, each back where it was after."""
    homes = []
    for m in modules:
        tensors = [*m.parameters(), *m.buffers()]
        homes.append(tensors[0].device if tensors else None)
        m.to(device)
    try:
        yield
    finally:
        for m, home in zip(modules, homes, strict=True):
            if home is not None:
                m.to(home)


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    """Mixed precision for the block (``precision``: ``32``, ``16-mixed``, ``bf16-mixed``)."""
    if precision not in PRECISIONS:
        raise UMTError(f"diagnose: precision={precision!r}; expected one of {list(PRECISIONS)}")
    dtype = PRECISIONS[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
