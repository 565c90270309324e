"""Submitting starts at once: the plan reads no audio, and a resumed batch takes each
unchanged local file's hash from its journal (kept by the file's path, size, mtime and
inode) instead of reading the file again."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
from conftest import MakeTrack, fast_client

from wavespeed_outpaint import OutpaintRequest
from wavespeed_outpaint._cli.plan import budget, from_inputs
from wavespeed_outpaint._engine.identity import FileFacts
from wavespeed_outpaint.emulator import Emulator

pytestmark = pytest.mark.anyio


def library(make_audio: MakeTrack, count: int = 6) -> list[Path]:
    return [make_audio(f"library/t{i}.wav", seconds=0.5) for i in range(count)]


async def run_batch(emu: Emulator, files: FileFacts, tracks: list[Path], journal: Path) -> None:
    requests = [(OutpaintRequest(t, tags="lofi"), t.stem) for t in tracks]
    async with fast_client(emu, file_facts=files) as client:
        results = [
            r async for r in client.outpaint_many(requests, journal.parent / "out", journal=journal)
        ]
    assert all(r.ok for r in results), [r.error for r in results]


async def test_a_resumed_batch_reads_no_audio_of_unchanged_files(
    emulator: Emulator, make_audio: MakeTrack, tmp_path: Path
) -> None:
    tracks = library(make_audio)
    journal = tmp_path / "journal.sqlite"
    first = FileFacts()
    await run_batch(emulator, first, tracks, journal)
    assert first.files_read == 6

    resumed = FileFacts()  # a new process: nothing in memory
    await run_batch(emulator, resumed, tracks, journal)
    assert resumed.files_read == 0

    # An edited file is a new version: read again (and only it).
    tracks[0].write_bytes(tracks[1].read_bytes())
    os.utime(tracks[0], ns=(1, 1))
    edited = FileFacts()
    await run_batch(emulator, edited, tracks, journal)
    assert edited.files_read == 1
    assert emulator.stats()["duplicate_submissions"] == 0


async def test_the_plan_reads_no_audio_and_knows_what_was_paid(
    emulator: Emulator, make_audio: MakeTrack, tmp_path: Path
) -> None:
    tracks = library(make_audio)
    journal = tmp_path / "journal.sqlite"
    files = FileFacts()
    plan = budget(from_inputs([str(tracks[0].parent)], files, tags="lofi"), journal, None, files)
    # A first run: nothing to compare with, so nothing is read before the first submit.
    assert (files.files_read, plan.to_run, plan.paid_before) == (0, 6, 0)

    await run_batch(emulator, FileFacts(), tracks, journal)
    files = FileFacts()
    planned = from_inputs([str(tracks[0].parent)], files, tags="lofi")
    plan = budget(planned, journal, max_cost=0.0, files=files)
    # Every task was paid for: known from the journal's hashes, with no file read, and
    # none of them counts against --max-cost.
    assert (files.files_read, plan.paid_before, plan.held_back, plan.to_run) == (0, 6, 0, 6)


class SlowReads(FileFacts):
    """Reads that take a while: whether anything else was read beside the first, and the
    most read at once."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self.started = 0
        self.first_reading = False
        self.beside_the_first = 0
        self.reading = 0
        self.most_at_once = 0

    def sha256(self, path: str | os.PathLike[str]) -> str:
        with self._lock:
            self.started += 1
            mine = self.started
            self.first_reading = self.first_reading or mine == 1
            self.beside_the_first += self.first_reading and mine > 1
            self.reading += 1
            self.most_at_once = max(self.most_at_once, self.reading)
        try:
            time.sleep(0.1)
            return super().sha256(path)
        finally:
            with self._lock:
                self.reading -= 1
                if mine == 1:
                    self.first_reading = False


async def test_the_first_file_is_read_alone(
    emulator: Emulator, make_audio: MakeTrack, tmp_path: Path
) -> None:
    """The first task waits for its own file only: files are read `parallel_uploads` at a
    time once the first is read, not before (100 WAVs of 40 MB, cold page cache: the
    first submit 1.48 s after the command's start, 0.81 to 0.87 s now;
    benchmarks/first_submit.py). Before, three more files were read beside the first."""
    files = SlowReads()
    await run_batch(emulator, files, library(make_audio), tmp_path / "journal.sqlite")
    assert files.files_read == 6
    assert files.beside_the_first == 0
    assert files.most_at_once > 1  # the others, `parallel_uploads` at a time


async def test_files_are_read_together_when_nothing_is_uploaded(
    emulator: Emulator, make_audio: MakeTrack, tmp_path: Path
) -> None:
    """A library copied without its modification times: every file is read again, every
    task was paid for and no upload happens. The reads still go `parallel_uploads` at a
    time after the first (when the first upload ended the one-at-a-time start, they went
    one at a time to the end)."""
    tracks = library(make_audio)
    journal = tmp_path / "journal.sqlite"
    await run_batch(emulator, FileFacts(), tracks, journal)
    for track in tracks:
        os.utime(track, ns=(1, 1))
    files = SlowReads()
    await run_batch(emulator, files, tracks, journal)
    assert files.files_read == 6
    assert files.beside_the_first == 0
    assert files.most_at_once > 1
    assert emulator.stats()["duplicate_submissions"] == 0
