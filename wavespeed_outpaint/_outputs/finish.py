"""Outputs as a library wants them: in the input's format (or a named one), with the
input's tags, on their way from the service to the sink.

The service's file is downloaded to a spool folder on this machine (whole, checked, as
every download), converted and tagged in a worker thread, checked again (it decodes to
the service's length), and only then written to the sink under its final name, marked
as every output is. A conversion that fails keeps the service's file, which was paid
for: it lands under the service's name, and the result says why.
"""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
import tempfile
import uuid
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import aiofiles
import anyio
import attrs

from .._api.download import output_name
from .._audio.extras import AUDIO_EXTRA, installed
from .._audio.formats import (
    SUFFIX_FORMATS,
    SUFFIXES,
    ConversionError,
    SourceAudio,
    convert,
    describe,
    target_format,
)
from .._audio.tags import MAX_COVER_BYTES, TrackTags, read_tags, tags_span, write_tags
from ..errors import MissingExtraError
from ..models import ObjectRef, OutpaintRequest
from ..seams import OutputMark, OutputSink
from .files import FileWriter, LocalFolder, made_in_thread
from .naming import output_extension, output_names, url_path
from .s3 import ObjectStores

if TYPE_CHECKING:
    from .._api.endpoints import WaveSpeedAPI

log = logging.getLogger("wavespeed_outpaint.finish")

COPY_CHUNK = 1024 * 1024
# Read past an object's tags, so that its first audio frames say what it is.
AUDIO_AFTER_TAGS = 64 * 1024
# Outputs converted and tagged at once. Conversion is CPU-bound (more than the cores gain
# nothing), and each holds its input's cover a few times over while its tags are read and
# written: 16 MP3s with an 11 MB cover each, all at once, took 649 MB more than untagged.
FINISHING_AT_ONCE = 4


def check_can_finish(request: OutpaintRequest) -> None:
    """Refuse, before anything is sent, outputs that need converting where nothing can
    convert them (the `audio` extra is not installed)."""
    if request.output_format != "service" and not installed(AUDIO_EXTRA):
        raise MissingExtraError(
            f"output_format={request.output_format!r} (converting the outputs)",
            "audio",
            "output_format='service' (the service's file as it is)",
        )


def input_format(request: OutpaintRequest) -> str | None:
    """The input's format, by its name ("mp3", "wav", "flac"); None for a URL whose path
    does not say."""
    audio = request.audio
    suffix = audio.suffix if isinstance(audio, Path) else PurePosixPath(url_path(audio)).suffix
    return SUFFIX_FORMATS.get(suffix.lower())


def delivered_names(
    request: OutpaintRequest, stem: str, outputs: tuple[str, ...]
) -> list[tuple[str, str | None]]:
    """Each output's name under the sink, and the format it is converted to (None: the
    service's file as it is)."""
    named = []
    source = SourceAudio(input_format(request))
    for name in output_names(stem, outputs):
        service_suffix = PurePosixPath(name).suffix
        fmt = target_format(request.output_format, source, service_suffix)
        if fmt is not None:
            name = name[: len(name) - len(service_suffix)] + SUFFIXES[fmt]
        named.append((name, fmt))
    return named


@attrs.frozen
class Delivered:
    location: str
    # Why the output is the service's file, not in the format asked for; None if it is.
    kept_as_made: str | None = None
    # What of the input's tags was left out (a cover over MAX_COVER_BYTES); None: nothing.
    note: str | None = None


