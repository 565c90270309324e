"""`Signal`: set once, awaited by any number of tasks; one per task in flight, cheaply.

`asyncio.Event` allocates a deque for its waiters when it is made: about 860 bytes an
event against 150 for a future. The engine and the poller keep one per task in flight
(and the engine one per upload under way), so at 10,000 tasks in flight that was about
12 MB of the client's peak memory, for signals that are set once and mostly awaited by
one task.
"""

from __future__ import annotations

import asyncio


class Signal:
    __slots__ = ("_set", "_waiters")

    def __init__(self) -> None:
        self._set = False
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        """Wake every waiter, now and for good."""
        self._set = True
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            _wake(waiter)

    async def wait(self, timeout: float | None = None) -> bool:
        """Whether it was set, waiting at most `timeout` seconds for it (None: no limit).

        The limit is a timer of this waiter's own, not a cancel scope around the wait:
        the poller waits with a limit for every task in flight, and a cancel scope per
        task costs more CPU and memory than a timer."""
        if self._set:
            return True
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(waiter)
        expiry = None if timeout is None else loop.call_later(timeout, _wake, waiter)
        try:
            await waiter  # a cancelled waiter cancels only its own future
        finally:
            if expiry is not None:
                expiry.cancel()
            if self._waiters is not None:
                self._waiters.remove(waiter)
        return self._set


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
