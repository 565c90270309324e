"""The REST calls over one aiohttp session: the envelope, the error mapping, the retries.

Two retry policies. `IDEMPOTENT` calls (result reads, lists, uploads, downloads) are
retried on 429, 5xx and connection trouble. `SUBMIT` is retried only when the service
cannot have created a task: the connection was never made, or the answer's status is
one of `ClientOptions.submit_resend_statuses`. Everything else is raised at once, and
the caller turns an ambiguous failure into `UnknownSubmissionError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import platform
import random
import re
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import aiohttp
import stamina

from .._telemetry import Telemetry
from .._version import __version__
from ..errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    InsufficientBalanceError,
    NotFoundError,
    ProtocolError,
    RateLimitedError,
    ServerError,
    TransportError,
)
from ..options import ClientOptions

log = logging.getLogger("wavespeed_outpaint")
T = TypeVar("T")

CLIENT_NAME = "wavespeed-outpaint"
REDACTED = "[redacted]"
# The query parameters that make a URL a credential (S3's, Google Cloud's and Azure's
# signed URLs): their values are redacted from any text kept or shown.
SIGNED_QUERY = re.compile(
    r"(?i)\b((?:X-Amz-(?:Signature|Credential|Security-Token)|X-Goog-(?:Signature|Credential)"
    r"|Signature|sig|AWSAccessKeyId)=)[^&\s\"'<>]+"
)
# A quick look for them in an answer's bytes, before its text is scrubbed: every name
# above ends in one of these. A case-blind regex of the same names took 1.25 ms a page of
# the list (38 KB), ten times its JSON parsing and a tenth of the client's CPU a task at
# 1,000 in flight; substring searches take 80 us, and 0.4 us where the page holds no "=".
SIGNED_NAME_ENDS = (b"signature=", b"credential=", b"security-token=", b"sig=", b"awsaccesskeyid=")


def looks_signed(body: bytes) -> bool:
    """Whether these bytes may hold a signed URL's credential (never a false no)."""
    if b"=" not in body:
        return False
    lowered = body.lower()
    return any(end in lowered for end in SIGNED_NAME_ENDS)


class Policy(enum.Enum):
    IDEMPOTENT = "idempotent"
    SUBMIT = "submit"


class NotSent(TransportError):
    """The connection was never established, so the request cannot have had an effect."""


def redact(text: str, secret: str | None) -> str:
    """`text` without the key, and without the signature of any signed URL in it."""
    text = SIGNED_QUERY.sub(rf"\1{REDACTED}", text)
    return text.replace(secret, REDACTED) if secret else text


def scrub(data: Any, secret: str | None) -> Any:
    """`data` (decoded JSON) with `secret` and URL signatures redacted from every string
    in it: text the service sends back (an error that echoes a request header, or the
    presigned URL it could not fetch) is stored, logged and raised, and must never carry
    the key, nor a link that reads the user's bucket."""
    if isinstance(data, str):
        return redact(data, secret)
    if isinstance(data, list):
        return [scrub(item, secret) for item in data]
    if isinstance(data, dict):
        return {scrub(k, secret): scrub(v, secret) for k, v in data.items()}
    return data


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header: a number, or an HTTP date."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = (when - datetime.now(timezone.utc)).total_seconds()
    return max(0.0, seconds) if seconds == seconds else None


