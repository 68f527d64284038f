"""Features of an unmodified model, taken by forward hooks on its named submodules.

The user's model runs its own ``forward``; a hook on each named encoder keeps that submodule's
output as the modality's feature (torchdistill's way of reading intermediate features). Each
feature has a **layout**: ``vector`` ``(B, D)``, ``tokens`` ``(B, N, C)`` or ``channels``
``(B, C, *positions)`` (a ``Conv1d``'s ``(B, C, L)``, a map ``(B, C, H, W)``). A 3-dimensional
output is ambiguous; its layout is read off the encoder's last layer of a known kind whose width
matches (``Conv1d``/``BatchNorm1d``: channels; ``Linear``/``LayerNorm``: tokens), and where
nothing tells, it is an error naming ``layouts={modality: ...}``. :func:`pool` averages tokens and
positions into the vectors that probes use; dense distillation keeps them.

Each captured feature is tied to the forward pass that produced it (:meth:`Captured.select`):
``UMTLoss`` takes the features of the pass that received its batch, never a stale one (an
encoder skipped on a step, modality dropout, gives no feature for that step), and never one
computed under ``no_grad`` while gradients are wanted.
"""

from __future__ import annotations

import difflib
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from umt.errors import UMTError

LAYOUTS = ("vector", "tokens", "channels")


def default_layout(x: torch.Tensor) -> str:
    """The layout a bare tensor is read in: 2-d vectors, 3-d tokens, 4-d and up channels."""
    return "vector" if x.ndim == 2 else "tokens" if x.ndim == 3 else "channels"


def pool(x: torch.Tensor, layout: str | None = None) -> torch.Tensor:
    """A feature vector per sample ``(B, D)``: vectors as they are, tokens ``(B, N, C)``
    averaged over ``N``, channels ``(B, C, *positions)`` averaged over the positions.

    Example:
        >>> tuple(pool(torch.zeros(2, 5)).shape), tuple(pool(torch.zeros(2, 7, 5)).shape)
        ((2, 5), (2, 5))
        >>> pool(torch.arange(8.0).view(1, 2, 2, 2)).tolist()
        [[1.5, 5.5]]
        >>> tuple(pool(torch.zeros(2, 16, 50), "channels").shape)   # a Conv1d's (B, C, L)
        (2, 16)
    """
    if x.ndim < 2:
        raise UMTError(
            f"a feature of shape {tuple(x.shape)} has no batch of vectors; expected (B, D), "
            "(B, N, C) or (B, C, H, W)"
        )
    layout = layout or default_layout(x)
    if layout not in LAYOUTS:
        raise UMTError(f"unknown feature layout {layout!r}; expected one of {LAYOUTS}")
    if x.ndim == 2 or layout == "vector":
        return x.flatten(1)
    if layout == "tokens":
        return x.mean(1)  # (B, N, C) -> (B, C)
    return x.flatten(2).mean(2)  # (B, C, *positions) -> (B, C)


def channels_last(x: torch.Tensor, layout: str) -> torch.Tensor:
    """The feature with its channels last, ``(B, *positions, C)``: how dense distillation and
    its projectors (a linear map of the channels: a 1x1 convolution) read every layout."""
    return x.movedim(1, -1) if layout == "channels" and x.ndim > 2 else x


_CHANNEL_WIDTH = {
    nn.modules.conv._ConvNd: "out_channels",
    nn.modules.batchnorm._NormBase: "num_features",
}
_TOKEN_WIDTH = {nn.Linear: "out_features", nn.Embedding: "embedding_dim"}


