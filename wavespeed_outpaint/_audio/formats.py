"""Outputs in the format a library wants: the input's own (MP3 stays MP3 at a comparable
bitrate, FLAC stays FLAC, WAV keeps its sample width) or a named one. Converted by
libsndfile (through soundfile) a block at a time, then checked: the new file must decode
whole to the service's output's length, or it does not take the output's place.

Blocking: the client runs these in worker threads.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import IO, Any

import attrs

from .probe import binary_stream

# "service": the file as the service made it (byte for byte what was paid for);
# "same": the input's container and codec; or a named format.
OUTPUT_FORMATS = ("service", "same", "wav", "flac", "mp3", "ogg")
SUFFIXES = {"wav": ".wav", "flac": ".flac", "mp3": ".mp3", "ogg": ".ogg"}
SUFFIX_FORMATS = {suffix: fmt for fmt, suffix in SUFFIXES.items()}
_CONTAINERS = {"wav": "WAV", "flac": "FLAC", "mp3": "MP3", "ogg": "OGG"}
# Sample formats each container keeps as they are; others are written at the default.
_KEPT_SUBTYPES = {
    "wav": ("PCM_16", "PCM_24", "PCM_32", "FLOAT"),
    "flac": ("PCM_16", "PCM_24"),
}
_DEFAULT_SUBTYPES = {"wav": "PCM_16", "flac": "PCM_16", "mp3": "MPEG_LAYER_III", "ogg": "VORBIS"}
# An MP3 is written at the input's bitrate, or this one when the input was not an MP3.
DEFAULT_MP3_KBPS = 256
# libsndfile's MP3 bitrate (constant): 320 kbit/s at compression level 0, 32 near 1.
# Not below 128: lower, LAME pads the track (1,152 to 1,561 frames at 8 to 48 kHz), and
# the length no longer matches; from 128 up it is exact at every rate tried.
_MP3_KBPS_RANGE = (32, 320)
MIN_MP3_KBPS = 128
# Long reads: libsndfile's MP3 decoder prints notices ("part2_3_length ... too large")
# on stderr at the boundary of a read at MPEG-2 rates (below 32 kHz), though the samples
# are the same as a whole read's; 2^20 frames (8 MB of stereo) holds a short track in
# one read, and 44.1 / 48 kHz audio draws none.
BLOCK_FRAMES = 1 << 20
# An MP3's length is known to one MPEG frame (encoder delay and padding); the others' to
# the sample.
_TOLERANCE = {"mp3": 1152}


class ConversionError(Exception):
    """The output could not be made in the format asked for; the text says why."""


@attrs.frozen
class SourceAudio:
    """What an input was, as far as "same" needs it."""

    format: str | None = None  # "mp3", "wav", "flac", or None when not known
    subtype: str | None = None  # libsndfile's sample format: PCM_16, PCM_24, FLOAT ...
    kbps: int | None = None  # an MP3's bitrate


def target_format(output_format: str, source: SourceAudio, service_suffix: str) -> str | None:
    """The format an output is converted to; None: keep the service's file as it is."""
    if output_format == "service":
        return None
    if output_format == "same":
        return source.format or SUFFIX_FORMATS.get(service_suffix)
    return output_format


def describe(audio: Path | IO[bytes], format_hint: str | None) -> SourceAudio:
    """What an input is (from a file, or the first bytes of an object); what cannot be
    read is left unknown, and "same" then falls back to the defaults."""
    import soundfile as sf
    from mutagen.mp3 import HeaderNotFoundError, MPEGInfo

    subtype = kbps = None
    if format_hint == "mp3":
        # Only its bitrate matters, from its first frames: mutagen's MP3 reads the ID3
        # tag whole and libsndfile holds it too (a 60 MB cover: 230 and 57 MB more).
        try:
            with binary_stream(audio) as stream:
                kbps = round(MPEGInfo(stream).bitrate / 1000) or None
        except (HeaderNotFoundError, OSError, ValueError):
            pass
        return SourceAudio(format_hint, None, kbps)
    with contextlib.suppress(RuntimeError, OSError, ValueError, sf.LibsndfileError):
        subtype = sf.info(audio).subtype
    return SourceAudio(format_hint, subtype, kbps)


def _subtype(fmt: str, source: SourceAudio, service_subtype: str) -> str:
    kept = _KEPT_SUBTYPES.get(fmt, ())
    if source.format == fmt and source.subtype in kept:
        return source.subtype
    if service_subtype in kept:
        return service_subtype
    return _DEFAULT_SUBTYPES[fmt]


def _mp3_level(kbps: int) -> float:
    low, high = _MP3_KBPS_RANGE
    kbps = min(max(kbps, MIN_MP3_KBPS), high)
    return min((high - kbps) / (high - low), 0.99)  # (1.0 itself is refused)


def convert(source: Path, target: Path, fmt: str, like: SourceAudio) -> None:
    """Write `source` (the service's output) to `target` as `fmt`, then check it."""
    import soundfile as sf

    try:
        with sf.SoundFile(source) as src:
            frames = src.frames
            subtype = _subtype(fmt, like, src.subtype)
            extra: dict[str, Any] = {}
            if fmt == "mp3":
                kbps = like.kbps if like.format == "mp3" and like.kbps else DEFAULT_MP3_KBPS
                extra = {"compression_level": _mp3_level(kbps), "bitrate_mode": "CONSTANT"}
            lossless = subtype.startswith("PCM")
            with sf.SoundFile(
                target,
                "w",
                src.samplerate,
                src.channels,
                subtype=subtype,
                format=_CONTAINERS[fmt],
                **extra,
            ) as dst:
                for block in src.blocks(BLOCK_FRAMES, dtype="int32" if lossless else "float32"):
                    dst.write(block)
    except (RuntimeError, OSError, ValueError, sf.LibsndfileError) as exc:
        raise ConversionError(f"libsndfile could not write {fmt}: {exc}") from None
    check(target, frames, fmt)


def check(path: Path, frames: int, fmt: str) -> None:
    """`path` decodes to the end, to `frames` frames (to within an MP3 frame)."""
    import soundfile as sf

    decoded = 0
    try:
        with sf.SoundFile(path) as written:
            for block in written.blocks(BLOCK_FRAMES, dtype="float32"):
                decoded += len(block)
    except (RuntimeError, OSError, ValueError, sf.LibsndfileError) as exc:
        raise ConversionError(f"the {fmt} file does not decode: {exc}") from None
    if abs(decoded - frames) > _TOLERANCE.get(fmt, 0):
        raise ConversionError(
            f"the {fmt} file decodes to {decoded} frames, the service's output has {frames}"
        )
