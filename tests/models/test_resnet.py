"""ResNet-18 encoders: shapes, exact parameter counts, tokens, width multiplier, registry."""

from __future__ import annotations

import pytest
import torch

from umt.errors import UMTError
from umt.models import EncoderConfig, ModelConfig, build_encoder, build_model
from umt.models.resnet import (
    BasicBlock,
    FrameResNet18Encoder,
    ResNet18Encoder,
    build_resnet18,
)


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_parameter_counts_match_resnet18() -> None:
    # torchvision's resnet18 has 11,689,512 parameters, 513,000 of them in its 1000-way fc.
    assert n_params(build_resnet18((3, 224, 224))) == 11_689_512 - 513_000 == 11_176_512
    # one input channel: the stem's 7x7 convolution has 64 x 49 weights instead of 64 x 3 x 49
    assert n_params(build_resnet18((1, 128, 1001))) == 11_176_512 - 2 * 64 * 49 == 11_170_240
    # the frame encoder shares one trunk across frames: the count does not grow with T
    assert n_params(build_resnet18((3, 3, 224, 224))) == 11_176_512


def test_width_multiplier_scales_every_stage() -> None:
    tiny = build_resnet18((1, 32, 48), width=0.125)
    assert tiny.feature_dim == 64  # type: ignore[comparison-overlap]
    # a basic-block network's parameters scale with the square of its width (plus BN terms)
    assert 11_170_240 / 80 < n_params(tiny) < 11_170_240 / 50
    with pytest.raises(UMTError, match="width"):
        build_resnet18((1, 32, 48), width=0.001)


def test_spectrogram_and_frame_encoders_shapes_and_tokens() -> None:
    torch.manual_seed(0)
    audio = ResNet18Encoder((1, 40, 101), width=0.125).eval()
    x = torch.randn(2, 1, 40, 101)
    pooled, tokens = audio.forward_tokens(x)
    assert pooled.shape == (2, 64) and tokens.shape == (2, 2 * 4, 64)  # 40x101 / 32 -> 2x4
    assert torch.allclose(audio(x), pooled) and torch.allclose(tokens.mean(1), pooled)

    video = FrameResNet18Encoder((3, 3, 64, 64), width=0.125).eval()
    clips = torch.randn(2, 3, 3, 64, 64)
    pooled, tokens = video.forward_tokens(clips)
    assert pooled.shape == (2, 64) and tokens.shape == (2, 3 * 2 * 2, 64)
    assert torch.allclose(video(clips), pooled, atol=1e-6)
    # temporal pooling: each frame goes through the same trunk, then frames are averaged
    per_frame = torch.stack([video.trunk(clips[:, t]).mean(dim=(2, 3)) for t in range(3)], 1)
    assert torch.allclose(per_frame.mean(1), pooled, atol=1e-6)
    # the order of frames does not matter to the pooled features
    assert torch.allclose(video(clips.flip(1)), pooled, atol=1e-6)


def test_gradients_reach_the_stem() -> None:
    enc = build_resnet18((2, 3, 32, 32), width=0.0625)
    enc(torch.randn(4, 2, 3, 32, 32)).sum().backward()
    stem = enc.trunk.stem[0]  # type: ignore[union-attr, index]
    assert stem.weight.grad is not None and stem.weight.grad.abs().sum() > 0


def test_basic_block_shortcut_projects_only_when_needed() -> None:
    assert isinstance(BasicBlock(8, 8).shortcut, torch.nn.Identity)
    assert not isinstance(BasicBlock(8, 16, stride=2).shortcut, torch.nn.Identity)


def test_registered_in_build_encoder_and_auto_picks_it_for_clips() -> None:
    cfg = EncoderConfig(name="resnet18", width=0.125)
    assert type(build_encoder(cfg, (1, 32, 32))).__name__ == "ResNet18Encoder"
    assert type(build_encoder(cfg, (3, 3, 32, 32))).__name__ == "FrameResNet18Encoder"
    auto = EncoderConfig(width=0.125)
    assert type(build_encoder(auto, (3, 3, 32, 32))).__name__ == "FrameResNet18Encoder"
    assert type(build_encoder(auto, (1, 32, 32))).__name__ == "CNNEncoder"  # unchanged
    with pytest.raises(UMTError, match="expects \\(C, H, W\\) or \\(T, C, H, W\\)"):
        build_encoder(cfg, (16,))
    with pytest.raises(UMTError, match="expected auto, mlp, cnn, cnn1d or resnet18"):
        build_encoder(EncoderConfig(name="resnet50"), (3, 32, 32))


@pytest.mark.parametrize("fusion", ["concat", "sum", "attention"])
def test_audio_visual_model_with_resnets(fusion: str) -> None:
    cfg = ModelConfig(
        EncoderConfig(name="resnet18", width=0.0625), fusion=fusion, fusion_dim=8, head_hidden=0
    )
    model = build_model(cfg, {"audio": (1, 32, 40), "visual": (2, 3, 32, 32)}, num_classes=5)
    batch = {"audio": torch.randn(3, 1, 32, 40), "visual": torch.randn(3, 2, 3, 32, 32)}
    assert model(batch).shape == (3, 5)
    assert {m: f.shape for m, f in model.encode(batch).items()} == {
        "audio": (3, 32),
        "visual": (3, 32),
    }
