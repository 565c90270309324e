"""Plain asyncio tasks kept by the rules of a task group: one task per request, cheaply.

anyio's task group wraps every task in a cancel scope and an extra coroutine frame that
each resumption passes through; at thousands of tasks that is a measurable share of the
client's CPU. `TaskSet` holds asyncio's own tasks under the rules that matter here:
leaving the block waits for every task, a task that fails cancels the others and its
error is raised, and a block left by an error or a cancellation cancels every task and
waits for them all before it ends. The tasks may use anyio freely (anyio runs in any
asyncio task).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from types import TracebackType
from typing import Any

import anyio


class TaskSet:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()
        self._all_done: asyncio.Event | None = None
        self._error: BaseException | None = None

    def start(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None and self._error is None:
            self._error = task.exception()
            self._cancel()
        if not self._tasks and self._all_done is not None:
            self._all_done.set()

    def _cancel(self) -> None:
        for task in self._tasks:
            task.cancel()

    async def _wait(self) -> None:
        while self._tasks:
            self._all_done = asyncio.Event()
            await self._all_done.wait()

    async def __aenter__(self) -> TaskSet:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None:
            self._cancel()
        try:
            await self._wait()
        except BaseException:
            # Cancelled while waiting: no task may outlive the block.
            self._cancel()
            with anyio.CancelScope(shield=True):
                await self._wait()
            raise
        if exc is None and self._error is not None:
            raise self._error
