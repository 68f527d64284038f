"""Encoder and teacher weights from files a user has (``model.encoder.weights``, ``teachers``).

A weights file is read with ``torch.load(weights_only=True)`` (tensors and plain data only: no
code of the file runs), or, for a teacher, ``torch.jit.load`` when it is a TorchScript archive: a
TorchScript file is a program, and loading and running it runs that program (trust it as you would
a script; a warning says so). Two state-dict layouts load onto an encoder:

- ours: the encoder's own ``state_dict`` keys; a stage's ``model.pt`` (keys
  ``encoders.<modality>.…``) or a Lightning checkpoint (``{"state_dict": {"model.…": …}}``) works
  too, the modality's encoder is taken from it;
- torchvision's ResNet-18/34 (``conv1``, ``bn1``, ``layer<N>.<M>.conv<K>|bn<K>|downsample``,
  ``fc``), e.g. ImageNet weights, mapped onto :mod:`umt.models.resnet` (``fc`` is skipped; a first
  convolution for other than three input channels is adapted as timm's ``adapt_input_conv`` does).

Every key must find its place and every weight of the encoder must be given (but BatchNorm's
``num_batches_tracked``, absent from old torchvision files); the first key that does not is named.
"""

from __future__ import annotations

import hashlib
import math
import re
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from umt.errors import UMTError
from umt.models.resnet import ResNet18Trunk

State = dict[str, torch.Tensor]

_LAYER = re.compile(r"^layer(\d)\.(\d+)\.(.+)$")


