"""A task's identity, and what is known about the local files it reads.

`fingerprint()` names a task by its audio's content (or URL) and every parameter: the
journal's key, so the same task is never paid for twice. `FileFacts` remembers, per
version of a local file (its absolute path, size, mtime and inode), its audio facts and
its SHA-256: a library of large tracks is read once, however many tasks name a file,
and an edited file is read again (the journal keeps the hashes for the next run). It is
bounded and belongs to whoever made it (a client, or the command line's plan, which
hands it to its client).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections import OrderedDict
from typing import Any, TypeVar

from .._audio.probe import AudioInfo, AudioProblem, probe_audio, stat_input
from ..errors import ValidationError
from ..models import OutpaintRequest
from ..seams import FileVersion

HASH_CHUNK = 1024 * 1024
# Versions remembered at most, the least recently used forgotten first: a long-lived
# process that sees ever new files must not grow without bound. ~300 bytes each.
MAX_REMEMBERED = 65_536

K = TypeVar("K")
V = TypeVar("V")


def fingerprint(request: OutpaintRequest, content: str | None) -> str:
    """The task's identity: what the audio is plus every parameter. `content`: a local
    file's `sha256:<hex>`, an object's `s3://bucket/key@<version or ETag>`; None for a
    URL, which is then its own identity unless the request names a `key`."""
    if content is None and request.key is not None:
        content = "key:" + request.key
    body: dict[str, Any] = request.payload(content)
    body["extend_before_duration"] = float(request.extend_before_duration)
    body["extend_after_duration"] = float(request.extend_after_duration)
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def file_version(path: str | os.PathLike[str]) -> FileVersion:
    """Raises OSError when the file is gone or cannot be read."""
    return _version(path, os.stat(path))


def _version(path: str | os.PathLike[str], stat: os.stat_result) -> FileVersion:
    return (os.path.abspath(path), stat.st_size, stat.st_mtime_ns, stat.st_ino)


class FileFacts:
    """Probes and hashes of local files, once per version. Blocking: call it from a
    worker thread (it is thread-safe)."""

    def __init__(self, max_remembered: int = MAX_REMEMBERED) -> None:
        self._max = max_remembered
        self._hashes: OrderedDict[FileVersion, str] = OrderedDict()
        self._probes: OrderedDict[tuple[FileVersion, int], AudioInfo] = OrderedDict()
        self._lock = threading.Lock()
        self.files_read = 0  # whole files read to hash them

    def __repr__(self) -> str:
        return f"FileFacts({len(self._hashes)} hashes, {len(self._probes)} probes)"

    def check(self, path: str | os.PathLike[str], max_bytes: int) -> AudioInfo:
        """The file's audio facts; `ValidationError` saying what to change when it
        cannot be sent (not audio, empty, too long, over `max_bytes`, unreadable)."""
        try:
            stat = stat_input(path)
            key = (_version(path, stat), max_bytes)
            info = self._recall(self._probes, key)
            if info is None:
                info = probe_audio(path, max_bytes=max_bytes, stat=stat)
                self._keep(self._probes, key, info)
        except AudioProblem as exc:
            raise ValidationError("audio", os.fspath(path), str(exc)) from None
        return info

    def checked(self, version: FileVersion, max_bytes: int) -> bool:
        """Whether this version of the file passed `check` with this limit."""
        return self._recall(self._probes, (version, max_bytes)) is not None

    def known_hash(self, version: FileVersion) -> str | None:
        """The hash if this version of the file was read already; never reads it."""
        return self._recall(self._hashes, version)

    def remember_hash(self, version: FileVersion, digest: str) -> None:
        """A hash read before (and kept by a journal) for this version of a file."""
        self._keep(self._hashes, version, digest)

    def sha256(self, path: str | os.PathLike[str]) -> str:
        """Reads the file unless this version of it was read before."""
        version = file_version(path)
        digest = self._recall(self._hashes, version)
        if digest is None:
            digest = _read_and_hash(path)
            self.files_read += 1
            self._keep(self._hashes, version, digest)
        return digest

    def _recall(self, cache: OrderedDict[K, V], key: K) -> V | None:
        with self._lock:
            value = cache.get(key)
            if value is not None:
                cache.move_to_end(key)
            return value

    def _keep(self, cache: OrderedDict[K, V], key: K, value: V) -> None:
        with self._lock:
            cache[key] = value
            if len(cache) > self._max:
                cache.popitem(last=False)


def _read_and_hash(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
