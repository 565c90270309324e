"""Admission of a batch: requests read ahead lazily, results handed out as they finish.

`outpaint_many` is built on `feed`: it reads the caller's requests no faster than the
pipeline can hold them, starts each one on the engine, and sends each result into a
stream the caller reads in completion order.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator

import anyio
from anyio.streams.memory import MemoryObjectSendStream

from .._outputs.finish import check_can_finish
from ..errors import MissingExtraError, OutpaintError, ValidationError
from ..models import BatchInput, OutpaintRequest, OutpaintResult, Status
from ..options import ClientOptions
from .state import BatchState
from .task import Engine
from .taskset import TaskSet

# Requests read ahead per parallel submit: enough that a submitter never waits for one.
UNSENT_PER_SUBMITTER = 4


async def feed(
    engine: Engine,
    options: ClientOptions,
    requests: BatchInput,
    batch: BatchState,
    send: MemoryObjectSendStream[OutpaintResult],
    scope: anyio.CancelScope,
    finished: anyio.Event,
) -> None:
    """Feed requests to the engine, never more than the pipeline can hold at once."""
    # asyncio's semaphores: anyio's cost more, at one wait per request. Admitted: the
    # tasks in flight, as many again finished (waiting for a download slot or for the
    # consumer), and those downloading. With room for the downloads only, a burst of
    # finishes filled it, and a freed slot waited for a download to end before its next
    # task was read: 0.25 s from a finish to the next submit, wall 1.19 times the limit
    # at 1,000 in flight; with this room, 0.03 s and 1.10 (benchmarks/poller.py's model
    # "current", 3,000 tasks, one run each).
    admission = asyncio.Semaphore(2 * options.max_in_flight + options.parallel_downloads)
    # Tasks not yet sent: reading `max_in_flight` requests at once would hold
    # thousands of tasks in memory that only wait for a submitter.
    unsent = asyncio.Semaphore(UNSENT_PER_SUBMITTER * options.parallel_submits)
    # Once every request is read and every task sent, the batch drains until it ends:
    # the poller weighs its last tasks' lag by the batch they hold up.
    not_sent = 0
    all_read = draining = False
    telemetry = engine.telemetry

    def drain_once_all_sent() -> None:
        nonlocal draining
        if all_read and not not_sent and not draining:
            draining = True
            engine.poller.draining()

    async def one(request: OutpaintRequest, stem: str | None) -> None:
        waiting = True

        def sent() -> None:
            nonlocal waiting, not_sent
            if waiting:
                waiting = False
                unsent.release()
                not_sent -= 1
                telemetry.queued(-1)
                drain_once_all_sent()

        try:
            result = await engine.run(request, stem, batch, sent)
        except OutpaintError as exc:  # this task cannot run; the others go on
            result = OutpaintResult(request, Status.FAILED, error=str(exc), exception=exc)
        finally:
            sent()
        try:
            if result is not None:
                batch.progress.count(result)
                await send.send(result)
        finally:
            # Released once the consumer has the result: a slow consumer slows
            # the reading of requests instead of piling up finished tasks.
            admission.release()

    try:
        with scope:
            async with send, TaskSet() as tasks:
                async for item in _items(requests):
                    if batch.stopped or scope.cancel_called:
                        break
                    try:
                        request, stem = _unpack(item)
                        if batch.sink is not None:
                            check_can_finish(request)
                    except (ValidationError, MissingExtraError) as exc:
                        # Not a request at all, or one whose outputs cannot be made
                        # here: stop submitting, collect what runs.
                        batch.fatal = batch.fatal or exc
                        break
                    await admission.acquire()
                    await unsent.acquire()
                    not_sent += 1
                    telemetry.queued(1)
                    tasks.start(one(request, stem))
                else:  # every request read (not stopped)
                    all_read = True
                    drain_once_all_sent()
    except Exception as exc:  # noqa: BLE001 - handed to the consumer, who raises it
        batch.fatal = batch.fatal or _sole_cause(exc)
    finally:
        if draining:
            engine.poller.drained()
        finished.set()


async def _items(
    requests: BatchInput,
) -> AsyncIterator[OutpaintRequest | tuple[OutpaintRequest, str]]:
    if isinstance(requests, AsyncIterable):
        async for item in requests:
            yield item
    else:
        for item in requests:
            yield item


def _sole_cause(exc: BaseException) -> BaseException:
    """The one exception inside task-group wrappers (e.g. a request iterator that raised)."""
    inner: tuple[BaseException, ...] = getattr(exc, "exceptions", ())
    while len(inner) == 1:
        exc = inner[0]
        inner = getattr(exc, "exceptions", ())
    return exc


def _unpack(item: object) -> tuple[OutpaintRequest, str | None]:
    if isinstance(item, OutpaintRequest):
        return item, None
    if (
        isinstance(item, tuple)
        and len(item) == 2
        and isinstance(item[0], OutpaintRequest)
        and isinstance(item[1], str)
    ):
        return item[0], item[1]
    raise ValidationError(
        "requests", item, "give OutpaintRequest items or (OutpaintRequest, output_name) pairs"
    )
