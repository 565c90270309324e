"""`feed`: a batch tells the poller it drains once its last task is sent, not before,
and that it ended.

The engine behind `feed` is a small stand-in here (a real object handed in, as the client
hands in its engine): each task is sent after a short wait and ends a little later.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

import anyio
import pytest

from wavespeed_outpaint import OutpaintRequest, OutpaintResult, Status
from wavespeed_outpaint._engine.batch import feed
from wavespeed_outpaint._engine.journal import Journal
from wavespeed_outpaint._engine.state import BatchState
from wavespeed_outpaint._engine.task import Engine
from wavespeed_outpaint._telemetry import Telemetry
from wavespeed_outpaint.options import ClientOptions

pytestmark = pytest.mark.anyio


class StandInEngine:
    """Runs tasks without a service; records how many were sent when the batch drained."""

    def __init__(self) -> None:
        self.poller = self
        self.telemetry = Telemetry()
        self.sent = 0
        self.drained_at: list[int] = []
        self.ended_draining = 0

    def draining(self) -> None:
        self.drained_at.append(self.sent)

    def drained(self) -> None:
        self.ended_draining += 1

    async def run(
        self, request: OutpaintRequest, stem: Any, batch: Any, sent: Any
    ) -> OutpaintResult:
        await asyncio.sleep(0.001 * ((request.seed or 0) % 10))  # sent in a mixed order
        self.sent += 1
        sent()
        await asyncio.sleep(0.01)
        return OutpaintResult(request, Status.COMPLETED)


@pytest.mark.parametrize("count", [0, 1, 50])
async def test_the_batch_drains_once_every_task_is_sent(count: int) -> None:
    engine = StandInEngine()
    requests = [
        OutpaintRequest("https://example.invalid/a.wav", tags="x", seed=i) for i in range(count)
    ]
    send, receive = anyio.create_memory_object_stream[OutpaintResult](count + 1)
    batch = BatchState(Journal(None), None)
    options = ClientOptions(max_in_flight=8, parallel_submits=2)
    with anyio.fail_after(10):
        await feed(
            cast(Engine, engine), options, requests, batch, send, anyio.CancelScope(), anyio.Event()
        )
    async with receive:
        results = [r async for r in receive]
    assert len(results) == count
    assert engine.drained_at == [count]
    assert engine.ended_draining == 1  # once the batch ended
