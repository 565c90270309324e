"""The local output sink and its writer thread, on their own (no service needed)."""

from __future__ import annotations

import asyncio
import fcntl
import os
import subprocess
import sys
import threading
from pathlib import Path

import attrs
import pytest

from wavespeed_outpaint import OutputError, OutputMark, ValidationError
from wavespeed_outpaint._outputs.files import (
    WRITE_BUFFER,
    FileWriter,
    LocalFolder,
    claim_part,
    write_whole_file,
)

pytestmark = pytest.mark.anyio


async def test_a_small_write_cancelled_while_queued_never_lands(tmp_path: Path) -> None:
    writer = FileWriter()
    writer.start()
    dest = tmp_path / "song.wav"
    try:
        # Hold the writer at its rename, so the cancel comes while the job is in its hands.
        writer._renaming.acquire()
        write = asyncio.ensure_future(writer.write_whole(b"x" * 10, str(dest)))
        for _ in range(200):
            if (tmp_path / "song.wav.part").exists():
                break
            await asyncio.sleep(0.005)
        assert (tmp_path / "song.wav.part").exists()
        # The cancelled write waits for the lock; let the writer have it back shortly after.
        threading.Timer(0.1, writer._renaming.release).start()
        write.cancel()
        with pytest.raises(asyncio.CancelledError):
            await write
        # A second write goes through the same thread after the first job is done.
        await writer.write_whole(b"y", str(tmp_path / "b"))
    finally:
        await writer.stop()
    assert not dest.exists()
    assert not (tmp_path / "song.wav.part").exists()
    assert (tmp_path / "b").read_bytes() == b"y"


async def test_a_part_is_whole_at_commit_and_gone_at_abort(tmp_path: Path) -> None:
    writer = FileWriter()
    writer.start()
    try:
        folder = LocalFolder(tmp_path / "out", writer)
        await folder.prepare()
        big = await folder.open_part("album/big.wav")
        for _ in range(3):
            await big.write(b"z" * 700_000)  # over the buffer: streamed to the .part
        assert not await folder.exists("album/big.wav")
        assert await big.commit() == str(tmp_path / "out" / "album" / "big.wav")
        assert await folder.exists("album/big.wav")
        assert (tmp_path / "out/album/big.wav").stat().st_size == 2_100_000

        cut = await folder.open_part("album/cut.wav")
        await cut.write(b"z" * 1_500_000)
        await cut.abort()
        assert sorted(p.name for p in (tmp_path / "out/album").iterdir()) == ["big.wav"]
    finally:
        await writer.stop()


async def test_a_writer_cancelled_at_any_moment_leaves_no_part(tmp_path: Path) -> None:
    # asyncio's own cancel, as the batch's TaskSet sends it, at each step of a large
    # output's way: while its `.part` is claimed in a thread, written, or renamed.
    writer = FileWriter()
    writer.start()
    try:
        folder = LocalFolder(tmp_path, writer)
        await folder.prepare()

        async def write_one(name: str) -> None:
            part = await folder.open_part(name)
            try:
                await part.write(b"z" * WRITE_BUFFER)
                await part.write(b"z" * 10)
                await part.commit()
            except BaseException:
                await part.abort()
                raise

        for moment in range(40):
            task = asyncio.ensure_future(write_one(f"{moment}.wav"))
            for _ in range(moment):
                await asyncio.sleep(0)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".part")) == []
        written = [p for p in tmp_path.glob("*.wav")]
        assert all(p.stat().st_size == WRITE_BUFFER + 10 for p in written)
    finally:
        await writer.stop()


async def test_names_outside_the_folder_and_unwritable_folders_are_refused(
    tmp_path: Path,
) -> None:
    writer = FileWriter()
    folder = LocalFolder(tmp_path / "out", writer)
    with pytest.raises(ValidationError, match="outside"):
        folder.location("../elsewhere.wav")
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(OutputError, match="cannot create the folder"):
        await LocalFolder(tmp_path / "file" / "out", writer).prepare()


