"""Random resized crops of whole batches (torchvision's sampling rule and bilinear resize,
batched): the boxes drawn on the CPU, the crops cut and resized on the batch's device."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def random_boxes(n: int, h: int, w: int, scale: tuple[float, float]) -> torch.Tensor:
    """``n`` random resized crop boxes ``(y0, x0, height, width)`` in an ``h x w`` frame, int64
    ``(n, 4)``, drawn from the global torch generator (torchvision's sampling rule, batched).

    Each box takes the first of 10 attempts (area a share ``scale`` of the frame, aspect ratio
    log-uniform in 3/4..4/3) that fits in the frame; the centre square if none does.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> box = random_boxes(1000, 30, 40, (0.25, 0.5))
        >>> bool(((box[:, 2] * box[:, 3]) / (30 * 40)).sub(0.375).abs().le(0.2).all())
        True
        >>> bool((box[:, 0] + box[:, 2] <= 30).all() and (box[:, 1] + box[:, 3] <= 40).all())
        True
    """
    lo, hi = scale
    area = h * w * torch.empty(n, 10).uniform_(lo, hi)  # (n, attempts)
    ratio = torch.empty(n, 10).uniform_(math.log(3 / 4), math.log(4 / 3)).exp_()
    cw, ch = (area * ratio).sqrt_().round_(), (area / ratio).sqrt_().round_()
    fits = (cw >= 1) & (cw <= w) & (ch >= 1) & (ch <= h)
    first = fits.to(torch.uint8).argmax(1, keepdim=True)  # the first attempt that fits
    side = min(h, w)  # none fits: the centre square
    ok = fits.any(1)
    ch = torch.where(ok, ch.gather(1, first)[:, 0], float(side)).long()
    cw = torch.where(ok, cw.gather(1, first)[:, 0], float(side)).long()
    y0 = (torch.rand(n) * (h - ch + 1)).long().clamp_(max=h - ch)  # uniform in 0..h-ch
    x0 = (torch.rand(n) * (w - cw + 1)).long().clamp_(max=w - cw)
    y0 = torch.where(ok, y0, (h - side) // 2)
    x0 = torch.where(ok, x0, (w - side) // 2)
    return torch.stack([y0, x0, ch, cw], 1)


def _taps(
    start: torch.Tensor, length: torch.Tensor, size: int, k: int, limit: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Antialiased bilinear resampling of the intervals ``[start, start + length)`` of one axis
    (``(B,)`` each) to ``size`` samples, as ``F.interpolate(..., antialias=True)`` computes it
    (PIL's rule): output ``j`` centres a triangle filter of half-width ``max(scale, 1)`` input
    pixels at ``(j + 0.5) * scale``, ``scale = length / size``, weights renormalised over the taps
    inside the interval. Returns the ``k`` taps' input positions and weights, ``(B, size, k)``."""
    dev = start.device
    scale = length.to(torch.float32) / size  # (B,) input pixels per output pixel
    support = scale.clamp(min=1.0)[:, None, None]  # (B, 1, 1)
    centre = (torch.arange(size, device=dev) + 0.5) * scale[:, None]  # (B, S), in the interval
    first = torch.floor(centre[..., None] - support + 0.5)  # (B, S, 1): first tap in reach
    taps = first + torch.arange(k, device=dev)  # (B, S, k)
    weight = (1 - (taps + 0.5 - centre[..., None]).abs() / support).clamp_(min=0)
    weight = weight * ((taps >= 0) & (taps < length[:, None, None]))
    weight = weight / weight.sum(-1, keepdim=True)
    index = (taps.long() + start[:, None, None]).clamp_(0, limit - 1)
    return index, weight


def resized_crops(
    x: torch.Tensor,
    box: torch.Tensor,
    flip: torch.Tensor,
    size: int,
    *,
    batched: bool | None = None,
) -> torch.Tensor:
    """Each clip's box cut out and resized to ``size x size`` (antialiased bilinear, as
    ``F.interpolate(crop, size, mode="bilinear", antialias=True)`` of each clip), flipped
    horizontally where ``flip``, on ``x``'s device.

    Two ways to the same numbers: ``batched`` (the default off the CPU) resamples the whole
    batch with a few gathers; on the CPU each clip is resized by ``F.interpolate``, which has a
    fast uint8 path there (results rounded to integers, as today's CPU training augmentation).

    Args:
        x: clips ``(B, T, 3, H, W)``, uint8 as stored (or float).
        box: ``(B, 4)`` int64 ``(y0, x0, height, width)``, shared by a clip's frames.
        flip: ``(B,)`` bool.
        size: output side.
        batched: the batched way; ``None``: when ``x`` is not on the CPU.

    Returns:
        ``(B, T, 3, size, size)`` on the scale of ``x`` (0..255 for uint8): float32 when
        batched, else ``x``'s dtype.

    Example:
        >>> x = torch.arange(16, dtype=torch.uint8).view(1, 1, 1, 4, 4).expand(1, 1, 3, 4, 4)
        >>> box, flip = torch.tensor([[1, 0, 2, 2]]), torch.tensor([True])
        >>> resized_crops(x, box, flip, 2, batched=True)[0, 0, 0].tolist()
        [[5.0, 4.0], [9.0, 8.0]]
        >>> resized_crops(x, box, flip, 2)[0, 0, 0].tolist()
        [[5, 4], [9, 8]]
    """
    b, t, c, h, w = x.shape
    if not (x.device.type != "cpu" if batched is None else batched):
        out = torch.empty(b, t, c, size, size, dtype=x.dtype)
        for i, ((y0, x0, ch, cw), f) in enumerate(zip(box.tolist(), flip.tolist(), strict=True)):
            clip = x[i, :, :, y0 : y0 + ch, x0 : x0 + cw]  # (T, 3, ch, cw)
            if (ch, cw) != (size, size):
                clip = F.interpolate(clip, size=(size, size), mode="bilinear", antialias=True)
            out[i] = clip.flip(-1) if f else clip
        return out
    k = 2 * math.ceil(max(h, w) / size) + 1  # taps enough for boxes up to the whole frame
    iy, wy = _taps(box[:, 0], box[:, 2], size, k, h)  # (B, S, k)
    ix, wx = _taps(box[:, 1], box[:, 3], size, k, w)
    fl = flip.to(torch.bool)[:, None, None]
    ix, wx = torch.where(fl, ix.flip(1), ix), torch.where(fl, wx.flip(1), wx)  # read backwards
    x = x.reshape(b, t * c, h, w)
    rows = torch.zeros(b, t * c, size, w, device=x.device)  # (B, C, S, W): the rows resampled
    for j in range(k):
        index = iy[:, None, :, j, None].expand(b, t * c, size, w)
        rows.addcmul_(x.gather(2, index), wy[:, None, :, j, None])
    out = torch.zeros(b, t * c, size, size, device=x.device)  # then the columns
    for j in range(k):
        index = ix[:, None, None, :, j].expand(b, t * c, size, size)
        out.addcmul_(rows.gather(3, index), wx[:, None, None, :, j])
    return out.view(b, t, c, size, size)
