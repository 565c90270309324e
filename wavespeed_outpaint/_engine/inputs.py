"""A task's input on its way to a URL the service reads: a local file checked and hashed
once per version of it, uploaded once per content; an object presigned (or streamed up
once per version); a URL as it is.

Thousands of tasks of one file ask at once: one check and hash, one upload, not
thousands (`OncePerKey`). Hashes are kept by `FileFacts` (bounded, shared with the command
line's plan) and, for a batch with a journal, in the journal by file version, so a
resumed batch reads no audio it has read before.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Generic, TypeVar

import anyio

from .._api.endpoints import WaveSpeedAPI
from .._outputs.s3 import ObjectStores
from ..errors import ValidationError
from ..models import ObjectRef, OutpaintRequest
from ..options import ClientOptions
from ..seams import FileVersion
from .identity import FileFacts, file_version
from .signal import Signal
from .state import BatchState

K = TypeVar("K")
V = TypeVar("V")


class OncePerKey(Generic[K, V]):
    """Work done once per key, however many tasks ask for it at the same moment: the
    first does it, the others wait for it (and, if it failed, try it themselves).
    Results are kept in `done`, unless `known` finds them in a cache of their own."""

    def __init__(self, known: Callable[[K], V | None] | None = None, keep: int = 10_000) -> None:
        # The most recently used `keep` results, when there is no cache of their own.
        self.done: OrderedDict[K, V] = OrderedDict()
        self._keep = keep if known is None else 0
        self._known = self._recall if known is None else known
        self._running: dict[K, Signal] = {}

    def _recall(self, key: K) -> V | None:
        value = self.done.get(key)
        if value is not None:
            self.done.move_to_end(key)
        return value

    async def get(self, key: K, work: Callable[[], Awaitable[V]]) -> V:
        while (value := self._known(key)) is None:
            running = self._running.get(key)
            if running is not None:
                await running.wait()
                continue
            finished = self._running[key] = Signal()
            try:
                value = await work()
            finally:
                del self._running[key]
                finished.set()
            if self._keep:
                self.done[key] = value
                if len(self.done) > self._keep:
                    self.done.popitem(last=False)
            return value
        return value


class Inputs:
    """Turns a request's audio into the URL to submit; owns the hashing and the uploads."""

    def __init__(
        self, api: WaveSpeedAPI, options: ClientOptions, files: FileFacts, objects: ObjectStores
    ) -> None:
        self._api = api
        self.options = options
        self.files = files
        self.objects = objects
        # Local files are read and uploaded a few at a time, first come first served: all
        # at once, 100 files of 40 MB sent their first task after 12.8 s
        # (benchmarks/first_submit.py). Each starts with one at a time, and takes its
        # `parallel_uploads` once its first is done: the first task's file is read, then
        # uploaded, with nothing else read beside it.
        self._reading = anyio.CapacityLimiter(1)
        self._uploads = anyio.CapacityLimiter(1)
        self._hashes = OncePerKey[FileVersion, str](known=self._checked_hash)
        self._upload_urls = OncePerKey[str, str]()

    def _checked_hash(self, version: FileVersion) -> str | None:
        if not self.files.checked(version, self.options.max_upload_bytes):
            return None
        return self.files.known_hash(version)

    async def content_hash(self, path: Path, batch: BatchState | None = None) -> str:
        """The file's SHA-256 once it is checked as audio the model takes (else
        `ValidationError`), once per version of it (a new size or mtime: again). With a
        batch, the hash its journal holds for this version is taken without reading the
        file, and one read is recorded there for the next run."""

        def check_and_hash() -> str:
            self.files.check(path, self.options.max_upload_bytes)
            return self.files.sha256(path)

        # (A store kept only while tasks run, outpaint() calls', keeps no hashes.)
        kept = batch if batch is not None and batch.forget is None else None
        try:
            version = file_version(path)
            if kept is not None:
                self._recall_hash(version, kept)
            digest = await self._hashes.get(
                version, lambda: anyio.to_thread.run_sync(check_and_hash, limiter=self._reading)
            )
            self._reading.total_tokens = self.options.parallel_uploads  # see __init__
        except OSError as exc:
            raise ValidationError(
                "audio", str(path), f"the file disappeared or cannot be read ({exc.strerror})"
            ) from None
        if kept is not None and version not in kept.hashes_recorded:
            kept.journal.remember_file_hash(version, digest)
            kept.hashes_recorded.add(version)
        return digest

    def _recall_hash(self, version: FileVersion, batch: BatchState) -> None:
        """The hash the batch's journal holds for this version of a file, if any, taken
        as if the file had been read."""
        if self.files.known_hash(version) is not None:
            return
        recorded = batch.journal.file_hash(version)
        if recorded is not None:
            self.files.remember_hash(version, recorded)
            batch.hashes_recorded.add(version)

    async def upload(self, path: Path) -> str:
        """Check a local file (off the event loop; remembered per version) and upload it."""
        info = await anyio.to_thread.run_sync(self.files.check, path, self.options.max_upload_bytes)
        async with self._uploads:
            try:
                return await self._api.upload(path, info)
            finally:
                self._uploads.total_tokens = self.options.parallel_uploads  # see __init__

    async def audio_url(
        self, request: OutpaintRequest, content_hash: str | None, batch: BatchState
    ) -> str:
        """The URL to submit: the user's, one signed for an object, or one upload per
        file content."""
        if request.is_object:
            ref = ObjectRef.parse(str(request.audio))
            if not self.options.upload_inputs:
                return await self.objects.presign(ref, self.options.presign_seconds)
            # For a store the service cannot reach: through the client, once per object
            # version (its identity), streamed.
            facts = await self.objects.check(ref)
            if facts.info.size > self.options.max_upload_bytes:
                raise ValidationError(
                    "audio",
                    str(ref),
                    f"the object is {facts.info.size / 1e6:.1f} MB, over max_upload_bytes; "
                    "let the service fetch it (no --upload-inputs) or raise the limit",
                )
            return await self._upload_urls.get(
                facts.identity,
                lambda: self._api.upload(self.objects.upload_source(ref), facts.info),
            )
        if not isinstance(request.audio, Path):
            return request.audio
        assert content_hash is not None
        path = request.audio

        async def upload() -> str:
            if await self.content_hash(path) != content_hash:
                raise ValidationError(
                    "audio", str(path), "the file changed after it was checked; run again"
                )
            return await self.upload(path)

        url = self._upload_urls.done.get(content_hash) or batch.journal.upload_url(content_hash)
        if url is None:
            url = await self._upload_urls.get(content_hash, upload)
        if batch.forget is None and content_hash not in batch.uploads_recorded:
            batch.journal.remember_upload(content_hash, url)
            batch.uploads_recorded.add(content_hash)
        return url
