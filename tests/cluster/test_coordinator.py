"""The account's coordinator, as a plain object (its scheduling), and as the Ray actor
that workers share (one schedule for all of them)."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from wavespeed_outpaint.ray import AccountCoordinator


def test_a_dead_workers_running_lease_lapses_and_its_share_goes_back() -> None:
    account = AccountCoordinator(None, max_running=100, lease_seconds=0.2)
    assert account.lease("a", 60) == 60
    assert account.lease("b", 60) == 40  # what "a" does not hold
    time.sleep(0.25)  # "a" died: it renews no more; "b" does
    assert account.lease("b", 60) == 60
    assert account.stats()["leases"] == {"b": 60}
    # A live worker keeps its share: a newcomer gets what is left, at least one.
    assert account.lease("c", 60) == 40


@pytest.mark.anyio
async def test_starts_follow_one_schedule_however_many_ask() -> None:
    account = AccountCoordinator(600, max_running=100)  # a start every 0.1 s
    granted: list[float] = []

    async def worker() -> None:
        for _ in range(10):
            await account.slot()
            granted.append(time.monotonic())

    await asyncio.gather(worker(), worker(), worker())
    gaps = [b - a for a, b in itertools.pairwise(granted)]
    assert len(granted) == 30
    assert min(gaps) >= 0.095  # one schedule: never two starts closer than the rate


@pytest.mark.anyio
async def test_a_stopping_job_starts_nothing_until_its_stop_lapses() -> None:
    account = AccountCoordinator(None, max_running=100)
    account.accepted()
    account.stop(0.3)
    assert account.quiet_seconds() < 0.1  # counted from the stop
    started = time.monotonic()
    await account.slot()  # waits out the stop (a detached coordinator serves the next job)
    assert time.monotonic() - started >= 0.29
    assert account.quiet_seconds() >= 0.29  # nothing accepted meanwhile
    account.accepted()
    assert account.quiet_seconds() < 0.1
