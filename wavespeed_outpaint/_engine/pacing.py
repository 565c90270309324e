"""Client-side pacing of task starts: a per-minute limit, and a pool-wide pause on 429.

The service counts starts per minute per account; going over earns 429s. The pacer
spaces starts evenly at the configured rate. When a 429 comes back anyway (the tier was
guessed wrong, another process shares the key), every submitter waits out the
Retry-After together, and once a full minute of history shows what the account really
allows, the rate is set just under it; accepted starts then raise it again slowly.

What the account allows is read from the most starts the service has taken in any one
minute, never from how many were sent in the last one: a 429 is not always a limit
reached (a fault, a burst from someone else), and a minute's count falls whenever
something else slows the batch. Learning from that count let each 429 lower the rate
below what the minute before had shown, and random 429s drove it to a start a minute.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import random
import time

import anyio

log = logging.getLogger("wavespeed_outpaint.pacing")

UNLIMITED_ABOVE = 10_000.0  # a learned rate above the top tier's is no limit at all
UNDER_MOST = 0.9  # a 429 sets the rate this far under the most starts taken in a minute
PROBE_OVER_MOST = 1.1  # a lowered rate climbs back to this much over the most taken


class LearnedRate:
    """The starts a minute the account allows, as far as the service has shown it.

    Times are passed in (monotonic seconds), so the rule can be followed on any clock.
    The rate is never set below 90% of the most starts the service took in one minute:
    it took them, so the account allows them, whatever a 429 says.
    """

    def __init__(self, ceiling: float | None) -> None:
        self.ceiling = ceiling
        self.per_minute = ceiling  # None: no limit
        self._taken: collections.deque[float] = collections.deque()  # the last minute's
        self._most_taken = 0
        self._first_seen: float | None = None

    def taken(self, now: float) -> None:
        """The service took a start: count it, and raise a lowered rate by 1%, as far as
        10% over the most it has taken in a minute (a probe: the limit may have risen, or
        the 429 was not a limit; a real limit answers a probe with a few 429s, not more)."""
        self._seen(now)
        self._taken.append(now)
        self._most_taken = max(self._most_taken, len(self._taken))
        rate = self.per_minute
        if rate is None:
            return
        raised = min(rate * 1.01, PROBE_OVER_MOST * self._most_taken, self.ceiling or math.inf)
        if raised > rate:
            self.per_minute = None if self.ceiling is None and raised > UNLIMITED_ABOVE else raised

    def refused(self, now: float) -> None:
        """The service answered a start with 429: with a minute of history, set the
        rate just under the most it has taken in a minute, if that is lower."""
        self._seen(now)
        assert self._first_seen is not None
        if now - self._first_seen < 60 or not self._most_taken:
            return  # the first minute's count is no minute's limit yet
        learned = max(1.0, UNDER_MOST * self._most_taken)
        if self.per_minute is None or learned < self.per_minute:
            self.per_minute = learned

    def _seen(self, now: float) -> None:
        if self._first_seen is None:
            self._first_seen = now
        while self._taken and self._taken[0] <= now - 60:
            self._taken.popleft()


class StartPacer:
    """The default `StartLimiter`: `starts_per_minute` spaced evenly (None: no limit),
    every submit paused together on a 429. One pacer can be shared by several clients
    of one process (`OutpaintClient(limiter=pacer)`)."""

    def __init__(self, starts_per_minute: float | None) -> None:
        self._rate = LearnedRate(starts_per_minute)
        self._next_slot = 0.0
        self._paused_until = 0.0
        self._backoff = 1.0
        self._lock = asyncio.Lock()  # asyncio's: taken once per submit, never awaits when free

    @property
    def starts_per_minute(self) -> float | None:
        """The rate starts are spaced at now: the one given, or lower if learned."""
        return self._rate.per_minute

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

    def accepted(self) -> None:
        self._backoff = 1.0
        self._rate.taken(time.monotonic())

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
        self._rate.refused(now)
        log.info(
            "429 on submit: every submit waits %.2f s; pacing: %s starts per minute",
            wait,
            "no limit" if self.starts_per_minute is None else f"{self.starts_per_minute:.0f}",
        )
