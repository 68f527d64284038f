"""The log-mel front end: waveform -> power spectrogram -> mel bands -> decibels.

Pure functions over tensors, the same for the embedded ``avdigits`` set and the real audio
benchmarks (VGGSound: 16 kHz, ``n_fft=512``, ``hop_length=160``). The mel scale and filterbank
follow Slaney's Auditory Toolbox (the default of librosa): the scale is linear below 1 kHz
(200/3 Hz per mel) and logarithmic above (27 mels per factor 6.4), and each triangular filter is
scaled to unit area ("Slaney normalisation"), so that a band's energy does not grow with its width.
"""

from __future__ import annotations

import math

import torch

from umt.errors import UMTError

# Slaney's mel scale: mel = hz * 3 / 200 below _MIN_LOG_HZ, logarithmic above.
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = 15.0  # = _MIN_LOG_HZ * 3 / 200
_LOG_STEP = math.log(6.4) / 27.0


def hz_to_mel(hz: torch.Tensor) -> torch.Tensor:
    """Frequencies in Hz to mels on Slaney's scale.

    Args:
        hz: frequencies in Hz, any shape.

    Returns:
        Mels, the same shape.

    Example:
        >>> hz_to_mel(torch.tensor([0.0, 500.0, 1000.0, 6400.0])).tolist()
        [0.0, 7.5, 15.0, 42.0]
    """
    hz = hz.to(torch.float64)
    linear = hz * 3.0 / 200.0  # 200/3 Hz per mel, exact for round inputs
    log = _MIN_LOG_MEL + torch.log(hz.clamp(min=_MIN_LOG_HZ) / _MIN_LOG_HZ) / _LOG_STEP
    return torch.where(hz >= _MIN_LOG_HZ, log, linear)


def mel_to_hz(mel: torch.Tensor) -> torch.Tensor:
    """Mels on Slaney's scale to frequencies in Hz (the inverse of :func:`hz_to_mel`).

    Args:
        mel: mels, any shape.

    Returns:
        Frequencies in Hz, the same shape.

    Example:
        >>> mel_to_hz(torch.tensor([7.5, 15.0, 42.0])).round().tolist()
        [500.0, 1000.0, 6400.0]
    """
    mel = mel.to(torch.float64)
    linear = mel * 200.0 / 3.0
    log = _MIN_LOG_HZ * torch.exp(_LOG_STEP * (mel.clamp(min=_MIN_LOG_MEL) - _MIN_LOG_MEL))
    return torch.where(mel >= _MIN_LOG_MEL, log, linear)


