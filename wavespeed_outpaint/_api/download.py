"""Download one output from the service's output host into an `OutputSink`.

The body is streamed into the sink's part, its length checked against the
Content-Length and `max_download_bytes`, and only then committed: an output is whole at
its location or absent (every failure this process sees aborts the part).
"""

from __future__ import annotations

import asyncio
import functools
import re
import sys
import time
from pathlib import PurePosixPath
from urllib.parse import unquote, urlsplit

import aiohttp

from .._telemetry import HttpSpan
from .transport import Policy, Transport

# asyncio's own time-out: a timer on the loop, where anyio's cancel scope costs a measurable
# share of a small download's CPU (0.1 s of 10 s over 3,000 downloads, under cProfile).
if sys.version_info >= (3, 11):
    from asyncio import timeout as deadline
else:  # aiohttp's own dependency before 3.11
    from async_timeout import timeout as deadline  # type: ignore[import-not-found,no-redef,unused-ignore]
from ..errors import APIError, NotFoundError, ProtocolError, TransportError
from ..models import is_loopback_host
from ..seams import OutputMark, OutputPart, OutputSink

CHUNK = 256 * 1024
# Outputs up to this size are read in one piece.
SMALL_OUTPUT = 1024 * 1024
# The slowest a whole download may be, on average, after its first read time-out: a host
# that trickles a byte now and then (each within the read time-out) must not hang a task.
MIN_DOWNLOAD_RATE = 32 * 1024


def check_output_url(url: str) -> None:
    scheme, _, rest = url.partition("://")
    host = rest.split("/", 1)[0]
    if not _allowed_host(scheme, host):
        raise ProtocolError(
            f"output URL {url[:200]!r} is not an https:// URL; refusing to fetch it"
        )


@functools.lru_cache(maxsize=256)
def _allowed_host(scheme: str, netloc: str) -> bool:
    """https anywhere, plain http only on loopback (cached: every output asks)."""
    host = urlsplit(f"{scheme}://{netloc}").hostname if scheme in ("http", "https") else None
    return bool(host) and (scheme == "https" or is_loopback_host(host))


def output_name(url: str) -> str:
    """A safe file name from the URL's last path segment; never a path."""
    name = PurePosixPath(unquote(urlsplit(url).path)).name
    name = re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".")
    return name or "output"


async def download(
    transport: Transport, url: str, sink: OutputSink, name: str, mark: OutputMark | None = None
) -> str:
    """Fetch `url` into `sink` as `name`, marked with `mark`; returns where it landed. The
    output appears whole or not at all: a failed attempt's part is aborted before the next."""
    check_output_url(url)

    async def once() -> str:
        part = await sink.open_part(name, mark)
        try:
            # No auth headers: output hosts never see the API key.
            with transport.telemetry.http("GET", url, "download") as span:
                received = await _fetch(transport, url, part, span)
            transport.telemetry.downloaded(received)
            return await part.commit()
        except (aiohttp.ClientError, asyncio.TimeoutError, TimeoutError) as exc:
            await part.abort()
            raise TransportError(
                f"download failed: {type(exc).__name__}: {exc}".rstrip(": ")
            ) from None
        except BaseException:
            await part.abort()
            raise

    return await transport.retrying(Policy.IDEMPOTENT, f"download of {name}", once)


async def _fetch(transport: Transport, url: str, part: OutputPart, span: HttpSpan) -> int:
    """GET `url` into `part`, whole (its Content-Length, within the cap); the bytes."""
    cap = transport.options.max_download_bytes
    async with transport.session.get(
        url, timeout=transport.timeout(transport.options.download_read_timeout)
    ) as response:
        span.answered(response.status)
        if response.status != 200:
            raise _status_error(transport, response.status, url)
        expected = response.content_length
        if expected is not None and expected > cap:
            raise ProtocolError(f"output is {expected} bytes, over max_download_bytes={cap}")
        started = time.monotonic()
        allowed = transport.options.download_read_timeout
        if expected is not None and expected <= SMALL_OUTPUT:
            # Small and of known length: one read, no chunk loop (aiohttp raises if the
            # connection ends before the Content-Length).
            async with deadline(allowed + expected / MIN_DOWNLOAD_RATE):
                body = await response.read()
            received = len(body)
            await part.write(body)
        else:
            received = await _receive(response, part, expected, cap, started, allowed)
    if expected is not None and received != expected:
        raise TransportError(f"download cut short: {received} of {expected} bytes")
    return received


async def _receive(
    response: aiohttp.ClientResponse,
    part: OutputPart,
    expected: int | None,
    cap: int,
    started: float,
    allowed: float,
) -> int:
    """Stream the body into `part`, refusing more than `cap` or the Content-Length, and
    a body slower than `MIN_DOWNLOAD_RATE` after `allowed` seconds."""
    received = 0
    async for chunk in response.content.iter_chunked(CHUNK):
        received += len(chunk)
        if time.monotonic() - started > allowed + received / MIN_DOWNLOAD_RATE:
            raise TransportError(
                f"the output host sends {received} bytes in {time.monotonic() - started:.0f} s, "
                f"under {MIN_DOWNLOAD_RATE // 1024} KB/s; given up"
            )
        if received > cap:
            raise ProtocolError(
                f"output is over max_download_bytes={cap}; refused (raise the "
                "limit if outputs this large are expected)"
            )
        if expected is not None and received > expected:
            raise ProtocolError(
                f"output sent more than its Content-Length of {expected} bytes; refused"
            )
        await part.write(chunk)
    return received


def _status_error(transport: Transport, status: int, url: str) -> APIError:
    if status == 404:
        return NotFoundError("output not found", status=status, hint="outputs are kept 7 days")
    if status in (401, 403, 410):
        return APIError(
            "output URL refused or expired",
            status=status,
            hint="outputs are kept 7 days; fetch the prediction again for fresh URLs",
        )
    return transport.error_for(status, f"output download answered HTTP {status}")
