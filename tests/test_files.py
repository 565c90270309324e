"""The local output sink and its writer thread, on their own (no service needed)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from wavespeed_outpaint import OutputError, ValidationError
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
