"""Segmentation models: a multi-branch RGB-D encoder-decoder in the spirit of ESANet.

ESANet (Seichter et al., *Efficient RGB-D Semantic Segmentation for Indoor Scene Analysis*, ICRA
2021) runs a ResNet encoder per modality; after each stage the depth branch's map is fused into the
RGB branch (by addition, after a squeeze-and-excitation channel attention on each branch), and the
fused map is both the RGB branch's input to its next stage and a skip connection of a light
decoder that upsamples back to the input resolution. Ours is the same shape, small enough for a
CPU:

* one :class:`SegEncoder` per modality: a stem and ``stages`` stages of ``blocks`` ResNet basic
  blocks (``umt.models.resnet.BasicBlock``), widths ``width * 2**k``, every stage after the first
  halving the resolution;
* after each stage the branches' maps are fused (``add``, or ``attention``: SE on each branch,
  then add) and, with ``inject`` (ESANet), the fused map replaces the *primary* branch's map as
  the input of its next stage; the other branches never see another modality;
* a decoder: from the deepest fused map, repeatedly upsample, add the 1x1-projected skip of the
  stage above, refine with a 3x3 conv; a 1x1 classifier; logits bilinearly upsampled to the input.

``model.seg.inject: false`` is the late-fusion variant: every branch stays uni-modal and the
maps are fused only into the decoder.

A model with one modality is the uni-modal segmentation model (a UMT teacher, a UME member): its
encoder's maps go to the decoder unfused.

The seam (``DESIGN.md``): ``model.encoders[m]`` is branch m alone (``forward(x)`` its last-stage
map, the probe's input; ``forward_stages(x)`` every stage's map, the teacher's distillation
targets), and ``model.forward_stages(batch) -> (logits, {m: [stage maps]})`` gives the logits and
each branch's stage outputs in the fused pass (before each stage's fusion), which the probes read
and UMT distils (``umt.seg_target`` chooses those, the maps after injection, or the branch alone).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from umt.errors import UMTError
from umt.models.base import seeded
from umt.models.resnet import BasicBlock

SEG_FUSIONS = ("add", "attention")
#: Which maps of each branch :meth:`SegmentationModel.forward_stages` returns (``maps``).
STAGE_MAPS = ("branch", "fused", "alone")


@dataclass(frozen=True)
class SegModelConfig:
    """Architecture of the segmentation models (``model.seg``).

    Attributes:
        width: channels of the first encoder stage; stage k has ``width * 2**k``.
        stages: encoder stages (each after the first halves the resolution).
        blocks: basic blocks per stage (ESANet's ResNet-34 has 3, 4, 6, 3; 1 suits a CPU).
        stem_stride: the stem's stride: 1 or 2 (a 3x3 conv), or 4 (a 7x7 stride-2 conv and a
            3x3 max-pool, ResNet's stem, as ESANet at 480x640).
        fusion: how the branches' maps are fused after each stage: ``add`` or ``attention``
            (squeeze-and-excitation channel attention on each branch, then add: ESANet).
        inject: the fused map is the primary branch's input to its next stage (ESANet); false
            is late fusion: two full encoders, each purely uni-modal, fused (``fusion``) only
            where the decoder reads them (its input and its skips), so each branch computes what
            its uni-modal teacher computes and UMT's distillation applies as the papers write it.
        primary: the branch fused into (``None``: the data set's first modality, e.g. ``rgb``).
        decoder_width: channels of the decoder (0: twice ``width``).
        se_reduction: channel reduction of the SE attention's bottleneck.
    """

    width: int = 16
    stages: int = 3
    blocks: int = 1
    stem_stride: int = 1
    fusion: str = "add"
    inject: bool = True
    primary: str | None = None
    decoder_width: int = 0
    se_reduction: int = 4

    def __post_init__(self) -> None:
        if self.fusion not in SEG_FUSIONS:
            raise UMTError(
                f"model.seg.fusion: unknown {self.fusion!r}; expected one of {SEG_FUSIONS}"
            )
        if self.stem_stride not in (1, 2, 4):
            raise UMTError(f"model.seg.stem_stride: expected 1, 2 or 4, got {self.stem_stride}")
        for key in ("width", "stages", "blocks", "se_reduction"):
            if getattr(self, key) < 1:
                raise UMTError(f"model.seg.{key}: expected at least 1, got {getattr(self, key)}")


def _stem(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    if stride == 4:  # ResNet's stem: 1/4 resolution
        return nn.Sequential(
            nn.Conv2d(c_in, c_out, 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(c_out),
            nn.MaxPool2d(3, stride=2, padding=1),
            nn.ReLU(inplace=True),  # after the pool: the same function, 4x cheaper
        )
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class SegEncoder(nn.Module):
    """One branch: ``(B, C, H, W)`` -> a feature map per stage.

    Example:
        >>> enc = SegEncoder(1, SegModelConfig(width=4, stages=3))
        >>> [tuple(h.shape) for h in enc.forward_stages(torch.zeros(2, 1, 16, 16))]
        [(2, 4, 16, 16), (2, 8, 8, 8), (2, 16, 4, 4)]
        >>> tuple(enc(torch.zeros(2, 1, 16, 16)).shape), enc.feature_dim
        ((2, 16, 4, 4), 16)
    """

    def __init__(self, in_channels: int, cfg: SegModelConfig) -> None:
        super().__init__()
        self.channels = [cfg.width * 2**k for k in range(cfg.stages)]
        self.stem = _stem(in_channels, cfg.width, cfg.stem_stride)
        stages: list[nn.Module] = []
        c_in = cfg.width
        for k, c_out in enumerate(self.channels):
            blocks = [BasicBlock(c_in, c_out, stride=1 if k == 0 else 2)]
            blocks += [BasicBlock(c_out, c_out) for _ in range(cfg.blocks - 1)]
            stages.append(nn.Sequential(*blocks))
            c_in = c_out
        self.stages = nn.ModuleList(stages)
        self.feature_dim = self.channels[-1]
        for m in self.modules():  # He initialisation, as ResNet
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every stage's map ``[(B, C_k, H_k, W_k)]`` of this branch alone."""
        h, out = self.stem(x), []
        for stage in self.stages:
            h = stage(h)
            out.append(h)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_stages(x)[-1]  # (B, C_last, H', W')


class SqueezeExcite(nn.Module):
    """Channel attention (Hu et al. 2018): ``x * sigmoid(MLP(mean_hw x))``."""

    def __init__(self, channels: int, reduction: int) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.net = nn.Sequential(
            nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, channels, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.net(x.mean(dim=(2, 3), keepdim=True)))


class StageFusion(nn.Module):
    """Fuses the branches' maps of one stage (same shape) into one: their sum, each branch first
    reweighted by its own SE attention for ``attention``.

    Example:
        >>> fuse = StageFusion(["rgb", "depth"], 4, kind="add")
        >>> fuse({"rgb": torch.ones(1, 4, 2, 2), "depth": torch.ones(1, 4, 2, 2)}).sum().item()
        32.0
    """

    def __init__(
        self, modalities: list[str], channels: int, *, kind: str = "add", reduction: int = 4
    ) -> None:
        super().__init__()
        self.kind = kind
        self.attention = nn.ModuleDict(
            {m: SqueezeExcite(channels, reduction) for m in modalities}
            if kind == "attention"
            else {}
        )

    def forward(self, maps: Mapping[str, torch.Tensor]) -> torch.Tensor:
        if self.kind == "attention":
            return torch.stack([self.attention[m](x) for m, x in maps.items()]).sum(0)
        return torch.stack(list(maps.values())).sum(0)


class SegDecoder(nn.Module):
    """Skips ``[(B, C_k, H_k, W_k)]`` (shallow to deep) -> logits ``(B, K, H_0, W_0)``."""

    def __init__(self, channels: list[int], width: int, num_classes: int) -> None:
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, width, 1) for c in channels)
        self.refine = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(width, width, 3, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
            )
            for _ in channels[:-1]
        )
        self.classifier = nn.Conv2d(width, num_classes, 1)

    def forward(self, skips: list[torch.Tensor]) -> torch.Tensor:
        h = self.lateral[-1](skips[-1])
        for k in range(len(skips) - 2, -1, -1):
            h = F.interpolate(h, size=skips[k].shape[-2:], mode="bilinear", align_corners=False)
            h = self.refine[k](h + self.lateral[k](skips[k]))
        return self.classifier(h)  # (B, K, H_0, W_0)


