"""Recognise audio by its content and read its duration from its header: a local file,
or the start and end of an object that is not read whole (`probe_window`)."""

from __future__ import annotations

import contextlib
import io
import os
import stat as stat_module
import struct
from collections.abc import Iterator
from typing import IO, Any

import attrs
import mutagen
from mutagen.flac import FLAC
from mutagen.mp3 import MPEGInfo
from mutagen.wave import WaveStreamInfo

MAX_AUDIO_SECONDS = 60 * 60
# The official SDK's cap; the docs name 50 MB and 300 MB elsewhere, so it is an option.
DEFAULT_MAX_UPLOAD_BYTES = 200 * 1024 * 1024

CONTENT_TYPES = {"mp3": "audio/mpeg", "wav": "audio/wav", "flac": "audio/flac"}


@attrs.frozen
class AudioInfo:
    format: str  # "mp3", "wav" or "flac"
    duration: float  # seconds, as the file's header states it
    size: int  # bytes

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.format]


class AudioProblem(Exception):
    """Why a file cannot be sent as outpaint input; the text says what to change."""


def sniff_format(head: bytes) -> str | None:
    """The format the first bytes announce, whatever the file's name says."""
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "wav"
    if head[:4] == b"fLaC" or (head[:3] == b"ID3" and b"fLaC" in head[10:]):
        return "flac"
    if head[:3] == b"ID3":
        return "mp3"
    # An MPEG audio frame starts with 11 set sync bits, a valid version and layer III.
    if len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0 and (head[1] & 0x06):
        return "mp3"
    return None


@contextlib.contextmanager
def binary_stream(source: str | os.PathLike[str] | IO[bytes]) -> Iterator[IO[bytes]]:
    """`source` opened for reading if it is a path; a stream as it is, from its start."""
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as stream:
            yield stream
    else:
        source.seek(0)
        yield source


def _stream_info(fmt: str, source: str | io.RawIOBase) -> Any:
    """The stream's facts, without reading MP3 and WAV tags: mutagen's MP3 and WAVE read
    their ID3 tags whole, and 8 MP3 inputs with a 60 MB cover each took over 900 MB to
    check (`benchmarks/covers.py`). (FLAC's pictures are blocks under 16 MiB each.)"""
    if fmt == "flac":
        return FLAC(source).info  # type: ignore[no-untyped-call]
    with binary_stream(source) as stream:  # type: ignore[arg-type]
        return MPEGInfo(stream) if fmt == "mp3" else WaveStreamInfo(stream)


def probe_audio(
    path: str | os.PathLike[str],
    *,
    max_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    stat: os.stat_result | None = None,
) -> AudioInfo:
    """Check that `path` is an MP3, WAV or FLAC file the model accepts. Blocking, and
    not cached: `FileFacts.check` remembers it per version of the file. `stat`: what
    `stat_input(path)` gave, if the caller has it already."""
    if stat is None:
        stat = stat_input(path)
    return _probe(str(path), stat.st_size, max_bytes)


def stat_input(path: str | os.PathLike[str]) -> os.stat_result:
    """`path`'s stat, if it is a regular file that can be read; else `AudioProblem`."""
    try:
        stat = os.stat(path)
    except ValueError:  # a NUL byte, which no file name can hold
        raise AudioProblem("is not a usable file name") from None
    except FileNotFoundError:
        raise AudioProblem("no such file; give an existing file or an https:// URL") from None
    except OSError as exc:
        raise AudioProblem(f"cannot be read ({exc.strerror})") from None
    if stat_module.S_ISDIR(stat.st_mode):
        raise AudioProblem("is a folder; give one audio file")
    if not stat_module.S_ISREG(stat.st_mode):
        # A FIFO or a device would block the read below, and with it Ctrl-C.
        raise AudioProblem("is not a regular file (a pipe or a device); give an audio file")
    return stat


