"""OutpaintClient: the façade. It checks its options, builds the layers and owns them:

    OutpaintClient -> Engine (one task's way) -> SharedPoller, Settler, StartPacer
                   -> WaveSpeedAPI (every endpoint) -> Transport (session, errors, retries)

Nothing below this module imports it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncGenerator, AsyncIterator
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, cast
from urllib.parse import urlsplit

import anyio
import attrs
from anyio.abc import TaskGroup

if sys.version_info >= (3, 11):
    from typing import Unpack
else:
    from typing_extensions import Unpack

from ._api.download import output_name
from ._api.endpoints import WaveSpeedAPI
from ._api.transport import Transport
from ._engine.batch import feed
from ._engine.identity import FileFacts
from ._engine.journal import Journal
from ._engine.state import BatchState
from ._engine.task import Engine
from ._engine.times import FILE_NAME, TaskTimes, default_state_dir, service_key
from ._outputs.files import FileWriter, LocalFolder
from ._outputs.finish import Finisher, check_can_finish
from ._outputs.s3 import ObjectPrefix, ObjectStores, is_object_url
from ._telemetry import telemetry
from ._version import __version__
from .errors import ConfigurationError
from .models import (
    MODEL_ID,
    BatchInput,
    BatchProgress,
    OutpaintRequest,
    OutpaintResult,
    Prediction,
    PredictionPage,
    expand_path,
    is_loopback_host,
)
from .options import DEFAULT_BASE_URL, ClientOptions, OptionKeywords
from .seams import OutputSink, StartLimiter, TaskStore

__all__ = ["OutpaintClient"]

# Output folders remembered by the client, at most.
MAX_FOLDERS = 64
# Where outputs go: a local folder, or any `OutputSink`.
OutputTarget = str | os.PathLike[str] | OutputSink


def _check_base_url(base_url: str, options: ClientOptions) -> str:
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(f"base_url {base_url!r} is not an http(s) URL")
    if (
        parts.scheme == "http"
        and not is_loopback_host(parts.hostname)
        and not options.allow_insecure_http
    ):
        raise ConfigurationError(
            f"base_url {base_url!r} is plain http to a host that is not loopback: the API key "
            "would cross the network in the clear. Use https://, or pass allow_insecure_http=True"
        )
    return base_url.rstrip("/")


class OutpaintClient:
    """An async client for the ACE-Step Audio Outpaint API.

        async with OutpaintClient() as client:          # key from WAVESPEED_API_KEY
            prediction = await client.submit(OutpaintRequest("song.wav", tags="lofi"))

    Options are `ClientOptions` fields, given as keywords or as `options=`.
    """

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        *,
        options: ClientOptions | None = None,
        limiter: StartLimiter | None = None,
        file_facts: FileFacts | None = None,
        **option_overrides: Unpack[OptionKeywords],
    ) -> None:
        options = options if options is not None else ClientOptions()
        if option_overrides:
            try:
                options = attrs.evolve(options, **cast("dict[str, Any]", option_overrides))
            except TypeError:
                known = ", ".join(a.name for a in attrs.fields(ClientOptions))
                raise ConfigurationError(
                    f"unknown option in {sorted(option_overrides)}; known options: {known}"
                ) from None
        self.options = options
        self.base_url = _check_base_url(
            base_url or os.environ.get("WAVESPEED_BASE_URL") or DEFAULT_BASE_URL, options
        )
        self._api_key = api_key or os.environ.get("WAVESPEED_API_KEY") or None
        self._transport = Transport(self.base_url, self._api_key, options)
        self._transport.telemetry = telemetry(options.telemetry, __version__)
        self._api = WaveSpeedAPI(self._transport)
        self._limiter = limiter
        self._files = file_facts if file_facts is not None else FileFacts()
        self._writer = FileWriter()
        self._objects = ObjectStores(options)
        # Output folders (by path) and bucket prefixes (by URL): `outpaint()` calls with
        # one out_dir share its sink.
        self._folders: dict[Path | str, OutputSink] = {}
        self._engine: Engine | None = None
        self._finisher: Finisher | None = None
        self._journal: Journal | None = None
        self._task_group: TaskGroup | None = None
        # What the poller learned of the service's times, kept for the next client.
        self._times: TaskTimes | None = None
        self._times_key = service_key(MODEL_ID, self.base_url)
        if options.remember_task_times:
            state = expand_path(options.state_dir) if options.state_dir else default_state_dir()
            self._times = TaskTimes(state / FILE_NAME)

    def __repr__(self) -> str:
        return f"OutpaintClient(base_url={self.base_url!r})"

    async def __aenter__(self) -> OutpaintClient:
        await self._transport.open()
        self._writer.start()
        self._finisher = Finisher(self._api, self._writer, self._objects)
        self._engine = Engine(
            self._api,
            self.options,
            self._files,
            self._finisher,
            limiter=self._limiter,
            objects=self._objects,
        )
        self._journal = Journal(None)  # outpaint() calls without a journal of their own
        self._engine.attach(self._journal)
        if self._times is not None:
            self._engine.poller.recall(
                await anyio.to_thread.run_sync(self._times.recall, self._times_key)
            )
        # Every background task (the shared poller, batches) lives in this group, and
        # leaving the client cancels and awaits them all.
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        self._task_group.start_soon(self._engine.poller.run)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._task_group is not None:
                self._task_group.cancel_scope.cancel()
                # The body's own exception is not handed to the task group, which would
                # wrap it in an ExceptionGroup: it propagates as it is, after the
                # background tasks are cancelled and awaited.
                await self._task_group.__aexit__(None, None, None)
        finally:
            self._task_group = None
            if self._times is not None and self._engine is not None:
                with anyio.CancelScope(shield=True):
                    learned = self._engine.poller.learned()
                    await anyio.to_thread.run_sync(self._times.keep, self._times_key, learned)
            if self._journal is not None:
                self._journal.close()
                self._journal = None
            await self._writer.stop()
            await self._transport.close()
            if self._finisher is not None:
                await anyio.to_thread.run_sync(self._finisher.close)

    async def _sink(self, out_dir: OutputTarget | None) -> OutputSink | None:
        """The sink for `out_dir`, checked before anything is sent for it."""
        if out_dir is None:
            return None
        if isinstance(out_dir, (str, os.PathLike)):
            where = str(out_dir) if is_object_url(out_dir) else expand_path(out_dir)
            known = self._folders.get(where)
            if known is None:
                if len(self._folders) >= MAX_FOLDERS:
                    self._folders.clear()
                known = self._folders[where] = (
                    LocalFolder(where, self._writer)
                    if isinstance(where, Path)
                    else ObjectPrefix(where, self._objects)
                )
            sink = known
        else:
            sink = out_dir
        await sink.prepare()
        return sink

    def _running_engine(self) -> Engine:
        if self._engine is None or self._task_group is None:
            raise RuntimeError("the client is not open: use `async with OutpaintClient(...)`")
        return self._engine

    @property
    def webhook_url(self) -> str | None:
        """Where submits ask the service to POST results; None polls only."""
        return self._api.webhook_url

    @webhook_url.setter
    def webhook_url(self, url: str | None) -> None:
        # Settable once a receiver's port is known; it applies to the next submits.
        self.options = attrs.evolve(self.options, webhook_url=url)  # checks the URL
        self._api.webhook_url = self.options.webhook_url
        if self._engine is not None:
            self._engine.poller.webhook_grace = self.options.webhook_grace if url else None

    def deliver(self, prediction: Prediction) -> bool:
        """Hand in a finished prediction that a verified webhook brought.

        The task waiting for it (in `outpaint()` or `outpaint_many()`) resolves at once,
        with no status request. Returns False when no task of this client awaits it yet.
        Use `WebhookReceiver`, or `WebhookVerifier` in another framework, to get here.
        """
        # A webhook's body is the service's text too: no key in it is kept or shown.
        scrubbed = self._transport.scrubbed
        prediction = attrs.evolve(
            prediction, error=scrubbed(prediction.error), raw=scrubbed(prediction.raw)
        )
        return self._running_engine().poller.deliver(prediction, "webhook")

    # -- the pipeline ------------------------------------------------------------------

    async def outpaint(
        self, request: OutpaintRequest, out_dir: OutputTarget | None = None
    ) -> OutpaintResult:
        """Run one task to the end: upload, submit, wait, and download into `out_dir`.

        Shares the client's poller with every other task, so thousands of concurrent
        callers cost one poll loop. Raises what stopped the task, as it was raised:
        `TaskFailedError` when the task failed at the service, `UnknownSubmissionError`
        when its submit could not be settled, an `APIError` when the submit was refused,
        `OutputError` when an output could not be written, and so on.
        """
        engine = self._running_engine()
        assert self._journal is not None
        batch = BatchState(self._journal, await self._sink(out_dir), forget=self._journal.forget)
        if batch.sink is not None:
            check_can_finish(request)
        result = await engine.run(request, None, batch)
        if result is None:
            assert batch.fatal is not None
            raise batch.fatal
        if result.exception is not None:
            raise result.exception
        return result

    async def outpaint_many(
        self,
        requests: BatchInput,
        out_dir: OutputTarget | None = None,
        *,
        journal: str | os.PathLike[str] | TaskStore | None = None,
        resubmit_unknown: bool = False,
        retry_failed: bool = False,
        progress: BatchProgress | None = None,
    ) -> AsyncGenerator[OutpaintResult, None]:
        """Run many tasks at once; yields each result as it finishes.

        `requests` is any iterable or async iterable, read lazily (no more ahead of the
        results taken than twice `max_in_flight` plus `parallel_downloads`), of
        `OutpaintRequest` or `(OutpaintRequest, output_name)` pairs; an output name
        such as `album/song` places the files under `out_dir` (default: the input's own
        name). A failed task
        is a result with `.error`; the batch goes on. When the account cannot pay or the
        key is refused, submitting stops, the tasks already in flight are collected,
        and then that error is raised.

        To stop a batch at once when leaving it early, close it: `async with
        contextlib.aclosing(client.outpaint_many(...)) as results:`.

        With `journal` (a file path, or any `TaskStore`), running the same batch again
        skips what finished, polls what was submitted and never submits a task twice.
        `progress`, when given, is kept up to date with live counts.
        """
        engine = self._running_engine()
        assert self._task_group is not None
        # Before the journal is opened (and locked): a refused out_dir leaves nothing held.
        sink = await self._sink(out_dir)
        # A path is opened and closed here; a store given as an object stays the caller's.
        batch_journal: TaskStore
        if journal is None or isinstance(journal, (str, os.PathLike)):
            batch_journal, own_journal = Journal(journal), True
        else:
            batch_journal, own_journal = journal, False
        engine.attach(batch_journal)
        # A journal keeps the times its batches saw tasks take, and a batch on it starts
        # from them (whoever ran it before, wherever).
        times = None
        if self.options.remember_task_times and isinstance(batch_journal, Journal):
            times = TaskTimes(batch_journal.path) if batch_journal.path else None
        learned_before = engine.poller.learned_total
        if times is not None:
            engine.poller.recall(await anyio.to_thread.run_sync(times.recall, self._times_key))
        batch = BatchState(
            batch_journal,
            sink,
            resubmit_unknown=resubmit_unknown,
            retry_failed=retry_failed,
            progress=progress if progress is not None else BatchProgress(),
        )
        send, receive = anyio.create_memory_object_stream[OutpaintResult](0)
        finished = anyio.Event()
        scope = anyio.CancelScope()
        self._task_group.start_soon(
            feed, engine, self.options, requests, batch, send, scope, finished
        )
        try:
            async with receive:
                async for result in receive:
                    yield result
        finally:
            scope.cancel()
            with anyio.CancelScope(shield=True):
                await finished.wait()
            engine.detach(batch_journal)
            if own_journal:
                batch_journal.close()
            if times is not None:
                learned = engine.poller.learned(learned_before)
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(times.keep, self._times_key, learned)
        if batch.fatal is not None:
            raise batch.fatal

    # -- calls -------------------------------------------------------------------------

    async def upload(self, path: str | os.PathLike[str]) -> str:
        """Upload a local MP3 / WAV / FLAC file; returns the URL to send as `audio`."""
        return await self._running_engine().inputs.upload(expand_path(path))

    async def submit(
        self,
        request: OutpaintRequest,
        *,
        extra: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
    ) -> Prediction:
        """Start one task (uploading a local file first). Charged once, never sent twice.

        Raises `UnknownSubmissionError` when the POST may have created a task but no
        usable answer came back; the SDK does not send it again. `extra` adds body
        fields and `params` query parameters (e.g. `{"webhook": url}`).
        """
        audio_url = await self.upload(request.audio) if isinstance(request.audio, Path) else None
        body = request.payload(audio_url)
        if extra:
            body.update(extra)
        return await self._api.submit(request, body, params=params)

    async def get(self, prediction_id: str) -> Prediction:
        """The prediction's current state (safe to call as often as needed)."""
        return await self._api.get(prediction_id)

    async def list_predictions(
        self,
        *,
        status: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        model: str | None = MODEL_ID,
        page_size: int = 100,
    ) -> AsyncIterator[PredictionPage]:
        """The account's recent predictions, newest first, a page at a time."""
        async for page, total, items in self._api.list_pages(
            status=status,
            created_after=created_after,
            created_before=created_before,
            model=model,
            page_size=page_size,
        ):
            predictions = tuple(Prediction.from_data(item) for item in items)
            yield PredictionPage(page=page, total=total, items=predictions)

    async def balance(self) -> float:
        """The account's balance in USD."""
        return await self._api.balance()

    async def webhook_secret(self) -> str:
        """The account's webhook signing secret (`whsec_...`)."""
        return await self._api.webhook_secret()

    async def download(self, url: str, dest: str | os.PathLike[str]) -> Path:
        """Stream an output to `dest` through a `.part` file (into an existing folder: by
        the URL's own file name); the output host never gets the API key."""
        dest = expand_path(dest)
        if await anyio.to_thread.run_sync(dest.is_dir):
            folder, name = dest, output_name(url)
        else:
            folder, name = dest.parent, dest.name
        self._running_engine()  # the writer thread runs while the client is open
        return Path(await self._api.download(url, LocalFolder(folder, self._writer), name))
