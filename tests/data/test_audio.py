"""The log-mel front end against an independent NumPy reference and known values."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch

from umt.data.audio import hz_to_mel, log_mel, mel_filterbank, mel_to_hz, power_to_db
from umt.errors import UMTError

# VGGSound's front end, and a second, unlike one (odd FFT size, band-limited, shorter window).
SETTINGS: list[dict[str, Any]] = [
    {"sample_rate": 16000, "n_fft": 512, "hop_length": 160, "n_mels": 64},
    {"sample_rate": 22050, "n_fft": 1023, "hop_length": 256, "n_mels": 40, "f_min": 50.0,
     "f_max": 8000.0, "win_length": 800},
]  # fmt: skip


def ref_hz_to_mel(hz: float) -> float:
    """Slaney's scale written out: 3 mels per 200 Hz to 1 kHz, then 27 mels per factor 6.4."""
    return hz * 3 / 200 if hz < 1000 else 15 + 27 * math.log(hz / 1000) / math.log(6.4)


def ref_filterbank(sr: int, n_fft: int, n_mels: int, f_min: float, f_max: float) -> np.ndarray:
    """Triangles filter by filter and bin by bin, in float64, each scaled to unit area in Hz."""
    lo, hi = ref_hz_to_mel(f_min), ref_hz_to_mel(f_max)
    mels = [lo + (hi - lo) * i / (n_mels + 1) for i in range(n_mels + 2)]
    # Invert the scale by bisection, so that the reference does not share mel_to_hz's formula.
    edges = []
    for m in mels:
        a, b = 0.0, float(sr)
        for _ in range(200):
            a, b = ((a + b) / 2, b) if ref_hz_to_mel((a + b) / 2) < m else (a, (a + b) / 2)
        edges.append((a + b) / 2)
    fb = np.zeros((n_mels, n_fft // 2 + 1))
    for m in range(n_mels):
        left, centre, right = edges[m : m + 3]
        for k in range(n_fft // 2 + 1):
            f = k * sr / n_fft
            if left < f <= centre:
                fb[m, k] = (f - left) / (centre - left)
            elif centre < f < right:
                fb[m, k] = (right - f) / (right - centre)
        fb[m] *= 2 / (right - left)
    return fb


def ref_log_mel(x: np.ndarray, *, sample_rate: int, n_fft: int, hop_length: int, n_mels: int,
                f_min: float = 0.0, f_max: float | None = None, win_length: int | None = None,
                top_db: float = 80.0) -> np.ndarray:  # fmt: skip
    """Frames cut by hand from the zero-padded signal, periodic Hann, rfft, float64 throughout."""
    win_length = win_length or n_fft
    n = np.arange(win_length)
    window = np.zeros(n_fft)
    start = (n_fft - win_length) // 2  # a shorter window sits in the middle of the FFT frame
    window[start : start + win_length] = 0.5 - 0.5 * np.cos(2 * np.pi * n / win_length)
    padded = np.pad(x.astype(np.float64), n_fft // 2)
    frames = np.stack(
        [padded[t : t + n_fft] for t in range(0, len(padded) - n_fft + 1, hop_length)], axis=1
    )  # (n_fft, frames)
    power = np.abs(np.fft.rfft(frames * window[:, None], axis=0)) ** 2
    fb = ref_filterbank(sample_rate, n_fft, n_mels, f_min, f_max or sample_rate / 2)
    db = 10 * np.log10(np.maximum(fb @ power, 1e-10))
    return np.maximum(db, db.max() - top_db)


def test_slaney_mel_scale_known_values() -> None:
    hz = torch.tensor([0.0, 200.0, 1000.0, 2000.0, 6400.0, 8000.0])
    # 8 kHz: 15 + 27 * ln(8) / ln(6.4), written out.
    expected = [0.0, 3.0, 15.0, 15 + 27 * math.log(2) / math.log(6.4), 42.0, 45.245640471924965]
    assert hz_to_mel(hz).tolist() == pytest.approx(expected, abs=1e-9)
    assert [ref_hz_to_mel(f) for f in hz.tolist()] == pytest.approx(expected, abs=1e-9)
    # The inverse, over both halves of the scale.
    assert mel_to_hz(hz_to_mel(hz)).tolist() == pytest.approx(hz.tolist(), rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("setting", SETTINGS)
def test_filterbank_matches_reference(setting: dict[str, Any]) -> None:
    sr, n_fft, n_mels = setting["sample_rate"], setting["n_fft"], setting["n_mels"]
    f_min, f_max = setting.get("f_min", 0.0), setting.get("f_max", sr / 2)
    fb = mel_filterbank(sample_rate=sr, n_fft=n_fft, n_mels=n_mels, f_min=f_min, f_max=f_max)
    ref = ref_filterbank(sr, n_fft, n_mels, f_min, f_max)
    assert fb.dtype == torch.float32 and fb.shape == ref.shape
    # float32 weights of size ~1e-3: 1e-7 absolute is a few float32 ulps.
    np.testing.assert_allclose(fb.numpy(), ref, rtol=1e-5, atol=1e-7)


def test_filterbank_has_unit_area_where_filters_are_wide() -> None:
    # Slaney normalisation: sum of weights x bin width is 1 Hz-area for filters many bins wide.
    sr, n_fft = 16000, 512
    fb = mel_filterbank(sample_rate=sr, n_fft=n_fft, n_mels=64).double()
    area = fb.sum(1) * sr / n_fft
    assert area[-20:].tolist() == pytest.approx([1.0] * 20, abs=0.02)


@pytest.mark.parametrize("setting", SETTINGS)
def test_log_mel_matches_reference(setting: dict[str, Any]) -> None:
    rng = np.random.default_rng(0)
    sr = setting["sample_rate"]
    t = np.arange(sr // 2) / sr
    x = np.sin(2 * np.pi * 440 * t) + 0.3 * np.sin(2 * np.pi * 3000 * t)
    x = (x + 0.05 * rng.standard_normal(len(t))).astype(np.float32)
    ours = log_mel(torch.from_numpy(x), **setting).numpy()
    ref = ref_log_mel(x.astype(np.float64), **setting)
    assert ours.shape == ref.shape == (setting["n_mels"], 1 + len(x) // setting["hop_length"])
    # float32 STFT against float64: within 0.01 dB everywhere (a 0.23 % power error).
    np.testing.assert_allclose(ours, ref, atol=0.01, rtol=0)


def test_pure_tone_lands_in_its_band() -> None:
    sr, n_mels = 16000, 64
    top = ref_hz_to_mel(sr / 2)
    t = torch.arange(sr) / sr
    for band in (5, 20, 40, 60):
        # The band's centre frequency from the reference scale, inverted by bisection.
        target, lo, hi = top * (band + 1) / (n_mels + 1), 0.0, sr / 2
        for _ in range(100):
            lo, hi = (
                ((lo + hi) / 2, hi)
                if ref_hz_to_mel((lo + hi) / 2) < target
                else (lo, (lo + hi) / 2)
            )
        tone = torch.sin(2 * torch.pi * lo * t)
        spec = log_mel(tone, sample_rate=sr, n_fft=512, hop_length=160, n_mels=n_mels)
        profile = spec[:, 5:-5].mean(-1)  # frames away from the zero-padded ends
        assert int(profile.argmax()) == band
        # Bands three or more away hold at least 20 dB less (the Hann window's leakage).
        far = torch.cat([profile[: max(band - 2, 0)], profile[band + 3 :]])
        assert float(profile[band] - far.max()) > 20.0


def test_log_mel_batches_and_top_db() -> None:
    rng = np.random.default_rng(1)
    x = torch.from_numpy(rng.standard_normal((2, 3, 4000)).astype(np.float32))
    x[0, 0, :2000] = 0.0  # silence: the floor top_db below the peak applies
    kw: dict[str, Any] = {"sample_rate": 16000, "n_fft": 256, "hop_length": 100, "n_mels": 20}
    kw["top_db"] = 50.0
    spec = log_mel(x, **kw)
    assert spec.shape == (2, 3, 20, 41)
    for i in range(2):
        for j in range(3):  # each spectrogram on its own, with its own peak
            torch.testing.assert_close(spec[i, j], log_mel(x[i, j], **kw))
    first = spec[0, 0]
    assert float(first.min()) == pytest.approx(float(first.max()) - 50.0, abs=1e-4)


def test_power_to_db_values() -> None:
    power = torch.tensor([[1.0, 100.0], [1e-3, 0.0]])
    db = power_to_db(power, top_db=None)
    torch.testing.assert_close(db, torch.tensor([[0.0, 20.0], [-30.0, -100.0]]))
    db = power_to_db(power, top_db=40.0)  # floor: 20 dB peak - 40 dB
    torch.testing.assert_close(db, torch.tensor([[0.0, 20.0], [-20.0, -20.0]]))


def test_errors_name_the_problem() -> None:
    with pytest.raises(UMTError, match="f_max"):
        mel_filterbank(sample_rate=16000, n_fft=512, n_mels=40, f_max=9000.0)
    with pytest.raises(UMTError, match="T > 0"):
        log_mel(torch.zeros(0), sample_rate=16000, n_fft=512, hop_length=160, n_mels=40)
    with pytest.raises(UMTError, match="n_fft=512"):
        log_mel(torch.zeros(100), sample_rate=16000, n_fft=512, hop_length=160, n_mels=40,
                center=False)  # fmt: skip
