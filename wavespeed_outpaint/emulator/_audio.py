"""Real audio for the emulator: decode the input, add derived material before and after.

The new material is bars looped from the input itself with short crossfades, faded in
at the very start and out at the very end, chosen by a seeded generator: the same seed
and input always give the same file. The original samples stay untouched in the middle,
so a test can find them there.
"""

from __future__ import annotations

import io
import struct

import numpy as np
import soundfile as sf


def decode(data: bytes) -> tuple[np.ndarray, int]:
    """Samples as (frames, channels) float32, and the sample rate. Raises on bad input."""
    samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    if samples.shape[0] == 0:
        raise ValueError("the audio holds no samples")
    return samples, int(rate)


def _looped(source: np.ndarray, frames: int, rate: int, rng: np.random.Generator) -> np.ndarray:
    """`frames` samples of bars taken from `source` at random places, crossfaded."""
    channels = source.shape[1]
    if frames == 0:
        return np.zeros((0, channels), dtype=np.float32)
    bar = max(1, min(source.shape[0], 2 * rate))
    fade = min(bar // 4, rate // 20)
    out = np.zeros((frames + bar, channels), dtype=np.float32)
    pos = 0
    ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)[:, None] if fade else None
    while pos < frames:
        start = int(rng.integers(0, source.shape[0] - bar + 1))
        piece = source[start : start + bar].copy()
        if ramp is not None and pos > 0:
            # Overlap the head of this bar with the tail of the one before.
            back = pos - fade
            out[back:pos] = out[back:pos] * (1 - ramp) + piece[:fade] * ramp
            piece = piece[fade:]
            pos = back + fade
        out[pos : pos + piece.shape[0]] = piece
        pos += piece.shape[0]
    return out[:frames]


def render_outpaint(
    samples: np.ndarray, rate: int, before: float, after: float, seed: int
) -> bytes:
    """A WAV of `before` + input + `after` seconds, to the sample."""
    rng = np.random.default_rng(seed)
    before_frames = round(before * rate)
    after_frames = round(after * rate)
    head = _looped(samples, before_frames, rate, rng)
    tail = _looped(samples, after_frames, rate, rng)
    edge = min(rate, before_frames)
    if edge:
        head[:edge] *= np.linspace(0.0, 1.0, edge, dtype=np.float32)[:, None]
    edge = min(rate, after_frames)
    if edge:
        tail[-edge:] *= np.linspace(1.0, 0.0, edge, dtype=np.float32)[:, None]
    return wav_pcm16(np.concatenate([head, samples, tail]), rate)


def wav_pcm16(samples: np.ndarray, rate: int) -> bytes:
    """A 16-bit PCM WAV of (frames, channels) float samples, written directly: libsndfile
    through cffi cost the emulator more per output than the rest of serving it."""
    channels = samples.shape[1]
    pcm: bytes = np.round(np.clip(samples, -1.0, 1.0) * 32767).astype("<i2").tobytes()
    header = struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        36 + len(pcm),
        b"WAVE",
        b"fmt ",
        16,
        1,  # PCM
        channels,
        rate,
        rate * channels * 2,
        channels * 2,
        16,
        b"data",
        len(pcm),
    )
    return header + pcm


def make_track(
    seconds: float, rate: int = 22_050, *, channels: int = 1, seed: int = 0
) -> np.ndarray:
    """A short musical test track: a few notes with a beat, for demos and tests."""
    rng = np.random.default_rng(seed)
    frames = round(seconds * rate)
    t = np.arange(frames, dtype=np.float32) / rate
    notes = 220.0 * 2 ** (rng.integers(0, 12, size=max(1, int(seconds * 2) + 1)) / 12)
    freq = notes[(t * 2).astype(int)]
    tone = 0.3 * np.sin(2 * np.pi * freq * t)
    beat = 0.2 * np.exp(-((t * 2) % 1.0) * 12) * np.sin(2 * np.pi * 60 * t)
    # A little seeded noise: two seeds never give the same file.
    noise = 0.01 * rng.standard_normal(frames)
    mono = (tone + beat + noise).astype(np.float32)

    return np.repeat(mono[:, None], channels, axis=1)


def encode(samples: np.ndarray, rate: int, fmt: str) -> bytes:
    """Encode to "wav", "flac" or "mp3" bytes."""
    buf = io.BytesIO()
    sf.write(
        buf, samples, rate, format=fmt.upper(), **({"subtype": "PCM_16"} if fmt != "mp3" else {})
    )
    return buf.getvalue()
