"""A local file's SHA-256, computed once per version of the file in this process.

The command line's plan (which tasks were paid for already) and the engine (which
uploads each content once) both need the hash of every input: a library of large
tracks must not be read twice. A version is the file's absolute path, size and mtime,
so an edited file is read again.
"""

from __future__ import annotations

import hashlib
import os
import threading

HASH_CHUNK = 1024 * 1024
# Versions remembered at most (the oldest are forgotten first): a long-lived process
# that sees ever new files must not grow without bound. ~200 bytes each.
MAX_REMEMBERED = 65_536

FileVersion = tuple[str, int, int]

_remembered: dict[FileVersion, str] = {}
_lock = threading.Lock()  # hashing runs in worker threads


def file_version(path: str | os.PathLike[str]) -> FileVersion:
    """Raises OSError when the file is gone or cannot be read."""
    stat = os.stat(path)
    return (os.path.abspath(path), stat.st_size, stat.st_mtime_ns)


def known_hash(version: FileVersion) -> str | None:
    """The hash if this version of the file was read already; never reads it."""
    return _remembered.get(version)


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Blocking: reads the file unless this version of it was read before."""
    version = file_version(path)
    digest = _remembered.get(version)
    if digest is None:
        digest = _read_and_hash(path)
        with _lock:
            if len(_remembered) >= MAX_REMEMBERED:
                del _remembered[next(iter(_remembered))]
            _remembered[version] = digest
    return digest


def _read_and_hash(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
