"""Teachers as the user has them: a module, and where its features are read.

A teacher maps its modality's input to features. Most users already have one, and it is a full
model: ``Teacher(model, layer="backbone")`` reads the named layer's output by a forward hook (as
for students), ``Teacher(model, features=fn)`` calls ``fn(model, x)``, and ``transform`` adapts the
input first (e.g. the normalisation the teacher was trained with). A module passed bare is taken
the way timm's models expose features: ``forward_head(forward_features(x), pre_logits=True)``
where it has them; a bare module that looks like a classifier (a final ``fc``/``head``/
``classifier`` Linear, or one giving ``num_classes`` outputs) is refused with an error naming the
fix: its logits are not the features UMT distils.

Teachers are saved as their inner module's ``state_dict`` with a SHA-256 fingerprint
(:func:`fingerprint`), and loaded into an architecture the user (or the diagnosed model) provides.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from umt.errors import UMTError
from umt.io import write_bytes
from umt.yours.hooks import LAYOUTS, FeatureHooks, infer_layout

#: names a classifier's final layer usually has (timm, torchvision, Hugging Face)
CLASSIFIER_NAMES = ("fc", "head", "classifier", "logits", "last_linear", "cls_head")
FeatureFn = Callable[[nn.Module, torch.Tensor], torch.Tensor]


def timm_pre_logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """timm's pre-logit features: ``forward_head(forward_features(x), pre_logits=True)``."""
    return model.forward_head(model.forward_features(x), pre_logits=True)  # type: ignore[operator]