def infer_layout(module: nn.Module, output: torch.Tensor, *, what: str = "a feature") -> str:
    """The layout of ``module``'s ``output``; 3-d outputs by the module's last layer whose width
    matches (see the module docstring). A miss is an error naming ``layouts=``."""
    if output.ndim != 3:
        return default_layout(output)
    leaves = [m for m in module.modules() if not list(m.children())]
    for leaf in reversed(leaves):
        for kinds, layout, axis in ((_CHANNEL_WIDTH, "channels", 1), (_TOKEN_WIDTH, "tokens", 2)):
            for kind, attr in kinds.items():
                if isinstance(leaf, kind) and getattr(leaf, attr) == output.shape[axis]:
                    return layout
        if isinstance(leaf, nn.LayerNorm) and leaf.normalized_shape[-1] == output.shape[2]:
            return "tokens"
    raise UMTError(
        f"{what}: the output of shape {tuple(output.shape)} could be (B, C, L) channels or "
        "(B, N, C) tokens, and the module's layers do not tell; pass layouts={modality: "
        "'channels'} (a Conv1d-like output) or {modality: 'tokens'} (a transformer's)"
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


def common_parent(names: list[str]) -> str:
    """The dotted name of the closest module that holds all ``names`` ("" for the root).

    Example:
        >>> common_parent(["model.aud", "model.vis"]), common_parent(["aud", "vis"])
        ('model', '')
    """
    parts = [n.split(".")[:-1] for n in names]
    common: list[str] = []
    for level in zip(*parts, strict=False):
        if len(set(level)) > 1:
            break
        common.append(level[0])
    return ".".join(common)


def tensors_in(x: Any) -> Iterator[torch.Tensor]:
    """Every tensor in nested dicts, lists and tuples."""
    if isinstance(x, torch.Tensor):
        yield x
    elif isinstance(x, Mapping):
        for v in x.values():
            yield from tensors_in(v)
    elif isinstance(x, list | tuple):
        for v in x:
            yield from tensors_in(v)


@dataclass(eq=False)
class _Pass:
    """One forward pass: its grad mode, the tensors it received, the features it produced."""

    grad: bool
    inputs: list[weakref.ref[torch.Tensor]] = field(default_factory=list)
    features: dict[str, torch.Tensor] = field(default_factory=dict)
    used: bool = False

    def receive(self, x: Any) -> None:
        self.inputs += [weakref.ref(t) for t in tensors_in(x)]

    def received(self, t: torch.Tensor) -> bool:
        return any(r() is t for r in self.inputs)


class Captured(dict[str, torch.Tensor]):
    """The features of the last forward pass ``{modality: output}``, filled by the hooks, with
    ``layouts`` and the recent passes that :meth:`select` chooses from."""

    def __init__(self, names: Mapping[str, str], layouts: Mapping[str, str] | None = None) -> None:
        super().__init__()
        self.names = dict(names)
        self.calls: dict[str, int] = {m: 0 for m in names}
        self.layouts: dict[str, str] = dict(layouts or {})
        self._passes: list[_Pass] = []
        self._open: _Pass | None = None

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

    def discard(self) -> None:
        """Forget the passes so far (e.g. after forwards that no loss will read)."""
        for p in self._passes:
            p.used, p.features = True, {}

    def pooled(self, modality: str) -> torch.Tensor:
        """The modality's last feature as vectors ``(B, D)``."""
        return pool(self[modality], self.layouts.get(modality))

    # --- passes -----------------------------------------------------------------------

    def _push(self, p: _Pass) -> None:
        for old in self._passes[:-2]:  # keep the three latest passes, and no graph of older
            old.features = {}
        self._passes = [*self._passes[-2:], p]

    def begin(self, inputs: Any) -> None:
        """The root module's forward starts (a forward pre-hook)."""
        self._open = _Pass(torch.is_grad_enabled())
        self._open.receive(inputs)
        self._push(self._open)

    def end(self) -> None:
        self._open = None

    def add(self, m: str, feature: torch.Tensor, inputs: Any) -> None:
        """An encoder's output in the current pass (an encoder run outside the root's forward
        starts a pass of its own unless it joins the latest one)."""
        p = self._open
        if p is None:
            last = self._passes[-1] if self._passes else None
            grad = torch.is_grad_enabled()
            if last is None or last.used or m in last.features or last.grad != grad:
                last = _Pass(grad)
                self._push(last)
            p = last
        p.receive(inputs)
        p.features[m] = feature
        self[m] = feature
        self.calls[m] += 1

    def select(
        self, inputs: Mapping[str, Any] | None = None, *, who: str = "UMTLoss"
    ) -> dict[str, torch.Tensor]:
        """The features of the forward pass that received ``inputs`` (by tensor identity),
        else of the only pass since the last selection; each pass is selected once. A modality
        whose encoder did not run in that pass is absent (modality dropout).

        Raises:
            UMTError: no pass since the last selection; several, none of which received
                ``inputs``; or features computed under ``no_grad`` while gradients are on.
        """
        fresh = [p for p in self._passes if not p.used]
        if not fresh:
            raise UMTError(
                f"{who}: no forward pass of the model ran since the last call (the hooked "
                f"encoders {list(self.names)}); call the model on the batch first, then the "
                "loss, once per step"
            )
        given = list(tensors_in(dict(inputs or {})))
        matched = [p for p in fresh if any(p.received(t) for t in given)]
        same_mode = [p for p in matched if p.grad == torch.is_grad_enabled()]
        chosen = (same_mode or matched or fresh)[-1]  # the same batch re-run under no_grad: not it
        if not matched and len(fresh) > 1:
            raise UMTError(
                f"{who}: {len(fresh)} forward passes ran since the last call and none received "
                "these inputs' tensors, so which features belong to them is unknown; call the "
                "loss right after model(batch), before any other forward (an evaluation under "
                "no_grad, a second view), or pass the same batch object to both"
            )
        if torch.is_grad_enabled() and not chosen.grad:
            raise UMTError(
                f"{who}: the hooked features were computed under torch.no_grad() (or in "
                "inference mode), so the distillation would train nothing; run the model's "
                "training forward with gradients, and the loss right after it"
            )
        for p in fresh:
            p.used = True  # this pass and any older unselected one: never read again
        out = chosen.features
        chosen.features = {}
        return out


class FeatureHooks:
    """Forward hooks on the named submodules of ``model``, attached until :meth:`remove`.

    ``features`` (a :class:`Captured` dict) holds each submodule's output of the last forward
    pass, with its autograd graph, so it can be distilled. A hook on the encoders' closest
    common ancestor (the root) records which tensors each forward pass received, so that a
    loss can take the features of the pass that received its batch. Used as a context manager
    (see :func:`capture_features`) the hooks are removed on exit.
    """

    def __init__(
        self,
        model: nn.Module,
        encoders: Mapping[str, str],
        *,
        layouts: Mapping[str, str] | None = None,
    ) -> None:
        seen: dict[str, str] = {}
        for m, name in encoders.items():
            if name in seen:
                raise UMTError(
                    f"encoders: modalities {seen[name]!r} and {m!r} both name the submodule "
                    f"{name!r}; each modality needs its own encoder"
                )
            seen[name] = m
        bad = {m: v for m, v in (layouts or {}).items() if v not in LAYOUTS or m not in encoders}
        if bad:
            raise UMTError(
                f"layouts: {bad}; name modalities of encoders {list(encoders)}, each with one "
                f"of {LAYOUTS}"
            )
        modules = {
            m: submodule(model, name, what=f"encoders[{m!r}]") for m, name in encoders.items()
        }
        self.features = Captured(encoders, layouts)
        self.modules = modules
        self.handles = [mod.register_forward_hook(self._hook(m)) for m, mod in modules.items()]
        parent = common_parent(list(encoders.values()))
        root = submodule(model, parent) if parent else model
        self.handles += [
            root.register_forward_pre_hook(self._begin, with_kwargs=True),
            root.register_forward_hook(self._end, always_call=True),
        ]

    def _begin(self, module: nn.Module, args: Any, kwargs: Any) -> None:
        self.features.begin((args, kwargs))

    def _end(self, module: nn.Module, args: Any, output: Any) -> None:
        self.features.end()

    def _hook(self, m: str) -> Callable[[nn.Module, Any, Any], None]:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            if not isinstance(output, torch.Tensor):
                raise UMTError(
                    f"encoders[{m!r}]: the submodule {self.features.names[m]!r} returns a "
                    f"{type(output).__name__}, not a tensor; name a submodule whose output is "
                    "the feature tensor"
                )
            if m not in self.features.layouts:
                what = f"encoders[{m!r}] ({self.features.names[m]!r})"
                self.features.layouts[m] = infer_layout(module, output, what=what)
            self.features.add(m, output, args)

        return hook

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []

    def __enter__(self) -> Captured:
        return self.features

    def __exit__(self, *exc: object) -> None:
        self.remove()


def capture_features(
    model: nn.Module, encoders: Mapping[str, str], *, layouts: Mapping[str, str] | None = None
) -> FeatureHooks:
    """Hooks on the named submodules for the duration of a ``with`` block; the dict it yields
    holds each one's output of the last forward pass (with its autograd graph, so it can be
    distilled; ``.pooled(m)`` gives vectors). The hooks are removed on exit.

    Args:
        model: any ``nn.Module``, unmodified.
        encoders: ``{modality: dotted submodule name}``.
        layouts: ``{modality: "vector" | "tokens" | "channels"}`` where the output's layout
            cannot be read off the encoder (see the module docstring).

    Example:
        >>> net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
        >>> with capture_features(net, {"a": "1"}) as feats:
        ...     logits = net(torch.zeros(5, 3))
        >>> tuple(feats["a"].shape), len(net[1]._forward_hooks)
        ((5, 4), 0)
    """
    return FeatureHooks(model, encoders, layouts=layouts)
