"""Signal: set once, it wakes every waiter; a waiter that gives up leaves the others waiting."""

from __future__ import annotations

import asyncio

import anyio
import pytest

from wavespeed_outpaint._engine.signal import Signal

pytestmark = pytest.mark.anyio


async def test_set_wakes_every_waiter_and_later_waits_return_at_once() -> None:
    signal = Signal()
    woken: list[int] = []

    async def waiter(i: int) -> None:
        await signal.wait()
        woken.append(i)

    with anyio.fail_after(5):
        tasks = [asyncio.create_task(waiter(i)) for i in range(3)]
        await asyncio.sleep(0.01)
        assert woken == []
        assert not signal.is_set()
        signal.set()
        await asyncio.gather(*tasks)
        assert sorted(woken) == [0, 1, 2]
        assert signal.is_set()
        await signal.wait()  # already set: no wait


async def test_a_cancelled_waiter_leaves_the_others_waiting() -> None:
    signal = Signal()
    with anyio.fail_after(5):
        gives_up = asyncio.create_task(signal.wait())
        stays = asyncio.create_task(signal.wait())
        await asyncio.sleep(0.01)
        gives_up.cancel()
        await asyncio.sleep(0.01)
        assert gives_up.cancelled()
        assert not stays.done()
        assert len(signal._waiters or ()) == 1  # nothing is held for the waiter that left
        signal.set()
        await stays


async def test_a_timed_out_wait_under_a_cancel_scope_does_not_set_it() -> None:
    signal = Signal()
    with anyio.move_on_after(0.02) as scope:
        await signal.wait()
    assert scope.cancelled_caught
    assert not signal.is_set()
    signal.set()
    with anyio.fail_after(1):
        await signal.wait()


async def test_a_wait_with_a_time_limit_says_whether_it_was_set() -> None:
    signal = Signal()
    with anyio.fail_after(5):
        assert await signal.wait(timeout=0.02) is False
        assert not signal._waiters  # the waiter that timed out is gone
        waiting = asyncio.create_task(signal.wait(timeout=5))
        await asyncio.sleep(0.01)
        signal.set()
        assert await waiting is True
        assert await signal.wait(timeout=0) is True