@pytest.mark.parametrize("marks", ["xattr", "sidecar"])
async def test_an_output_carries_its_mark_while_it_is_the_file_marked(
    tmp_path: Path, marks: str
) -> None:
    writer = FileWriter()
    writer.start()
    mark = OutputMark("fp1", "pred-1", ("https://out.example/a.wav",))
    try:
        folder = LocalFolder(tmp_path / "out", writer, marks=marks)
        await folder.prepare()
        sizes = {"small.wav": 999, "album/big.wav": 2_100_000}
        for name, size in sizes.items():
            part = await folder.open_part(name, mark)
            for _ in range(3):
                await part.write(b"z" * (size // 3))
            await part.commit()
        unmarked = await folder.open_part("plain.wav")
        await unmarked.write(b"z")
        await unmarked.commit()
        # The next run's view of the folder:
        later = LocalFolder(tmp_path / "out", writer, marks=marks)
        await later.prepare()
        for name, size in sizes.items():
            assert await later.mark(name) == attrs.evolve(mark, size=size)
        assert await later.mark("plain.wav") is None
        assert await later.mark("absent.wav") is None
        # Cut short or replaced afterwards: no longer the output that was marked.
        os.truncate(tmp_path / "out" / "small.wav", 10)
        assert await later.mark("small.wav") is None
    finally:
        await writer.stop()
    assert (tmp_path / "out" / ".outpaint-marks").exists() == (marks == "sidecar")


async def test_a_folder_that_held_nothing_is_not_searched_for_marks(tmp_path: Path) -> None:
    writer = FileWriter()
    writer.start()
    try:
        folder = LocalFolder(tmp_path / "new", writer)
        await folder.prepare()
        part = await folder.open_part("a.wav", OutputMark("fp", "p", ("https://o/a.wav",)))
        await part.write(b"z")
        await part.commit()
        # Written by this batch: nothing an earlier run left, so no look is needed.
        assert await folder.mark("a.wav") is None
        again = LocalFolder(tmp_path / "new", writer)
        await again.prepare()
        assert await again.mark("a.wav") is not None
    finally:
        await writer.stop()


def test_a_mark_that_is_not_one_reads_as_none() -> None:
    for data in (
        b"",
        b"[]",
        b'{"fingerprint": 1}',
        b"\xff",
        b'{"fingerprint": "f", "prediction_id": "p", "outputs": ["u"], "size": -2}',
    ):
        assert OutputMark.decode(data) is None
    good = OutputMark("f", "p", ("u",), 3)
    assert OutputMark.decode(good.encode()) == good


async def test_a_mark_too_large_to_keep_leaves_the_output_whole_and_unmarked(
    tmp_path: Path,
) -> None:
    writer = FileWriter()
    writer.start()
    # Extended attributes hold a few KB on common file systems (one block on ext4).
    huge = OutputMark("fp", "p", tuple(f"https://o/{'x' * 1000}/{i}.wav" for i in range(64)))
    try:
        folder = LocalFolder(tmp_path / "out", writer, marks="xattr")
        await folder.prepare()
        part = await folder.open_part("a.wav", huge)
        await part.write(b"z" * 100)
        await part.commit()
        later = LocalFolder(tmp_path / "out", writer, marks="xattr")
        await later.prepare()
        assert await later.mark("a.wav") is None
    finally:
        await writer.stop()
    assert (tmp_path / "out" / "a.wav").read_bytes() == b"z" * 100


@pytest.mark.parametrize("size", [1000, 1_500_000], ids=["small", "streamed"])
async def test_two_writers_of_one_output_at_once_each_place_it_whole(
    tmp_path: Path, size: int
) -> None:
    # Two clients collecting the same task into one folder: each has its own writer
    # thread and folder object, as two processes would. With one shared `<name>.part`
    # the second rename found it gone (a CI run of 2026-12-02 failed so).
    writers = [FileWriter(), FileWriter()]
    for writer in writers:
        writer.start()
    try:
        folders = [LocalFolder(tmp_path / "out", writer) for writer in writers]
        for folder in folders:
            await folder.prepare()

        async def write(folder: LocalFolder, fill: bytes) -> str:
            part = await folder.open_part("album/t0.wav")
            for _ in range(3):
                await part.write(fill * (size // 3))
                await asyncio.sleep(0)
            return await part.commit()

        for round_ in range(40):
            fills = [bytes([65 + round_ % 26]), bytes([97 + round_ % 26])]
            placed = await asyncio.gather(*(map(write, folders, fills)))
            assert len(set(placed)) == 1
            data = Path(placed[0]).read_bytes()
            assert data in (fills[0] * (size // 3 * 3), fills[1] * (size // 3 * 3))
    finally:
        for writer in writers:
            await writer.stop()
    assert sorted(p.name for p in (tmp_path / "out/album").iterdir()) == ["t0.wav"]


# One of two processes writing the same output 200 times; it fails if a write fails or
# if the output's name ever holds less than a whole file. (With one shared `<name>.part`,
# two such loops saw 93 failed renames and 46 short files in 400 writes.)
WRITER_PROCESS = """
import os, sys
from wavespeed_outpaint._outputs.files import claim_part, fill_and_put, place
dest, fill = sys.argv[1], sys.argv[2].encode()
for _ in range(200):
    part, fd = claim_part(dest)
    fill_and_put(part, fd, fill * 100_000, lambda part: place(part, dest, b"{}", None))
    assert os.path.getsize(dest) == 100_000
"""


def test_two_processes_writing_one_output_each_place_it_whole(tmp_path: Path) -> None:
    dest = tmp_path / "t0.wav"
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER_PROCESS, str(dest), fill])
        for fill in ("a", "b")
    ]
    try:
        for writer in writers:
            assert writer.wait(timeout=60) == 0
    finally:
        for writer in writers:
            writer.kill()
    assert dest.read_bytes() in (b"a" * 100_000, b"b" * 100_000)
    assert [p.name for p in tmp_path.iterdir()] == ["t0.wav"]


async def test_a_part_left_by_a_dead_writer_is_taken_over_and_a_held_one_left_alone(
    tmp_path: Path,
) -> None:
    writer = FileWriter()
    writer.start()
    try:
        folder = LocalFolder(tmp_path, writer)
        await folder.prepare()
        # A crash's leftover: nobody holds it.
        (tmp_path / "a.wav.part").write_bytes(b"left by a crash, longer than the output")
        part = await folder.open_part("a.wav")
        await part.write(b"new")
        await part.commit()
        assert (tmp_path / "a.wav").read_bytes() == b"new"
        assert not (tmp_path / "a.wav.part").exists()

        # Another live writer's: held under its lock, so written beside, never touched.
        theirs, fd = claim_part(str(tmp_path / "b.wav"))
        try:
            os.write(fd, b"theirs, half-written")
            part = await folder.open_part("b.wav")
            await part.write(b"mine")
            await part.commit()
            assert (tmp_path / "b.wav").read_bytes() == b"mine"
            assert Path(theirs).read_bytes() == b"theirs, half-written"
            assert _is_held(theirs)
        finally:
            os.close(fd)
    finally:
        await writer.stop()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav", "b.wav", "b.wav.part"]


def _is_held(path: str) -> bool:
    """Whether some writer holds the lock on the file at `path`."""
    with open(path, "rb") as probe:
        try:
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        return False


def test_a_small_file_is_never_written_through_a_planted_part_link(tmp_path: Path) -> None:
    # The review page and sidecar marks: review.html.part linked to a file elsewhere.
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"keep me")
    out = tmp_path / "out"
    out.mkdir()
    (out / "review.html.part").symlink_to(victim)
    write_whole_file(str(out / "review.html"), b"<html></html>")
    assert victim.read_bytes() == b"keep me"
    assert (out / "review.html").read_bytes() == b"<html></html>"
    assert not (out / "review.html").is_symlink()
