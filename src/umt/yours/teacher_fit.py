"""Uni-modal teachers trained for ``diagnose``: a re-initialised copy of the user's encoder
plus a linear head (a 1x1 convolution for segmentation maps), trained on its modality alone with
Adam; the epoch with the best validation score is kept, as the study trains its teachers."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassJaccardIndex

from umt.data.segmentation import IGNORE_INDEX
from umt.errors import UMTError
from umt.yours.batches import InputFns, as_dict, autocast, check_modalities, input_fn, labels, to
from umt.yours.diagnosis import DiagnoseConfig
from umt.yours.hooks import infer_layout, pool
from umt.yours.teachers import Teacher

Log = Callable[[str], None]


def reinitialised(
    encoder: nn.Module, init: Callable[[nn.Module], None] | None, name: str
) -> nn.Module:
    """A deep copy of ``encoder`` with fresh weights: ``init(copy)`` where given, else every
    layer's ``reset_parameters()``; a parameter no layer resets (a bare ``nn.Parameter``, e.g. a
    positional embedding) would keep the joint model's trained values: an error naming it."""
    enc = copy.deepcopy(encoder)
    for module in enc.modules():  # the copy must not feed hooks a user has on the encoder
        for hooks in (module._forward_hooks, module._forward_pre_hooks):
            for key in [k for k, fn in hooks.items() if fn.__module__ == "umt.yours.hooks"]:
                del hooks[key]
    if init is not None:
        init(enc)
        return enc
    missed = []
    for mod_name, module in enc.named_modules():
        reset = getattr(module, "reset_parameters", None) or getattr(
            module, "_reset_parameters", None
        )
        if callable(reset):
            reset()
        else:
            missed += [
                f"{mod_name}.{p}".lstrip(".") for p, _ in module.named_parameters(recurse=False)
            ]
    if missed:
        raise UMTError(
            f"diagnose: the teacher of encoder {name!r} would keep the joint model's values of "
            f"{missed}: no reset_parameters() re-initialises them. Pass teacher_init="
            "callable(module) that re-initialises the copy (e.g. nn.init.trunc_normal_ on "
            "them), or your own teachers={...}"
        )
    return enc


def train_teacher(
    encoder: nn.Module,
    modality: str,
    train: Iterable[Any],
    val: Iterable[Any],
    num_classes: int,
    cfg: DiagnoseConfig,
    *,
    device: torch.device,
    precision: str = "32",
    seed: int = 0,
    modalities: Sequence[str] | None = None,
    inputs: InputFns | None = None,
    name: str = "",
    init: Callable[[nn.Module], None] | None = None,
    ignore_index: int = IGNORE_INDEX,
    log: Log = lambda _: None,
) -> tuple[Teacher, float]:
    """A uni-modal teacher from ``encoder`` (see the module docstring); label maps ``(B, H, W)``
    make it a segmentation teacher, scored by mean IoU.

    Returns:
        The teacher (its encoder frozen, eval mode) and its best validation score.
    """
    torch.manual_seed(seed)
    enc = reinitialised(encoder, init, name).to(device)
    enc.requires_grad_(True).eval()
    take = input_fn(modality, inputs or {})

    def batch_xy(batch: Any, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        d, _ = as_dict(batch, split, modalities)
        if modality not in (inputs or {}):
            check_modalities(d, split, [modality])
        return to(take(d), device), labels(d, split, ignore_index).to(device)

    x0, y0 = batch_xy(next(iter(train)), "train")
    dense = y0.ndim == 3
    try:
        with torch.no_grad():
            out = enc(x0)
        layout = infer_layout(enc, out, what=f"the teacher of {modality!r}")
    except UMTError:
        raise
    except Exception as e:
        raise UMTError(
            f"diagnose: the teacher of {modality!r} (a copy of submodule {name!r}) failed on the "
            f"batch's {modality!r} input of shape {tuple(x0.shape)}: {e}. If the submodule "
            f"takes something else, pass inputs={{{modality!r}: lambda batch: ...}}"
        ) from e
    if dense and (layout != "channels" or out.ndim != 4):
        raise UMTError(
            f"diagnose: segmentation labels, but encoder {name!r} gives {tuple(out.shape)}; "
            "name a submodule whose output is a feature map (B, C, h, w)"
        )
    dim = out.shape[1] if dense else pool(out, layout).shape[1]
    head: nn.Module = (nn.Conv2d(dim, num_classes, 1) if dense else nn.Linear(dim, num_classes)).to(
        device
    )

    def logits(x: torch.Tensor, size: torch.Size) -> torch.Tensor:
        f = enc(x)
        if not dense:
            return head(pool(f, layout))
        return F.interpolate(head(f), size=size[-2:], mode="bilinear", align_corners=False)

    opt = torch.optim.Adam([*enc.parameters(), *head.parameters()], lr=cfg.lr)
    scaler = torch.amp.GradScaler(device.type, enabled=precision in ("16", "16-mixed"))
    best: tuple[float, dict[str, Any]] | None = None
    start = time.perf_counter()
    for epoch in range(cfg.epochs):
        enc.train()
        for batch in train:
            x, y = batch_xy(batch, "train")
            if len(y) < 2:  # BatchNorm cannot train on one sample
                continue
            with autocast(device, precision):
                loss = F.cross_entropy(logits(x, y.shape).float(), y, ignore_index=IGNORE_INDEX)
            opt.zero_grad()
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        enc.eval()
        score = _score(logits, val, batch_xy, num_classes, dense, device, precision)
        if best is None or score > best[0]:
            best = (score, copy.deepcopy(enc.state_dict()))
        if (epoch + 1) % max(1, cfg.epochs // 4) and epoch + 1 < cfg.epochs:
            continue  # progress about four times per teacher
        log(
            f"diagnose: teacher {modality!r} epoch {epoch + 1}/{cfg.epochs}: val "
            f"{'mIoU' if dense else 'accuracy'} {100 * score:.2f}% (best {100 * best[0]:.2f}%), "
            f"{time.perf_counter() - start:.1f} s so far"
        )
    assert best is not None  # cfg.epochs >= 1
    enc.load_state_dict(best[1])
    enc.eval().requires_grad_(False)
    return Teacher(enc, layout=layout), best[0]


@torch.no_grad()
def _score(
    logits: Callable[[torch.Tensor, torch.Size], torch.Tensor],
    val: Iterable[Any],
    batch_xy: Callable[[Any, str], tuple[torch.Tensor, torch.Tensor]],
    num_classes: int,
    dense: bool,
    device: torch.device,
    precision: str,
) -> float:
    """Validation accuracy, or mean IoU for label maps."""
    miou = MulticlassJaccardIndex(num_classes, ignore_index=IGNORE_INDEX, sync_on_compute=False)
    correct = total = 0
    for batch in val:
        x, y = batch_xy(batch, "val")
        with autocast(device, precision):
            pred = logits(x, y.shape).argmax(1)
        if dense:
            miou.update(pred.cpu(), y.cpu())
        else:
            correct += int((pred == y).sum())
            total += len(y)
    return float(miou.compute()) if dense else correct / max(1, total)
