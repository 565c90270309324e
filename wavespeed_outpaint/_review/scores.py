"""What the review page shows of one extended track: its waveform, and how audible its
seams are likely to be (where new audio meets the original).

The seam score, in dB, is a simple measure, meant to sort tracks (worst first), not to
judge them. At each seam it compares the second of audio just before with the second
just after:
- the loudness jump: the difference of their RMS levels (dBFS);
- the spectrum jump: the mean difference, over 24 bands spaced evenly in pitch from 50 Hz
  up, of their band levels (dB), each side's levels taken relative to its own mean, so a
  change of loudness alone does not count twice.
A seam's score is the sum of the two; a track's is its worst seam's. It ranks, it does
not judge: music that changes notes scores a few dB at joins no one notices; a sudden
change of level or of timbre scores more (12 dB louder: 12; three octaves up: about 9).

Blocking, a block at a time (a track is never held whole in memory): run it in a thread.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import attrs
import numpy as np

# How many columns the waveform has, and how much audio each side of a seam is compared.
COLUMNS = 160
SIDE_SECONDS = 1.0
BANDS = 24
LOWEST_BAND_HZ = 50.0
FFT_SIZE = 2048
# Long reads: at MPEG-2 rates libsndfile's MP3 decoder prints notices at read boundaries
# (see _formats.BLOCK_FRAMES).
BLOCK_FRAMES = 1 << 20
SILENCE_DB = -90.0
DYNAMIC_RANGE_DB = 60.0


@attrs.frozen
class Seam:
    at: float  # seconds into the output
    loudness_jump_db: float
    spectrum_jump_db: float

    @property
    def score(self) -> float:
        return self.loudness_jump_db + self.spectrum_jump_db


@attrs.frozen
class TrackView:
    duration: float  # seconds
    # The waveform: the lowest and highest sample of each column, -1 to 1.
    low: tuple[float, ...]
    high: tuple[float, ...]
    seams: tuple[Seam, ...]

    @property
    def score(self) -> float:
        return max((seam.score for seam in self.seams), default=0.0)


def analyse(path: Path, before: float, after: float) -> TrackView:
    """The waveform and seams of the output at `path`, which has `before` seconds of new
    audio at its start and `after` at its end."""
    import soundfile as sf

    with sf.SoundFile(path) as audio:
        rate, frames = audio.samplerate, audio.frames
        low, high = _envelope(audio, frames)
        duration = frames / rate
        joins = []
        if before > 0:
            joins.append(before)
        if after > 0:
            joins.append(duration - after)
        seams = tuple(_seam(audio, rate, at) for at in joins if 0 < at < duration)
    return TrackView(duration, low, high, seams)


def _mono(block: np.ndarray) -> np.ndarray:
    return block.mean(axis=1) if block.ndim == 2 else block


def _envelope(audio: Any, frames: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    columns = max(1, min(COLUMNS, frames))
    low = np.zeros(columns, dtype=np.float32)
    high = np.zeros(columns, dtype=np.float32)
    position = 0
    for block in audio.blocks(BLOCK_FRAMES, dtype="float32", always_2d=True):
        mono = _mono(block)
        column = (np.arange(position, position + len(mono)) * columns // max(frames, 1)).clip(
            0, columns - 1
        )
        np.minimum.at(low, column, mono)
        np.maximum.at(high, column, mono)
        position += len(mono)
    return tuple(np.round(low, 3).tolist()), tuple(np.round(high, 3).tolist())


def _read(audio: Any, rate: int, start: float, seconds: float) -> np.ndarray:
    audio.seek(max(0, round(start * rate)))
    return _mono(audio.read(max(0, round(seconds * rate)), dtype="float32", always_2d=True))


def _seam(audio: Any, rate: int, at: float) -> Seam:
    side = min(SIDE_SECONDS, at)
    before = _read(audio, rate, at - side, side)
    after = _read(audio, rate, at, SIDE_SECONDS)
    loudness = abs(_level_db(after) - _level_db(before))
    spectrum = float(np.mean(np.abs(_bands_db(after, rate) - _bands_db(before, rate))))
    return Seam(at, round(loudness, 2), round(spectrum, 2))


def _level_db(samples: np.ndarray) -> float:
    if samples.size == 0:
        return SILENCE_DB
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    return max(SILENCE_DB, 20 * float(np.log10(rms + 1e-12)))


def _bands_db(samples: np.ndarray, rate: int) -> np.ndarray:
    """Band levels (dB) relative to their own mean: the spectrum's shape, not its level."""
    if samples.size < FFT_SIZE:
        samples = np.pad(samples, (0, FFT_SIZE - samples.size))
    hop = FFT_SIZE // 2
    starts = range(0, samples.size - FFT_SIZE + 1, hop)
    window = np.hanning(FFT_SIZE)
    power = np.mean(
        [np.abs(np.fft.rfft(samples[s : s + FFT_SIZE] * window)) ** 2 for s in starts], axis=0
    )
    freqs = np.fft.rfftfreq(FFT_SIZE, 1 / rate)
    edges = np.geomspace(LOWEST_BAND_HZ, rate / 2, BANDS + 1)
    levels = np.array(
        [
            10 * np.log10(power[(freqs >= lo) & (freqs < hi)].sum() + 1e-12)
            for lo, hi in itertools.pairwise(edges)
        ]
    )
    # Bands more than this below the loudest count as that: a quiet band's exact level
    # (or a silent one's -inf) says nothing of the sound's shape.
    levels = np.maximum(levels, levels.max() - DYNAMIC_RANGE_DB)
    shape: np.ndarray = levels - levels.mean()
    return shape
