"""Features of an unmodified model, taken by forward hooks on its named submodules.

The user's model runs its own ``forward``; a hook on each named encoder keeps that submodule's
output as the modality's feature (torchdistill's way of reading intermediate features). Spatial
maps ``(B, C, H, W)`` (and ``(B, C, T, H, W)``) are averaged over positions, token sequences
``(B, T, D)`` over tokens, so every feature is a vector ``(B, D)``: what probes and distillation
use. Name a submodule after the pooling when the layout is another one (a ``Conv1d`` output
``(B, C, L)`` would be read as tokens).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from umt.errors import UMTError


def pool(x: torch.Tensor) -> torch.Tensor:
    """A feature vector per sample: ``(B, D)`` as is, tokens ``(B, T, D)`` averaged over ``T``,
    maps ``(B, C, *spatial)`` averaged over the positions.

    Example:
        >>> tuple(pool(torch.zeros(2, 5)).shape), tuple(pool(torch.zeros(2, 7, 5)).shape)
        ((2, 5), (2, 5))
        >>> pool(torch.arange(8.0).view(1, 2, 2, 2)).tolist()
        [[1.5, 5.5]]
    """
    if x.ndim == 2:
        return x
    if x.ndim == 3:
        return x.mean(1)  # (B, T, D) -> (B, D)
    if x.ndim >= 4:
        return x.flatten(2).mean(2)  # (B, C, H, W[, ...]) -> (B, C)
    raise UMTError(
        f"a feature of shape {tuple(x.shape)} has no batch of vectors; expected (B, D), "
        "(B, T, D) or (B, C, H, W)"
    )


def submodule(model: nn.Module, name: str, *, what: str = "encoders") -> nn.Module:
    """``model``'s submodule at the dotted ``name``; a miss names the closest existing names.

    Example:
        >>> net = nn.Sequential()
        >>> net.add_module("audio_net", nn.Linear(2, 2))
        >>> submodule(net, "audio_net").out_features
        2
        >>> try:
        ...     submodule(net, "audio_nte")
        ... except UMTError as e:
        ...     print(str(e)[:88])
        encoders: the model (Sequential) has no submodule 'audio_nte'; did you mean 'audio_net'?
    """
    named = dict(model.named_modules())
    if name in named and name != "":
        return named[name]
    names = [n for n in named if n]
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
    hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
    shown = ", ".join(repr(n) for n in names[:12]) + (", ..." if len(names) > 12 else "")
    raise UMTError(
        f"{what}: the model ({type(model).__name__}) has no submodule {name!r}; {hint}"
        f"its submodules are {shown} (dotted names, as in model.named_modules())"
    )


class Captured(dict[str, torch.Tensor]):
    """The features of one forward pass, ``{modality: (B, D)}``, filled by the hooks."""

    def __init__(self, names: Mapping[str, str]) -> None:
        super().__init__()
        self.names = dict(names)
        self.calls: dict[str, int] = {m: 0 for m in names}

    def check(self) -> None:
        """Raise if a hooked submodule did not run in the forward pass (or ran twice)."""
        for m, n in self.calls.items():
            if n == 0:
                raise UMTError(
                    f"encoders[{m!r}]: the submodule {self.names[m]!r} did not run in the "
                    "model's forward pass, so it gives no feature; name a submodule that "
                    "forward() calls"
                )
            if n > 1:
                raise UMTError(
                    f"encoders[{m!r}]: the submodule {self.names[m]!r} ran {n} times in one "
                    "forward pass; name a submodule that runs once (e.g. one branch, not a "
                    "module the branches share)"
                )

    def reset(self) -> None:
        self.clear()
        self.calls = {m: 0 for m in self.names}


class FeatureHooks:
    """Forward hooks on the named submodules of ``model``, attached until :meth:`remove`.

    ``features`` (a :class:`Captured` dict) holds each submodule's pooled output of the last
    forward pass, with its autograd graph, so it can be distilled. Used as a context manager
    (see :func:`capture_features`) the hooks are removed on exit.
    """

    def __init__(self, model: nn.Module, encoders: Mapping[str, str]) -> None:
        seen: dict[str, str] = {}
        for m, name in encoders.items():
            if name in seen:
                raise UMTError(
                    f"encoders: modalities {seen[name]!r} and {m!r} both name the submodule "
                    f"{name!r}; each modality needs its own encoder"
                )
            seen[name] = m
        modules = {
            m: submodule(model, name, what=f"encoders[{m!r}]") for m, name in encoders.items()
        }
        self.features = Captured(encoders)
        self.handles = [mod.register_forward_hook(self._hook(m)) for m, mod in modules.items()]

    def _hook(self, m: str) -> Callable[[nn.Module, Any, Any], None]:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            if not isinstance(output, torch.Tensor):
                raise UMTError(
                    f"encoders[{m!r}]: the submodule {self.features.names[m]!r} returns a "
                    f"{type(output).__name__}, not a tensor; name a submodule whose output is "
                    "the feature tensor"
                )
            self.features.calls[m] += 1
            self.features[m] = pool(output)

        return hook

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []

    def __enter__(self) -> Captured:
        return self.features

    def __exit__(self, *exc: object) -> None:
        self.remove()


def capture_features(model: nn.Module, encoders: Mapping[str, str]) -> FeatureHooks:
    """Hooks on the named submodules for the duration of a ``with`` block; the dict it yields
    holds each one's pooled output ``(B, D)`` of the last forward pass (with its autograd graph,
    so it can be distilled). The hooks are removed on exit.

    Args:
        model: any ``nn.Module``, unmodified.
        encoders: ``{modality: dotted submodule name}``.

    Example:
        >>> net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
        >>> with capture_features(net, {"a": "1"}) as feats:
        ...     logits = net(torch.zeros(5, 3))
        >>> tuple(feats["a"].shape), len(net[1]._forward_hooks)
        ((5, 4), 0)
    """
    return FeatureHooks(model, encoders)