def _probe(path: str, size: int, max_bytes: int) -> AudioInfo:
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except FileNotFoundError:
        raise AudioProblem("no such file; give an existing file or an https:// URL") from None
    except IsADirectoryError:
        raise AudioProblem("is a folder; give one audio file") from None
    except OSError as exc:
        raise AudioProblem(f"cannot be read ({exc.strerror})") from None
    if size > max_bytes:
        raise AudioProblem(
            f"the file is {size / 1e6:.1f} MB, over the upload limit of "
            f"{max_bytes / 1e6:.1f} MB; pass an https:// URL instead or raise the limit"
        )
    return _read_header(head, size, path)


def probe_window(head: bytes, tail: bytes, size: int) -> AudioInfo:
    """The same checks from an object's first and last bytes and its size: `head` from
    its start, `tail` ending at its end (empty when `head` holds it all)."""
    return _read_header(head, size, _Window(head, tail, size))


class _Window(io.RawIOBase):
    """A file of `size` bytes of which only the start and the end are known (zeros in
    between): enough for the readers, which seek to the headers and tags they need."""

    def __init__(self, head: bytes, tail: bytes, size: int) -> None:
        self._head, self._tail, self._size, self._at = head, tail, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._at

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._at, io.SEEK_END: self._size}[whence]
        self._at = max(0, base + offset)
        return self._at

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        start, end = self._at, min(self._size, self._at + len(view))
        if end <= start:
            return 0
        view[: end - start] = bytes(end - start)
        tail_start = self._size - len(self._tail)
        for offset, known in ((0, self._head), (tail_start, self._tail)):
            lo, hi = max(start, offset), min(end, offset + len(known))
            if lo < hi:
                view[lo - start : hi - start] = known[lo - offset : hi - offset]
        self._at = end
        return end - start


def _riff_seconds(path: str) -> float | None:
    """A WAV's length from its own `fmt ` and `data` chunks, whatever its other chunks
    hold; None if those two cannot be read."""
    try:
        with open(path, "rb") as f:
            if f.read(12)[8:] != b"WAVE":
                return None
            byte_rate = data = None
            while (header := f.read(8)) and len(header) == 8 and None in (byte_rate, data):
                kind, size = header[:4], struct.unpack("<I", header[4:])[0]
                if kind == b"fmt ":
                    byte_rate = struct.unpack("<I", f.read(16)[8:12])[0]
                    f.seek(size - 16 + size % 2, os.SEEK_CUR)
                elif kind == b"data":
                    data = size
                    f.seek(size + size % 2, os.SEEK_CUR)
                else:
                    f.seek(size + size % 2, os.SEEK_CUR)
    except (OSError, struct.error):
        return None
    return data / byte_rate if byte_rate and data else None


def _read_header(head: bytes, size: int, source: str | io.RawIOBase) -> AudioInfo:
    if size == 0:
        raise AudioProblem("the file is empty")
    fmt = sniff_format(head[:4096])
    if fmt is None:
        raise AudioProblem(
            "the content is not MP3, WAV or FLAC audio (the file's name does not matter)"
        )
    try:
        duration = float(getattr(_stream_info(fmt, source), "length", 0.0) or 0.0)
    except (mutagen.MutagenError, ValueError, ZeroDivisionError) as exc:
        # A WAV's tags (an `id3 ` chunk) may be broken where its audio is not.
        riff = _riff_seconds(source) if fmt == "wav" and isinstance(source, str) else None
        if riff is None:
            why = str(exc) or type(exc).__name__
            raise AudioProblem(
                f"looks like {fmt.upper()} but its header is broken ({why})"
            ) from None
        duration = riff
    if duration <= 0:
        raise AudioProblem(f"the {fmt.upper()} file holds no audio")
    if duration > MAX_AUDIO_SECONDS:
        raise AudioProblem(
            f"the audio lasts {duration / 60:.1f} minutes; the model takes at most 60 minutes"
        )
    return AudioInfo(format=fmt, duration=duration, size=size)