class SegmentationModel(nn.Module):
    """Branches per modality, per-stage fusion, decoder (see the module docstring).

    Args:
        encoders: modality -> :class:`SegEncoder` (all with the same stage widths).
        fusions: one :class:`StageFusion` per stage (empty for one modality).
        decoder: skips -> logits.
        primary: the branch the fused map is injected into.
        inject: whether it is (ESANet) or the branches stay uni-modal.

    Example:
        >>> cfg = SegModelConfig(width=4, stages=2)
        >>> model = build_seg_model(cfg, {"rgb": (3, 8, 8), "depth": (1, 8, 8)}, num_classes=5)
        >>> batch = {"rgb": torch.zeros(2, 3, 8, 8), "depth": torch.zeros(2, 1, 8, 8)}
        >>> logits, stages = model.forward_stages(batch)
        >>> tuple(logits.shape), [tuple(h.shape) for h in stages["depth"]]
        ((2, 5, 8, 8), [(2, 4, 8, 8), (2, 8, 4, 4)])
    """

    def __init__(
        self,
        encoders: nn.ModuleDict,
        fusions: nn.ModuleList,
        decoder: SegDecoder,
        *,
        primary: str,
        inject: bool = True,
    ) -> None:
        super().__init__()
        self.encoders = encoders
        self.fusions = fusions
        self.decoder = decoder
        self.primary = primary
        self.inject = inject

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self.encoders.keys())

    def forward_stages(
        self, batch: Mapping[str, torch.Tensor], *, maps: str = "branch"
    ) -> tuple[torch.Tensor, dict[str, list[torch.Tensor]]]:
        """Logits ``(B, K, H, W)`` and each branch's stage maps ``[(B, C_k, H_k, W_k)]``.

        ``maps`` (:data:`STAGE_MAPS`) says which, for the branch the fused map is injected into
        (the others' are always their own, uni-modal):

        * ``branch``: the maps the branch's stages compute in the fused pass, each before its
          stage's fusion (stage k >= 1 computed from the fused map of stage k-1);
        * ``fused``: the maps the branch carries on after injection (each stage's fused map);
        * ``alone``: the branch run on its own modality, no fused input (one more pass of it).
        """
        if maps not in STAGE_MAPS:
            raise UMTError(f"stage maps: unknown {maps!r}; expected one of {STAGE_MAPS}")
        missing = [m for m in self.encoders if m not in batch]
        if missing:
            raise UMTError(
                f"the batch has no modality {missing} (it has {sorted(batch)}); the model "
                f"expects {list(self.encoders)}"
            )
        x = next(iter(batch[m] for m in self.encoders))
        h = {m: enc.stem(batch[m]) for m, enc in self.encoders.items()}  # type: ignore[operator]
        stages: dict[str, list[torch.Tensor]] = {m: [] for m in self.encoders}
        skips = []
        for k in range(len(self.decoder.lateral)):
            for m, enc in self.encoders.items():
                h[m] = enc.stages[k](h[m])  # type: ignore[index,operator]
                stages[m].append(h[m])
            if len(self.encoders) == 1:
                skips.append(h[self.primary])
                continue
            fused = self.fusions[k](h)
            skips.append(fused)
            if self.inject:  # ESANet: the fused map feeds the primary branch's next stage
                h = {**h, self.primary: fused}
                if maps == "fused":
                    stages[self.primary][-1] = fused
        logits = self.decoder(skips)
        logits = F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
        if maps == "alone" and self.inject and len(self.encoders) > 1:
            encoder = self.encoders[self.primary]
            stages[self.primary] = encoder.forward_stages(batch[self.primary])  # type: ignore[operator]
        return logits, stages

    def forward_features(
        self, batch: Mapping[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, list[torch.Tensor]]]:
        """The :class:`~umt.models.base.FusionModel` contract: :meth:`forward_stages`."""
        return self.forward_stages(batch)

    def encode(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Each branch's last-stage map ``{m: (B, C, H', W')}`` in the fused model."""
        return {m: maps[-1] for m, maps in self.forward_stages(batch)[1].items()}

    def forward(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.forward_stages(batch)[0]  # (B, K, H, W)


def build_seg_model(
    cfg: SegModelConfig,
    input_shapes: Mapping[str, tuple[int, ...]],
    num_classes: int,
    *,
    init_seed: int | None = None,
) -> SegmentationModel:
    """A segmentation model over the modalities of ``input_shapes`` (each ``(C, H, W)``); one
    modality makes the uni-modal model. ``init_seed``: each branch, and the fusions and decoder,
    draw their initial weights from a generator of their own (``umt.models.base.seed_for``).

    Example:
        >>> model = build_seg_model(SegModelConfig(width=4, stages=2), {"depth": (1, 8, 8)}, 3)
        >>> tuple(model({"depth": torch.zeros(1, 1, 8, 8)}).shape), len(model.fusions)
        ((1, 3, 8, 8), 0)
    """
    for m, shape in input_shapes.items():
        if len(shape) != 3:
            raise UMTError(
                f"segmentation models take (C, H, W) images; modality {m!r} has shape {shape}"
            )
    mods = list(input_shapes)
    primary = cfg.primary if cfg.primary is not None else mods[0]
    if len(mods) > 1 and primary not in mods:
        raise UMTError(f"model.seg.primary: {primary!r} is not a modality of the data {mods}")
    if len(mods) == 1:
        primary = mods[0]
    encoders = nn.ModuleDict()
    for m, s in input_shapes.items():
        seeded(init_seed, m)
        encoders[m] = SegEncoder(s[0], cfg)
    seeded(init_seed, "fusion")
    channels = [cfg.width * 2**k for k in range(cfg.stages)]
    fusions = nn.ModuleList(
        StageFusion(mods, c, kind=cfg.fusion, reduction=cfg.se_reduction) for c in channels
    )
    if len(mods) == 1:
        fusions = nn.ModuleList()
    decoder = SegDecoder(channels, cfg.decoder_width or 2 * cfg.width, num_classes)
    return SegmentationModel(encoders, fusions, decoder, primary=primary, inject=cfg.inject)
