"""TaskSet: the per-request tasks of a batch keep the rules of a task group."""

from __future__ import annotations

import asyncio

import anyio
import pytest

from wavespeed_outpaint._engine.taskset import TaskSet

pytestmark = pytest.mark.anyio


async def test_leaving_the_block_waits_for_every_task() -> None:
    finished: list[int] = []

    async def work(i: int) -> None:
        await asyncio.sleep(0.01 * (i % 3))
        finished.append(i)

    with anyio.fail_after(5):
        async with TaskSet() as tasks:
            for i in range(50):
                tasks.start(work(i))
    assert sorted(finished) == list(range(50))


async def test_a_failing_task_cancels_the_others_and_its_error_is_raised() -> None:
    cancelled = 0

    async def sleeper() -> None:
        nonlocal cancelled
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled += 1
            raise

    async def failing() -> None:
        await asyncio.sleep(0.01)
        raise KeyError("boom")

    async def batch() -> None:
        async with TaskSet() as tasks:
            for _ in range(5):
                tasks.start(sleeper())
            tasks.start(failing())

    with anyio.fail_after(5), pytest.raises(KeyError, match="boom"):
        await batch()
    assert cancelled == 5


async def test_a_cancelled_block_cancels_its_tasks_and_waits_for_their_cleanup() -> None:
    cleaned = 0

    async def sleeper() -> None:
        nonlocal cleaned
        try:
            await asyncio.sleep(60)
        finally:
            with anyio.CancelScope(shield=True):
                await asyncio.sleep(0.01)  # cleanup that itself awaits
            cleaned += 1

    with anyio.move_on_after(0.05) as scope:
        async with TaskSet() as tasks:
            for _ in range(5):
                tasks.start(sleeper())
    assert scope.cancelled_caught
    assert cleaned == 5
