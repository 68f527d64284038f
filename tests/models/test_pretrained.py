"""Teachers and encoders from files: ``teachers: {m: PATH}`` and ``model.encoder.weights``, with
torchvision-layout ResNet-18/34 state dicts generated here (no download)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from umt.errors import UMTError
from umt.models.pretrained import init_encoders, load_encoder_state
from umt.models.resnet import build_resnet18
from umt.study import load_config, run_study

TORCHVISION_BLOCKS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}


def torchvision_resnet_state(
    depth: int, *, base: int = 64, seed: int = 0
) -> dict[str, torch.Tensor]:
    """A random state dict with torchvision's ``resnet18``/``resnet34`` names and shapes (its
    ``models/resnet.py``: ``conv1``, ``bn1``, ``layer1..4`` of BasicBlocks with ``downsample``
    where the shape changes, ``fc`` to 1000 classes)."""
    g = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}

    def bn(name: str, c: int) -> None:
        state[f"{name}.weight"] = 1 + 0.1 * torch.randn(c, generator=g)
        state[f"{name}.bias"] = 0.1 * torch.randn(c, generator=g)
        state[f"{name}.running_mean"] = 0.1 * torch.randn(c, generator=g)
        state[f"{name}.running_var"] = 1 + 0.2 * torch.rand(c, generator=g)
        state[f"{name}.num_batches_tracked"] = torch.tensor(1000)

    def conv(name: str, c_out: int, c_in: int, k: int) -> None:
        state[name] = torch.randn(c_out, c_in, k, k, generator=g) * (2 / (c_in * k * k)) ** 0.5

    conv("conv1.weight", base, 3, 7)
    bn("bn1", base)
    inplanes = base
    for i, n in enumerate(TORCHVISION_BLOCKS[depth], start=1):
        planes = base * 2 ** (i - 1)
        for j in range(n):
            c_in = inplanes if j == 0 else planes
            conv(f"layer{i}.{j}.conv1.weight", planes, c_in, 3)
            bn(f"layer{i}.{j}.bn1", planes)
            conv(f"layer{i}.{j}.conv2.weight", planes, planes, 3)
            bn(f"layer{i}.{j}.bn2", planes)
            if j == 0 and i > 1:  # stride 2 and more channels
                conv(f"layer{i}.{j}.downsample.0.weight", planes, c_in, 1)
                bn(f"layer{i}.{j}.downsample.1", planes)
        inplanes = planes
    state["fc.weight"] = torch.randn(1000, 8 * base, generator=g)
    state["fc.bias"] = torch.zeros(1000)
    return state


def reference_forward(state: dict[str, torch.Tensor], x: torch.Tensor, depth: int) -> torch.Tensor:
    """torchvision's ResNet forward (eval mode) written with ``torch.nn.functional`` over the
    torchvision-named state dict, up to the global average pool: ``(B, 8 * base)``."""

    def bn(h: torch.Tensor, name: str) -> torch.Tensor:
        return F.batch_norm(
            h,
            state[f"{name}.running_mean"],
            state[f"{name}.running_var"],
            state[f"{name}.weight"],
            state[f"{name}.bias"],
            training=False,
            eps=1e-5,
        )

    h = F.relu(bn(F.conv2d(x, state["conv1.weight"], stride=2, padding=3), "bn1"))
    h = F.max_pool2d(h, 3, stride=2, padding=1)
    for i, n in enumerate(TORCHVISION_BLOCKS[depth], start=1):
        for j in range(n):
            p = f"layer{i}.{j}"
            stride = 2 if (j == 0 and i > 1) else 1
            out = F.relu(
                bn(F.conv2d(h, state[f"{p}.conv1.weight"], stride=stride, padding=1), f"{p}.bn1")
            )
            out = bn(F.conv2d(out, state[f"{p}.conv2.weight"], padding=1), f"{p}.bn2")
            if f"{p}.downsample.0.weight" in state:
                h = bn(
                    F.conv2d(h, state[f"{p}.downsample.0.weight"], stride=stride),
                    f"{p}.downsample.1",
                )
            h = F.relu(out + h)
    return h.mean(dim=(2, 3))


def test_generated_layout_has_torchvisions_parameter_counts() -> None:
    """The generator matches torchvision's architectures: resnet18 11,689,512 and resnet34
    21,797,672 weights (torchvision's documented counts, running statistics excluded)."""
    for depth, expected in ((18, 11_689_512), (34, 21_797_672)):
        ours = build_resnet18((3, 64, 64), depth=depth)  # the same trunk, without fc (513,000)
        assert sum(p.numel() for p in ours.parameters()) == expected - 513_000
        state = torchvision_resnet_state(depth)
        n = sum(
            v.numel()
            for k, v in state.items()
            if not k.split(".")[-1].startswith(("running", "num_"))
        )
        assert n == expected


@pytest.mark.parametrize("depth", [18, 34])
def test_torchvision_resnet_loads_and_computes_the_same_features(depth: int) -> None:
    state = torchvision_resnet_state(depth, base=8)  # width 0.125: the same names, small
    enc = build_resnet18((3, 32, 32), width=0.125, depth=depth).eval()
    load_encoder_state(enc, state, modality="rgb", what="model.encoder.weights.rgb", source="tv.pt")
    assert torch.equal(enc.trunk.stem[0].weight, state["conv1.weight"])
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(enc(x), reference_forward(state, x, depth), rtol=1e-4, atol=1e-5)


def test_three_channel_weights_on_a_one_channel_encoder_sum_the_channels() -> None:
    state = torchvision_resnet_state(18, base=8)
    enc = build_resnet18((1, 32, 32), width=0.125).eval()
    load_encoder_state(enc, state, modality="audio", what="w", source="tv.pt")
    torch.testing.assert_close(enc.trunk.stem[0].weight, state["conv1.weight"].sum(1, keepdim=True))
    x = torch.randn(2, 1, 32, 32)  # a grey input is an RGB input of three equal channels
    with torch.no_grad():
        torch.testing.assert_close(
            enc(x), reference_forward(state, x.expand(-1, 3, -1, -1), 18), rtol=1e-4, atol=1e-5
        )


def test_frame_encoder_and_old_files_without_batch_counters() -> None:
    state = {
        k: v for k, v in torchvision_resnet_state(18, base=8).items() if "num_batches" not in k
    }
    enc = build_resnet18((2, 3, 32, 32), width=0.125)  # clips: the trunk runs on each frame
    load_encoder_state(enc, state, modality="visual", what="w", source="old.pth")
    assert torch.equal(enc.trunk.stages[3][1].bn2.running_var, state["layer4.1.bn2.running_var"])


def test_mismatched_files_name_the_first_bad_key() -> None:
    small = torchvision_resnet_state(34, base=8)
    with pytest.raises(
        UMTError, match=r"key 'layer1\.2\.conv1\.weight' of 'r34\.pt' matches nothing"
    ):
        load_encoder_state(
            build_resnet18((3, 32, 32), width=0.125),
            small,
            modality="rgb",
            what="w",
            source="r34.pt",
        )
    r18 = torchvision_resnet_state(18, base=8)
    with pytest.raises(UMTError, match=r"has no weight for 'trunk\.stages\.0\.2\.conv1\.weight'"):
        load_encoder_state(
            build_resnet18((3, 32, 32), width=0.125, depth=34),
            r18,
            modality="rgb",
            what="w",
            source="r18.pt",
        )
    with pytest.raises(
        UMTError, match=r"gives 'trunk\.stem\.0\.weight' the shape \(8, 3, 7, 7\).*\(64, 3, 7, 7\)"
    ):
        load_encoder_state(
            build_resnet18((3, 32, 32)), r18, modality="rgb", what="w", source="r18.pt"
        )
    with pytest.raises(
        UMTError, match="is a torchvision ResNet state dict, but the 'rgb' encoder is a Linear"
    ):
        load_encoder_state(nn.Linear(2, 2), r18, modality="rgb", what="w", source="r18.pt")
    with pytest.raises(
        UMTError, match=r"key 'extra' of 'x\.pt' matches nothing in the 'a' encoder"
    ):
        load_encoder_state(
            nn.Linear(2, 2),
            {"weight": torch.zeros(2, 2), "bias": torch.zeros(2), "extra": torch.zeros(1)},
            modality="a",
            what="w",
            source="x.pt",
        )


def test_our_state_dicts_load_from_an_encoder_or_a_whole_model(tmp_path: Path) -> None:
    enc = nn.ModuleDict({"a": nn.Linear(3, 2)})
    model_file = tmp_path / "model.pt"
    torch.save(
        {
            "encoders.a.weight": torch.ones(2, 3),
            "encoders.a.bias": torch.zeros(2),
            "head.weight": torch.zeros(1, 2),
        },
        model_file,
    )
    init_encoders(enc, {"a": str(model_file)})
    assert enc["a"].weight.sum().item() == 6.0
    with pytest.raises(UMTError, match="does not exist"):
        init_encoders(enc, {"a": str(tmp_path / "missing.pt")})
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(UMTError, match="is not a readable state dict"):
        init_encoders(enc, {"a": str(tmp_path / "junk.pt")})


def tiny(tiny_overrides: list[str], *extra: str) -> list[str]:
    return [
        *tiny_overrides,
        "train.epochs=1",
        "data.synthetic.n_train=120",
        "data.synthetic.n_val=60",
        "data.synthetic.n_test=60",
        *extra,
    ]


def test_encoder_weights_initialise_every_stage(tmp_path: Path, tiny_overrides: list[str]) -> None:
    """With ``train.lr=1e-30`` nothing measurable moves the weights: every stage's weak encoder holds
    the file's (a learning rate of 0 is refused as a configuration error)."""
    from umt.models import ModelConfig, build_model
    from umt.models.encoders import EncoderConfig

    torch.manual_seed(123)
    enc = build_model(
        ModelConfig(encoder=EncoderConfig(hidden=32, feature_dim=16)), {"weak": (64,)}, 10
    ).encoders["weak"]
    path = tmp_path / "weak.pt"
    torch.save(enc.state_dict(), path)
    cfg = load_config(
        overrides=tiny(
            tiny_overrides,
            "train.lr=1e-30",
            "methods=[joint]",
            f"model.encoder.weights={{weak: {path}}}",
        )
    )
    result = run_study(cfg, tmp_path / "runs", log=lambda _: None)
    for stage in ("teacher-weak", "joint"):
        state = torch.load(result.run_dir / "seed0" / stage / "model.pt", weights_only=True)
        for k, v in enc.state_dict().items():
            if not k.split(".")[-1].startswith(("running", "num_")):  # buffers move in training
                assert torch.allclose(state[f"encoders.weak.{k}"], v, rtol=0, atol=1e-20), (
                    stage,
                    k,
                )
    # Same file content under another name: cached; changed content: the weak stages retrain.
    copy = tmp_path / "copy.pt"
    copy.write_bytes(path.read_bytes())
    moved = run_study(
        load_config(
            overrides=tiny(
                tiny_overrides,
                "train.lr=1e-30",
                "methods=[joint]",
                f"model.encoder.weights={{weak: {copy}}}",
            )
        ),
        tmp_path / "runs",
        log=lambda _: None,
    )
    assert moved.trained == []
    torch.save(
        {k: v + 1 if v.is_floating_point() else v for k, v in enc.state_dict().items()}, copy
    )
    changed = run_study(
        load_config(
            overrides=tiny(
                tiny_overrides,
                "train.lr=1e-30",
                "methods=[joint]",
                f"model.encoder.weights={{weak: {copy}}}",
            )
        ),
        tmp_path / "runs",
        log=lambda _: None,
    )
    assert sorted(changed.trained) == ["seed0/joint", "seed0/teacher-weak"]  # not teacher-strong


def test_teachers_from_files(tmp_path: Path, tiny_overrides: list[str]) -> None:
    first = run_study(
        load_config(overrides=tiny(tiny_overrides, "methods=[umt,ume]")),
        tmp_path / "a",
        log=lambda _: None,
    )
    weak_pt = first.run_dir / "seed0" / "teacher-weak" / "model.pt"

    # A whole uni-modal model: not trained, evaluated as it is; the report marks it.
    loaded = run_study(
        load_config(
            overrides=tiny(tiny_overrides, "methods=[umt,ume]", f"teachers={{weak: {weak_pt}}}")
        ),
        tmp_path / "b",
        log=lambda _: None,
    )
    assert "seed0/teacher-weak" not in loaded.trained and "seed0/teacher-strong" in loaded.trained
    entry = loaded.summary["methods"]["teacher-weak"]
    assert entry["source"] == str(weak_pt)
    assert entry["test_acc"] == first.summary["methods"]["teacher-weak"]["test_acc"]
    assert loaded.summary["probes"]["weak"]["teacher"] == first.summary["probes"]["weak"]["teacher"]
    assert "uni-modal weak (teacher) (loaded)" in (loaded.run_dir / "report.md").read_text()
    assert "source" not in loaded.summary["methods"]["teacher-strong"]
    # Its file's content keys the stage (and the stages built on it): a new file, new keys.
    key = loaded.summary["per_seed"]["0"]["stages"]["teacher-weak"]["key"]
    state = torch.load(weak_pt, weights_only=True)
    edited = tmp_path / "edited.pt"
    torch.save({k: v * 0.5 if k == "head.weight" else v for k, v in state.items()}, edited)
    again = run_study(
        load_config(
            overrides=tiny(tiny_overrides, "methods=[umt,ume]", f"teachers={{weak: {edited}}}")
        ),
        tmp_path / "b",
        log=lambda _: None,
    )
    assert again.summary["per_seed"]["0"]["stages"]["teacher-weak"]["key"] != key
    assert "seed0/umt" in again.trained and "seed0/teacher-strong" not in again.trained

    # An encoder alone (state dict, or TorchScript): its head is trained, the encoder frozen.
    enc_state = {
        k.removeprefix("encoders.weak."): v
        for k, v in state.items()
        if k.startswith("encoders.weak.")
    }
    enc_file = tmp_path / "encoder.pt"
    torch.save(enc_state, enc_file)
    from umt.models import ModelConfig, build_model
    from umt.models.encoders import EncoderConfig

    encoder = build_model(
        ModelConfig(encoder=EncoderConfig(hidden=32, feature_dim=16)), {"weak": (64,)}, 10
    ).encoders["weak"]
    encoder.load_state_dict(enc_state)
    script_file = tmp_path / "encoder.ts"
    torch.jit.script(encoder.eval()).save(str(script_file))
    for path in (enc_file, script_file):
        out = run_study(
            load_config(
                overrides=tiny(tiny_overrides, "methods=[joint]", f"teachers={{weak: {path}}}")
            ),
            tmp_path / path.suffix,
            log=lambda _: None,
        )
        assert "seed0/teacher-weak" in out.trained  # the head
        assert out.summary["methods"]["teacher-weak"]["source"] == str(path)
        result = (out.run_dir / "seed0" / "teacher-weak" / "result.json").read_text()
        assert '"loaded": "encoder"' in result
        # The encoder is the file's: its probe equals the first study's teacher's probe.
        assert (
            out.summary["probes"]["weak"]["teacher"] == first.summary["probes"]["weak"]["teacher"]
        ), path


def test_teacher_files_are_checked_before_training(
    tmp_path: Path, tiny_overrides: list[str]
) -> None:
    with pytest.raises(UMTError, match=r"teachers\.weak: the file '.*nope\.pt' does not exist"):
        run_study(
            load_config(
                overrides=tiny(tiny_overrides, f"teachers={{weak: {tmp_path / 'nope.pt'}}}")
            ),
            tmp_path,
            log=lambda _: None,
        )
    with pytest.raises(UMTError, match=r"teachers: \['audio'\] are not modalities of data set"):
        run_study(
            load_config(overrides=tiny(tiny_overrides, f"teachers={{audio: {tmp_path}}}")),
            tmp_path,
            log=lambda _: None,
        )
    assert not (tmp_path / "default" / "seed0").exists()


def test_a_teacher_file_that_does_not_fit_is_named(
    tmp_path: Path, tiny_overrides: list[str]
) -> None:
    script = tmp_path / "wrong.ts"
    torch.jit.script(nn.Linear(5, 3)).save(str(script))  # the weak inputs are (64,), not (5,)
    with pytest.raises(UMTError, match=r"teachers\.weak: .*wrong\.ts' is a TorchScript module"):
        run_study(
            load_config(overrides=tiny(tiny_overrides, f"teachers={{weak: {script}}}")),
            tmp_path,
            log=lambda _: None,
        )
    other = tmp_path / "other.pt"
    torch.save(
        {"encoders.weak.net.0.weight": torch.zeros(3, 3), "head.weight": torch.zeros(10, 3)}, other
    )
    with pytest.raises(
        UMTError, match=r"teachers\.weak: key 'encoders\.weak\.net\.0\.weight' of .*other\.pt'"
    ):
        run_study(
            load_config(overrides=tiny(tiny_overrides, f"teachers={{weak: {other}}}")),
            tmp_path,
            log=lambda _: None,
        )
