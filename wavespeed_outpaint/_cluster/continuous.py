"""One `outpaint_many` that lives across calls, fed by each in turn.

A Ray actor is handed batches while others are under way. Given a batch each, separate
`outpaint_many` calls share the client's in-flight slots row by row, so every batch
progresses at once and all end near together: the actor is then left with tails
while Ray waits for whole batches before it hands out more. Fed into one batch, first
come first served, the oldest batch's rows go first, batches end one after another,
and new ones arrive while the running budget is still full.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from ..client import OutpaintClient
from ..models import OutpaintRequest, OutpaintResult
from ..seams import TaskStore

Item = OutpaintRequest | tuple[OutpaintRequest, str]


class ContinuousBatch:
    """`run(items)` gives `items` to one long-lived `outpaint_many` of `client` and
    returns their results. If the batch stops (an error that stops a whole batch, such
    as a spent balance), the items waiting then get no result, and the next `run`
    starts a batch anew."""

    def __init__(self, client: OutpaintClient, out: str | Path, journal: TaskStore) -> None:
        self._client = client
        self._out = out
        self._journal = journal
        self._queue: asyncio.Queue[Item] = asyncio.Queue()
        self._waiting: dict[int, asyncio.Future[OutpaintResult]] = {}
        self._runner: asyncio.Task[None] | None = None

    async def run(self, items: Sequence[Item]) -> dict[int, OutpaintResult]:
        """The results of `items`, by `id()` of each request; an item whose batch
        stopped has none."""
        loop = asyncio.get_running_loop()
        mine: dict[int, asyncio.Future[OutpaintResult]] = {}
        for item in items:
            request = item[0] if isinstance(item, tuple) else item
            mine[id(request)] = self._waiting[id(request)] = loop.create_future()
            self._queue.put_nowait(item)
        if self._runner is None or self._runner.done():
            self._runner = loop.create_task(self._run())
        if mine:
            await asyncio.wait(mine.values())
        return {key: f.result() for key, f in mine.items() if f.exception() is None}

    async def _feed(self) -> AsyncIterator[Item]:
        while True:
            yield await self._queue.get()

    async def _run(self) -> None:
        try:
            batch = self._client.outpaint_many(self._feed(), self._out, journal=self._journal)
            async for result in batch:
                waiting = self._waiting.pop(id(result.request), None)
                if waiting is not None and not waiting.done():
                    waiting.set_result(result)
        except Exception as exc:  # noqa: BLE001 - given to every caller waiting
            stopped = exc
        else:  # (the feed never ends)
            stopped = RuntimeError("the batch ended")
        for waiting in self._waiting.values():
            if not waiting.done():
                waiting.set_exception(stopped)
        self._waiting.clear()
        while not self._queue.empty():
            self._queue.get_nowait()
