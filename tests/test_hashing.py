"""Input hashes are remembered per version of a file, and only per version."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from wavespeed_outpaint._hashing import file_version, known_hash, sha256_file


def test_a_file_is_hashed_once_per_version(tmp_path: Path) -> None:
    path = tmp_path / "track.wav"
    path.write_bytes(b"a" * 5000)
    assert known_hash(file_version(path)) is None
    digest = sha256_file(path)
    assert digest == hashlib.sha256(b"a" * 5000).hexdigest()
    assert known_hash(file_version(path)) == digest

    # Same size, other content, a later mtime: a new version, read again.
    mtime = path.stat().st_mtime_ns
    path.write_bytes(b"b" * 5000)
    os.utime(path, ns=(mtime + 10**9, mtime + 10**9))
    assert known_hash(file_version(path)) is None
    assert sha256_file(path) == hashlib.sha256(b"b" * 5000).hexdigest()
