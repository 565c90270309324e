"""`Signal`: set once, awaited by any number of tasks; one per task in flight, cheaply.

`asyncio.Event` allocates a deque for its waiters when it is made: about 860 bytes an
event against 150 for a future. The engine and the poller keep one per task in flight,
so at 10,000 tasks in flight that was about 12 MB of the client's peak memory, for
signals that are set once and mostly awaited by one task.
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
            if not waiter.done():
                waiter.set_result(None)

    async def wait(self) -> None:
        if self._set:
            return
        waiter = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(waiter)
        try:
            await waiter  # a cancelled waiter cancels only its own future
        finally:
            if self._waiters is not None:
                self._waiters.remove(waiter)
