"""The shared poller: one loop watches every in-flight prediction of a client.

Each watched task has a due time on a heap: first near its predicted finish (learned
online from the tasks that already finished), then after a short back-off. When tasks
come due the loop asks in the cheapest way: with several tasks in flight, one list
request (status `completed`, filtered to the due tasks' creation window) reports up to
100 finished predictions at once; a task the list does not show for too long, or any
task when the list is unavailable, gets its own result GET, never more often than
`min_check_interval` (the docs ask for politeness per task).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import heapq
import itertools
import logging
import math
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING

import anyio
import attrs

from .errors import APIError, AuthenticationError, NotFoundError, OutpaintError, ProtocolError
from .models import CREATED_AT_RESOLUTION, Prediction, Status

if TYPE_CHECKING:
    from .client import OutpaintClient

log = logging.getLogger("wavespeed_outpaint.poller")

EARLY_QUANTILE = 0.1
EARLY_DELIVERIES_KEPT = 10_000
# The gap between sweeps that find something, for a single task in flight (seconds).
SWEEP_GAP_FOR_ONE = 1.0
# Answers that break the protocol this many times in a row are not asked again.
PROTOCOL_STRIKES = 3


@attrs.frozen
class PollOptions:
    # Per task: never two result GETs closer than this (the docs advise >= 2 s).
    min_check_interval: float = 2.0
    max_check_interval: float = 30.0
    # Sweeps: the gap between two list requests, growing while they find nothing.
    min_sweep_gap: float = 0.1
    max_sweep_gap: float = 2.0
    # Below this many tasks in flight, per-task GETs are as cheap as the list.
    list_min_tasks: int = 2
    # A task still unseen this long after its predicted finish gets its own GET
    # (the list cannot show `cancelled` or `timeout`).
    overdue_after: float = 1.0
    # Before any task has finished, how long until a task is asked about on its own
    # (and, with webhooks, looked for at all).
    blind_overdue_after: float = 30.0

    parallel_status_requests: int = 16
    # Seconds of service work per generated second, until finished tasks teach better.
    initial_work_per_second: float = 0.1
    # Slack on a creation window around a client-clock time (the service gave none).
    clock_skew: float = 2.0
    # With webhooks on: how long after its predicted finish a task without a delivery
    # is checked by polling. None: webhooks are off.
    webhook_grace: float | None = None


class FinishEstimator:
    """Predicts when a task finishes, from the work per generated second seen so far."""

    def __init__(self, initial: float) -> None:
        self._samples: collections.deque[float] = collections.deque(maxlen=256)
        self._initial = initial
        self._sorted: list[float] | None = None

    def observe(self, generated: float, not_before: float, seen_at: float, created: float) -> None:
        """The task finished after `not_before` (its last check) and by `seen_at`."""
        if generated <= 0:
            return
        finished = (max(not_before, created) + seen_at) / 2
        self._samples.append(max(0.0, finished - created) / generated)
        self._sorted = None

    @property
    def has_samples(self) -> bool:
        return bool(self._samples)

    def work_per_second(self, quantile: float) -> float:
        """Seconds of work per generated second that `quantile` of finished tasks beat."""
        if not self._samples:
            return self._initial
        if self._sorted is None:
            self._sorted = sorted(self._samples)
        return self._sorted[min(len(self._sorted) - 1, math.ceil(quantile * len(self._sorted)) - 1)]

    def finish(self, created: float, generated: float, quantile: float = 0.75) -> float:
        return created + self.work_per_second(quantile) * generated


@attrs.define(eq=False)
class _Watch:
    id: str
    created: float  # server clock when the service said, else the client's submit time
    margin: float  # how far the true creation time may be from `created`
    generated: float
    predicted: float
    due: float
    event: asyncio.Event = attrs.field(factory=asyncio.Event)  # asyncio's: one per task
    last_get: float = 0.0
    last_seen_unfinished: float = 0.0
    misses: int = 0
    lies: int = 0  # answers about this task that broke the protocol, in a row
    outcome: Prediction | OutpaintError | None = None
    via: str = ""


Fetch = Callable[[str], Awaitable[Prediction]]


class SharedPoller:
    """Owned by the client; `run()` lives in the client's task group."""

    def __init__(self, client: OutpaintClient, options: PollOptions) -> None:
        self._client = client
        self.options = options
        self.estimator = FinishEstimator(options.initial_work_per_second)
        self._watches: dict[str, _Watch] = {}
        self._early: dict[str, tuple[Prediction, str]] = {}
        # Seconds past a task's predicted finish before polling for it; None: no webhooks.
        self.webhook_grace = options.webhook_grace
        self._heap: list[tuple[float, int, _Watch]] = []
        # Due tasks a sweep did not settle, asked about again in the next sweep: one list
        # for all of them instead of a heap entry each, since they share the time.
        self._next_sweep: list[_Watch] = []
        self._next_sweep_at = math.inf
        self._seq = itertools.count()
        self._wakeup = anyio.Event()
        self._sleeping_until = -math.inf  # when run() next looks by itself
        self._list_ok = True
        self._list_lies = 0
        self._sweep_gap = options.min_sweep_gap
        self._last_sweep = 0.0
        self._limiter = asyncio.Semaphore(options.parallel_status_requests)
        self.counts = collections.Counter[str]()

    @property
    def in_flight(self) -> int:
        return len(self._watches)

    async def wait(
        self, prediction: Prediction, generated_seconds: float, *, sent_at: float | None = None
    ) -> tuple[Prediction, str]:
        """Wait until the prediction is final; returns it and how it was learned.
        `sent_at` (client clock) stands in for a creation time the service did not give."""
        if prediction.is_final:
            return prediction, "submit"
        early = self._early.pop(prediction.id, None)
        if early is not None:
            return early  # its webhook came before the submit's answer
        watch = self._watches.get(prediction.id)
        if watch is None:
            if prediction.created_at is not None:
                created, margin = prediction.created_at.timestamp(), CREATED_AT_RESOLUTION
            else:
                created = sent_at if sent_at is not None else time.time()
                margin = self.options.clock_skew
            predicted = self.estimator.finish(created, generated_seconds)
            if self.webhook_grace is not None:
                # Webhooks bring the result: look only when one is late. Before any task
                # has finished, "late" is unknown: the first look waits a long while.
                expected = (
                    predicted
                    if self.estimator.has_samples
                    else created + self.options.blind_overdue_after
                )
                first_look = expected + self.webhook_grace
            elif self._list_ok and self.in_flight + 1 >= self.options.list_min_tasks:
                # With the list, an early look is cheap (one request asks for every due
                # task), so the first look comes when the quicker tasks finish.
                first_look = self.estimator.finish(created, generated_seconds, EARLY_QUANTILE)
            else:
                # A task of its own is first asked about when most tasks are done: an
                # early GET costs a request and a back-off.
                first_look = predicted
            watch = _Watch(prediction.id, created, margin, generated_seconds, predicted, first_look)
            watch.last_seen_unfinished = time.time()
            self._watches[watch.id] = watch
            self._schedule(watch, first_look)
        try:
            await watch.event.wait()
        finally:
            if not watch.event.is_set():
                self._watches.pop(watch.id, None)  # the waiter gave up (deadline, cancel)
        if isinstance(watch.outcome, OutpaintError):
            raise watch.outcome
        assert watch.outcome is not None
        return watch.outcome, watch.via

    def deliver(self, prediction: Prediction, via: str) -> bool:
        """Hand in a final prediction learned elsewhere (a webhook). True if it was news.

        One that comes before its submit's answer is kept a while for `wait()`.
        """
        if not prediction.is_final:
            return False
        watch = self._watches.get(prediction.id)
        if watch is None:
            if len(self._early) >= EARLY_DELIVERIES_KEPT:
                self._early.pop(next(iter(self._early)))
            self._early[prediction.id] = (prediction, via)
            return False
        self._resolve(watch, prediction, via)
        return True

    # -- the loop ----------------------------------------------------------------------

    def _schedule(self, watch: _Watch, due: float) -> None:
        watch.due = due
        heapq.heappush(self._heap, (due, next(self._seq), watch))
        if due < self._sleeping_until:
            # Only a look earlier than the one already planned needs the loop woken:
            # thousands of new tasks otherwise cost thousands of empty loop turns.
            self._sleeping_until = -math.inf
            self._wakeup.set()

    def _resolve(self, watch: _Watch, outcome: Prediction | OutpaintError, via: str) -> None:
        if isinstance(outcome, Prediction):
            now = time.time()
            # A webhook comes as the task ends; a poll only bounds when it ended.
            not_before = now if via == "webhook" else watch.last_seen_unfinished
            first_sample = not self.estimator.has_samples
            self.estimator.observe(watch.generated, not_before, now, watch.created)
            if first_sample and self.webhook_grace is not None:
                self._reschedule_blind_watches()
        watch.outcome, watch.via = outcome, via
        self._watches.pop(watch.id, None)
        watch.event.set()

    def _reschedule_blind_watches(self) -> None:
        """The first finished task tells what "late" means: bring waiting looks forward."""
        assert self.webhook_grace is not None
        for other in self._watches.values():
            other.predicted = self.estimator.finish(other.created, other.generated)
            due = other.predicted + self.webhook_grace
            if due < other.due:
                self._schedule(other, due)

    def _ask_next_sweep(self, watch: _Watch, at: float) -> None:
        """Due again at `at`, the next sweep's time (`_check` runs inside `run`, which
        looks at `_next_sweep_at` before it sleeps: no wake-up needed)."""
        if at != self._next_sweep_at:
            self._carry_over_next_sweep()
            self._next_sweep_at = at
        watch.due = at
        self._next_sweep.append(watch)

    def _carry_over_next_sweep(self) -> None:
        """Tasks waiting for a next sweep whose time changes go on the heap instead."""
        for watch in self._next_sweep:
            if watch.id in self._watches and watch.due == self._next_sweep_at:
                heapq.heappush(self._heap, (watch.due, next(self._seq), watch))
        self._next_sweep = []

    def _pop_due(self, now: float) -> list[_Watch]:
        due = []
        if self._next_sweep_at <= now:
            at, self._next_sweep_at = self._next_sweep_at, math.inf
            due = [w for w in self._next_sweep if w.id in self._watches and w.due == at]
            self._next_sweep = []
        while self._heap and self._heap[0][0] <= now:
            when, _, watch = heapq.heappop(self._heap)
            if watch.id in self._watches and watch.due == when:
                due.append(watch)
        return due

    async def run(self) -> None:
        while True:
            self._wakeup = anyio.Event()
            now = time.time()
            due = self._pop_due(now)
            if due:
                await self._check(due, now)
                continue
            # Drop stale heap entries so the next wake-up is a real one.
            while self._heap and self._heap[0][2].due != self._heap[0][0]:
                heapq.heappop(self._heap)
            self._sleeping_until = min(
                self._heap[0][0] if self._heap else math.inf, self._next_sweep_at
            )
            with anyio.move_on_after(self._sleeping_until - now):
                await self._wakeup.wait()
            self._sleeping_until = -math.inf

    async def _check(self, due: list[_Watch], now: float) -> None:
        opts = self.options
        if self._list_ok and len(self._watches) >= opts.list_min_tasks:
            wait = self._last_sweep + self._sweep_gap - now
            if wait > 0:
                # Too soon for another list request: fold these into the next sweep.
                for watch in due:
                    self._ask_next_sweep(watch, now + wait)
                return
            in_flight = len(self._watches)
            found = await self._sweep(due, "completed")
            log.debug("list sweep: %d tasks due, %d found final", len(due), found)
            # Tasks missed twice may have failed: the same window, for failures.
            missed = [w for w in due if w.id in self._watches and w.misses >= 2]
            if missed:
                found += await self._sweep(missed, "failed")
            # A look costs one request whatever it serves: frequent for a thousand tasks
            # (lag), sparing for a handful (requests per task).
            shortest = max(opts.min_sweep_gap, SWEEP_GAP_FOR_ONE / math.sqrt(in_flight))
            if found:
                self._sweep_gap = shortest
            else:
                # Nothing yet: wait longer before the next look, the more so the fewer
                # tasks are in flight, any of which may finish by then (a handful:
                # doubling; a thousand: +6% a look). Counting only the due ones would
                # let one early straggler stretch the gap while a thousand tasks end.
                growth = 1 + min(1.0, 2 / math.sqrt(in_flight))
                self._sweep_gap = min(opts.max_sweep_gap, max(shortest, self._sweep_gap * growth))
            now = time.time()
            overdue = []
            for watch in due:
                if watch.id not in self._watches:
                    continue
                watch.last_seen_unfinished = now
                watch.predicted = max(
                    watch.predicted, self.estimator.finish(watch.created, watch.generated)
                )
                # Cancelled and timed-out tasks never show in the list: ask them directly,
                # once they are late by what the finished tasks have shown (or very late).
                overdue_after = max(opts.overdue_after, 0.5 * (watch.predicted - watch.created))
                late = now - watch.predicted > overdue_after and (
                    self.estimator.has_samples or now - watch.created > opts.blind_overdue_after
                )

                if late and now - watch.last_get >= opts.min_check_interval:
                    overdue.append(watch)
                else:
                    watch.misses += 1
                    self._ask_next_sweep(watch, now + self._sweep_gap)
            due = overdue
        if due:
            await self._get_each(due)

    async def _sweep(self, due: list[_Watch], status: str) -> int:
        """One list query over the due tasks' creation window; returns how many it settled."""

        # Exactly the due tasks' creation window: every finished task inside it that is
        # not due is read for nothing (at thousands in flight, most of a sweep's cost).
        after = datetime.fromtimestamp(min(w.created - w.margin for w in due), timezone.utc)
        before = datetime.fromtimestamp(max(w.created + w.margin for w in due), timezone.utc)
        self._last_sweep = time.time()
        settled = 0
        unsettled = {w.id for w in due}
        pages = self._client._list_pages(status=status, created_after=after, created_before=before)
        try:
            async with contextlib.aclosing(pages):
                async for _, _, items in pages:
                    self.counts["list_requests"] += 1
                    self.counts["list_items"] += len(items)
                    self._list_lies = 0
                    for item in items:
                        watch = self._watches.get(item["id"])
                        if watch is None:
                            continue  # settled earlier, or not this client's
                        prediction = Prediction.from_data(item)
                        if prediction.is_final:
                            self._resolve(watch, prediction, "list")
                            unsettled.discard(watch.id)
                            settled += 1
                    if not unsettled:
                        break  # the rest of the window holds nothing this sweep is for
        except NotFoundError as exc:
            log.warning("the list endpoint is unavailable (%s); polling each task instead", exc)
            self._list_ok = False
        except ProtocolError as exc:
            self._list_lies += 1
            if self._list_lies >= PROTOCOL_STRIKES:
                log.warning(
                    "the list endpoint keeps breaking the protocol (%s); polling instead", exc
                )
                self._list_ok = False
        except APIError as exc:
            if exc.status == 405:
                self._list_ok = False
            else:
                log.warning("list request failed: %s", exc)
        except OutpaintError as exc:
            log.warning("list request failed: %s", exc)
        return settled

    async def _get_each(self, due: list[_Watch]) -> None:
        async with anyio.create_task_group() as tg:
            for watch in due:
                tg.start_soon(self._get_one, watch)

    async def _get_one(self, watch: _Watch) -> None:
        opts = self.options
        async with self._limiter:
            watch.last_get = time.time()
            self.counts["result_gets"] += 1
            try:
                prediction = await self._client.get(watch.id)
            except AuthenticationError as exc:
                self._resolve(watch, exc, "poll")
                return
            except NotFoundError:
                gone = Prediction(
                    watch.id, Status.DELETED, error="the service no longer knows this prediction"
                )
                self._resolve(watch, gone, "poll")
                return
            except ProtocolError as exc:
                watch.lies += 1
                if watch.lies >= PROTOCOL_STRIKES:
                    # The answers about this task cannot be read: report that on the task.
                    self._resolve(watch, exc, "poll")
                    return
                prediction = None
            except OutpaintError as exc:
                log.warning("status check of %s failed: %s", watch.id, exc)
                prediction = None
        if watch.id not in self._watches:
            return
        if prediction is not None and prediction.is_final:
            self._resolve(watch, prediction, "poll")
            return
        now = time.time()
        watch.last_seen_unfinished = now
        watch.misses += 1
        # Not done yet: the next check at the later of a back-off and the prediction.
        backoff = min(opts.max_check_interval, opts.min_check_interval * 1.5 ** (watch.misses - 1))
        self._schedule(
            watch, max(now + backoff, min(watch.predicted, now + opts.max_check_interval))
        )
