"""The start pacer on its own: even spacing, one pause for the whole pool on a 429."""

from __future__ import annotations

import itertools
import time

import anyio
import pytest

from wavespeed_outpaint import StartPacer

pytestmark = pytest.mark.anyio


async def starts(pacer: StartPacer, count: int) -> list[float]:
    """When each of `count` submitters, all asking at once, got its slot."""
    times: list[float] = []

    async def one() -> None:
        await pacer.slot()
        times.append(time.monotonic())

    async with anyio.create_task_group() as tg:
        for _ in range(count):
            tg.start_soon(one)
    return sorted(times)


async def test_starts_are_spaced_evenly_at_the_rate_given() -> None:
    times = await starts(StartPacer(starts_per_minute=1200), 5)  # one every 50 ms
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(gap >= 0.045 for gap in gaps), gaps


async def test_no_rate_means_no_wait() -> None:
    times = await starts(StartPacer(starts_per_minute=None), 50)
    assert times[-1] - times[0] < 0.05


async def test_a_429_pauses_every_submitter_for_its_retry_after() -> None:
    pacer = StartPacer(starts_per_minute=None)
    await pacer.slot()
    pacer.rate_limited(0.2)
    pacer.rate_limited(0.2)  # the same burst: one pause, not two
    began = time.monotonic()
    times = await starts(pacer, 10)
    assert times[0] - began >= 0.19
    assert times[-1] - began < 0.39


@pytest.mark.slow
async def test_without_retry_after_the_pause_backs_off() -> None:
    pacer = StartPacer(starts_per_minute=None)
    pauses = []
    for _ in range(3):
        pacer.rate_limited(None)
        began = time.monotonic()
        await pacer.slot()
        pauses.append(time.monotonic() - began)
    assert pauses[0] >= 0.99
    assert pauses[1] >= 1.9
    assert pauses[2] >= 3.9
