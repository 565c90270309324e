"""The local output sink and its writer thread, on their own (no service needed)."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

import attrs
import pytest

from wavespeed_outpaint import OutputError, OutputMark, ValidationError
from wavespeed_outpaint._files import FileWriter, LocalFolder

pytestmark = pytest.mark.anyio


async def test_a_small_write_cancelled_while_queued_never_lands(tmp_path: Path) -> None:
    writer = FileWriter()
    writer.start()
    dest = tmp_path / "song.wav"
    try:
        # Hold the writer at its rename, so the cancel comes while the job is in its hands.
        writer._renaming.acquire()
        write = asyncio.ensure_future(writer.write_whole(str(dest) + ".part", b"x" * 10, str(dest)))
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
        await writer.write_whole(str(tmp_path / "b.part"), b"y", str(tmp_path / "b"))
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
