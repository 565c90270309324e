"""The emulator's HTTP face: the WaveSpeed v3 endpoints of docs/protocol.md over `Service`."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import heapq
import json
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from email.utils import formatdate
from typing import Any, NoReturn
from urllib.parse import quote, unquote, urlsplit

import aiohttp
from aiohttp import web

from .._api.signing import signature
from ..models import MODEL_ID, is_loopback_host
from . import _audio
from ._config import EmulatorConfig
from ._outputs import RenderedOutputs
from ._service import InsufficientBalance, Media, Service, Task, parse_iso

log = logging.getLogger("wavespeed_outpaint.emulator")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
CHUNK = 64 * 1024
MAX_UPLOAD_BYTES = 200 * 1024 * 1024
# The largest input fetched from a URL.
MAX_FETCHED_INPUT = 300 * 1024 * 1024
# How often a loop waiting on a queued task (sync mode, webhooks) looks whether it started.
QUEUE_RECHECK = 0.05


def envelope(data: Any, *, status: int = 200, message: str = "success") -> web.Response:
    body = {"code": status, "message": message, "data": data}
    return web.json_response(body, status=status)


def refuse(status: int, message: str, *, retry_after: float | None = None) -> web.Response:
    response = envelope(None, status=status, message=message)
    if retry_after is not None:
        response.headers["Retry-After"] = _seconds_text(retry_after)
    return response


def _seconds_text(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else f"{seconds:.3f}"


async def json_object(request: web.Request) -> dict[str, Any] | None:
    """The request's body as a JSON object, or None when it is not one."""
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return body if isinstance(body, dict) else None


class Dropped(Exception):
    """Raised after the connection was cut on purpose, to end the handler."""


def drop_connection(request: web.Request) -> NoReturn:
    if request.transport is not None:
        request.transport.abort()
    raise Dropped