class Finisher:
    """Makes outputs in the format asked for; owns the spool folder (removed at close)."""

    def __init__(self, api: WaveSpeedAPI, writer: FileWriter, objects: ObjectStores) -> None:
        self._api = api
        self._writer = writer
        self._objects = objects
        self._spool: Path | None = None
        self._finishing = anyio.CapacityLimiter(FINISHING_AT_ONCE)
        self._making_spool = anyio.Lock()

    def close(self) -> None:
        if self._spool is not None:
            shutil.rmtree(self._spool, ignore_errors=True)
            self._spool = None

    async def deliver(
        self,
        url: str,
        sink: OutputSink,
        name: str,
        fmt: str,
        mark: OutputMark | None,
        request: OutpaintRequest,
    ) -> Delivered:
        """The output at `url` into `sink` as `name`, in format `fmt`."""
        folder = await self._spool_folder() / uuid.uuid4().hex
        try:
            service_name = output_name(url)  # (a safe name, whatever the URL holds)
            made = Path(
                await self._api.download(url, LocalFolder(folder, self._writer), service_name)
            )
            converted = folder / ("converted" + PurePosixPath(name).suffix)
            marker: dict[str, object] = {
                "prediction_id": mark.prediction_id if mark else None,
                "extend_before_duration": request.extend_before_duration,
                "extend_after_duration": request.extend_after_duration,
                "tags": request.tags,
            }
            try:
                note = await self._make(made, converted, fmt, marker, request)
            except Exception as exc:  # noqa: BLE001 - whatever it was, the paid audio is kept
                kept = PurePosixPath(name).with_suffix(output_extension(url))
                location = await _copy_into(made, sink, str(kept), mark)
                return Delivered(location, f"kept as the service made it: {_why(exc)}")
            return Delivered(await _copy_into(converted, sink, name, mark), note=note)
        finally:
            await anyio.to_thread.run_sync(lambda: shutil.rmtree(folder, ignore_errors=True))

    async def _spool_folder(self) -> Path:
        # One spool for every output: made by the first that needs it, while the others wait.
        async with self._making_spool:
            if self._spool is None:
                made = await made_in_thread(
                    lambda: tempfile.mkdtemp(prefix="outpaint-"), shutil.rmtree
                )
                self._spool = Path(made)
            return self._spool

    async def _make(
        self,
        made: Path,
        converted: Path,
        fmt: str,
        marker: dict[str, object],
        request: OutpaintRequest,
    ) -> str | None:
        """`converted`: the service's file `made` in `fmt` with the input's tags; what of
        the tags was left out. (The tags, a cover among them, are let go on return.)"""
        async with self._finishing:
            with self._api.transport.telemetry.finishing(fmt):
                source, tags = await self._describe_input(request)
                await anyio.to_thread.run_sync(
                    _finish, made, converted, fmt, source, tags, marker, request.title_suffix
                )
        return _left_out(tags)

    async def _describe_input(self, request: OutpaintRequest) -> tuple[SourceAudio, TrackTags]:
        """What the input is (sample format, bitrate) and its tags, as far as they can be
        read: a local file, or an object's first bytes; a URL only by its name."""
        fmt = input_format(request)
        audio = request.audio
        if isinstance(audio, Path):
            return await anyio.to_thread.run_sync(_read_input, audio, fmt, request.keep_tags)
        if request.is_object:
            ref = ObjectRef.parse(audio)
            head = await self._objects.head_bytes(ref)
            # Tags with a large cover run past the first read: read as far as they say
            # (FLAC's blocks say it one at a time), and a little audio after them.
            while len(head) < (span := tags_span(head)) + AUDIO_AFTER_TAGS:
                more = await self._objects.head_bytes(ref, span + AUDIO_AFTER_TAGS)
                if len(more) <= len(head):
                    break  # the object ends here
                head = more
            return await anyio.to_thread.run_sync(
                _read_input, io.BytesIO(head), fmt, request.keep_tags
            )
        return SourceAudio(fmt), TrackTags()


def _left_out(tags: TrackTags) -> str | None:
    if not tags.cover_left_out:
        return None
    return (
        f"its cover ({tags.cover_left_out / 1e6:.1f} MB) was left out: covers over "
        f"{MAX_COVER_BYTES / 1e6:.1f} MB are not carried over"
    )


def _why(exc: Exception) -> str:
    """Why an output could not be made in its format: a conversion's own words, else the
    unexpected error's kind and text (a library raising what it does not document, a
    bad tag, an input that cannot be read any more)."""
    if isinstance(exc, ConversionError):
        return str(exc)
    log.warning("finishing an output failed", exc_info=exc)
    return f"the output could not be made in its format ({type(exc).__name__}: {exc})"


def _read_input(
    audio: Path | io.BytesIO, fmt: str | None, keep_tags: bool
) -> tuple[SourceAudio, TrackTags]:
    return describe(audio, fmt), read_tags(audio) if keep_tags else TrackTags()


def _finish(
    made: Path,
    target: Path,
    fmt: str,
    source: SourceAudio,
    tags: TrackTags,
    marker: dict[str, object],
    title_suffix: str,
) -> None:
    convert(made, target, fmt, source)
    try:
        write_tags(target, fmt, tags, marker, title_suffix)
    except Exception as exc:  # noqa: BLE001 - mutagen's errors are many; all mean the same
        raise ConversionError(f"the tags could not be written: {exc}") from None


async def _copy_into(path: Path, sink: OutputSink, name: str, mark: OutputMark | None) -> str:
    part = await sink.open_part(name, mark)
    try:
        async with aiofiles.open(path, "rb") as source:
            while chunk := await source.read(COPY_CHUNK):
                await part.write(chunk)
        return await part.commit()
    except BaseException:
        with contextlib.suppress(Exception):
            await part.abort()
        raise