def mel_filterbank(
    *,
    sample_rate: int,
    n_fft: int,
    n_mels: int,
    f_min: float = 0.0,
    f_max: float | None = None,
) -> torch.Tensor:
    """Triangular mel filters over the bins of a one-sided FFT, Slaney-normalised.

    Filter ``m`` rises linearly from the ``m``-th to the ``m+1``-th of ``n_mels + 2`` frequencies
    equally spaced in mels between ``f_min`` and ``f_max``, falls back to zero at the ``m+2``-th,
    and is scaled by ``2 / (f_{m+2} - f_m)`` (unit area in Hz).

    Args:
        sample_rate: sampling rate of the waveform in Hz.
        n_fft: FFT size; the filters cover its ``n_fft // 2 + 1`` bins.
        n_mels: number of mel bands.
        f_min: lowest frequency in Hz.
        f_max: highest frequency in Hz; ``None`` means ``sample_rate / 2``.

    Returns:
        ``(n_mels, n_fft // 2 + 1)`` float32 weights.

    Raises:
        UMTError: the frequency range or sizes are not valid.

    Example:
        >>> fb = mel_filterbank(sample_rate=16000, n_fft=512, n_mels=40)
        >>> tuple(fb.shape), bool((fb >= 0).all()), int(fb[0].argmax())
        ((40, 257), True, 2)
    """
    f_max = sample_rate / 2.0 if f_max is None else float(f_max)
    if not 0.0 <= f_min < f_max <= sample_rate / 2.0:
        raise UMTError(
            f"mel filterbank: need 0 <= f_min < f_max <= sample_rate / 2 = {sample_rate / 2}; "
            f"got f_min={f_min}, f_max={f_max}"
        )
    if n_mels < 1 or n_fft < 2:
        raise UMTError(f"mel filterbank: need n_mels >= 1 and n_fft >= 2; got {n_mels}, {n_fft}")
    fft_hz = torch.arange(n_fft // 2 + 1, dtype=torch.float64) * sample_rate / n_fft  # bins
    edges = torch.tensor([f_min, f_max], dtype=torch.float64)
    mel_lo, mel_hi = hz_to_mel(edges).tolist()
    hz = mel_to_hz(torch.linspace(mel_lo, mel_hi, n_mels + 2, dtype=torch.float64))  # (M + 2,)
    width = hz.diff()  # (M + 1,)
    offset = hz[:, None] - fft_hz[None, :]  # (M + 2, F)
    rising = -offset[:-2] / width[:-1, None]  # (M, F): 0 at the left edge, 1 at the centre
    falling = offset[2:] / width[1:, None]  # (M, F): 1 at the centre, 0 at the right edge
    weights = torch.minimum(rising, falling).clamp(min=0.0)
    weights = weights * (2.0 / (hz[2:] - hz[:-2]))[:, None]  # Slaney: unit area per filter
    return weights.to(torch.float32)


def power_to_db(
    power: torch.Tensor, *, amin: float = 1e-10, top_db: float | None = 80.0
) -> torch.Tensor:
    """Power to decibels, ``10 * log10(max(power, amin))``, floored ``top_db`` below the peak.

    Args:
        power: ``(..., n_mels, frames)`` non-negative power.
        amin: smallest power kept (avoids ``log(0)``).
        top_db: each spectrogram's values are raised to at least its own maximum minus ``top_db``;
            ``None`` keeps them all.

    Returns:
        Decibels, the same shape.

    Example:
        >>> power_to_db(torch.tensor([[1.0, 10.0, 0.0]]), top_db=30.0).tolist()
        [[0.0, 10.0, -20.0]]
    """
    db = 10.0 * torch.log10(power.clamp(min=amin))
    if top_db is not None:
        if top_db < 0:
            raise UMTError(f"power_to_db: top_db must be non-negative or None; got {top_db}")
        peak = db.amax(dim=(-2, -1), keepdim=True)
        db = torch.maximum(db, peak - top_db)
    return db


def log_mel(
    waveform: torch.Tensor,
    *,
    sample_rate: int,
    n_fft: int,
    hop_length: int,
    n_mels: int,
    f_min: float = 0.0,
    f_max: float | None = None,
    win_length: int | None = None,
    center: bool = True,
    amin: float = 1e-10,
    top_db: float | None = 80.0,
) -> torch.Tensor:
    """Log-mel spectrogram in dB of a mono waveform (or a batch of them).

    The STFT uses a periodic Hann window of ``win_length`` samples (zero-padded to ``n_fft``) and,
    with ``center``, frames centred on ``t * hop_length`` with zero padding at the ends, so that
    there are ``1 + T // hop_length`` frames. Power is ``|STFT|^2``; mel bands come from
    :func:`mel_filterbank`; decibels from :func:`power_to_db`.

    Args:
        waveform: ``(T,)`` or ``(..., T)`` samples, any float dtype.
        sample_rate: sampling rate in Hz.
        n_fft: FFT size.
        hop_length: samples between frames.
        n_mels: number of mel bands.
        f_min: lowest mel frequency in Hz.
        f_max: highest mel frequency in Hz; ``None`` means ``sample_rate / 2``.
        win_length: window length in samples; ``None`` means ``n_fft``.
        center: centre the frames (pad ``n_fft // 2`` zeros at both ends).
        amin: power floor before the logarithm.
        top_db: dynamic range kept below each spectrogram's peak; ``None`` keeps all.

    Returns:
        ``(..., n_mels, frames)`` float32 decibels.

    Raises:
        UMTError: the waveform is empty or too short for one frame.

    Example:
        >>> t = torch.arange(16000) / 16000
        >>> tone = torch.sin(2 * torch.pi * 1000 * t)  # 1 s of a 1 kHz tone
        >>> spec = log_mel(tone, sample_rate=16000, n_fft=512, hop_length=160, n_mels=40)
        >>> tuple(spec.shape)
        (40, 101)
        >>> hz = mel_to_hz(torch.linspace(0, float(hz_to_mel(torch.tensor(8000.0))), 42))[1:-1]
        >>> band = int(spec.mean(-1).argmax())
        >>> abs(hz[band].item() - 1000) < 100  # the tone's band is centred near 1 kHz
        True
    """
    if waveform.ndim == 0 or waveform.shape[-1] == 0:
        raise UMTError(
            f"log_mel: expected a waveform of shape (..., T) with T > 0; "
            f"got shape {tuple(waveform.shape)}"
        )
    if not center and waveform.shape[-1] < n_fft:
        raise UMTError(
            f"log_mel: the waveform has {waveform.shape[-1]} samples, fewer than n_fft={n_fft}; "
            "pad it or use center=True"
        )
    win_length = n_fft if win_length is None else win_length
    lead = waveform.shape[:-1]
    x = waveform.reshape(-1, waveform.shape[-1]).to(torch.float32)  # (B, T)
    window = torch.hann_window(win_length, periodic=True, dtype=x.dtype, device=x.device)
    spec = torch.stft(
        x,
        n_fft=n_fft,
        hop_length=hop_length,
        win_length=win_length,
        window=window,
        center=center,
        pad_mode="constant",
        return_complex=True,
    )  # (B, F, frames)
    power = spec.real.square() + spec.imag.square()
    fb = mel_filterbank(
        sample_rate=sample_rate, n_fft=n_fft, n_mels=n_mels, f_min=f_min, f_max=f_max
    ).to(device=x.device)
    mel = torch.matmul(fb, power)  # (B, n_mels, frames)
    db = power_to_db(mel, amin=amin, top_db=top_db)
    return db.reshape(*lead, n_mels, db.shape[-1])
