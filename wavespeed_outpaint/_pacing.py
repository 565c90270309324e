"""Client-side pacing of task starts: a per-minute limit, and a pool-wide pause on 429.

The service counts starts per minute per account; going over earns 429s. The pacer
spaces starts evenly at the configured rate. When a 429 comes back anyway (the tier was
guessed wrong, another process shares the key), every submitter waits out the
Retry-After together, and once a full minute of history shows what the account really
allows, the rate is set just under it; accepted starts then raise it again slowly.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
import time

import anyio

log = logging.getLogger("wavespeed_outpaint.pacing")

UNLIMITED_ABOVE = 10_000.0  # a learned rate above the top tier's is no limit at all


class StartPacer:
    """The default `StartLimiter`: `starts_per_minute` spaced evenly (None: no limit),
    every submit paused together on a 429. One pacer can be shared by several clients
    of one process (`OutpaintClient(limiter=pacer)`)."""

    def __init__(self, starts_per_minute: float | None) -> None:
        self._ceiling = starts_per_minute
        self.starts_per_minute = starts_per_minute
        self._next_slot = 0.0
        self._paused_until = 0.0
        self._started = time.monotonic()
        self._recent: collections.deque[float] = collections.deque()
        self._backoff = 1.0
        self._lock = asyncio.Lock()  # asyncio's: taken once per submit, never awaits when free

    async def slot(self) -> None:
        """Wait for the next start slot."""
        async with self._lock:
            while True:
                now = time.monotonic()
                ready = max(self._paused_until, self._next_slot)
                if ready <= now:
                    break
                await anyio.sleep(ready - now)
            if self.starts_per_minute:
                self._next_slot = max(now, self._next_slot) + 60.0 / self.starts_per_minute
            self._recent.append(now)
            while self._recent and self._recent[0] < now - 60:
                self._recent.popleft()

    def accepted(self) -> None:
        self._backoff = 1.0
        rate = self.starts_per_minute
        if rate is not None and (self._ceiling is None or rate < self._ceiling):
            rate *= 1.01
            if self._ceiling is not None:
                rate = min(rate, self._ceiling)
            self.starts_per_minute = (
                None if self._ceiling is None and rate > UNLIMITED_ABOVE else rate
            )

    def rate_limited(self, retry_after: float | None) -> None:
        """A 429 on a start: pause every submitter; with a minute of history, lower the rate."""
        now = time.monotonic()
        if now < self._paused_until:
            return  # the same burst of 429s: already paused for it
        if retry_after is None:
            wait = self._backoff * random.uniform(1.0, 1.5)
            self._backoff = min(60.0, self._backoff * 2)
        else:
            wait = retry_after
        self._paused_until = now + wait
        if now - self._started >= 60 and self._recent:
            learned = max(1.0, 0.9 * len(self._recent))
            if self.starts_per_minute is None or learned < self.starts_per_minute:
                self.starts_per_minute = learned
        log.info(
            "429 on submit: every submit waits %.2f s; pacing: %s starts per minute",
            wait,
            "no limit" if self.starts_per_minute is None else f"{self.starts_per_minute:.0f}",
        )
