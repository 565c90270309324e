"""What a batch run shows while it works: a live bar on a terminal (with the `cli` extra,
rich), plain lines otherwise."""

from __future__ import annotations

import sys
import time
from typing import TextIO

import anyio

from .._audio.extras import CLI_EXTRA, installed
from ..models import BatchProgress

PLAIN_EVERY = 5.0  # seconds between lines when the output is not a terminal


def _summary(p: BatchProgress, total: int, started: float) -> str:
    elapsed = max(time.monotonic() - started, 1e-9)
    rate = (p.finished - p.skipped) / elapsed * 60
    return (
        f"{p.finished}/{total} done: {p.completed} ok, {p.failed} failed, {p.unknown} unknown; "
        f"{p.submitted} submitted, {p.processing} processing, {p.downloading} downloading; "
        f"{rate:.1f} tasks/min; ${p.charged_usd:.4f} charged"
    )


def _counts(p: BatchProgress) -> str:
    """The live counts, short enough for 100 columns beside the bar and the times (what
    is nought of downloads and failures is left out)."""
    parts = [f"{p.submitted} sent", f"{p.processing} running"]
    if p.downloading:
        parts.append(f"{p.downloading} downloading")
    parts.append(f"{p.completed} ok")
    if p.failed + p.unknown:
        parts.append(f"{p.failed + p.unknown} failed")
    parts.append(f"${p.charged_usd:.4f}")
    return " · ".join(parts)


async def show(
    progress: BatchProgress, total: int, *, quiet: bool, stream: TextIO | None = None
) -> None:
    """Run until cancelled, drawing `progress`."""
    out = stream or sys.stderr
    if quiet:
        await anyio.sleep_forever()
    started = time.monotonic()
    if not out.isatty() or not installed(CLI_EXTRA):
        while True:
            await anyio.sleep(PLAIN_EVERY)
            print(_summary(progress, total, started), file=out, flush=True)
    await _live_bar(progress, total, out)


async def _live_bar(progress: BatchProgress, total: int, out: TextIO) -> None:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.table import Column

    console = Console(file=out)
    # The other columns keep their width (about 46 columns); the counts get what is left,
    # their end cut on a narrow terminal (the times were cut to "0:0…" at 100 columns).
    counts_width = max(10, console.width - 46 - 2 * len(str(total)))
    bar = Progress(
        TextColumn("[bold]outpaint"),
        BarColumn(bar_width=16),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn(
            "{task.fields[counts]}",
            table_column=Column(max_width=counts_width, no_wrap=True, overflow="ellipsis"),
        ),
        console=console,
        transient=False,
    )
    task = bar.add_task("batch", total=total, counts="")

    def draw() -> None:
        p = progress
        bar.update(
            task,
            completed=p.finished,
            counts=_counts(p),
        )

    with bar:
        try:
            while True:
                draw()
                await anyio.sleep(0.25)
        finally:
            draw()  # the last frame shows the last counts, not those of a quarter second ago
