"""Download one output: streamed to `<name>.part`, length checked, renamed into place.

A file at the destination is therefore always whole: a cut, a crash or a cancel leaves
no file there (the `.part` is removed on every failure this process sees).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import re
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

import aiofiles
import aiohttp
from aiofiles.threadpool.binary import AsyncBufferedIOBase

from ._filewriter import write_whole
from ._http import Policy, Transport
from .errors import APIError, NotFoundError, ProtocolError, TransportError, ValidationError
from .models import is_loopback_host

CHUNK = 256 * 1024
WRITE_BUFFER = 1024 * 1024

PART_SUFFIX = ".part"


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


# Folders made (or found) already: a batch writes thousands of files into a few folders.
_made_folders: set[str] = set()


def _make_folder(dest: str) -> None:
    folder = os.path.dirname(dest)
    if folder in _made_folders:
        return
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise ValidationError("dest", dest, f"cannot create its folder ({exc.strerror})") from None
    if len(_made_folders) > 10_000:
        _made_folders.clear()
    _made_folders.add(folder)


class _PartFile:
    """A download's `.part` file: a small output is written and renamed by the writer
    thread in one go; a large one streams through aiofiles in `WRITE_BUFFER` pieces."""

    def __init__(self, part: str) -> None:
        self.part = part
        self._pending = bytearray()
        self._file: AsyncBufferedIOBase | None = None

    async def write(self, chunk: bytes) -> None:
        self._pending += chunk
        if len(self._pending) >= WRITE_BUFFER:
            if self._file is None:
                self._file = await aiofiles.open(self.part, "wb")
            await self._file.write(bytes(self._pending))
            self._pending.clear()

    async def finish(self, dest: str) -> None:
        """Everything arrived and was checked: make `dest` whole, at once."""
        if self._file is None:
            await write_whole(self.part, bytes(self._pending), dest)
            return
        await self._file.write(bytes(self._pending))
        await self._file.close()
        self._file = None
        os.replace(self.part, dest)

    async def close(self) -> None:
        if self._file is not None:
            await self._file.close()
            self._file = None


async def download(
    transport: Transport, url: str, dest: str | Path, *, into_folder: bool = True
) -> str:
    """Fetch `url` to `dest`; with `into_folder`, an existing folder gets the URL's name.
    Returns the file's path. Paths are plain strings here: a batch downloads thousands."""
    check_output_url(url)
    dest = os.fspath(dest)
    if into_folder and os.path.isdir(dest):
        dest = os.path.join(dest, output_name(url))
    _make_folder(dest)
    part = dest + PART_SUFFIX
    cap = transport.options.max_download_bytes

    async def once() -> str:
        writer = _PartFile(part)
        try:
            # No auth headers: output hosts never see the API key.
            async with transport.session.get(
                url, timeout=transport.timeout(transport.options.download_read_timeout)
            ) as response:
                if response.status != 200:
                    raise _status_error(transport, response.status, url)
                expected = response.content_length
                if expected is not None and expected > cap:
                    raise ProtocolError(
                        f"output is {expected} bytes, over max_download_bytes={cap}"
                    )
                if expected is not None and expected <= WRITE_BUFFER:
                    # Small and of known length: one read, no chunk loop (aiohttp raises
                    # if the connection ends before the Content-Length).
                    body = await response.read()
                    whole: bytes | None = body
                    received = len(body)
                else:
                    whole = None
                    received = await _receive(response, writer, expected, cap)
            if expected is not None and received != expected:
                raise TransportError(f"download cut short: {received} of {expected} bytes")
            if whole is not None:
                await write_whole(part, whole, dest)
            else:
                await writer.finish(dest)
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise TransportError(f"download failed: {type(exc).__name__}: {exc}") from None
        except OSError as exc:
            raise ValidationError("dest", dest, f"cannot be written ({exc.strerror})") from None
        finally:
            await writer.close()
        return dest

    try:
        return await transport.retrying(
            Policy.IDEMPOTENT, f"download to {os.path.basename(dest)}", once
        )
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(part)
        raise


async def _receive(
    response: aiohttp.ClientResponse, writer: _PartFile, expected: int | None, cap: int
) -> int:
    """Stream the body into `writer`, refusing more than `cap` or the Content-Length."""
    received = 0
    async for chunk in response.content.iter_chunked(CHUNK):
        received += len(chunk)
        if received > cap:
            raise ProtocolError(
                f"output is over max_download_bytes={cap}; refused (raise the "
                "limit if outputs this large are expected)"
            )
        if expected is not None and received > expected:
            raise ProtocolError(
                f"output sent more than its Content-Length of {expected} bytes; refused"
            )
        await writer.write(chunk)
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
