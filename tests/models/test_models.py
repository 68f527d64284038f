"""Models: encoder shapes, the encoder and fusion registries, the fusion model, masking."""

from __future__ import annotations

import pytest
import torch
from helpers import random_batch
from torch import nn

from umt.errors import UMTError
from umt.models import (
    FUSIONS,
    CNNEncoder,
    ConcatFusion,
    EncoderConfig,
    MLPEncoder,
    ModelConfig,
    MultimodalModel,
    build_encoder,
    build_fusion,
    build_model,
    mask_batch,
)

# -- encoders --------------------------------------------------------------------------------


@pytest.mark.parametrize(("in_shape", "depth"), [((5,), 1), ((5,), 2), ((2, 3), 2)])
def test_mlp_encoder_output_shape_and_feature_dim(in_shape: tuple[int, ...], depth: int) -> None:
    torch.manual_seed(0)
    enc = MLPEncoder(in_shape, feature_dim=7, hidden=6, depth=depth)
    assert enc.feature_dim == 7
    out = enc(torch.randn(4, *in_shape))
    assert out.shape == (4, 7)
    assert (out >= 0).all()  # features end in a ReLU


@pytest.mark.parametrize(("hw", "depth"), [(8, 2), (9, 2), (8, 3)])
def test_cnn_encoder_output_shape_and_feature_dim(hw: int, depth: int) -> None:
    torch.manual_seed(0)
    enc = CNNEncoder((2, hw, hw), feature_dim=5, width=3, depth=depth)
    assert enc.feature_dim == 5
    assert enc(torch.randn(3, 2, hw, hw)).shape == (3, 5)


def test_a_strided_first_convolution_halves_the_resolution_once_more() -> None:
    x = torch.zeros(2, 1, 16, 16)
    plain, strided = (CNNEncoder((1, 16, 16), width=4, depth=2, stride=s) for s in (1, 2))
    assert plain.tokens(x).shape[1] == 16 and strided.tokens(x).shape[1] == 4  # 4x4 vs 2x2
    assert strided(x).shape == plain(x).shape  # the same features' width


def test_stride_is_in_a_stage_key_only_where_set() -> None:
    from umt.models import ModelConfig
    from umt.study import load_config
    from umt.study.inputs import model_key
    from umt.tasks import CLASSIFICATION

    shapes = {"a": (1, 8, 8)}
    assert "stride" not in model_key(ModelConfig(), shapes, CLASSIFICATION)["encoder"]
    cfg = load_config(overrides=["model.modality.a.stride=2"]).model
    assert model_key(cfg, shapes, CLASSIFICATION)["modality"] == {"a": {"stride": 2}}
    with pytest.raises(UMTError, match="stride"):
        load_config(overrides=["model.encoder.stride=0"])


def test_the_mlp_normalisations_and_keys_only_where_they_change_something() -> None:
    from umt.study import load_config
    from umt.study.inputs import model_key
    from umt.tasks import CLASSIFICATION

    def norms(enc: nn.Module, kind: type[nn.Module]) -> int:
        return sum(isinstance(x, kind) for x in enc.modules())

    default = MLPEncoder((5,), depth=2)
    assert norms(default, nn.BatchNorm1d) == 2 and norms(default, nn.LayerNorm) == 0
    assert norms(MLPEncoder((5,), depth=2, norm="layer"), nn.LayerNorm) == 2
    plain = MLPEncoder((5,), depth=2, norm="none")
    assert norms(plain, nn.BatchNorm1d) + norms(plain, nn.LayerNorm) == 0
    assert plain(torch.randn(1, 5)).shape == (1, 64)  # a batch of one
    # BatchNorm (the default) keeps the keys of the stages cached before the option existed; a
    # study that builds no MLP ignores the option.
    assert "norm" not in model_key(ModelConfig(), {"a": (5,)}, CLASSIFICATION)["encoder"]
    layer = load_config(overrides=["model.encoder.norm=layer"]).model
    assert model_key(layer, {"a": (5,)}, CLASSIFICATION)["encoder"]["norm"] == "layer"
    assert "norm" not in model_key(layer, {"a": (1, 8, 8)}, CLASSIFICATION)["encoder"]
    cfg = load_config(overrides=["model.modality.a.norm=none"]).model
    assert model_key(cfg, {"a": (5,)}, CLASSIFICATION)["modality"] == {"a": {"norm": "none"}}
    assert norms(build_encoder(cfg.encoder_of("a"), (5,)), nn.BatchNorm1d) == 0
    with pytest.raises(UMTError, match=r"model.encoder.norm.*'group'"):
        load_config(overrides=["model.encoder.norm=group"])