def file_digest(path: str | Path) -> str:
    """The SHA-256 of a file's bytes (the cache key of what was loaded from it).

    Example:
        >>> import tempfile
        >>> f = Path(tempfile.mkdtemp()) / "w.bin"
        >>> _ = f.write_bytes(b"abc")
        >>> file_digest(f)[:12]
        'ba7816bf8f01'
    """
    h = hashlib.sha256()
    with open(Path(path).expanduser(), "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def is_torchscript(path: str | Path) -> bool:
    """Whether ``path`` is a TorchScript archive (``torch.jit.save``), not a pickled state dict."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any(n.endswith("/constants.pkl") for n in z.namelist())


def _existing(path: str | Path, what: str) -> Path:
    p = Path(path).expanduser()
    if not p.is_file():
        raise UMTError(f"{what}: the weights file {str(p)!r} does not exist")
    return p


def read_state_dict(path: str | Path, *, what: str) -> State:
    """The tensors of a state-dict file (``what`` names its config key in errors).

    A Lightning checkpoint's ``state_dict`` is unwrapped and its ``model.`` prefix dropped.
    """
    p = _existing(path, what)
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:
        raise UMTError(
            f"{what}: {str(p)!r} is not a readable state dict ({type(e).__name__}: {e})"
        ) from e
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = {str(k).removeprefix("model."): v for k, v in obj["state_dict"].items()}
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UMTError(
            f"{what}: {str(p)!r} holds a {type(obj).__name__}, not a state dict (a mapping of "
            "parameter names to tensors)"
        )
    return {str(k): v for k, v in obj.items()}


def is_torchvision_resnet(state: Mapping[str, torch.Tensor]) -> bool:
    """Whether a state dict has torchvision's ResNet layout (``conv1``, ``layer1.0``…)."""
    return "conv1.weight" in state and any(k.startswith("layer1.0.") for k in state)


def torchvision_name(key: str) -> str | None:
    """Our :class:`~umt.models.resnet.ResNet18Trunk` name of a torchvision ResNet key, with the
    encoder's ``trunk.`` prefix; ``None`` for a key that has no counterpart.

    Example:
        >>> torchvision_name("layer2.0.downsample.1.running_var")
        'trunk.stages.1.0.shortcut.1.running_var'
        >>> torchvision_name("bn1.weight"), torchvision_name("fc.weight")
        ('trunk.stem.1.weight', None)
    """
    if key.startswith("conv1."):
        return "trunk.stem.0." + key.removeprefix("conv1.")
    if key.startswith("bn1."):
        return "trunk.stem.1." + key.removeprefix("bn1.")
    match = _LAYER.match(key)
    if match is None:
        return None
    stage, block, rest = int(match[1]), match[2], match[3]
    if rest.startswith("downsample."):
        rest = "shortcut." + rest.removeprefix("downsample.")
    return f"trunk.stages.{stage - 1}.{block}.{rest}"


def adapt_input_conv(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """A first convolution's weight ``(O, 3, k, k)`` for ``in_channels`` inputs: summed over the
    three channels for one (a grey image or a spectrogram gives the response an RGB image of
    equal channels would), else tiled and scaled by ``3 / in_channels`` (timm's
    ``adapt_input_conv``).

    Example:
        >>> w = torch.ones(2, 3, 1, 1)
        >>> adapt_input_conv(w, 1)[0, :, 0, 0].tolist(), adapt_input_conv(w, 6)[0, :, 0, 0].tolist()
        ([3.0], [0.5, 0.5, 0.5, 0.5, 0.5, 0.5])
    """
    c = weight.shape[1]
    if c == in_channels:
        return weight
    if in_channels == 1:
        return weight.sum(dim=1, keepdim=True)
    repeat = math.ceil(in_channels / c)
    return weight.repeat(1, repeat, 1, 1)[:, :in_channels] * (c / in_channels)


def _from_torchvision(state: State, ours: State, *, what: str, source: str) -> State:
    mapped: State = {}
    for key, value in state.items():
        if key.startswith("fc."):  # the ImageNet classifier: not part of an encoder
            continue
        name = torchvision_name(key)
        if name is None or name not in ours:
            raise UMTError(
                f"{what}: key {key!r} of {source!r} matches nothing in the encoder (torchvision "
                f"ResNet key -> ours: {name!r}); the file must be a ResNet-18 or -34 of the "
                "encoder's depth (model.encoder.name resnet18 or resnet34)"
            )
        if name == "trunk.stem.0.weight":
            value = adapt_input_conv(value, ours[name].shape[1])
        mapped[name] = value
    return mapped


def _strip_ours(state: State, ours: State, modality: str) -> State:
    """Our layout: the encoder's keys, or a whole model's with ``encoders.<modality>.``."""
    prefix = f"encoders.{modality}."
    if not any(k in ours for k in state) and any(k.startswith(prefix) for k in state):
        return {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
    return state


def load_encoder_state(
    encoder: nn.Module, state: State, *, modality: str, what: str, source: str
) -> None:
    """Load ``state`` (our layout or torchvision's ResNet) into ``encoder``, strictly.

    Raises:
        UMTError: naming the first key of the file that matches nothing, the first weight of the
            encoder the file lacks, or the first shape that differs.
    """
    ours = encoder.state_dict()
    if is_torchvision_resnet(state):
        trunk = getattr(encoder, "trunk", None)
        if not isinstance(trunk, ResNet18Trunk):
            raise UMTError(
                f"{what}: {source!r} is a torchvision ResNet state dict, but the {modality!r} "
                f"encoder is a {type(encoder).__name__}; set model.encoder.name to resnet18 or "
                "resnet34 (and model.encoder.width to 1)"
            )
        state = _from_torchvision(state, ours, what=what, source=source)
    else:
        state = _strip_ours(state, ours, modality)
        for key in state:
            if key not in ours:
                raise UMTError(
                    f"{what}: key {key!r} of {source!r} matches nothing in the {modality!r} "
                    f"encoder ({type(encoder).__name__}, whose keys begin {list(ours)[:3]})"
                )
    for key, value in ours.items():
        if key not in state:
            if key.endswith("num_batches_tracked"):
                continue  # absent from old torchvision files; a counter, not a weight
            raise UMTError(
                f"{what}: {source!r} has no weight for {key!r} of the {modality!r} encoder "
                f"({type(encoder).__name__})"
            )
        if tuple(state[key].shape) != tuple(value.shape):
            raise UMTError(
                f"{what}: {source!r} gives {key!r} the shape {tuple(state[key].shape)}; the "
                f"{modality!r} encoder's is {tuple(value.shape)} (check model.encoder settings, "
                "e.g. width: 1 for torchvision weights)"
            )
    encoder.load_state_dict(state, strict=False)  # every key checked above


def init_encoders(encoders: nn.ModuleDict, weights: Mapping[str, str]) -> None:
    """Initialise each encoder that ``weights`` names (``model.encoder.weights``) from its file.

    Example:
        >>> import tempfile
        >>> enc = nn.ModuleDict({"a": nn.Linear(2, 2)})
        >>> f = Path(tempfile.mkdtemp()) / "a.pt"
        >>> torch.save({"weight": torch.eye(2), "bias": torch.zeros(2)}, f)
        >>> init_encoders(enc, {"a": str(f)})
        >>> enc["a"].weight.tolist()
        [[1.0, 0.0], [0.0, 1.0]]
    """
    for m, path in weights.items():
        if m not in encoders:
            continue  # a teacher of another modality: its model has no such encoder
        what = f"model.encoder.weights.{m}"
        state = read_state_dict(path, what=what)
        load_encoder_state(encoders[m], state, modality=m, what=what, source=str(path))


def read_teacher(path: str | Path, *, what: str) -> nn.Module | State:
    """A teacher file (``teachers: {m: PATH}``): a TorchScript encoder module, or a state dict."""
    p = _existing(path, what)
    if is_torchscript(p):
        warnings.warn(
            f"{what}: {str(p)!r} is a TorchScript module, a program: the study runs its code "
            "(load only files you trust; a state dict runs none)",
            stacklevel=2,
        )
        try:
            module: nn.Module = torch.jit.load(str(p), map_location="cpu")
        except Exception as e:
            raise UMTError(f"{what}: {str(p)!r} is not a loadable TorchScript module ({e})") from e
        return module
    return read_state_dict(p, what=what)


def load_teacher_state(
    model: nn.Module, state: State, *, modality: str, what: str, source: str
) -> str:
    """Load a teacher's state dict into the uni-modal ``model``: the whole model's (a
    ``teacher-<m>/model.pt`` of an earlier study: ``encoders.``, ``fusion.``, ``head.`` keys)
    or its encoder's alone (ours or torchvision's ResNet layout). Returns ``"model"`` or
    ``"encoder"``: what was loaded (an encoder alone still needs its head trained)."""
    if any(k.startswith(("head.", "fusion.")) for k in state):
        ours = model.state_dict()
        for key in state:
            if key not in ours:
                raise UMTError(
                    f"{what}: key {key!r} of {source!r} matches nothing in the uni-modal "
                    f"{modality!r} model (whose keys begin {list(ours)[:3]})"
                )
        for key, value in ours.items():
            if key not in state:
                raise UMTError(f"{what}: {source!r} has no weight for {key!r}")
            if tuple(state[key].shape) != tuple(value.shape):
                raise UMTError(
                    f"{what}: {source!r} gives {key!r} the shape {tuple(state[key].shape)}; "
                    f"the model's is {tuple(value.shape)} (train the file's model with the "
                    "study's model settings)"
                )
        model.load_state_dict(state)
        return "model"
    encoders = model.encoders
    assert isinstance(encoders, nn.ModuleDict)  # the FusionModel contract
    load_encoder_state(encoders[modality], state, modality=modality, what=what, source=source)
    return "encoder"
