"""Decoding one clip with PyAV: frames sampled at the centres of equal segments, the sound as
mono samples, and both as the stored arrays."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from umt.data.audio import log_mel
from umt.data.prepare.clips import Source
from umt.data.prepare.config import AudioSettings, VideoSettings
from umt.errors import UMTError


class ClipError(Exception):
    """A clip that cannot be used (skipped, with this message as the reason)."""


def _import_av() -> Any:
    try:
        import av
    except ImportError:  # pragma: no cover - depends on the environment
        raise UMTError(
            "umt prepare decodes videos with PyAV, which is not installed; install it with "
            "pip install 'unimodal-teacher[video]' (or pip install av)"
        ) from None
    return av


#: FFmpeg's time unit for seeking a whole container (microseconds).
AV_TIME_BASE = 1_000_000


@contextmanager
def _open_stream(
    path: Path, kind: str, window: tuple[float, float] | None
) -> Iterator[tuple[Any, Any]]:
    """``path`` opened with PyAV and its first ``kind`` stream (``"video"`` or ``"audio"``),
    positioned at or before the start of ``window`` when that is past the first second.

    The seek lands on the keyframe at or before the start of the file's default stream (its video
    in a video file). Where exactly changes nothing that is kept: frames are picked by their
    times, and the sound is trimmed by the time of its first decoded frame (decoding from a little
    earlier gives the audio decoder its pre-roll).

    Yields:
        ``(container, stream)``; the container is closed when the block ends.

    Raises:
        ClipError: the file has no ``kind`` stream.
    """
    with _import_av().open(str(path)) as container:
        streams = getattr(container.streams, kind)
        if not streams:
            raise ClipError(f"no {kind} stream")
        if window is not None and window[0] > 1.0:
            container.seek(int(window[0] * AV_TIME_BASE))
        yield container, streams[0]


def _duration(container: Any, stream: Any) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return float(container.duration) / AV_TIME_BASE
    return None


def _to_square(frame: Any, size: int) -> np.ndarray:
    """A decoded frame, short side resized to ``size`` and centre-cropped: ``(3, size, size)``."""
    w, h = frame.width, frame.height
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    rgb = frame.to_ndarray(width=nw, height=nh, format="rgb24", interpolation="AREA")  # (H, W, 3)
    y0, x0 = (nh - size) // 2, (nw - size) // 2
    return np.ascontiguousarray(rgb[y0 : y0 + size, x0 : x0 + size].transpose(2, 0, 1))


def read_frames(path: Path, window: tuple[float, float] | None, video: VideoSettings) -> np.ndarray:
    """``video.frames`` frames at the centres of equal segments of the clip (or of ``window``),
    as ``(frames, 3, size, size)`` uint8 RGB. A frame is the first one shown at or after its
    target time (the last frame if the video ends first).

    Raises:
        ClipError: no video stream, or no frame could be decoded.
    """
    with _open_stream(path, "video", window) as (container, stream):
        stream.thread_type = "AUTO"  # before the first decode opens the codec
        start, end = window if window is not None else (0.0, _duration(container, stream))
        if end is None:  # length unknown: decode everything, then pick
            decoded = [(f.time or 0.0, f) for f in container.decode(stream)]
            if not decoded:
                raise ClipError("no video frame could be decoded")
            start, end = decoded[0][0], decoded[-1][0]
            frames: Iterable[Any] = (f for _, f in decoded)
        else:
            frames = container.decode(stream)
        span = max(end - start, 0.0)
        targets = [start + (k + 0.5) * span / video.frames for k in range(video.frames)]
        picked: list[np.ndarray] = []
        last = None
        for frame in frames:
            last = frame
            t = frame.time if frame.time is not None else start
            while len(picked) < video.frames and t >= targets[len(picked)]:
                picked.append(_to_square(frame, video.size))
            if len(picked) == video.frames:
                break
        if last is None:
            raise ClipError("no video frame could be decoded")
        while len(picked) < video.frames:  # the video ends before the last target
            picked.append(_to_square(last, video.size))
    return np.stack(picked)


def read_audio(path: Path, window: tuple[float, float] | None, sample_rate: int) -> np.ndarray:
    """The sound of a file (or of ``window`` of it), mono at ``sample_rate``, float32 ``(n,)``.

    Raises:
        ClipError: no audio stream, or no sample could be decoded.
    """
    with _open_stream(path, "audio", window) as (container, stream):
        resampler = _import_av().AudioResampler(format="fltp", layout="mono", rate=sample_rate)
        start, end = window if window is not None else (0.0, None)
        chunks: list[np.ndarray] = []
        first: float | None = None
        for frame in container.decode(stream):
            if first is None:
                first = frame.time if frame.time is not None else 0.0
            chunks.extend(out.to_ndarray()[0] for out in resampler.resample(frame))
            if end is not None and frame.time is not None and frame.time > end:
                break
        chunks.extend(out.to_ndarray()[0] for out in resampler.resample(None))
    wave = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    if window is not None and first is not None:
        lo = max(0, round((start - first) * sample_rate))
        hi = round((end - first) * sample_rate) if end is not None else len(wave)
        wave = wave[lo:hi]
    if wave.size == 0:
        raise ClipError("no audio sample could be decoded")
    return wave


def fit_length(wave: np.ndarray, n: int) -> np.ndarray:
    """Cut ``wave`` to ``n`` samples, or repeat it until it is that long (OGM-GE's rule).

    Example:
        >>> fit_length(np.arange(3.0), 7).tolist(), fit_length(np.arange(5.0), 2).tolist()
        ([0.0, 1.0, 2.0, 0.0, 1.0, 2.0, 0.0], [0.0, 1.0])
    """
    if len(wave) >= n:
        return wave[:n]
    return np.tile(wave, -(-n // len(wave)))[:n]


def decode_clip(
    source: Source, audio: AudioSettings, video: VideoSettings
) -> tuple[np.ndarray, np.ndarray]:
    """One clip's ``(spectrogram (1, n_mels, frames) float16, frames (T, 3, S, S) uint8)``.

    Raises:
        ClipError: the clip cannot be used (no stream, nothing decodable, a corrupt file).
    """
    av = _import_av()
    try:
        frames = read_frames(source.video, source.window, video)
        wave = fit_length(read_audio(source.audio, source.window, audio.sample_rate), audio.samples)
    except (av.FFmpegError, OSError, EOFError, ValueError) as e:
        message = str(e).splitlines()[0] if str(e) else ""
        raise ClipError(f"cannot decode: {type(e).__name__}: {message}"[:300]) from e
    spec = log_mel(
        torch.from_numpy(wave),
        sample_rate=audio.sample_rate,
        n_fft=audio.n_fft,
        hop_length=audio.hop_length,
        n_mels=audio.n_mels,
    )  # (n_mels, frames) dB
    return spec[None].numpy().astype(np.float16), frames