def base_url_of(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


class EmulatorApp:
    """Builds the aiohttp application and owns its background work."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.service = Service(config)
        self.config = config
        self._outputs = RenderedOutputs()
        self._decoded: dict[str, asyncio.Future[Any]] = {}
        self._webhook_heap: list[tuple[float, int, str]] = []
        self._webhook_wakeup = asyncio.Event()
        self._background: set[asyncio.Task[None]] = set()
        self._http: aiohttp.ClientSession | None = None
        # Set by the runner once the port is known, so webhook bodies carry output URLs.
        self.own_base_url = ""
        self.app = self._build()

    # -- wiring ------------------------------------------------------------------------

    def _build(self) -> web.Application:
        app = web.Application(
            middlewares=[self._faults_and_errors], client_max_size=MAX_UPLOAD_BYTES
        )
        app.on_response_prepare.append(self._date_header)
        r = app.router
        r.add_post("/api/v3/predictions", self.list_predictions)
        r.add_get("/api/v3/predictions", self.list_predictions)
        r.add_get("/api/v3/predictions/{id}/result", self.result)
        r.add_get("/api/v3/predictions/{id}", self.result)
        r.add_post("/api/v3/media/uploads", self.upload_ticket)
        r.add_post("/api/v3/media/upload/binary", self.upload_binary)
        r.add_get("/api/v3/balance", self.balance)
        r.add_get("/api/v3/account/balance", self.balance)
        r.add_get("/api/v3/webhook/secret", self.webhook_secret)
        r.add_post("/api/v3/{model:.+}", self.submit)
        r.add_put("/_upload/{token}", self.upload_put)
        r.add_get("/media/{token}/{name}", self.media)
        r.add_get("/outputs/{id}/{name}", self.output)
        r.add_get("/_emulator/stats", self.stats)
        r.add_get("/_emulator/tasks", self.task_list)
        app.on_startup.append(self._on_startup)
        app.on_cleanup.append(self._on_cleanup)
        return app

    async def _date_header(self, request: web.Request, response: web.StreamResponse) -> None:
        """Every answer's `Date`, on the service's clock."""
        now = time.time() + self.config.clock_offset + self.config.date_offset
        response.headers["Date"] = formatdate(now, usegmt=True)

    async def _on_startup(self, app: web.Application) -> None:
        self._http = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.config.webhook_timeout)
        )
        self._spawn(self._webhook_loop())

    async def _on_cleanup(self, app: web.Application) -> None:
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        if self._http is not None:
            await self._http.close()

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    @web.middleware
    async def _faults_and_errors(
        self, request: web.Request, handler: Handler
    ) -> web.StreamResponse:
        try:
            response = await handler(request)
        except Dropped:
            return web.Response(status=500)  # never reaches the client: the socket is gone
        if request.path.startswith("/api/v3/") and self.service.fault("slow"):
            # The work is done (a task may exist); only the answer is late.
            await asyncio.sleep(self.config.faults.slow_seconds)
        return response

    def _authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        scheme, _, key = header.partition(" ")
        return scheme == "Bearer" and key in self.config.api_keys

    def _unauthorized(self) -> web.Response:
        return refuse(401, "Unauthorized: invalid or missing API key")

    def _injected_error(self, kind: str) -> web.Response | None:
        if self.service.fault(kind):
            status = self.service.fault_choice(self.config.faults.error_statuses)
            return refuse(status, "internal server error (emulated fault)")
        return None

    def _injected_429(self, kind: str) -> web.Response | None:
        if self.service.fault(kind):
            return refuse(
                429,
                "Too many requests (emulated fault)",
                retry_after=self.config.faults.retry_after,
            )
        return None

    # -- submit ------------------------------------------------------------------------

    async def submit(self, request: web.Request) -> web.StreamResponse:
        svc = self.service
        svc.counters.submit_requests += 1
        if not self._authorized(request):
            return self._unauthorized()
        model = request.match_info["model"]
        if model != MODEL_ID:
            return refuse(404, f"model {model!r} not found")
        refused = self._injected_error("submit_5xx") or self._injected_429("submit_429")
        if refused is not None:
            return refused
        body = await json_object(request)
        if body is None:
            return refuse(400, "request body must be a JSON object")
        problem = validate_input(body)
        if problem:
            return refuse(400, problem)
        webhook = request.query.get("webhook") or body.get("webhook_url")
        if webhook and body.get("enable_base64_output"):
            return refuse(400, "webhook cannot be combined with enable_base64_output")
        fetched, fetch_error = None, ""
        if svc.media_for_url(str(body["audio"])) is None:
            # Before the creation time is taken: tasks are kept in creation order, which
            # the list's windows rely on, and a fetch takes a while.
            fetched, fetch_error = await self._fetch_input(str(body["audio"]))
        now = time.time()
        wait = svc.start_limit_wait(now)
        if wait:
            return refuse(
                429,
                "Rate limit exceeded: too many tasks started this minute",
                retry_after=math.ceil(wait),
            )
        stored = {
            "audio": body["audio"],
            "tags": body["tags"],
            "extend_before_duration": body.get("extend_before_duration", 0),
            "extend_after_duration": body.get("extend_after_duration", 30),
            "lyrics": body.get("lyrics", ""),
            "seed": body.get("seed", -1),
        }
        try:
            task = svc.create_task(
                stored,
                now,
                webhook if isinstance(webhook, str) else None,
                fetched=fetched,
                fetch_error=fetch_error,
            )
        except InsufficientBalance:
            return refuse(
                self.config.insufficient_balance_status,
                "Insufficient balance: please top up your account to continue",
            )
        if task.media is not None:
            await self._check_decodable(task)
        if svc.fault("lie_echo_key"):
            echoed = request.headers.get("Authorization", "")
            task.final_status, task.code = "failed", 5000
            task.error = f"upstream refused the request (its headers: Authorization: {echoed})"
        if task.webhook_url:
            heapq.heappush(
                self._webhook_heap, (task.finish_at, svc.counters.tasks_created, task.id)
            )
            self._webhook_wakeup.set()
        if svc.fault("submit_lost"):
            drop_connection(request)
        if svc.fault("submit_500_after_create"):
            return refuse(500, "internal server error (emulated fault)")
        if body.get("enable_sync_mode"):
            return await self._sync_answer(request, task)
        return envelope(svc.prediction(task, time.time(), base_url_of(request)))

    async def _fetch_input(self, url: str) -> tuple[Media | None, str]:
        """An input URL that is not one of the emulator's uploads (a presigned object URL),
        fetched as the service would: only from loopback hosts, like webhooks."""
        target = urlsplit(url)
        if target.scheme not in ("http", "https") or not is_loopback_host(target.hostname):
            return None, ""
        assert self._http is not None
        try:
            async with self._http.get(url, timeout=aiohttp.ClientTimeout(total=30)) as response:
                if response.status != 200:
                    # Quoting the URL, signature and all, as real fetch errors do.
                    why = " (an expired or wrongly signed URL)" if response.status == 403 else ""
                    return None, f"the audio URL {url} answered HTTP {response.status}{why}"
                received = bytearray()
                async for chunk in response.content.iter_chunked(CHUNK):
                    received += chunk
                    if len(received) > MAX_FETCHED_INPUT:
                        return None, "the audio at the URL is too large"
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            return None, f"the audio URL could not be fetched ({type(exc).__name__})"
        name = unquote(target.path.rsplit("/", 1)[-1]) or "input"
        content_type = response.headers.get("Content-Type", "application/octet-stream")
        media = self.service.new_upload(name, len(received), content_type)
        media.data = bytes(received)
        self.service.counters.fetched_bytes += len(received)
        return media, ""

    async def _sync_answer(self, request: web.Request, task: Task) -> web.Response:
        deadline = task.created + self.config.sync_timeout
        while (now := time.time()) < deadline:
            self.service.advance(now)
            if task.finish_at <= now:
                break
            # A queued task has no finish time yet: look again while it waits.
            await asyncio.sleep(min(task.finish_at, deadline, now + QUEUE_RECHECK) - now)
        data = self.service.prediction(task, time.time(), base_url_of(request))
        if data["status"] in ("created", "processing"):
            data.update(
                status="processing", code=5004, error="Sync mode timed out; the task goes on"
            )
        return envelope(data)

    async def _check_decodable(self, task: Task) -> None:
        assert task.media is not None
        token = task.media.token
        if token not in self._decoded:
            self._decoded[token] = asyncio.ensure_future(
                asyncio.to_thread(_audio.decode, task.media.data or b"")
            )
        try:
            samples, rate = await asyncio.shield(self._decoded[token])
        except Exception as exc:  # noqa: BLE001 - whatever the decoder says, the task fails
            self.service.fail_undecodable(task, f"the audio could not be decoded ({exc})")
            return
        if samples.shape[0] / rate > 3600:
            self.service.fail_undecodable(task, "the audio is longer than 60 minutes")

    # -- status ------------------------------------------------------------------------

    async def result(self, request: web.Request) -> web.StreamResponse:
        svc = self.service
        task_id = request.match_info["id"]
        svc.counters.result_gets[task_id] += 1
        if not self._authorized(request):
            return self._unauthorized()
        refused = self._injected_error("result_5xx") or self._injected_429("result_429")
        if refused is not None:
            return refused
        if svc.fault("result_drop"):
            drop_connection(request)
        task = svc.tasks.get(task_id)
        if task is None:
            return refuse(404, f"prediction {task_id} not found")
        lie = self._lying_answer()
        if lie is not None:
            return lie
        return envelope(svc.prediction(task, time.time(), base_url_of(request)))

    def _lying_answer(self) -> web.Response | None:
        """A 200 that breaks the protocol, when a lie_* fault says so."""
        svc = self.service
        if svc.fault("lie_not_json"):
            return web.Response(
                text="<html><body>502 Bad Gateway</body></html>", content_type="text/html"
            )
        if svc.fault("lie_missing_fields"):
            return envelope({"status": 7, "outputs": "none"})
        if svc.fault("lie_huge_body"):
            return envelope({"padding": "x" * self.config.faults.huge_body_bytes})
        return None

    async def list_predictions(self, request: web.Request) -> web.StreamResponse:
        svc = self.service
        svc.counters.list_requests += 1
        if not self._authorized(request):
            return self._unauthorized()
        refused = self._injected_error("result_5xx") or self._injected_429("result_429")
        if refused is not None:
            return refused
        if not self.config.list_endpoint:
            return refuse(404, "not found")
        if request.method == "POST" and not self.config.list_post:
            return refuse(405, "method not allowed")
        if request.method == "POST":
            query = await json_object(request)
            if query is None:
                return refuse(400, "request body must be a JSON object")
        else:
            query = dict(request.query)
        try:
            page = int(query["page"])
            page_size = int(query["page_size"])
        except (KeyError, TypeError, ValueError):
            return refuse(400, "page and page_size are required integers")
        if page < 1 or not 1 <= page_size <= 100:
            return refuse(400, "page must be >= 1 and page_size from 1 to 100")
        status = query.get("status")
        if status not in (None, "", "completed", "failed", "processing"):
            return refuse(400, "status must be one of completed, failed, processing")
        try:
            after = parse_iso(query["created_after"]) if query.get("created_after") else None
            before = parse_iso(query["created_before"]) if query.get("created_before") else None
            # The filters are the service's times; its clock runs `clock_offset` ahead.
            offset = self.config.clock_offset
            after = after - offset if after is not None else None
            before = before - offset if before is not None else None
        except (TypeError, ValueError):
            return refuse(400, "created_after and created_before must be ISO 8601 times")
        model = query.get("model")
        now = time.time()
        found = (
            []
            if model not in (None, "", MODEL_ID)
            else svc.list_window(now, status=status or None, after=after, before=before)
        )
        base = base_url_of(request)
        total = len(found)
        if svc.fault("lie_list_ignores_page"):
            page, total = 1, 1_000_000_000
        items = [
            svc.prediction(t, now, base) for t in found[(page - 1) * page_size : page * page_size]
        ]
        return envelope({"page": page, "total": total, "items": items})

    # -- account -----------------------------------------------------------------------

    async def balance(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            return self._unauthorized()
        data: dict[str, Any] = {"balance": round(self.config.balance_usd, 6)}
        if request.path.endswith("/account/balance"):
            data["currency"] = "USD"
        return envelope(data)

    async def webhook_secret(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            return self._unauthorized()
        return envelope({"secret": self.config.webhook_secret})

    async def stats(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self.service.stats(time.time()))

    async def task_list(self, request: web.Request) -> web.StreamResponse:
        """Every task and the fate the emulator gave it, for tests that check outcomes."""
        return web.json_response(
            [
                {
                    "id": t.id,
                    "fingerprint": t.fingerprint,
                    "final_status": t.final_status,
                    "error": t.error,
                    "expired_output": t.expired_output,
                    "output_lie": t.output_lie,
                    "created": t.created,
                    "duration": t.duration,
                    "start_at": t.start_at if t.start_at < math.inf else None,
                    "finish_at": t.finish_at if t.finish_at < math.inf else None,
                    "first_reported_at": t.first_reported_at,
                }
                for t in self.service.order
            ]
        )

    # -- uploads -----------------------------------------------------------------------

    async def upload_ticket(self, request: web.Request) -> web.StreamResponse:
        svc = self.service
        svc.counters.upload_requests += 1
        if not self._authorized(request):
            return self._unauthorized()
        if not self.config.ticket_uploads:
            return refuse(404, "not found")
        refused = self._injected_error("upload_5xx")
        if refused is not None:
            return refused
        body = await json_object(request)
        if body is None:
            return refuse(400, "request body must be a JSON object")
        filename, size = body.get("filename"), body.get("size")
        if not isinstance(filename, str) or not filename:
            return refuse(400, "filename is required")
        if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
            return refuse(400, "size must be a positive integer")
        if size > MAX_UPLOAD_BYTES:
            return refuse(400, f"size exceeds the {MAX_UPLOAD_BYTES // 2**20} MB upload limit")
        content_type = body.get("content_type") or "application/octet-stream"
        media = svc.new_upload(filename, size, str(content_type))
        base = base_url_of(request)
        return envelope(
            {
                "upload": {
                    "method": "PUT",
                    "url": f"{base}/_upload/{media.token}",
                    "headers": {"Content-Type": media.content_type},
                },
                "download_url": f"{base}/media/{media.token}/{quote(filename)}",
            }
        )

    async def upload_put(self, request: web.Request) -> web.StreamResponse:
        svc = self.service
        media = svc.media.get(request.match_info["token"])
        if media is None:
            return web.Response(status=404, text="no such upload ticket")
        if "Authorization" in request.headers:
            # A pre-signed storage URL refuses a second credential; it would also leak the key.
            return web.Response(status=400, text="Only one auth mechanism allowed")
        if svc.fault("upload_5xx"):
            return web.Response(status=503, text="service unavailable (emulated fault)")
        data = bytearray()
        async for chunk in request.content.iter_chunked(CHUNK):
            data += chunk
            if len(data) > media.size:
                break
        if len(data) != media.size:
            return web.Response(
                status=400, text=f"body is not the {media.size} bytes the ticket announced"
            )
        media.data = bytes(data)
        svc.counters.upload_bytes += len(data)
        return web.Response(status=200)

    async def upload_binary(self, request: web.Request) -> web.StreamResponse:
        svc = self.service
        svc.counters.upload_requests += 1
        if not self._authorized(request):
            return self._unauthorized()
        refused = self._injected_error("upload_5xx")
        if refused is not None:
            return refused
        try:
            form = await request.post()
        except ValueError:
            return refuse(400, "expected a multipart form with a field 'file'")
        field = form.get("file")
        if not isinstance(field, web.FileField):
            return refuse(400, "expected a multipart form with a field 'file'")
        data = field.file.read()
        if not data:
            return refuse(400, "the file is empty")
        media = svc.store_upload(field.filename or "upload", field.content_type, data)
        base = base_url_of(request)
        return envelope(
            {
                "type": "audio",
                "download_url": f"{base}/media/{media.token}/{quote(media.filename)}",
                "filename": media.filename,
                "size": len(data),
            }
        )

    async def media(self, request: web.Request) -> web.StreamResponse:
        media = self.service.media.get(request.match_info["token"])
        if media is None or media.data is None:
            return web.Response(status=404, text="not found")
        return web.Response(body=media.data, content_type=media.content_type)

    # -- outputs -----------------------------------------------------------------------

    async def output(self, request: web.Request) -> web.StreamResponse:
        svc = self.service
        svc.counters.download_requests += 1
        if "Authorization" in request.headers:
            svc.counters.outputs_asked_with_key += 1
        task = svc.tasks.get(request.match_info["id"])
        now = time.time()
        svc.advance(now)
        if task is None or task.status(now) != "completed" or task.media is None:
            return web.Response(status=404, text="not found")
        if request.match_info["name"] != "outpaint.wav":
            return web.Response(status=404, text="not found")
        ttl = self.config.output_ttl
        if task.expired_output or (ttl is not None and now > task.finish_at + ttl):
            return web.Response(status=403, text="Request has expired")
        data = await self._render(task)
        if task.output_lie == "lie_oversize_download":
            return await self._oversize(request, data)
        if task.output_lie == "lie_trickle_download":
            return await self._trickle(request, data)
        truncate_at = len(data) // 2 if svc.fault("truncated_download") else None
        if truncate_at is None:
            svc.counters.downloads_completed += 1
            svc.counters.output_bytes += len(data)
            return web.Response(body=data, content_type="audio/wav")
        response = web.StreamResponse(headers={"Content-Type": "audio/wav"})
        response.content_length = len(data)
        await response.prepare(request)
        await response.write(data[:truncate_at])
        drop_connection(request)

    async def _oversize(self, request: web.Request, data: bytes) -> web.StreamResponse:
        """The file, then junk, in chunks with no Content-Length: ten times its size."""
        response = web.StreamResponse(headers={"Content-Type": "audio/wav"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for _ in range(10):
            await response.write(data)
        await response.write_eof()
        return response

    async def _trickle(self, request: web.Request, data: bytes) -> web.StreamResponse:
        """The file's Content-Length, then its bytes 16 at a time, a tenth of a second
        apart: each read comes well within any read time-out, the whole never does."""
        response = web.StreamResponse(headers={"Content-Type": "audio/wav"})
        response.content_length = len(data)
        await response.prepare(request)
        for start in range(0, len(data), 16):
            await response.write(data[start : start + 16])
            await asyncio.sleep(0.1)
        return response

    async def _render(self, task: Task) -> bytes:
        assert task.media is not None
        samples, rate = await asyncio.shield(self._decoded[task.media.token])
        before = float(task.input["extend_before_duration"])
        after = float(task.input["extend_after_duration"])
        return await self._outputs.get(
            task.id,
            functools.partial(_audio.render_outpaint, samples, rate, before, after, task.seed),
        )

    # -- webhooks ----------------------------------------------------------------------

    async def _webhook_loop(self) -> None:
        heap = self._webhook_heap
        while True:
            self._webhook_wakeup.clear()
            now = time.time()
            self.service.advance(now)
            while heap and heap[0][0] <= now:
                _, order, task_id = heapq.heappop(heap)
                task = self.service.tasks[task_id]
                if task.finish_at > now:
                    # Still queued when it was pushed: due when it finishes, or looked at
                    # again shortly while it waits for a worker.
                    due = task.finish_at if task.finish_at < math.inf else now + QUEUE_RECHECK
                    heapq.heappush(heap, (due, order, task_id))
                    continue
                self._schedule_webhook(task)
            timeout = heap[0][0] - now if heap else None
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._webhook_wakeup.wait(), timeout)

    def _schedule_webhook(self, task: Task) -> None:
        svc = self.service
        if svc.fault("webhook_lost"):
            return
        delay = self.config.faults.webhook_late_seconds if svc.fault("webhook_late") else 0.0
        # A duplicate is the same message sent again: the same webhook-id.
        copies = 2 if svc.fault("webhook_duplicated") else 1
        bad_signature = svc.fault("webhook_bad_signature")
        webhook_id = f"msg_{uuid.uuid4().hex}"
        for _ in range(copies):
            self._spawn(self._deliver(task, webhook_id, delay, bad_signature))

    async def _deliver(
        self, task: Task, webhook_id: str, delay: float, bad_signature: bool
    ) -> None:
        url = task.webhook_url
        assert url is not None
        assert self._http is not None
        target = urlsplit(url)
        if target.scheme not in ("http", "https") or not is_loopback_host(target.hostname):
            log.warning("webhook for %s not sent: the emulator only calls loopback hosts", task.id)
            return
        if delay:
            await asyncio.sleep(delay)
        data = self.service.prediction(task, time.time(), self.own_base_url)
        data["input"] = task.input
        body = json.dumps(data).encode()
        secret = "whsec_wrong-secret" if bad_signature else self.config.webhook_secret
        retry_delay = self.config.webhook_retry_delay
        for attempt in range(self.config.webhook_attempts):
            timestamp = str(int(time.time()))
            headers = {
                "Content-Type": "application/json",
                "webhook-id": webhook_id,
                "webhook-timestamp": timestamp,
                "webhook-signature": signature(secret, webhook_id, timestamp, body),
            }
            self.service.counters.webhook_attempts += 1
            try:
                async with self._http.post(url, data=body, headers=headers) as response:
                    if 200 <= response.status < 300:
                        self.service.counters.webhooks_delivered += 1
                        return
            except (aiohttp.ClientError, asyncio.TimeoutError):
                pass
            if attempt + 1 < self.config.webhook_attempts:
                await asyncio.sleep(retry_delay * 2**attempt)


def validate_input(body: dict[str, Any]) -> str | None:
    """The service's 400 messages: each names the field and what it must be."""
    audio = body.get("audio")
    if not isinstance(audio, str) or not audio:
        return "audio is required: the URL of an MP3, WAV or FLAC file"
    if urlsplit(audio).scheme not in ("http", "https"):
        return "audio must be an http(s) URL"
    tags = body.get("tags")
    if not isinstance(tags, str) or not tags.strip():
        return "tags is required: comma-separated genre and mood tags"
    for name, default in (("extend_before_duration", 0), ("extend_after_duration", 30)):
        value = body.get(name, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 240:
            return f"{name} must be a number from 0 to 240"
    if not isinstance(body.get("lyrics", ""), str):
        return "lyrics must be a string"
    seed = body.get("seed", -1)
    if (
        isinstance(seed, bool)
        or not isinstance(seed, int)
        or not (seed == -1 or 0 <= seed <= 2_147_483_647)
    ):
        return "seed must be -1 or an integer from 0 to 2147483647"
    if (
        float(body.get("extend_before_duration", 0)) + float(body.get("extend_after_duration", 30))
        == 0
    ):
        return "extend_before_duration and extend_after_duration are both 0: nothing to generate"
    return None
