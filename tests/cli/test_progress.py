"""The live progress bar: its last frame, and a narrow terminal."""

from __future__ import annotations

import io
import re

import anyio
import pytest

from wavespeed_outpaint._cli.progress import show
from wavespeed_outpaint.models import BatchProgress

pytestmark = pytest.mark.anyio


class Terminal(io.StringIO):
    """What rich writes to a terminal of 100 columns."""

    def isatty(self) -> bool:
        return True


async def test_the_last_frame_shows_the_last_counts_and_whole_times(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    progress = BatchProgress()
    out = Terminal()
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: show(progress, 6, quiet=False, stream=out))
        progress.submitted = 6
        progress.completed = progress.finished = 5
        await anyio.sleep(0.3)  # a frame of 5 done, 1 processing
        # The batch ends between two frames.
        progress.completed = progress.finished = 6
        tg.cancel_scope.cancel()
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.getvalue())
    last = [frame for frame in re.split(r"[\r\n]", text) if "outpaint" in frame][-1]
    assert "6/6" in last
    assert "6 ok" in last, last  # the frame drawn before the end said 5
    assert "0 running" in last, last
    assert last.rstrip().endswith("$0.0000"), last  # nothing cut
    assert "0:00:0" in last, last  # the elapsed time whole, not cut to "0:0…"
