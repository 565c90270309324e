"""Rendered outputs: made once per task in a worker thread, kept in memory to a budget.

An output is downloaded once soon after its task completes (twice when a download is
cut), so the most recently rendered ones are the ones asked for. Keeping them as
bytes, not files, spares the emulator a file write and a read per download, which at
thousands of tasks made it slower than the clients it serves. One evicted is rendered
again: the same seed gives the same file.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable

DEFAULT_BUDGET_BYTES = 64 * 1024 * 1024


class RenderedOutputs:
    def __init__(self, budget_bytes: int = DEFAULT_BUDGET_BYTES) -> None:
        self._budget = budget_bytes
        self._kept: collections.OrderedDict[str, bytes] = collections.OrderedDict()
        self._kept_bytes = 0
        self._rendering: dict[str, asyncio.Future[bytes]] = {}

    async def get(self, key: str, render: Callable[[], bytes]) -> bytes:
        """The output for `key`, rendered by `render` in a thread if it is not kept."""
        kept = self._kept.get(key)
        if kept is not None:
            self._kept.move_to_end(key)
            return kept
        pending = self._rendering.get(key)
        if pending is None:
            pending = self._rendering[key] = asyncio.ensure_future(asyncio.to_thread(render))
            pending.add_done_callback(lambda done: self._keep(key, done))
        return await asyncio.shield(pending)

    def _keep(self, key: str, done: asyncio.Future[bytes]) -> None:
        del self._rendering[key]
        if done.cancelled() or done.exception() is not None:
            return
        data = done.result()
        if len(data) > self._budget // 4:
            return  # a huge output is rendered for each download instead of crowding out
        self._kept[key] = data
        self._kept_bytes += len(data)
        while self._kept_bytes > self._budget:
            _, evicted = self._kept.popitem(last=False)
            self._kept_bytes -= len(evicted)
