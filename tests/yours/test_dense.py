"""Dense features: a user's own two-branch encoder-decoder for segmentation is diagnosed (a
per-pixel linear probe of each branch's map, mean IoU, against teachers trained here) and
distilled per position (maps and tokens, with 1x1 projectors where widths differ)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

import umt
from umt.probe import ProbeConfig
from umt.tasks.seg_probe import linear_probe_maps
from umt.tasks.segmentation import miou_of
from umt.yours.diagnose import model_features, probe
from umt.yours.hooks import capture_features

K = 3
FAST = umt.DiagnoseConfig(epochs=3, lr=1e-2, probe=ProbeConfig(l2=(1e-3,), max_iter=30))


class Scenes(Dataset[dict[str, Any]]):
    """8x8 scenes of K regions (vertical bands at random offsets); rgb shows the region as a
    colour, depth as a noisy level; a border of unlabelled pixels (-100)."""

    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        cols = torch.arange(8).view(1, 1, 8)
        offset = torch.randint(0, 3, (n, 1, 1), generator=g)
        label = ((cols + offset) // 3).clamp_max(K - 1).expand(n, 8, 8).clone()  # (n, 8, 8)
        self.rgb = F.one_hot(label, K).permute(0, 3, 1, 2).float()
        self.rgb = self.rgb + 0.5 * torch.randn(self.rgb.shape, generator=g)
        self.depth = label.unsqueeze(1).float() + 0.8 * torch.randn(n, 1, 8, 8, generator=g)
        label[:, 0, :] = -100  # unlabelled
        self.label = label

    def __len__(self) -> int:
        return len(self.label)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"rgb": self.rgb[i], "depth": self.depth[i], "label": self.label[i]}


def branch(c: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(c, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU()
    )  # (B, 8, 4, 4)


class TwoBranchSeg(nn.Module):
    """The user's encoder-decoder: a branch per modality, maps concatenated, a 1x1 decoder."""

    def __init__(self) -> None:
        super().__init__()
        self.rgb_enc, self.depth_enc = branch(3), branch(1)
        self.decoder = nn.Sequential(nn.Conv2d(16, 8, 1), nn.ReLU(), nn.Conv2d(8, K, 1))

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        maps = torch.cat([self.rgb_enc(batch["rgb"]), self.depth_enc(batch["depth"])], 1)
        return F.interpolate(self.decoder(maps), size=(8, 8), mode="bilinear")


ENC = {"rgb": "rgb_enc", "depth": "depth_enc"}


@pytest.fixture(scope="module")
def data() -> list[Scenes]:
    return [Scenes(48, 0), Scenes(24, 1), Scenes(24, 2)]


def test_an_own_segmentation_model_is_diagnosed_by_per_pixel_probes(data: list[Scenes]) -> None:
    torch.manual_seed(0)
    model = TwoBranchSeg()
    diag = umt.diagnose(model, *data, encoders=ENC, config=FAST, progress=False)
    assert diag.num_classes == K and set(diag.teachers) == {"rgb", "depth"}
    for m, name in ENC.items():
        d = diag[m]
        assert d.metric == "mIoU" and d.teacher_source == "trained"
        assert d.model.feature_dim == 8 and d.interval is not None
        # the probe is the study's per-pixel probe of the branch's map, and its outcomes
        # (per-image intersections and unions) give back its test mean IoU
        feats = [model_features(model, DataLoader(s, batch_size=16), {m: name}) for s in data]
        xy = [(f[m], y) for f, y in feats]
        assert xy[0][0].shape == (48, 8, 4, 4) and xy[0][1].shape == (48, 8, 8)
        ref = linear_probe_maps(*xy, K, FAST.probe)
        assert d.model.test_miou == pytest.approx(ref.test_miou, abs=1e-6)
        res, outcomes = probe(xy, K, FAST.probe)
        assert outcomes.shape == (24, 2, K)
        assert miou_of(outcomes) == pytest.approx(res.test_miou, abs=1e-5)
    assert "mIoU" in diag.markdown() or "mIoU" in str(diag.as_dict())


def test_a_segmentation_model_is_distilled_per_position(data: list[Scenes]) -> None:
    torch.manual_seed(0)
    teachers = {"rgb": branch(3), "depth": nn.Sequential(branch(1), nn.Conv2d(8, 4, 1))}
    loss_fn = umt.UMTLoss(teachers, weights=1.0, dense=True, student_dims={"rgb": 8, "depth": 8})
    assert sorted(loss_fn.state_dict()) == ["projectors.depth.bias", "projectors.depth.weight"]
    model = TwoBranchSeg()
    opt = torch.optim.Adam([*model.parameters(), *loss_fn.parameters()], lr=1e-2)
    loader = DataLoader(data[0], batch_size=16, shuffle=False)
    terms_seen = []
    with capture_features(model, ENC) as feats:
        for _ in range(4):
            for batch in loader:
                out = model(batch)
                terms = loss_fn(batch, feats)
                task = F.cross_entropy(out, batch["label"], ignore_index=-100)
                opt.zero_grad()
                (task + terms["loss"]).backward()
                opt.step()
                terms_seen.append(terms["distill/depth"].item())
        # the term is per position: the projected student map against the teacher's map
        batch = next(iter(loader))
        model(batch)
        got = loss_fn(batch, feats)["distill/depth"]
    with torch.no_grad():
        proj = loss_fn.projectors["depth"]
        s = F.conv2d(model.depth_enc(batch["depth"]), proj.weight[:, :, None, None], proj.bias)
        t = teachers["depth"](batch["depth"])
    assert got.item() == pytest.approx(F.mse_loss(s, t).item(), rel=1e-5)
    pooled = F.mse_loss(s.mean((2, 3)), t.mean((2, 3))).item()
    assert got.item() != pytest.approx(pooled, rel=1e-3)  # not the averaged vectors
    assert terms_seen[-1] < terms_seen[0]  # the depth branch moves towards its teacher


def test_maps_of_another_size_are_resized_and_tokens_kept_per_token() -> None:
    torch.manual_seed(0)
    teacher = nn.Conv2d(3, 4, 1)  # 8x8 maps; the student's are 4x4
    loss_fn = umt.UMTLoss({"a": teacher}, dense=True)
    s = torch.randn(2, 4, 4, 4)
    x = torch.randn(2, 3, 8, 8)
    want = F.mse_loss(F.interpolate(s, size=(8, 8), mode="bilinear"), teacher(x))
    assert loss_fn({"a": x}, {"a": s})["loss"].item() == pytest.approx(want.item(), rel=1e-5)
    tokens = umt.UMTLoss({"a": nn.Linear(5, 6)}, dense=True, student_dims={"a": 7})
    xs, st = torch.randn(2, 9, 5), torch.randn(2, 9, 7)  # (B, N, C)
    proj = tokens.projectors["a"]
    with torch.no_grad():
        want = F.mse_loss(proj(st), tokens.teachers["a"](xs))
        assert tokens({"a": xs}, {"a": st})["loss"].item() == pytest.approx(want.item(), rel=1e-5)
    with pytest.raises(umt.UMTError, match="9 tokens, the teacher 3"):
        tokens({"a": xs[:, :3]}, {"a": st})