class Transport:
    """Owns the aiohttp session; every call to the API or an output host goes through it."""

    def __init__(self, base_url: str, api_key: str | None, options: ClientOptions) -> None:
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        # Looked for in every answer's bytes (cheap), scrubbed from it when found.
        self._key_bytes = api_key.encode() if api_key else None
        self.options = options
        # Told the send and receive times of every API answer with a `Date` header, and
        # the header: how the service's clock is learned before a submit is answered.
        self.on_date: Callable[[float, float, str], None] | None = None
        self._balance_pattern = re.compile(options.insufficient_balance_pattern)
        self._session: aiohttp.ClientSession | None = None
        # Built once: every call of a busy client would otherwise build its own.
        self._headers: dict[str, str] | None = None
        self._timeouts: dict[float | None, aiohttp.ClientTimeout] = {}
        # Spans and metrics of every request (`_telemetry`: nothing, unless the client
        # turns OpenTelemetry on).
        self.telemetry = Telemetry()

    def __repr__(self) -> str:
        return f"Transport(base_url={self.base_url!r})"

    async def open(self) -> None:
        connector = aiohttp.TCPConnector(limit=self.options.connection_limit)
        # No default headers: the key is added per API call, so it can never reach an
        # output or upload host.
        self._session = aiohttp.ClientSession(connector=connector, raise_for_status=False)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("the client is not open: use `async with OutpaintClient(...)`")
        return self._session

    def timeout(self, read: float | None = None) -> aiohttp.ClientTimeout:
        found = self._timeouts.get(read)
        if found is None:
            found = self._timeouts[read] = aiohttp.ClientTimeout(
                total=None,
                connect=self.options.connect_timeout,
                sock_read=read if read is not None else self.options.read_timeout,
            )
        return found

    def auth_headers(self) -> dict[str, str]:
        if self._headers is not None:
            return self._headers
        if not self._api_key:
            raise ConfigurationError(
                "no API key: set WAVESPEED_API_KEY or pass api_key= to OutpaintClient"
            )
        self._headers = {
            "Authorization": f"Bearer {self._api_key}",
            "X-Client-Name": CLIENT_NAME,
            "X-Client-Version": __version__,
            "X-Client-OS": platform.system().lower() or "unknown",
        }
        return self._headers

    # -- retries -----------------------------------------------------------------------

    def _retry_hook(
        self, policy: Policy, what: str, retry_rate_limits: bool
    ) -> Callable[[Exception], bool | float]:
        """Whether a failure is retried (True, or seconds to wait), or raised (False)."""
        resend = self.options.submit_resend_statuses

        def decide(exc: Exception) -> bool | float:
            if isinstance(exc, RateLimitedError) and not retry_rate_limits:
                return False  # the caller paces a whole pool on 429s
            if isinstance(exc, APIError):
                if policy is Policy.SUBMIT and exc.status not in resend:
                    return False
                if policy is Policy.IDEMPOTENT and not (exc.status == 429 or exc.status >= 500):
                    return False
                if isinstance(exc, InsufficientBalanceError):
                    return False
                if isinstance(exc, RateLimitedError) and exc.retry_after is not None:
                    # The server's own hint wins, with a little jitter so a pool of
                    # waiting calls does not come back in one burst.
                    return exc.retry_after + random.uniform(0, 0.1 * exc.retry_after + 0.05)
                return True
            if isinstance(exc, ProtocolError):
                return False  # an answer that breaks the protocol will break it again
            if isinstance(exc, TransportError):
                return policy is Policy.IDEMPOTENT or isinstance(exc, NotSent)
            return False

        def hook(exc: Exception) -> bool | float:
            verdict = decide(exc)
            if verdict is not False:
                log.info("retrying %s after: %s", what, exc)
                self.telemetry.retried()
            return verdict

        return hook

    async def retrying(
        self,
        policy: Policy,
        what: str,
        attempt: Callable[[], Awaitable[T]],
        *,
        retry_rate_limits: bool = True,
    ) -> T:
        """Run `attempt` under `policy`'s retry rules; the last failure is raised."""
        opts = self.options
        # Most calls succeed at once: they skip building the retry machinery. A failure
        # is handed to stamina as its first attempt, so its waits, its time-out and
        # `stamina.set_testing()` cover every retry.
        try:
            return await attempt()
        except Exception as exc:  # noqa: BLE001 - judged by the policy below
            first: Exception | None = exc
        hook = self._retry_hook(policy, what, retry_rate_limits)
        async for attempt_ctx in stamina.retry_context(
            on=hook,
            attempts=opts.retry_attempts,
            timeout=opts.retry_timeout,
            wait_initial=opts.retry_wait_initial,
            wait_max=opts.retry_wait_max,
            wait_jitter=opts.retry_wait_initial,
        ):
            with attempt_ctx:
                if first is not None:
                    failed, first = first, None
                    raise failed
                return await attempt()
        raise AssertionError("unreachable: stamina raises the last error")  # pragma: no cover

    # -- API calls ---------------------------------------------------------------------

    async def call(
        self,
        method: str,
        path: str,
        *,
        policy: Policy = Policy.IDEMPOTENT,
        json_body: Any = None,
        form: Callable[[], contextlib.AbstractContextManager[aiohttp.FormData]] | None = None,
        params: dict[str, str] | None = None,
        prediction_id: str | None = None,
        retry_rate_limits: bool = True,
        operation: str = "call",
    ) -> Any:
        """One API call with retries; returns the envelope's `data`. `form` makes a
        fresh multipart body for each attempt (a file in it is read again). `operation`
        names it in its spans (submit, get, list ...)."""
        url = self.base_url + path
        headers = self.auth_headers()

        async def once() -> Any:
            try:
                with (
                    form() if form is not None else contextlib.nullcontext() as data,
                    self.telemetry.http(method, url, operation) as span,
                ):
                    sent = time.time()
                    async with self.session.request(
                        method,
                        url,
                        json=json_body,
                        data=data,
                        params=params,
                        headers=headers,
                        timeout=self.timeout(),
                    ) as response:
                        span.answered(response.status)
                        date = response.headers.get("Date")
                        if date is not None and self.on_date is not None:
                            self.on_date(sent, time.time(), date)
                        body = await self.read_capped(response, self.options.max_json_bytes)
                        return self.unwrap(response, body, prediction_id)
            except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
                raise NotSent(f"could not connect to {self.base_url}: {exc}") from None
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                raise TransportError(
                    f"{method} {path} failed after it was sent: {type(exc).__name__}: "
                    + redact(str(exc), self._api_key)
                ) from None

        return await self.retrying(
            policy, f"{method} {path}", once, retry_rate_limits=retry_rate_limits
        )

    async def read_capped(self, response: aiohttp.ClientResponse, cap: int) -> bytes:
        length = response.content_length
        if length is not None and length <= cap:
            return await response.read()  # the length is known and allowed: in one piece
        body = bytearray()
        async for chunk in response.content.iter_chunked(64 * 1024):
            body += chunk
            if len(body) > cap:
                raise ProtocolError(
                    f"the answer to {response.method} {response.url.path} is over "
                    f"{cap} bytes; not a protocol answer"
                )
        return bytes(body)

    def unwrap(
        self, response: aiohttp.ClientResponse, body: bytes, prediction_id: str | None
    ) -> Any:
        """The envelope's data, or the error it describes."""
        status = response.status
        try:
            doc = json.loads(body) if body else None
        except (json.JSONDecodeError, UnicodeDecodeError):
            doc = None
        if (self._key_bytes is not None and self._key_bytes in body) or looks_signed(body):
            doc = self.scrubbed(doc)
        if 200 <= status < 300:
            if not isinstance(doc, dict):
                raise ProtocolError(
                    f"{response.method} {response.url.path}: answer is not a JSON object"
                )
            code = doc.get("code", 200)
            if code in (200, 0, None):
                return doc.get("data")
            status = code if isinstance(code, int) and 400 <= code <= 599 else 500
        message, code = _error_text(doc, body)
        raise self.error_for(
            status,
            redact(message, self._api_key),
            code=code,
            prediction_id=prediction_id,
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
        )

    def scrubbed(self, data: T) -> T:
        """`data` without the key or URL signatures in any of its text (also for bodies
        that came another way, such as webhooks)."""
        return scrub(data, self._api_key)  # type: ignore[no-any-return]

    def error_for(
        self,
        status: int,
        message: str,
        *,
        code: int | None = None,
        prediction_id: str | None = None,
        retry_after: float | None = None,
    ) -> APIError:
        kw: dict[str, Any] = {"status": status, "code": code, "prediction_id": prediction_id}
        if self._balance_pattern.search(message) and status in (400, 402, 403):
            return InsufficientBalanceError(
                message, hint="top up the account, then run again", **kw
            )
        if status in (401, 403):
            return AuthenticationError(
                message,
                hint="check WAVESPEED_API_KEY; a new key works after the account's first top-up",
                **kw,
            )
        if status == 404:
            return NotFoundError(message, **kw)
        if status == 429:
            return RateLimitedError(message, retry_after=retry_after, **kw)
        if status >= 500:
            return ServerError(message, **kw)
        if status == 400:
            return BadRequestError(message, hint="change the input as the message says", **kw)
        return APIError(message, **kw)


def _error_text(doc: Any, body: bytes) -> tuple[str, int | None]:
    """The service's reason from an envelope, a bare {"error": ...} body or plain text."""
    if isinstance(doc, dict):
        code = doc.get("code") if isinstance(doc.get("code"), int) else None
        for key in ("message", "error", "detail"):
            value = doc.get(key)
            if isinstance(value, str) and value:
                error_code = doc.get("error_code")
                return (f"{value} (error_code {error_code})" if error_code else value), code
        return "", code
    text = body[:500].decode("utf-8", "replace").strip()
    return text, None
