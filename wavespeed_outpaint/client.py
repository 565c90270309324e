"""OutpaintClient: the async context manager that owns the session and every call."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import aiofiles
import aiohttp
import anyio
import attrs
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectSendStream

from . import _download
from ._audio import AudioProblem, probe_audio
from ._engine import BatchState, Engine
from ._http import NotSent, Policy, Transport
from ._journal import Journal
from ._taskset import TaskSet
from .errors import (
    APIError,
    ConfigurationError,
    OutpaintError,
    ProtocolError,
    TaskFailedError,
    TransportError,
    UnknownSubmissionError,
    ValidationError,
)
from .models import (
    MODEL_ID,
    BatchProgress,
    OutpaintRequest,
    OutpaintResult,
    Prediction,
    Status,
    expand_path,
    is_loopback_host,
)
from .options import DEFAULT_BASE_URL, ClientOptions

__all__ = ["OutpaintClient", "PredictionPage"]

SUBMIT_PATH = f"/api/v3/{MODEL_ID}"
UPLOAD_CHUNK = 256 * 1024
LIST_STATUSES = ("completed", "failed", "processing")
# Requests read ahead per parallel submit: enough that a submitter never waits for one.
UNSENT_PER_SUBMITTER = 4


@attrs.frozen
class PredictionPage:
    page: int
    total: int
    items: tuple[Prediction, ...]


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
        **option_overrides: Any,
    ) -> None:
        options = options if options is not None else ClientOptions()
        if option_overrides:
            try:
                options = attrs.evolve(options, **option_overrides)
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
        self._list_method = "POST"
        self._webhook_url = options.webhook_url
        self._engine: Engine | None = None
        self._journal: Journal | None = None
        self._task_group: TaskGroup | None = None

    def __repr__(self) -> str:
        return f"OutpaintClient(base_url={self.base_url!r})"

    async def __aenter__(self) -> OutpaintClient:
        await self._transport.open()
        self._engine = Engine(self)
        self._journal = Journal(None)  # outpaint() calls without a journal of their own
        self._engine.attach(self._journal)
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
            if self._journal is not None:
                self._journal.close()
                self._journal = None
            await self._transport.close()

    def _running_engine(self) -> Engine:
        if self._engine is None or self._task_group is None:
            raise RuntimeError("the client is not open: use `async with OutpaintClient(...)`")
        return self._engine

    @property
    def webhook_url(self) -> str | None:
        """Where submits ask the service to POST results; None polls only."""
        return self._webhook_url

    @webhook_url.setter
    def webhook_url(self, url: str | None) -> None:
        # Settable once a receiver's port is known; it applies to the next submits.
        self._webhook_url = attrs.evolve(self.options, webhook_url=url).webhook_url
        if self._engine is not None:
            self._engine.poller.webhook_grace = self.options.webhook_grace if url else None

    def deliver(self, prediction: Prediction) -> bool:
        """Hand in a finished prediction that a verified webhook brought.

        The task waiting for it (in `outpaint()` or `outpaint_many()`) resolves at once,
        with no status request. Returns False when no task of this client awaits it yet.
        Use `WebhookReceiver`, or `WebhookVerifier` in another framework, to get here.
        """
        return self._running_engine().poller.deliver(prediction, "webhook")

    # -- the pipeline ------------------------------------------------------------------

    async def outpaint(
        self, request: OutpaintRequest, out_dir: str | os.PathLike[str] | None = None
    ) -> OutpaintResult:
        """Run one task to the end: upload, submit, wait, and download into `out_dir`.

        Shares the client's poller with every other task, so thousands of concurrent
        callers cost one poll loop. Raises on failure: `TaskFailedError` when the task
        failed, `UnknownSubmissionError` when its submit could not be settled.
        """
        engine = self._running_engine()
        assert self._journal is not None
        batch = BatchState(self._journal, expand_path(out_dir) if out_dir is not None else None)
        result = await engine.run(request, None, batch)
        if result is None:
            assert batch.fatal is not None
            raise batch.fatal
        if result.status is Status.UNKNOWN:
            row_time = result.submitted_at or time.time()
            raise UnknownSubmissionError(
                request, sent_at=row_time, failed_at=row_time, cause=result.error or "answer lost"
            )
        if result.status is not Status.COMPLETED:
            raise TaskFailedError(
                Prediction(
                    result.prediction_id or "",
                    result.status,
                    error=result.error or "",
                    code=result.code,
                )
            )
        if result.error:
            raise TransportError(result.error)
        return result

    async def outpaint_many(
        self,
        requests: BatchInput,
        out_dir: str | os.PathLike[str] | None = None,
        *,
        journal: str | os.PathLike[str] | None = None,
        resubmit_unknown: bool = False,
        retry_failed: bool = False,
        progress: BatchProgress | None = None,
    ) -> AsyncIterator[OutpaintResult]:
        """Run many tasks at once; yields each result as it finishes.

        `requests` is any iterable or async iterable, read lazily, of `OutpaintRequest`
        or `(OutpaintRequest, output_name)` pairs; an output name such as `album/song`
        places the files under `out_dir` (default: the input's own name). A failed task
        is a result with `.error`; the batch goes on. When the account cannot pay or the
        key is refused, submitting stops, the tasks already in flight are collected,
        and then that error is raised.

        With `journal` (a file path), running the same batch again skips what finished,
        polls what was submitted and never submits a task twice. `progress`, when given,
        is kept up to date with live counts.
        """
        engine = self._running_engine()
        assert self._task_group is not None
        batch_journal = Journal(journal)
        engine.attach(batch_journal)
        batch = BatchState(
            batch_journal,
            expand_path(out_dir) if out_dir is not None else None,
            resubmit_unknown=resubmit_unknown,
            retry_failed=retry_failed,
            progress=progress if progress is not None else BatchProgress(),
        )
        send, receive = anyio.create_memory_object_stream[OutpaintResult](0)
        finished = anyio.Event()
        scope = anyio.CancelScope()
        self._task_group.start_soon(self._produce, engine, requests, batch, send, scope, finished)
        try:
            async with receive:
                async for result in receive:
                    yield result
        finally:
            scope.cancel()
            with anyio.CancelScope(shield=True):
                await finished.wait()
            engine.detach(batch_journal)
            batch_journal.close()
        if batch.fatal is not None:
            raise batch.fatal

    async def _produce(
        self,
        engine: Engine,
        requests: BatchInput,
        batch: BatchState,
        send: MemoryObjectSendStream[OutpaintResult],
        scope: anyio.CancelScope,
        finished: anyio.Event,
    ) -> None:
        """Feed requests to the engine, never more than the pipeline can hold at once."""
        # asyncio's semaphores: anyio's cost more, at one wait per request.
        admission = asyncio.Semaphore(self.options.max_in_flight + self.options.parallel_downloads)
        # Tasks not yet sent: reading `max_in_flight` requests at once would hold
        # thousands of tasks in memory that only wait for a submitter.
        unsent = asyncio.Semaphore(UNSENT_PER_SUBMITTER * self.options.parallel_submits)

        async def one(request: OutpaintRequest, stem: str | None) -> None:
            waiting = True

            def sent() -> None:
                nonlocal waiting
                if waiting:
                    waiting = False
                    unsent.release()

            try:
                result = await engine.run(request, stem, batch, sent)
            except OutpaintError as exc:  # this task cannot run; the others go on
                result = OutpaintResult(request, Status.FAILED, error=str(exc))
            finally:
                sent()
            try:
                if result is not None:
                    batch.progress.count(result)
                    await send.send(result)
            finally:
                # Released once the consumer has the result: a slow consumer slows
                # the reading of requests instead of piling up finished tasks.
                admission.release()

        try:
            with scope:
                async with send, TaskSet() as tasks:
                    async for item in _items(requests):
                        if batch.stopped or scope.cancel_called:
                            break
                        try:
                            request, stem = _unpack(item)
                        except ValidationError as exc:
                            # Not a request at all: stop submitting, collect what runs.
                            batch.fatal = batch.fatal or exc
                            break
                        await admission.acquire()
                        await unsent.acquire()
                        tasks.start(one(request, stem))
        except Exception as exc:  # noqa: BLE001 - handed to the consumer, who raises it
            batch.fatal = batch.fatal or _sole_cause(exc)
        finally:
            finished.set()

    # -- uploads -----------------------------------------------------------------------

    async def upload(self, path: str | os.PathLike[str]) -> str:
        """Upload a local MP3 / WAV / FLAC file; returns the URL to send as `audio`."""
        path = expand_path(path)
        try:
            info = probe_audio(path, max_bytes=self.options.max_upload_bytes)
        except AudioProblem as exc:
            raise ValidationError("audio", str(path), str(exc)) from None
        ticket_body = {"filename": path.name, "size": info.size, "content_type": info.content_type}
        try:
            ticket = await self._transport.call(
                "POST", "/api/v3/media/uploads", json_body=ticket_body
            )
        except APIError as exc:
            if exc.status not in (404, 405):
                raise
            return await self._upload_binary(path, info.content_type)
        try:
            instruction = ticket["upload"]
            put_url, method = str(instruction["url"]), str(instruction.get("method", "PUT"))
            put_headers = {
                str(k): str(v) for k, v in dict(instruction.get("headers") or {}).items()
            }
            download_url = str(ticket["download_url"])
        except (KeyError, TypeError, ValueError, AttributeError):
            raise ProtocolError("the upload ticket lacks upload.url or download_url") from None
        if method.upper() != "PUT":
            raise ProtocolError(f"the upload ticket asks for {method!r}; only PUT is known")
        put_headers["Content-Length"] = str(info.size)

        async def put_once() -> None:
            try:
                # The ticket's URL is pre-signed storage: it gets no Authorization header.
                async with self._transport.session.put(
                    put_url,
                    data=_file_chunks(path),
                    headers=put_headers,
                    timeout=self._transport.timeout(),
                ) as response:
                    if not 200 <= response.status < 300:
                        text = (await response.content.read(500)).decode("utf-8", "replace")
                        raise self._transport.error_for(
                            response.status, f"upload PUT refused: {text}"
                        )
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                raise TransportError(f"upload PUT failed: {type(exc).__name__}") from None

        await self._transport.retrying(Policy.IDEMPOTENT, f"upload {path.name}", put_once)
        return download_url

    async def _upload_binary(self, path: Path, content_type: str) -> str:
        """The older single-step upload, for services without the ticket endpoint."""

        @contextlib.contextmanager
        def file_form() -> Iterator[aiohttp.FormData]:
            with path.open("rb") as f:
                form = aiohttp.FormData()
                form.add_field("file", f, filename=path.name, content_type=content_type)
                yield form

        data = await self._transport.call("POST", "/api/v3/media/upload/binary", form=file_form)
        if not isinstance(data, dict) or not isinstance(data.get("download_url"), str):
            raise ProtocolError("the upload answer lacks download_url")
        return str(data["download_url"])

    # -- tasks -------------------------------------------------------------------------

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
        return await self._post_submit(request, body, params=params)

    async def _post_submit(
        self,
        request: OutpaintRequest,
        body: dict[str, Any],
        *,
        params: dict[str, str] | None = None,
        pooled: bool = False,
    ) -> Prediction:
        """The submit POST. `pooled`: a 429 is raised for the pool's pacer to handle."""
        webhook = self._webhook_url
        if webhook is not None:
            if self.options.webhook_field == "body":
                body = {**body, "webhook_url": webhook}
            else:
                params = {**(params or {}), "webhook": webhook}
        sent_at = time.time()
        try:
            data = await self._transport.call(
                "POST",
                SUBMIT_PATH,
                policy=Policy.SUBMIT,
                json_body=body,
                params=params,
                retry_rate_limits=not pooled,
            )
            return self._prediction(data)
        except NotSent:
            raise
        except APIError as exc:
            # A definite refusal (4xx) or a "not accepted" status means no task exists.
            if exc.status < 500 or exc.status in self.options.submit_resend_statuses:
                raise
            cause = str(exc)
        except TransportError as exc:
            cause = str(exc)
        raise UnknownSubmissionError(request, sent_at=sent_at, failed_at=time.time(), cause=cause)

    async def get(self, prediction_id: str) -> Prediction:
        """The prediction's current state (safe to call as often as needed)."""
        if not prediction_id or "/" in prediction_id:
            raise ValidationError("prediction_id", prediction_id, "give the id a submit returned")
        data = await self._transport.call(
            "GET", f"/api/v3/predictions/{prediction_id}/result", prediction_id=prediction_id
        )
        return self._prediction(data)

    def _prediction(self, data: Any) -> Prediction:
        if not isinstance(data, dict) or not isinstance(data.get("id"), str) or not data["id"]:
            raise ProtocolError("the answer has no prediction id")
        return Prediction.from_data(data)

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
        async for page, total, items in self._list_pages(
            status=status,
            created_after=created_after,
            created_before=created_before,
            model=model,
            page_size=page_size,
        ):
            predictions = tuple(Prediction.from_data(item) for item in items)
            yield PredictionPage(page=page, total=total, items=predictions)

    async def _list_pages(
        self,
        *,
        status: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        model: str | None = MODEL_ID,
        page_size: int = 100,
    ) -> AsyncGenerator[tuple[int, int, list[dict[str, Any]]], None]:
        """Pages as (number, total, items with an id), the items not yet parsed: the poller
        parses only those it waits for, and most items in a sweep's window are not."""
        if status is not None and status not in LIST_STATUSES:
            raise ValidationError("status", status, f"give one of {', '.join(LIST_STATUSES)}")
        if (
            isinstance(page_size, bool)
            or not isinstance(page_size, int)
            or not 1 <= page_size <= 100
        ):
            raise ValidationError("page_size", page_size, "give 1 to 100")
        query: dict[str, Any] = {"page_size": page_size}
        if model:
            query["model"] = model
        if status:
            query["status"] = status
        if created_after is not None:
            query["created_after"] = _iso(created_after)
        if created_before is not None:
            query["created_before"] = _iso(created_before)
        page = 1
        while True:
            data = await self._list_page({**query, "page": page})
            if not isinstance(data, dict) or not isinstance(data.get("items"), list):
                raise ProtocolError("the list answer has no `items` list")
            items = [
                item
                for item in data["items"]
                if isinstance(item, dict) and isinstance(item.get("id"), str)
            ]
            total = data["total"] if isinstance(data.get("total"), int) else len(items)
            yield page, total, items
            if not data["items"] or page * page_size >= total:
                return
            page += 1

    async def _list_page(self, query: dict[str, Any]) -> Any:
        if self._list_method == "POST":
            try:
                return await self._transport.call("POST", "/api/v3/predictions", json_body=query)
            except APIError as exc:
                if exc.status not in (404, 405):
                    raise
                self._list_method = "GET"  # one guide page shows a GET form; remember it
        params = {k: str(v) for k, v in query.items()}
        return await self._transport.call("GET", "/api/v3/predictions", params=params)

    # -- account -----------------------------------------------------------------------

    async def balance(self) -> float:
        """The account's balance in USD."""
        data = await self._transport.call("GET", "/api/v3/balance")
        value = data.get("balance") if isinstance(data, dict) else None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ProtocolError("the balance answer has no number `balance`")
        return float(value)

    async def webhook_secret(self) -> str:
        """The account's webhook signing secret (`whsec_...`)."""
        data = await self._transport.call("GET", "/api/v3/webhook/secret")
        secret = data.get("secret") if isinstance(data, dict) else data
        if not isinstance(secret, str) or not secret:
            raise ProtocolError("the webhook secret answer has no `secret` text")
        return secret

    # -- outputs -----------------------------------------------------------------------

    async def download(self, url: str, dest: str | os.PathLike[str]) -> Path:
        """Stream an output to `dest` through a `.part` file; the key is never sent."""
        return Path(await _download.download(self._transport, url, expand_path(dest)))


BatchInput = (
    Iterable[OutpaintRequest | tuple[OutpaintRequest, str]]
    | AsyncIterable[OutpaintRequest | tuple[OutpaintRequest, str]]
)


async def _items(
    requests: BatchInput,
) -> AsyncIterator[OutpaintRequest | tuple[OutpaintRequest, str]]:
    if isinstance(requests, AsyncIterable):
        async for item in requests:
            yield item
    else:
        for item in requests:
            yield item


def _sole_cause(exc: BaseException) -> BaseException:
    """The one exception inside task-group wrappers (e.g. a request iterator that raised)."""
    inner: tuple[BaseException, ...] = getattr(exc, "exceptions", ())
    while len(inner) == 1:
        exc = inner[0]
        inner = getattr(exc, "exceptions", ())
    return exc


def _unpack(item: object) -> tuple[OutpaintRequest, str | None]:
    if isinstance(item, OutpaintRequest):
        return item, None
    if (
        isinstance(item, tuple)
        and len(item) == 2
        and isinstance(item[0], OutpaintRequest)
        and isinstance(item[1], str)
    ):
        return item[0], item[1]
    raise ValidationError(
        "requests", item, "give OutpaintRequest items or (OutpaintRequest, output_name) pairs"
    )


async def _file_chunks(path: Path) -> AsyncIterator[bytes]:
    async with aiofiles.open(path, "rb") as f:
        while chunk := await f.read(UPLOAD_CHUNK):
            yield chunk


def _iso(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