def test_cnn_encoder_refuses_vector_inputs() -> None:
    with pytest.raises(UMTError, match=r"\(C, H, W\).*\(5,\)"):
        CNNEncoder((5,))


@pytest.mark.parametrize(
    ("in_shape", "kind"),
    [((1, 8, 8), CNNEncoder), ((3, 4, 4), CNNEncoder), ((6,), MLPEncoder), ((4, 4), MLPEncoder)],
)
def test_build_encoder_auto_picks_cnn_for_3d_inputs_and_mlp_otherwise(
    in_shape: tuple[int, ...], kind: type
) -> None:
    enc = build_encoder(EncoderConfig(name="auto", feature_dim=4, hidden=4, depth=1), in_shape)
    assert type(enc) is kind
    assert enc(torch.randn(2, *in_shape)).shape == (2, 4)


def test_build_encoder_by_name_passes_the_settings_through() -> None:
    mlp = build_encoder(EncoderConfig(name="mlp", feature_dim=3, hidden=5, depth=1), (1, 4, 4))
    assert isinstance(mlp, MLPEncoder)  # asked for by name, even for a 3-d input
    linears = [m for m in mlp.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(16, 5), (5, 3)]
    cnn = build_encoder(EncoderConfig(name="cnn", feature_dim=3, channels=2, stages=2), (1, 4, 4))
    convs = [m for m in cnn.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [2, 4]  # base width, doubled per stage


def test_build_encoder_unknown_name_lists_the_valid_names() -> None:
    with pytest.raises(UMTError, match="unknown encoder 'resnet'.*auto.*mlp.*cnn"):
        build_encoder(EncoderConfig(name="resnet"), (4,))


# -- fusion ----------------------------------------------------------------------------------


def test_build_fusion_unknown_name_lists_the_valid_names() -> None:
    with pytest.raises(UMTError) as info:
        build_fusion("mean", {"a": 2})
    msg = str(info.value)
    assert "'mean'" in msg
    assert all(name in msg for name in FUSIONS)


def test_build_model_unknown_fusion_fails_even_for_one_modality() -> None:
    cfg = ModelConfig(EncoderConfig(feature_dim=2, hidden=2, depth=1), fusion="mean")
    with pytest.raises(UMTError, match="unknown fusion 'mean'"):
        build_model(cfg, {"a": (3,)}, 2, linear_head=True)


def test_concat_fusion_order_is_fixed_by_construction() -> None:
    f = ConcatFusion({"a": 2, "b": 1})
    a, b = torch.tensor([[1.0, 2.0]]), torch.tensor([[3.0]])
    assert f.output_dim == 3
    assert f({"a": a, "b": b}).tolist() == [[1.0, 2.0, 3.0]]
    assert f({"b": b, "a": a}).tolist() == [[1.0, 2.0, 3.0]]
    g = ConcatFusion({"b": 1, "a": 2})
    assert g({"a": a, "b": b}).tolist() == [[3.0, 1.0, 2.0]]


def test_concat_fusion_ignores_extra_keys() -> None:
    f = ConcatFusion({"a": 1})
    out = f({"a": torch.ones(2, 1), "label": torch.zeros(2), "z": torch.zeros(2, 5)})
    assert out.tolist() == [[1.0], [1.0]]


# -- the fusion model ------------------------------------------------------------------------


# The batches have one class (every label 0): nothing here reads a label.
SHAPES = {"a": (5,), "b": (1, 8, 8)}
CFG = ModelConfig(EncoderConfig(feature_dim=4, hidden=4, depth=2), head_hidden=6)


def test_build_model_picks_encoders_per_input_shape() -> None:
    torch.manual_seed(0)
    model = build_model(CFG, SHAPES, 3)
    assert model.modalities == ("a", "b")
    assert isinstance(model.encoders["a"], MLPEncoder)
    assert isinstance(model.encoders["b"], CNNEncoder)
    assert model.fusion.output_dim == 8
    assert isinstance(model.head, nn.Sequential)  # head_hidden > 0


def test_build_model_linear_head() -> None:
    model = build_model(CFG, SHAPES, 3, linear_head=True)
    assert isinstance(model.head, nn.Linear)
    assert (model.head.in_features, model.head.out_features) == (8, 3)


def test_multimodal_model_encode_fuse_forward_agree() -> None:
    torch.manual_seed(0)
    model = build_model(CFG, SHAPES, 3).eval()
    batch = random_batch(SHAPES, 3, num_classes=1)
    with torch.no_grad():
        features = model.encode(batch)
        assert {m: tuple(z.shape) for m, z in features.items()} == {"a": (3, 4), "b": (3, 4)}
        for m in SHAPES:
            assert torch.equal(features[m], model.encoders[m](batch[m]))
        logits = model(batch)
        assert logits.shape == (3, 3)
        assert torch.allclose(model.fuse(features), logits)
        fused = torch.cat([features["a"], features["b"]], dim=1)
        assert torch.allclose(model.head(fused), logits)


def test_multimodal_model_missing_modality_names_it() -> None:
    model = build_model(CFG, SHAPES, 3)
    batch = random_batch({"a": (5,)}, 3, num_classes=1)
    with pytest.raises(UMTError, match=r"no modality \['b'\]"):
        model(batch)


def test_multimodal_model_with_three_modalities() -> None:
    torch.manual_seed(0)
    shapes = {"x": (3,), "y": (4,), "z": (2, 6, 6)}
    model = build_model(CFG, shapes, 5).eval()
    assert model.modalities == ("x", "y", "z")
    assert model.fusion.output_dim == 12
    batch = random_batch(shapes, 2, num_classes=1)
    with torch.no_grad():
        logits = model(batch)
        assert logits.shape == (2, 5)
        assert torch.allclose(model.fuse(model.encode(batch)), logits)
    logits = model.train()(random_batch(shapes, 4, num_classes=1))
    logits.sum().backward()
    for m in shapes:
        grads = [p.grad for p in model.encoders[m].parameters()]
        assert all(g is not None for g in grads), m


def test_multimodal_model_accepts_any_encoder_with_feature_dim() -> None:
    enc = nn.Linear(3, 2)
    enc.feature_dim = 2  # type: ignore[assignment]
    model = MultimodalModel(nn.ModuleDict({"a": enc}), ConcatFusion({"a": 2}), nn.Linear(2, 4))
    assert model({"a": torch.zeros(5, 3)}).shape == (5, 4)


# -- masking ---------------------------------------------------------------------------------


def _mask_input() -> dict[str, torch.Tensor]:
    return {
        "a": torch.tensor([[1.0, 2.0], [3.0, 4.0]]),
        "b": torch.tensor([[5.0], [6.0]]),
        "label": torch.tensor([1, 0]),
    }


def test_mask_batch_zero_fill() -> None:
    batch = _mask_input()
    out = mask_batch(batch, ["a"])
    assert torch.equal(out["a"], batch["a"])
    assert out["b"].tolist() == [[0.0], [0.0]]
    assert torch.equal(out["label"], batch["label"])
    assert batch["b"].tolist() == [[5.0], [6.0]]  # the input batch is left alone


def test_mask_batch_mean_fill() -> None:
    batch = _mask_input()
    out = mask_batch(batch, ("b",), fill="mean", means={"a": torch.tensor([0.5, -1.0])})
    assert out["a"].tolist() == [[0.5, -1.0], [0.5, -1.0]]
    assert torch.equal(out["b"], batch["b"])
    assert out["label"].tolist() == [1, 0]


def test_mask_batch_keep_everything_changes_nothing() -> None:
    batch = _mask_input()
    out = mask_batch(batch, ["a", "b"], fill="mean", means={})
    assert all(torch.equal(out[k], batch[k]) for k in batch)


def test_mask_batch_keep_nothing_keeps_the_label() -> None:
    out = mask_batch(_mask_input(), [])
    assert out["a"].abs().sum() == 0 and out["b"].abs().sum() == 0
    assert out["label"].tolist() == [1, 0]


def test_mask_batch_rejects_an_unknown_fill() -> None:
    with pytest.raises((ValueError, UMTError), match="unknown mask fill 'median'.*zero.*mean"):
        mask_batch(_mask_input(), ["a"], fill="median")


def test_mask_batch_mean_fill_needs_the_means() -> None:
    with pytest.raises((ValueError, UMTError), match="'b'"):
        mask_batch(_mask_input(), ["a"], fill="mean", means={"a": torch.zeros(2)})


def test_mask_batch_errors_are_umt_errors() -> None:
    with pytest.raises(UMTError):
        mask_batch(_mask_input(), ["a"], fill="median")
