"""What a batch run shows while it works: a live bar on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
import time
from typing import TextIO

import anyio
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from .models import BatchProgress

PLAIN_EVERY = 5.0  # seconds between lines when the output is not a terminal


def _summary(p: BatchProgress, total: int, started: float) -> str:
    elapsed = max(time.monotonic() - started, 1e-9)
    rate = (p.finished - p.skipped) / elapsed * 60
    return (
        f"{p.finished}/{total} done: {p.completed} ok, {p.failed} failed, {p.unknown} unknown; "
        f"{p.submitted} submitted, {p.processing} processing, {p.downloading} downloading; "
        f"{rate:.1f} tasks/min; ${p.charged_usd:.4f} charged"
    )


async def show(
    progress: BatchProgress, total: int, *, quiet: bool, stream: TextIO | None = None
) -> None:
    """Run until cancelled, drawing `progress`."""
    out = stream or sys.stderr
    if quiet:
        await anyio.sleep_forever()
    started = time.monotonic()
    if not out.isatty():
        while True:
            await anyio.sleep(PLAIN_EVERY)
            print(_summary(progress, total, started), file=out, flush=True)
    bar = Progress(
        TextColumn("[bold]outpaint"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[counts]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(file=out),
        transient=False,
    )
    task = bar.add_task("batch", total=total, counts="")
    with bar:
        try:
            while True:
                p = progress
                bar.update(
                    task,
                    completed=p.finished,
                    counts=(
                        f"submitted {p.submitted} · processing {p.processing} · "
                        f"downloading {p.downloading} · "
                        f"done {p.completed} · failed {p.failed + p.unknown} · ${p.charged_usd:.4f}"
                    ),
                )
                await anyio.sleep(0.25)
        finally:
            bar.update(task, completed=progress.finished)
