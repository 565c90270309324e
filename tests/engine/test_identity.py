"""What a client knows about input files is kept per version of a file, and bounded."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from wavespeed_outpaint._engine.identity import FileFacts, file_version


def test_a_file_is_hashed_once_per_version(tmp_path: Path) -> None:
    facts = FileFacts()
    path = tmp_path / "track.wav"
    path.write_bytes(b"a" * 5000)
    assert facts.known_hash(file_version(path)) is None
    digest = facts.sha256(path)
    assert digest == hashlib.sha256(b"a" * 5000).hexdigest()
    assert facts.known_hash(file_version(path)) == digest
    assert FileFacts().known_hash(file_version(path)) is None  # each owner its own

    # Same size, other content, a later mtime: a new version, read again.
    mtime = path.stat().st_mtime_ns
    path.write_bytes(b"b" * 5000)
    os.utime(path, ns=(mtime + 10**9, mtime + 10**9))
    assert facts.known_hash(file_version(path)) is None
    assert facts.sha256(path) == hashlib.sha256(b"b" * 5000).hexdigest()


def test_the_least_recently_used_versions_are_forgotten_first(tmp_path: Path) -> None:
    facts = FileFacts(max_remembered=2)
    paths = []
    for name in "abc":
        path = tmp_path / name
        path.write_bytes(name.encode())
        paths.append(path)
    facts.sha256(paths[0])
    facts.sha256(paths[1])
    assert facts.known_hash(file_version(paths[0])) is not None  # a is used again
    facts.sha256(paths[2])  # the third forgets b, the least recently used
    assert [facts.known_hash(file_version(p)) is not None for p in paths] == [True, False, True]
