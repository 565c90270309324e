"""WaveSpeedAPI: every endpoint the SDK calls, and the fallbacks between their forms.

The one place that knows the service's paths. It sits on a `Transport` (the session,
the envelope, errors, retries) and under everything that talks to the service: the
client's public calls, the engine, the shared poller and the settler. Nothing here
imports them, so each can be tested against a small fake with the same methods.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiofiles
import aiohttp
import attrs

from .._audio.probe import AudioInfo
from ..errors import (
    APIError,
    ProtocolError,
    TransportError,
    UnknownSubmissionError,
    ValidationError,
)
from ..models import MODEL_ID, OutpaintRequest, Prediction
from ..seams import OutputMark, OutputSink
from . import download as _download
from .transport import NotSent, Policy, Transport

SUBMIT_PATH = f"/api/v3/{MODEL_ID}"
LIST_PATH = "/api/v3/predictions"
UPLOAD_CHUNK = 256 * 1024
LIST_STATUSES = ("completed", "failed", "processing")
# Pages read for one question at most: a window holds about one page; a lying `total`
# must not make a look endless.
MAX_LIST_PAGES = 100

Page = tuple[int, int, list[dict[str, Any]]]


class WaveSpeedAPI:
    """The service's endpoints over one transport. `webhook_url`, when set, is asked for
    on every submit (in the body or the query, as `ClientOptions.webhook_field` says)."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self.options = transport.options
        self.webhook_url: str | None = self.options.webhook_url
        # One guide page shows the list as a GET: learned at the first 404/405 of the POST.
        self._list_method = "POST"

    def __repr__(self) -> str:
        return f"WaveSpeedAPI(base_url={self.transport.base_url!r})"

    # -- uploads -----------------------------------------------------------------------

    async def upload(self, path: Path | UploadSource, info: AudioInfo) -> str:
        """Upload a local file (or any source of its bytes), checked already (`info`:
        its format and size); returns the URL to send as `audio`."""
        source = path if isinstance(path, UploadSource) else UploadSource.of_file(path)
        ticket_body = {
            "filename": source.name,
            "size": info.size,
            "content_type": info.content_type,
        }
        try:
            ticket = await self.transport.call(
                "POST", "/api/v3/media/uploads", json_body=ticket_body, operation="upload"
            )
        except APIError as exc:
            if exc.status not in (404, 405):
                raise
            return await self._upload_binary(source, info.content_type)
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
        transport = self.transport

        async def put_once() -> None:
            try:
                # The ticket's URL is pre-signed storage: it gets no Authorization header.
                with transport.telemetry.http("PUT", put_url, "upload") as span:
                    async with transport.session.put(
                        put_url,
                        data=source.chunks(),
                        headers=put_headers,
                        timeout=transport.timeout(),
                    ) as response:
                        span.answered(response.status)
                        if not 200 <= response.status < 300:
                            text = (await response.content.read(500)).decode("utf-8", "replace")
                            raise transport.error_for(
                                response.status, f"upload PUT refused: {text}"
                            )
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                raise TransportError(f"upload PUT failed: {type(exc).__name__}") from None

        await transport.retrying(Policy.IDEMPOTENT, f"upload {source.name}", put_once)
        return download_url

    async def _upload_binary(self, source: UploadSource, content_type: str) -> str:
        """The older single-step upload, for services without the ticket endpoint."""

        @contextlib.contextmanager
        def file_form() -> Iterator[aiohttp.FormData]:
            form = aiohttp.FormData()
            form.add_field("file", source.chunks(), filename=source.name, content_type=content_type)
            yield form

        data = await self.transport.call(
            "POST", "/api/v3/media/upload/binary", form=file_form, operation="upload"
        )
        if not isinstance(data, dict) or not isinstance(data.get("download_url"), str):
            raise ProtocolError("the upload answer lacks download_url")
        return str(data["download_url"])

    # -- tasks -------------------------------------------------------------------------

    async def submit(
        self,
        request: OutpaintRequest,
        body: dict[str, Any],
        *,
        params: dict[str, str] | None = None,
        pooled: bool = False,
    ) -> Prediction:
        """The submit POST of `body` (the request's payload). Raises
        `UnknownSubmissionError` when the service may have created a task without a
        usable answer. `pooled`: a 429 is raised for the pool's pacer to handle."""
        webhook = self.webhook_url
        if webhook is not None:
            if self.options.webhook_field == "body":
                body = {**body, "webhook_url": webhook}
            else:
                params = {**(params or {}), "webhook": webhook}
        sent_at = time.time()
        try:
            data = await self.transport.call(
                "POST",
                SUBMIT_PATH,
                policy=Policy.SUBMIT,
                json_body=body,
                params=params,
                retry_rate_limits=not pooled,
                operation="submit",
            )
            return _prediction(data)
        except NotSent as exc:
            # Never connected, even after retries: no task can exist.
            raise TransportError(str(exc)) from None
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
        if not prediction_id:
            raise ValidationError("prediction_id", prediction_id, "give the id a submit returned")
        # Whatever the service calls its ids, they go into the path escaped (a `/`, `?` or
        # `#` in one must not change which URL is asked).
        path = f"/api/v3/predictions/{quote(prediction_id, safe='')}/result"
        data = await self.transport.call("GET", path, prediction_id=prediction_id, operation="get")
        return _prediction(data)

    async def list_pages(
        self,
        *,
        status: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        model: str | None = MODEL_ID,
        page_size: int = 100,
    ) -> AsyncGenerator[Page, None]:
        """Pages as (number, total, items with an id), newest first, the items not yet
        parsed: the poller parses only those it waits for, and most items in a sweep's
        window are not."""
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
        seen: set[str] = set()
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
            fresh = {item["id"] for item in items} - seen
            if items and not fresh:
                # The same items again: the service ignores `page`; its `total` cannot be
                # trusted, and asking on would never end.
                return
            seen |= fresh
            yield page, total, items
            if not data["items"] or page * page_size >= total or page >= MAX_LIST_PAGES:
                return
            page += 1

    async def _list_page(self, query: dict[str, Any]) -> Any:
        if self._list_method == "POST":
            try:
                return await self.transport.call(
                    "POST", LIST_PATH, json_body=query, operation="list"
                )
            except APIError as exc:
                if exc.status not in (404, 405):
                    raise
                self._list_method = "GET"
        params = {k: str(v) for k, v in query.items()}
        return await self.transport.call("GET", LIST_PATH, params=params, operation="list")

    # -- account -----------------------------------------------------------------------

    async def balance(self) -> float:
        """The account's balance in USD."""
        data = await self.transport.call("GET", "/api/v3/balance")
        value = data.get("balance") if isinstance(data, dict) else None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ProtocolError("the balance answer has no number `balance`")
        return float(value)

    async def webhook_secret(self) -> str:
        """The account's webhook signing secret (`whsec_...`)."""
        data = await self.transport.call("GET", "/api/v3/webhook/secret")
        secret = data.get("secret") if isinstance(data, dict) else data
        if not isinstance(secret, str) or not secret:
            raise ProtocolError("the webhook secret answer has no `secret` text")
        return secret

    # -- outputs -----------------------------------------------------------------------

    async def download(
        self, url: str, sink: OutputSink, name: str, mark: OutputMark | None = None
    ) -> str:
        """Stream an output into `sink` as `name`, carrying `mark`; returns where it
        landed. The output host never gets the API key."""
        return await _download.download(self.transport, url, sink, name, mark)


def _prediction(data: Any) -> Prediction:
    if not isinstance(data, dict) or not isinstance(data.get("id"), str) or not data["id"]:
        raise ProtocolError("the answer has no prediction id")
    return Prediction.from_data(data)


@attrs.frozen
class UploadSource:
    """What an upload sends: a name, and its bytes as a fresh stream for each attempt."""

    name: str
    chunks: Callable[[], AsyncIterator[bytes]]

    @classmethod
    def of_file(cls, path: Path) -> UploadSource:
        return cls(path.name, lambda: _file_chunks(path))


async def _file_chunks(path: Path) -> AsyncIterator[bytes]:
    async with aiofiles.open(path, "rb") as f:
        while chunk := await f.read(UPLOAD_CHUNK):
            yield chunk


def _iso(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
