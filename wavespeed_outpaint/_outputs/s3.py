"""Music libraries in S3-compatible object storage, through obstore (the `[s3]` extra).

Inputs named `s3://bucket/key` are checked from a ranged read of the object and sent to
the service as presigned https URLs, so no input byte passes through the client; their
identity is the object's (bucket, key, version id or ETag), not the URL, which changes
every time it is signed. Outputs stream into a bucket under a prefix (`ObjectPrefix`,
an `OutputSink`): one PUT for a small output, a multipart upload for a large one, never
the whole file in memory; an object appears whole or not at all, and a failed upload is
aborted. Every output object carries its task's `OutputMark` as user metadata.

Credentials, region and endpoint come from the standard environment (`AWS_ACCESS_KEY_ID`,
`AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT_URL`, ...), as obstore reads them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import posixpath
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import anyio
import attrs

from .._api.endpoints import UploadSource
from .._audio.probe import CONTENT_TYPES, AudioInfo, AudioProblem, probe_window
from ..errors import ConfigurationError, MissingExtraError, OutputError, ValidationError
from ..models import OBJECT_SCHEME as SCHEME
from ..models import ObjectRef, is_loopback_host
from ..options import ClientOptions
from ..seams import OutputMark

if TYPE_CHECKING:
    from obstore.store import RetryConfig, S3Store

# The audio objects a prefix is searched for (by name: listing reads no content).
AUDIO_SUFFIXES = (".mp3", ".wav", ".flac")
# A ranged read of this much of an object's start (and of its end, for ID3v1 and
# APE tags) is enough to read every format's header and duration.
HEAD_BYTES = 256 * 1024
TAIL_BYTES = 64 * 1024
# Outputs up to this size are one PUT; larger ones a multipart upload of such parts
# (S3's smallest), at most PARTS_IN_FLIGHT of them uploading at once: what an output
# holds in memory is bounded by these, whatever its size (16 outputs of 50 MB at once:
# peak RSS 210 MB; 390 MB with 8 MiB parts, 12 in flight, obstore's default).
PART_BYTES = 5 * 1024 * 1024
PARTS_IN_FLIGHT = 2
MARK_KEY = "wavespeed-outpaint-task"
# What a store answers to keys it does not know or a signature that does not match.
REFUSED_KEYS = ("InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken")
# What a store answers when it fails, or is too busy, rather than refuses.
STORE_FAULTS = ("status code: 5", "<Code>InternalError</Code>", "<Code>SlowDown</Code>")
# Where obstore asks for a cloud machine's own credentials when the environment has none
# (EC2's instance metadata, ECS's container endpoint).
CREDENTIAL_SOURCES = ("/latest/api/token", "/latest/meta-data/", "169.254.169.254", "169.254.170.2")
# Object versions whose checks are remembered (a few hundred bytes each).
MAX_CHECKED = 65_536


def is_object_url(value: object) -> bool:
    return isinstance(value, str) and value.startswith(SCHEME)


@attrs.frozen
class ObjectFacts:
    """What the client checked of an input object: its identity and its audio."""

    identity: str  # s3://bucket/key@version-or-etag
    info: AudioInfo


def _obstore() -> Any:
    if sys.version_info < (3, 11):
        # (obstore 0.12, the oldest these calls work with, is built for 3.11 and later.)
        raise ConfigurationError("s3:// locations need Python 3.11 or later (obstore 0.12)")
    try:
        import obstore
    except ImportError:
        raise MissingExtraError("s3:// locations", "s3") from None
    return obstore


class ObjectStores:
    """One obstore client per bucket, made from the environment when first needed;
    owned by a client (and by the command line's plan)."""

    def __init__(self, options: ClientOptions | None = None) -> None:
        self._options = options if options is not None else ClientOptions()
        self._stores: dict[str, S3Store] = {}
        # Checked objects by identity (one version of one object), the oldest dropped.
        self._facts: dict[str, ObjectFacts] = {}

    def store(self, bucket: str) -> S3Store:
        store = self._stores.get(bucket)
        if store is None:
            _obstore()
            from obstore.store import S3Store

            endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
            host = urlsplit(endpoint).hostname if endpoint else None
            # Plain http only to a store on this machine (a local S3-compatible server).
            opts = self._options
            insecure = bool(host) and (opts.allow_insecure_http or is_loopback_host(host or ""))
            # obstore retries 5xx, dropped connections and time-outs itself, within the
            # client's retry budget (a store that cannot be reached fails in that time).
            retry: RetryConfig = {
                "max_retries": opts.retry_attempts,
                "retry_timeout": timedelta(seconds=opts.retry_timeout),
                "backoff": {
                    "init_backoff": timedelta(seconds=opts.retry_wait_initial),
                    "max_backoff": timedelta(seconds=opts.retry_wait_max),
                    "base": 2,
                },
            }
            store = S3Store(
                bucket,
                client_options={
                    "allow_http": insecure,
                    "connect_timeout": timedelta(seconds=opts.connect_timeout),
                },
                retry_config=retry,
            )
            self._stores[bucket] = store
        return store

    async def check(self, ref: ObjectRef) -> ObjectFacts:
        """The object's identity and audio facts, from its metadata and two ranged reads;
        `ValidationError` saying what to change when it cannot be an input."""
        obstore = _obstore()
        store = self.store(ref.bucket)
        try:
            meta = await obstore.head_async(store, ref.key)
        except Exception as exc:  # noqa: BLE001 - obstore's errors, mapped to what to do
            raise ValidationError("audio", str(ref), await self._why_head(ref, exc)) from None
        version = meta.get("version") or (meta.get("e_tag") or "").strip('"')
        identity = f"{ref}@{version}"
        known = self._facts.get(identity)
        if known is not None:
            return known
        size = int(meta["size"])
        try:
            head = await _read_range(obstore, store, ref.key, 0, min(size, HEAD_BYTES))
            tail = b""
            if size > HEAD_BYTES:
                start = max(HEAD_BYTES, size - TAIL_BYTES)
                tail = await _read_range(obstore, store, ref.key, start, size)
        except Exception as exc:  # noqa: BLE001
            raise ValidationError("audio", str(ref), _why(exc)) from None
        try:
            info = probe_window(head, tail, size)
        except AudioProblem as exc:
            raise ValidationError("audio", str(ref), str(exc)) from None
        facts = ObjectFacts(identity, info)
        if len(self._facts) >= MAX_CHECKED:
            self._facts.pop(next(iter(self._facts)))
        self._facts[identity] = facts
        return facts

    async def _why_head(self, ref: ObjectRef, exc: BaseException) -> str:
        # A HEAD's answer has no body to say why (a missing bucket or key, keys the store
        # does not know): a list request's does, when it fails too.
        try:
            await _holds_any(self.store(ref.bucket), ref.key)
        except Exception as listed:  # noqa: BLE001
            return _why(listed)
        return _why(exc)

    async def head_bytes(self, ref: ObjectRef, size: int = HEAD_BYTES) -> bytes:
        """The object's first `size` bytes (fewer if it is shorter); `ValidationError`
        when it cannot be read."""
        try:
            return await _read_range(_obstore(), self.store(ref.bucket), ref.key, 0, size)
        except Exception as exc:  # noqa: BLE001
            raise ValidationError("audio", str(ref), _why(exc)) from None

    def upload_source(self, ref: ObjectRef) -> UploadSource:
        """The object's bytes for the client's upload, streamed (never whole in memory)."""

        async def chunks() -> AsyncIterator[bytes]:
            obstore = _obstore()
            result = await obstore.get_async(self.store(ref.bucket), ref.key)
            async for chunk in result:
                yield bytes(chunk)

        return UploadSource(posixpath.basename(ref.key) or "input", chunks)

    async def presign(self, ref: ObjectRef, seconds: float) -> str:
        """A URL the service can fetch the object from for `seconds`."""
        obstore = _obstore()
        try:
            url: str = await obstore.sign_async(
                self.store(ref.bucket), "GET", ref.key, timedelta(seconds=seconds)
            )
        except Exception as exc:  # noqa: BLE001
            raise ValidationError("audio", str(ref), _why(exc)) from None
        return url


def _audio_refs(prefix: ObjectRef, page: list[Any]) -> Iterator[ObjectRef]:
    for meta in page:
        if meta["path"].lower().endswith(AUDIO_SUFFIXES):
            yield ObjectRef(prefix.bucket, meta["path"])


def audio_keys(stores: ObjectStores, prefix: ObjectRef) -> Iterator[ObjectRef]:
    """The audio objects under a prefix, recursively, in the store's (key) order, a page
    at a time. Blocking (for the command line's plan, which runs in a worker thread);
    `ValidationError` when the prefix cannot be listed."""
    obstore = _obstore()
    try:
        for page in obstore.list(stores.store(prefix.bucket), prefix.key or None, chunk_size=1000):
            yield from _audio_refs(prefix, page)
    except (ConfigurationError, ValidationError):
        raise
    except Exception as exc:  # noqa: BLE001
        raise ValidationError("input", str(prefix), _why(exc)) from None


async def audio_objects(stores: ObjectStores, prefix: ObjectRef) -> AsyncIterator[ObjectRef]:
    """`audio_keys`, listed as it is read (a library of a million objects is never held
    in memory)."""
    obstore = _obstore()
    try:
        pages = obstore.list(stores.store(prefix.bucket), prefix.key or None, chunk_size=1000)
        async for page in pages:
            for ref in _audio_refs(prefix, page):
                yield ref
    except (ConfigurationError, ValidationError):
        raise
    except Exception as exc:  # noqa: BLE001
        raise ValidationError("input", str(prefix), _why(exc)) from None


async def _holds_any(store: S3Store, prefix: str) -> bool:
    """Whether any object's key starts with `prefix` (one list request)."""
    async for batch in _obstore().list(store, prefix or None, chunk_size=1):
        if batch:
            return True
    return False


async def _read_range(obstore: Any, store: S3Store, key: str, start: int, end: int) -> bytes:
    if end <= start:
        return b""
    result = await obstore.get_async(store, key, options={"range": (start, end)})
    return bytes(await result.bytes_async())


def _why(exc: BaseException) -> str:
    """What an object store's error means for the user, in a few words."""
    from obstore.exceptions import NotFoundError, PermissionDeniedError, UnauthenticatedError

    full = str(exc)
    text = full.split("\n", 1)[0][:200]
    if "NoSuchBucket" in full:
        return "no such bucket; check the bucket's name and AWS_REGION / AWS_ENDPOINT_URL"
    if isinstance(exc, (FileNotFoundError, NotFoundError)):
        return "no such object; check the key"
    if isinstance(exc, UnauthenticatedError) or any(code in full for code in REFUSED_KEYS):
        return (
            "the store refused the credentials; check AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for temporary ones)"
        )
    if isinstance(exc, PermissionDeniedError) or "<Code>AccessDenied</Code>" in full:
        return "access denied; the store's policy does not allow this to the credentials in use"
    if any(source in full for source in CREDENTIAL_SOURCES):
        # No keys in the environment, and not on a machine that hands out its own.
        return (
            "no credentials found; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
            "(or run where the instance or container provides them)"
        )
    if any(sign in full for sign in STORE_FAULTS):
        return "the store kept failing (server errors, retried); the next run tries again"
    return f"the object store answered: {text}"


class ObjectPrefix:
    """The `OutputSink` of a bucket prefix: `name` lands at `s3://bucket/prefix/name`."""

    def __init__(self, url: str, stores: ObjectStores) -> None:
        self.prefix = ObjectRef.parse_prefix(url, field="out_dir")
        self._stores = stores
        # Until `prepare` looked: a prefix that held nothing holds no marked output, and
        # a new batch's tasks then cost no HEAD request each.
        self._was_empty = False

    def __repr__(self) -> str:
        return f"ObjectPrefix({str(self.prefix)!r})"

    def _key(self, name: str) -> str:
        joined = posixpath.normpath(posixpath.join("/" + self.prefix.key, name.replace("\\", "/")))
        inside = "/" + self.prefix.key
        if not joined.startswith(inside) or joined == inside.rstrip("/"):
            raise ValidationError("output name", name, "would land outside the output prefix")
        return joined.lstrip("/")

    def location(self, name: str) -> str:
        return f"{SCHEME}{self.prefix.bucket}/{self._key(name)}"

    async def prepare(self) -> None:
        """The bucket is reachable and the prefix writable: a marker put and deleted."""
        obstore = _obstore()
        store = self._stores.store(self.prefix.bucket)
        probe = self.prefix.key + ".outpaint-write-check"
        try:
            self._was_empty = not await _holds_any(store, self.prefix.key)
            await obstore.put_async(store, probe, b"")
            await obstore.delete_async(store, probe)
        except ConfigurationError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise OutputError(str(self.prefix), _why(exc)) from None

    async def exists(self, name: str) -> bool:
        obstore = _obstore()
        try:
            await obstore.head_async(self._stores.store(self.prefix.bucket), self._key(name))
        except FileNotFoundError:
            return False
        except Exception as exc:  # noqa: BLE001
            raise OutputError(self.location(name), _why(exc)) from None
        return True

    async def mark(self, name: str) -> OutputMark | None:
        if self._was_empty:
            return None
        obstore = _obstore()
        store = self._stores.store(self.prefix.bucket)
        try:
            result = await obstore.get_async(store, self._key(name), options={"head": True})
        except FileNotFoundError:
            return None
        except Exception as exc:  # noqa: BLE001
            raise OutputError(self.location(name), _why(exc)) from None
        text = result.attributes.get(MARK_KEY)
        mark = OutputMark.decode(text.encode()) if isinstance(text, str) else None
        if mark is None or mark.size not in (-1, result.meta["size"]):
            return None
        return mark

    async def open_part(self, name: str, mark: OutputMark | None = None) -> ObjectPart:
        store = self._stores.store(self.prefix.bucket)
        return ObjectPart(store, self._key(name), self.location(name), mark)


# What the queue between a part's writes and its multipart upload carries besides bytes.
_END = object()  # the output is whole: complete the upload
_GIVE_UP = object()  # the output was given up: the stream raises, and obstore aborts
# Abort waits this long at most for the store to drop a multipart upload's parts.
ABORT_WAIT = 30.0


class ObjectPart:
    """One output object being written. Up to `PART_BYTES` it is held and sent in one
    PUT at commit; beyond, it streams as a multipart upload that commit completes.
    Nothing is visible at the key before commit; abort leaves no parts behind."""

    def __init__(self, store: S3Store, key: str, location: str, mark: OutputMark | None) -> None:
        self._store = store
        self.key = key
        self.location = location
        self._mark = mark
        self._held: list[bytes] = []  # all that was written, until it streams
        self._size = 0
        self._chunks: asyncio.Queue[bytes | object] | None = None
        self._upload: asyncio.Future[Any] | None = None
        self._committing = False

    def _attributes(self, size: int) -> dict[str, str]:
        attributes = {"Content-Type": _content_type(self.key)}
        if self._mark is not None:
            attributes[MARK_KEY] = attrs.evolve(self._mark, size=size).encode().decode()
        return attributes

    async def write(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._upload is not None:
            await self._send(chunk)
            return
        self._held.append(chunk)
        if self._size >= PART_BYTES:
            # Too large to hold: stream it, marked from the start. Its size is not known
            # yet and not needed: a multipart upload is whole or absent by itself.
            obstore = _obstore()
            self._chunks = asyncio.Queue(maxsize=4)
            self._upload = asyncio.ensure_future(
                obstore.put_async(
                    self._store,
                    self.key,
                    self._stream(),
                    attributes=self._attributes(size=-1),
                    use_multipart=True,
                    chunk_size=PART_BYTES,
                    max_concurrency=PARTS_IN_FLIGHT,
                )
            )
            held, self._held = b"".join(self._held), []
            await self._send(held)

    async def _send(self, item: bytes | object) -> None:
        """Hand the upload its next piece; if the upload failed meanwhile, say why."""
        assert self._chunks is not None
        assert self._upload is not None
        put = asyncio.ensure_future(self._chunks.put(item))
        try:
            await asyncio.wait({put, self._upload}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not put.done():
                put.cancel()
        if not put.done() or put.cancelled():
            error = self._upload.exception() if self._upload.done() else None
            raise OutputError(self.location, _why(error) if error else "the upload stopped")

    async def _stream(self) -> AsyncIterator[bytes]:
        assert self._chunks is not None
        while True:
            chunk = await self._chunks.get()
            if chunk is _END:
                return
            if chunk is _GIVE_UP or not isinstance(chunk, bytes):
                raise RuntimeError("the output was given up")
            yield chunk

    async def commit(self) -> str:
        obstore = _obstore()
        self._committing = True
        try:
            if self._upload is None:
                data = b"".join(self._held)
                await obstore.put_async(
                    self._store, self.key, data, attributes=self._attributes(self._size)
                )
            else:
                await self._send(_END)
                await self._upload
        except OutputError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise OutputError(self.location, _why(exc)) from None
        return self.location

    async def abort(self) -> None:
        self._held.clear()
        upload, chunks = self._upload, self._chunks
        with (
            anyio.CancelScope(shield=True),
            anyio.move_on_after(ABORT_WAIT),
            contextlib.suppress(Exception),
        ):
            if upload is not None and chunks is not None and not upload.done():
                # Whatever waits is dropped; the stream raises and obstore aborts.
                while not chunks.empty():
                    chunks.get_nowait()
                chunks.put_nowait(_GIVE_UP)
                await upload
            if self._committing:
                # A commit cut short (a cancel) may have landed all the same: an output
                # that was given up never stays.
                await _obstore().delete_async(self._store, self.key)


def _content_type(key: str) -> str:
    fmt = posixpath.splitext(key)[1].lower().lstrip(".")
    return CONTENT_TYPES.get(fmt, "application/octet-stream")