class Teacher(nn.Module):
    """A frozen teacher: ``module`` and where its features are read.

    Args:
        module: the user's model (any ``nn.Module``).
        layer: a dotted submodule name whose output is the feature (read by a hook while
            ``module`` runs its own ``forward``).
        features: ``callable(module, x) -> features``, or the name of a method of ``module``
            (``"forward_features"``); instead of ``layer``.
        transform: ``callable(x) -> x``: the input as the teacher expects it (normalisation).
        layout: ``vector``, ``tokens`` or ``channels``; by default read off the module.
        source: where it came from (a path), recorded in checkpoints beside its fingerprint.

    Example:
        >>> net = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> t = Teacher(net, layer="1", transform=lambda x: 2 * x)
        >>> tuple(t(torch.ones(5, 3)).shape), t.layout
        ((5, 8), 'vector')
    """

    def __init__(
        self,
        module: nn.Module,
        *,
        layer: str | None = None,
        features: FeatureFn | str | None = None,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        layout: str | None = None,
        source: str | None = None,
    ) -> None:
        super().__init__()
        if layer is not None and features is not None:
            raise UMTError("Teacher: give layer= or features=, not both")
        if layout is not None and layout not in LAYOUTS:
            raise UMTError(f"Teacher: layout={layout!r}; expected one of {LAYOUTS}")
        if isinstance(features, str) and not callable(getattr(module, features, None)):
            raise UMTError(f"Teacher: {type(module).__name__} has no method {features!r}")
        self.module = module
        self.layer = layer
        self.features = features
        self.transform = transform
        self.layout = layout
        self.source = source
        self._hooks = (
            FeatureHooks(module, {"f": layer}, layouts={"f": layout} if layout else None)
            if layer is not None
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.transform is not None:
            x = self.transform(x)
        if self._hooks is not None:
            captured = self._hooks.features
            captured.reset()
            self.module(x)
            if "f" not in captured:
                raise UMTError(
                    f"Teacher: the layer {self.layer!r} did not run in "
                    f"{type(self.module).__name__}'s forward; name a layer that forward() calls"
                )
            out = captured["f"]
            self.layout = self.layout or captured.layouts["f"]
        else:
            if isinstance(self.features, str):
                out = getattr(self.module, self.features)(x)
            elif self.features is not None:
                out = self.features(self.module, x)
            else:
                out = self.module(x)
            if not isinstance(out, torch.Tensor):
                raise UMTError(
                    f"Teacher: {type(self.module).__name__} gives a {type(out).__name__}, not a "
                    "tensor; pass layer= or features= to say which tensor is the feature"
                )
            self.layout = self.layout or infer_layout(self.module, out, what="a teacher")
        return out

    @property
    def feature_dim(self) -> int | None:
        """The module's ``feature_dim``/``num_features`` where it declares one (timm)."""
        if self.layer is not None:
            return None
        for attr in ("feature_dim", "num_features"):
            dim = getattr(self.module, attr, None)
            if isinstance(dim, int):
                return dim
        return None


def _last_linear(module: nn.Module) -> tuple[str, nn.Linear] | None:
    leaves = [(n, m) for n, m in module.named_modules() if not list(m.children())]
    if leaves and isinstance(leaves[-1][1], nn.Linear):
        return leaves[-1][0], leaves[-1][1]
    return None


def as_teacher(module: nn.Module, modality: str, *, num_classes: int | None = None) -> Teacher:
    """``module`` as a :class:`Teacher`: as it is if it already is one; timm's pre-logit
    features where it has ``forward_features``; refused where it looks like a classifier."""
    if isinstance(module, Teacher):
        return module
    if not isinstance(module, nn.Module):
        raise UMTError(
            f"teachers[{modality!r}] is a {type(module).__name__}; expected an nn.Module (or "
            "umt.yours.Teacher(module, layer=...))"
        )
    if callable(getattr(module, "forward_features", None)):
        has_head = callable(getattr(module, "forward_head", None))
        return Teacher(module, features=timm_pre_logits if has_head else "forward_features")
    last = _last_linear(module)
    classifier = callable(getattr(module, "get_classifier", None))
    if last is not None:
        name, linear = last
        classifier |= name.split(".")[-1] in CLASSIFIER_NAMES
        classifier |= num_classes is not None and linear.out_features == num_classes
    if classifier:
        before = None  # the layer registered just before the classifier, beside it
        if last is not None:
            parent, _, leaf = last[0].rpartition(".")
            siblings = [
                n for n, _ in (module.get_submodule(parent) if parent else module).named_children()
            ]
            i = siblings.index(leaf)
            before = f"{parent}.{siblings[i - 1]}".lstrip(".") if i > 0 else None
        layer = f"layer={before!r}" if before else "layer='<its pre-logit layer>'"
        outs = f"gives {last[1].out_features} outputs" if last else "has a classifier"
        raise UMTError(
            f"teachers[{modality!r}]: {type(module).__name__} looks like a full classifier "
            f"(its last layer {last[0] if last else ''!r} {outs}); its logits are not features "
            f"to distil. Name its feature layer: umt.yours.Teacher(model, {layer}), or "
            "features=lambda model, x: ...; if its output is the feature you mean, pass "
            "umt.yours.Teacher(model)"
        )
    return Teacher(module)


def as_teachers(
    teachers: Mapping[str, nn.Module], *, num_classes: int | None = None
) -> dict[str, Teacher]:
    return {m: as_teacher(t, m, num_classes=num_classes) for m, t in teachers.items()}


def fingerprint(module: nn.Module) -> str:
    """SHA-256 of a module's ``state_dict`` (names, dtypes, shapes and values), hex.

    Example:
        >>> a, b = nn.Linear(2, 2), nn.Linear(2, 2)
        >>> fingerprint(a) == fingerprint(a), fingerprint(a) == fingerprint(b)
        (True, False)
    """
    inner = module.module if isinstance(module, Teacher) else module
    h = hashlib.sha256()
    for key, value in sorted(inner.state_dict().items()):
        t = value.detach().cpu().contiguous().reshape(-1)
        h.update(f"{key}|{t.dtype}|{tuple(value.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def describe(teachers: Mapping[str, nn.Module]) -> dict[str, dict[str, Any]]:
    """What a checkpoint records of each teacher: class, fingerprint, source, layer."""
    out = {}
    for m, t in teachers.items():
        inner = t.module if isinstance(t, Teacher) else t
        out[m] = {
            "class": type(inner).__name__,
            "sha256": fingerprint(t),
            "source": getattr(t, "source", None),
            "layer": getattr(t, "layer", None),
        }
    return out


def save_teacher(teacher: nn.Module, path: Path) -> str:
    """The teacher's inner module's ``state_dict`` to ``path`` (atomically); its fingerprint."""
    import io

    inner = teacher.module if isinstance(teacher, Teacher) else teacher
    buf = io.BytesIO()
    torch.save(inner.state_dict(), buf)
    write_bytes(path, buf.getvalue())
    return fingerprint(teacher)


def load_teacher(architecture: nn.Module, path: Path, sha256: str | None, what: str) -> None:
    """Load ``path`` into ``architecture`` (the teacher's inner module), checking its
    fingerprint against ``sha256``."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    try:
        architecture.load_state_dict(state)
    except RuntimeError as e:
        raise UMTError(
            f"{what}: the saved weights {path} do not fit the module given "
            f"({type(architecture).__name__}): {str(e).splitlines()[0]}; pass the teacher's "
            "architecture"
        ) from e
    if sha256 is not None and fingerprint(architecture) != sha256:
        raise UMTError(f"{what}: {path} does not match its recorded fingerprint (a changed file)")
