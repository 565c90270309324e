"""The shared poller: one loop watches every in-flight prediction of a client.

With several tasks in flight it asks the list endpoint, which answers for many tasks at
once (status `completed`, filtered to a creation window, up to 100 items a page). The
tasks in flight, in creation order, are cut into *windows* that each fit one page of
the finished predictions around them (`windows.py`), and each window is looked at when
the lag its unseen finished tasks have probably run up outweighs the price of a request
(`_plan`). What "probably" means is learned from the tasks that already finished:
the chance that a task of a given age is still running (`estimates.Survival`), with no model of
the service's times built in, so a heavy tail, a queue at the service or a long fixed
start cost change how often a window is looked at, not whether a late task is found.
Before anything has ended, every task is looked at, each gap a little longer than the
last (`BLIND_GROWTH`); while a batch drains (its last task sent), a look costs less,
since the batch's end waits for the tasks left (`draining`).

Per task result GETs remain for what the list cannot show (`cancelled`, `timeout`: asked
about once a task is far older than nearly all seen to finish), for a task alone (not
the last of a batch), and when the list endpoint is unavailable; never more often than
`min_check_interval` per task (the docs ask for politeness per task).
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import contextlib
import heapq
import itertools
import logging
import math
import time
from collections.abc import AsyncGenerator
from datetime import datetime, timezone
from typing import Any, Protocol

import anyio
import anyio.abc
import attrs

from .._telemetry import Telemetry
from ..errors import (
    APIError,
    AuthenticationError,
    DeadlineError,
    NotFoundError,
    OutpaintError,
    ProtocolError,
)
from ..models import CREATED_AT_RESOLUTION, Prediction, Status, _parse_time
from .estimates import FinishEstimator, Survival
from .signal import Signal
from .times import KEPT, generated_key
from .windows import PAGE_ITEMS, ROOM_LOOKS, ListedItems, cut_windows

log = logging.getLogger("wavespeed_outpaint.poller")

EARLY_DELIVERIES_KEPT = 10_000
# Answers that break the protocol this many times in a row are not asked again.
PROTOCOL_STRIKES = 3
# The planning pass over every task costs CPU: at most this share of the loop's time.
PLANNING_SHARE = 0.05
# An end seen within this long (or this share of the task's age) of the last look that
# saw the task running teaches how long tasks take; a later one only a lower bound.
TIGHT_BOUND = 0.5
TIGHT_SHARE = 0.25
# Where in the span between those looks an end is placed (see `_resolve`).
EARLY_IN_SPAN = 0.25
# Beyond a page's worth of tasks in flight, a request is worth more lag: its price grows
# as this power of the pages' worth; below this many tasks, it falls as the square root
# of their share of them (see `SharedPoller._price`).
PRICE_GROWTH = 0.25
FEW_TASKS = 64
# See `PollOptions.max_sweep_gap`. At 0.05, a web backend's lone task was looked for
# where a twentieth of its kind had ended, a look that mostly found nothing, in every
# call (4.45 to 4.60 status requests a call at 0.21 to 0.26 s of lag; 3.80 to 4.00 at
# 0.22 to 0.26 s now); the batch cells were unchanged (docs/benchmarks.md).
STALE_CHANCE = 0.15
# The longest wait between two plans while tasks are in flight (seconds).
PLAN_EVERY = 0.1
# How often the chance of a task still running is estimated anew (seconds), and from how
# many recent ends at least (as many as there are tasks in flight, if more).
SURVIVAL_EVERY = 0.25
COHORT = 1024
# Before anything has ended, a blind look at every task comes once the time since the
# last one is this share g of the oldest task's age less BLIND_HEAD_START (and never
# sooner than `blind_sweep_gap` over the square root of the tasks in flight). Whatever the
# service's speed, a wave that ends together is then found at most g of its age late
# (half that on average), and within 0.4 s while it is younger than 5 s: the matrix's
# base-dominated cell (a first wave of 5.1 s tasks ending together, 64 in flight) had a
# p95 of 0.44 s at 10% of the age alone. A wave spread over a share s of its age has its
# first 2g/s found in one look. Each look is one request while nothing has ended (one
# window holds every task then); the looks for failed tasks, at FAILED_GROWTH of the
# age, are about a quarter of them. At 64 in flight a wave of 12 s tasks costs 0.72
# requests a task in blind looks (0.61 without the head start), one of 240 s tasks 1.28
# (1.17), computed by stepping the rule. A growth of 2 / n below 20 tasks (25% at 8)
# found a wave of 8 tasks of 30 s 3.3 s late on average: every number has one share now.
BLIND_GROWTH = 0.1
BLIND_HEAD_START = 0.1
FAILED_GROWTH = 0.4
# With times recalled from an earlier process and no end seen yet: blind looks as well,
# at this share (each at twice the age of the last), while the oldest task is younger
# than the earliest recalled time (a service that has become faster is seen in a wave).
RECALLED_BLIND_GROWTH = 0.5
# Recalled times that stand in for ends not seen yet (each end seen replaces one), and how
# far outside their range an end seen, or a task still running, proves them out of date.
RECALLED_USED = 64
RECALLED_SLACK = 1.25


def _is_power_of_two(n: int) -> bool:
    return n & (n - 1) == 0


class StatusAPI(Protocol):
    """What the poller asks the service: one prediction, or pages of the list."""

    async def get(self, prediction_id: str) -> Prediction: ...

    def list_pages(
        self, *, status: str, created_after: datetime, created_before: datetime
    ) -> AsyncGenerator[tuple[int, int, list[dict[str, Any]]], None]: ...


@attrs.frozen
class PollOptions:
    # Per task: never two result GETs closer than this (the docs advise >= 2 s).
    min_check_interval: float = 2.0
    max_check_interval: float = 30.0
    # Never two list requests for one window closer than this.
    min_sweep_gap: float = 0.05
    # Before any task has finished: the gap between looks at everything in flight grows
    # from this (divided by the square root of the tasks in flight) by `BLIND_GROWTH`.
    blind_sweep_gap: float = 1.0
    # While the list covers a task, how often its GET is put off again (no request).
    blind_max_gap: float = 2.0
    # A window where something has a fair chance (`STALE_CHANCE`) of having finished is
    # looked at at least this often, however few tasks it holds: it bounds the tail of
    # the lag where the price alone would wait (a few slow tasks, each unlikely to end).
    max_sweep_gap: float = 0.5
    # The price of one list request, in seconds of detection lag: a window is looked at
    # once the tasks in it have probably run up this much lag between them (finished
    # and not yet seen). Lower: less lag, more requests. With more than a page's worth of
    # tasks in flight it grows (`PRICE_GROWTH`).
    request_price: float = 0.45
    # Below this many tasks in flight, per-task GETs are as cheap as the list. One list
    # request a short while for all of a client's tasks is no per-task check: a task
    # alone is looked for in the list too, as often as its odds of having ended say,
    # where a GET would have to wait `min_check_interval` between two checks.
    list_min_tasks: int = 1
    # A task still running at this multiple of the time 99% of tasks took gets its own GET
    # (the list cannot show `cancelled` or `timeout`).
    overdue_factor: float = 2.0
    # Before any task has finished, how long until a task is asked about on its own
    # (and, with webhooks, looked for at all).
    blind_overdue_after: float = 30.0

    parallel_status_requests: int = 16
    # Seconds of service work per generated second, until finished tasks teach better.
    initial_work_per_second: float = 0.1
    # Slack on a creation window around a client-clock time (the service gave none).
    clock_skew: float = 2.0
    # With webhooks on: how long after its predicted finish a task without a delivery
    # is checked by GET when the list is not there. None: webhooks are off.
    webhook_grace: float | None = None


@attrs.define(eq=False)
class _Watch:
    id: str
    created: float  # server clock when the service said, else the client's submit time
    margin: float  # how far the true creation time may be from `created`
    generated: float
    due: float  # the next result GET, if any
    event: Signal = attrs.field(factory=Signal)  # set once its outcome is known
    # The last list look that covered it (client clock; at first, when it was submitted),
    # and the last one there was (the time its window was last asked about).
    looked: float = 0.0
    swept: float = 0.0
    lag: float = 0.0  # seconds of lag it has probably run up since that look
    asking: bool = False  # a list look that covers it is under way
    last_get: float = 0.0
    last_seen_unfinished: float = 0.0
    watched: float = 0.0  # when the poller was given it (client clock)
    gets: int = 0
    lies: int = 0  # answers about this task that broke the protocol, in a row
    last_status: str = ""  # as the service last said, while not final
    outcome: Prediction | OutpaintError | None = None
    via: str = ""


class SharedPoller:
    """Owned by the engine; `run()` lives in the client's task group."""

    def __init__(
        self, api: StatusAPI, options: PollOptions, telemetry: Telemetry | None = None
    ) -> None:
        self._api = api
        self.options = options
        self._telemetry = telemetry or Telemetry()
        self.estimator = FinishEstimator(options.initial_work_per_second)
        self.survival = Survival()
        # The tasks seen to end lately, that `survival` is estimated from with the ones
        # in flight: (seconds, True) from creation to the end, or (seconds, False) that
        # it surely ran, if its end was seen late.
        self._ends: collections.deque[tuple[float, bool]] = collections.deque()
        self._estimated = 0.0
        # Times an earlier process learned, by generated seconds (`recall`); those standing
        # in until tasks are seen to end; and what this one learned, for the next.
        self._recalled: dict[float, list[float]] = {}
        self._prior: list[float] = []
        self._learned: collections.deque[tuple[float, float]] = collections.deque(maxlen=8 * KEPT)
        self._learned_total = 0
        self._watches: dict[str, _Watch] = {}
        self._early: dict[str, tuple[Prediction, str]] = {}
        # Seconds past a task's predicted finish before a GET for it; None: no webhooks.
        self.webhook_grace = options.webhook_grace
        # Deliveries: how many tasks were settled by a webhook and how many by a look.
        self._delivered = 0
        self._looked_up = 0
        self._heap: list[tuple[float, int, _Watch]] = []  # result GETs, by due time
        self._seq = itertools.count()
        self._wakeup = anyio.Event()
        self._sleeping_until = -math.inf  # when run() next looks by itself
        self._list_ok = True
        self._list_lies = 0
        # Tasks for the list, in creation order (settled ones are dropped when planning).
        self._order: list[_Watch] = []
        self._finished = ListedItems()
        self._failed = ListedItems()
        self._was_listing = False
        # The last blind looks (see `_plan_blind`): for completed tasks, for failed ones.
        self._blind_looked = 0.0
        self._blind_failed_looked = 0.0
        self._failed_lag = 0.0  # the lag failed tasks have probably run up, unseen
        self._asking_failed = False
        self._ended = collections.Counter[str]()  # tasks seen to end, by list status
        self._planned = time.time()  # when the lag of every task was last brought up to date
        self._plan_cost = 0.0
        # Batches that have sent their last task and not ended, and the tasks in flight
        # when the first of them did (0: none).
        self._draining_batches = 0
        self._drain_from = 0
        # How many items new to them (ended since) the last looks found, each.
        self._found: collections.deque[int] = collections.deque(maxlen=ROOM_LOOKS)
        self._limiter = asyncio.Semaphore(options.parallel_status_requests)
        self.counts = collections.Counter[str]()

    @property
    def in_flight(self) -> int:
        return len(self._watches)

    def draining(self) -> None:
        """A batch has sent its last task: until it ends (`drained`), its end waits for
        the tasks left, so their lag weighs more than their own (see `_plan`)."""
        self._draining_batches += 1
        self._drain_from = max(self._drain_from, len(self._watches))
        self._wakeup.set()

    def drained(self) -> None:
        """A batch that was draining has ended."""
        self._draining_batches -= 1
        if not self._draining_batches:
            self._drain_from = 0

    def recall(self, times: dict[float, list[float]]) -> None:
        """Times an earlier process saw tasks take, by generated seconds (oldest first).
        Until this poller has seen a task end, those of the first task's length stand in
        for what it would have learned, so its first wave is looked for as a later one
        is. An end seen outside their range, or a task running well past it, proves them
        out of date: they are dropped, and the looks are blind again."""
        for generated, seconds in times.items():
            if seconds and not self._ends:
                self._recalled[generated_key(generated)] = list(seconds)

    @property
    def learned_total(self) -> int:
        """How many times this poller has learned so far (see `learned`)."""
        return self._learned_total

    def learned(self, since: int = 0) -> dict[float, list[float]]:
        """The times tasks took (creation to end), learned after the first `since` of
        them, by generated seconds, oldest first (the newest `8 x KEPT` at most)."""
        skip = max(0, since - (self._learned_total - len(self._learned)))
        times: dict[float, list[float]] = {}
        for generated, seconds in itertools.islice(self._learned, skip, None):
            times.setdefault(generated, []).append(seconds)
        return times

    async def wait(
        self,
        prediction: Prediction,
        generated_seconds: float,
        *,
        sent_at: float | None = None,
        deadline: float | None = None,
    ) -> tuple[Prediction, str]:
        """Wait until the prediction is final; returns it and how it was learned.
        `sent_at` (client clock) stands in for a creation time the service did not give.
        After `deadline` seconds without a final status: `DeadlineError`, with the last
        status the service gave (a status the client does not know is not final)."""
        if prediction.is_final:
            return prediction, "submit"
        early = self._early.pop(prediction.id, None)
        if early is not None:
            return early  # its webhook came before the submit's answer
        watch = self._watches.get(prediction.id)
        if watch is None:
            watch = self._watch(prediction, generated_seconds, sent_at)
        try:
            ended = await watch.event.wait(timeout=deadline)
        finally:
            if not watch.event.is_set():
                self._watches.pop(watch.id, None)  # the waiter gave up (deadline, cancel)
        if not ended:
            raise DeadlineError(
                f"no final status within task_deadline={deadline:g} s (the last status seen: "
                f"{watch.last_status[:40]!r}); the task goes on at the service, and the next "
                "run with this journal collects it"
            )
        if isinstance(watch.outcome, OutpaintError):
            raise watch.outcome
        assert watch.outcome is not None
        return watch.outcome, watch.via

    def _watch(self, prediction: Prediction, generated: float, sent_at: float | None) -> _Watch:
        if prediction.created_at is not None:
            created, margin = prediction.created_at.timestamp(), CREATED_AT_RESOLUTION
        else:
            created = sent_at if sent_at is not None else time.time()
            margin = self.options.clock_skew
        now = time.time()
        watch = _Watch(prediction.id, created, margin, generated, due=math.inf)
        watch.last_status = prediction.status_text
        watch.looked = watch.last_seen_unfinished = watch.watched = now
        self._watches[watch.id] = watch
        if not self._ends and not self._prior:
            recalled = self._recalled.get(generated_key(generated))
            if recalled:
                self._prior = recalled[-RECALLED_USED:]
                self._estimate_survival(now)
        if not self.survival.has_samples and _is_power_of_two(len(self._watches)):
            # Nothing has ended yet: the blind looks come sooner with more tasks in flight
            # (woken only as their number doubles: thousands of new tasks would otherwise
            # cost thousands of loop turns).
            self._wakeup.set()
        if not self._order or created >= self._order[-1].created:
            self._order.append(watch)
        else:
            bisect.insort(self._order, watch, key=lambda w: w.created)  # a resumed task
        self._schedule(watch, self._first_get(watch))
        return watch

    def _first_get(self, watch: _Watch) -> float:
        """When a task is first asked about on its own, if the list does not cover it."""
        predicted = self.estimator.finish(watch.created, watch.generated)
        if self.webhook_grace is not None:
            # Webhooks bring the result: ask only when one is late. Before any task has
            # finished, "late" is unknown: the first look waits a long while.
            if not self.estimator.has_samples:
                predicted = watch.created + self.options.blind_overdue_after
            return predicted + self.webhook_grace
        return predicted

    def _overdue_at(self, watch: _Watch) -> float:
        """When a task is so late that it may have ended where the list cannot show it."""
        return watch.created + self._overdue_age()

    def _overdue_age(self) -> float:
        if not self.survival.has_samples:
            return self.options.blind_overdue_after
        # Never sooner than a task's first GET could be: the first ends, seen by early
        # looks, can say that nearly all tasks take a few hundredths of a second.
        return max(
            self.options.min_check_interval,
            self.options.overdue_factor * self.survival.nearly_all,
        )

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
            since = now  # a webhook comes as the task ends
            if via == "webhook":
                self._delivered += 1
            else:
                self._looked_up += 1
                # A look only bounds when it ended: after the last look that saw it running.
                since = max(watch.last_seen_unfinished, watch.created)
                self._telemetry.detection_gap(now - since)
            # The end is placed early in the span it lies in: a guess too late is never
            # corrected (every task is then found in one look long after its end), one too
            # early is (the next looks bracket the ends closely).
            seconds = since + EARLY_IN_SPAN * (now - since) - watch.created
            first = not self.survival.has_samples
            # Only what the list shows teaches when tasks end: `cancelled` and `timeout`
            # are found late, by a GET, and would stretch every estimate.
            listed = self._finished if outcome.ok else None
            if outcome.status is Status.FAILED:
                listed = self._failed
            if listed is not None:
                self._ended["completed" if outcome.ok else "failed"] += 1
                listed.add(watch.id, watch.created)
                self.estimator.observe(watch.generated, seconds)
                tight = now - since <= max(TIGHT_BOUND, TIGHT_SHARE * (now - watch.created))
                if tight or first:
                    # (The first ends count however late they were seen: without them the
                    # looks stay blind and far apart, and no end is ever seen closely.)
                    self._ends.append((seconds, True))
                    self._learned.append((generated_key(watch.generated), seconds))
                    self._learned_total += 1
                else:
                    # Nobody looked for most of its life: a guess inside that span would
                    # teach too short a time. All it says is that it ran that long.
                    self._ends.append((since - watch.created, False))
                if self._prior:
                    self._check_recalled(since - watch.created, now - watch.created, now)
                if first:
                    self._estimate_survival(now)
                    self._wakeup.set()  # now there is something to plan with
        watch.outcome, watch.via = outcome, via
        self._watches.pop(watch.id, None)
        watch.event.set()

    def _check_recalled(self, at_least: float, at_most: float, now: float) -> None:
        """A task took between `at_least` and `at_most` seconds: out of the recalled
        times' range, they are dropped; else the oldest of them makes room for it."""
        if (
            at_most < min(self._prior) / RECALLED_SLACK
            or at_least > max(self._prior) * RECALLED_SLACK
        ):
            self._forget_recalled(now)
        else:
            del self._prior[0]

    def _forget_recalled(self, now: float) -> None:
        """The service is not what the recalled times say (any more)."""
        log.info("the task times recalled from an earlier run are out of date: learning afresh")
        self._prior = []
        self._recalled = {}
        self._estimate_survival(now)

    def _pop_due(self, now: float) -> list[_Watch]:
        due = []
        while self._heap and self._heap[0][0] <= now:
            when, _, watch = heapq.heappop(self._heap)
            if watch.id in self._watches and watch.due == when:
                due.append(watch)
        return due

    @property
    def _listing(self) -> bool:
        # A batch's last tasks stay with the list: their looks cost no more than a GET,
        # and a GET's politeness gap (`min_check_interval`) would hold the batch's end.
        if not self._list_ok or not self._watches:
            return False
        return self._was_listing or len(self._watches) >= self.options.list_min_tasks

    async def run(self) -> None:
        # Requests run beside the loop: one slow answer (a retry, a back-off after 429)
        # holds up its own window, not the looks at every other one.
        async with anyio.create_task_group() as requests:
            await self._loop(requests)

    async def _loop(self, requests: anyio.abc.TaskGroup) -> None:
        while True:
            self._wakeup = anyio.Event()
            now = time.time()
            gets = self._pop_due(now)
            listing = self._listing
            if listing:
                gets = self._only_overdue(gets, now)
            elif self._was_listing:
                self._ask_each_from(now)  # the list went away, or every task ended
            self._was_listing = listing
            sweeps: list[tuple[list[_Watch], str]] = []
            next_plan = math.inf
            if listing and now >= self._planned + self._plan_cost / PLANNING_SHARE:
                started = time.perf_counter()
                sweeps, next_plan = self._plan(now)
                self._plan_cost = time.perf_counter() - started
            elif listing:
                next_plan = self._planned + self._plan_cost / PLANNING_SHARE
            for window, status in sweeps:
                requests.start_soon(self._sweep, window, status)
            for watch in gets:
                requests.start_soon(self._get_one, watch)
            # Drop stale heap entries so the next wake-up is a real one.
            while self._heap and self._heap[0][2].due != self._heap[0][0]:
                heapq.heappop(self._heap)
            self._sleeping_until = min(self._heap[0][0] if self._heap else math.inf, next_plan)
            with anyio.move_on_after(self._sleeping_until - now):
                await self._wakeup.wait()
            self._sleeping_until = -math.inf

    def _only_overdue(self, gets: list[_Watch], now: float) -> list[_Watch]:
        """While the list covers every task, a GET is only for a task that is overdue and
        that a look at the list since did not show (it may have been cancelled). Before
        any task has ended, only the oldest task is asked about: "overdue" then means
        older than `blind_overdue_after`, which every task of a slow service becomes, and
        asking each of them cost 240 s tasks 14 requests each."""
        asked = []
        oldest = next((w for w in self._order if w.id in self._watches), None)
        for watch in gets:
            overdue = self._overdue_at(watch)
            probe = self.survival.has_samples or watch is oldest
            if now >= overdue and watch.looked >= overdue and probe:
                asked.append(watch)
            elif self.survival.has_samples:
                self._schedule(watch, max(overdue, now + self.options.blind_max_gap))
            else:
                # What "overdue" means is learned with the first finished task: ask again
                # (and no later than it is overdue by the blind rule).
                soon = max(now + self.options.min_sweep_gap, overdue)
                self._schedule(watch, min(soon, now + self.options.blind_max_gap))
        return asked

    def _ask_each_from(self, now: float) -> None:
        """Every task is asked about on its own from now on."""
        for watch in self._watches.values():
            self._schedule(watch, max(now, watch.last_get + self.options.min_check_interval))

    # -- planning the list looks ---------------------------------------------------------

    def _plan(self, now: float) -> tuple[list[tuple[list[_Watch], str]], float]:
        """The windows to look at now, and when to plan again."""
        self._order = order = [w for w in self._order if w.id in self._watches]
        if not order:
            return [], math.inf
        oldest = order[0].created - order[0].margin
        self._finished.forget_before(oldest)
        self._failed.forget_before(oldest)
        elapsed, self._planned = now - self._planned, now
        opts = self.options
        if now - self._estimated >= SURVIVAL_EVERY:
            self._estimate_survival(now)
        if self._prior and order[0].looked - order[0].created > max(self._prior) * RECALLED_SLACK:
            self._forget_recalled(now)  # running well past any recalled time
        if not self.survival.has_samples:
            blind, next_plan = self._plan_blind(order, now, BLIND_GROWTH)
            self.counts["looks_blind"] += bool(blind)
            return blind, next_plan
        next_plan = math.inf
        # Only recalled times so far: blind looks too, sparse, while they say that nothing
        # can have ended yet (the service may have become faster).
        if (
            self._prior
            and not self._ends
            and self.webhook_grace is None
            and now - order[0].watched < min(self._prior)
        ):
            floor, next_plan = self._plan_blind(order, now, RECALLED_BLIND_GROWTH)
            if floor:
                self.counts["looks_below_recalled"] += 1
                return floor, next_plan

        # Of the tasks that end, the share that fail, and with webhooks on, the share of
        # deliveries lost (a finished task is unseen only if its delivery was lost).
        failing = (self._ended["failed"] + 0.5) / (self._ended.total() + 5)
        unseen = 1.0
        if self.webhook_grace is not None:
            unseen = (self._looked_up + 0.5) / (self._looked_up + self._delivered + 5)
        sweeps: list[tuple[list[_Watch], str]] = []
        running = self.survival.running
        failed_rate = 0.0
        price = self._price(len(order))
        overdue_age = self._overdue_age()
        for window in cut_windows(order, self._finished.created, self._found):
            if any(w.asking for w in window):
                continue  # its look is under way; its answer wakes the loop
            lag = rate = 0.0
            last_look = 0.0  # the window's last look: none closer than `min_sweep_gap`
            oldest_look = now  # its stalest task's last look (or submit)
            for w in window:
                if now - w.created >= overdue_age:
                    # It has ended, or ended where only a GET can show, which it gets
                    # after a look. (The chance alone may never say so: a task handed
                    # in late, still running at an age no task was seen to end by, makes
                    # it flat up to that age, and nothing younger was looked at.)
                    done = 1.0
                else:
                    # The chance it ended since the last look that saw it running.
                    then = running(w.looked - w.created)
                    done = 1.0 - running(now - w.created) / then if then > 0 else 1.0
                    if unseen < 1.0:
                        done = done * unseen / (1 - done + done * unseen)
                w.lag += done * min(elapsed, now - w.looked)
                lag += w.lag
                rate += done
                last_look = max(last_look, w.swept)
                oldest_look = min(oldest_look, w.looked)
            failed_rate += rate * failing
            lag, rate = lag * (1 - failing), rate * (1 - failing)
            if now - last_look < opts.min_sweep_gap:
                next_plan = min(next_plan, last_look + opts.min_sweep_gap)
            elif lag >= price:
                sweeps.append((window, "completed"))
                self.counts["looks_for_lag"] += 1
            elif rate >= STALE_CHANCE and now - oldest_look >= opts.max_sweep_gap:
                sweeps.append((window, "completed"))
                self.counts["looks_when_stale"] += 1
            elif rate:
                # Lag grows at least as fast as now: plan again when it may reach the price.
                next_plan = min(
                    next_plan,
                    now + (price - lag) / rate,
                    oldest_look + opts.max_sweep_gap,
                )
        # Failed tasks, by the same rule, in one look at everything in flight (few items
        # have failed, so one window usually holds them all).
        self._failed_lag += failed_rate * elapsed
        if self._failed_lag >= price and not self._asking_failed:
            self._failed_lag = 0.0
            sweeps += [(w, "failed") for w in cut_windows(order, self._failed.created, self._found)]
        elif failed_rate:
            next_plan = min(next_plan, now + (price - self._failed_lag) / failed_rate)
        # The chances grow between plans (a projection at today's rate comes too late):
        # plan again soon, and never busily.
        return sweeps, min(max(next_plan, now + opts.min_sweep_gap / 2), now + PLAN_EVERY)

    def _price(self, in_flight: int) -> float:
        """A list request's price in seconds of lag, with `in_flight` tasks left.

        Beyond a page's worth of tasks in flight the account's status requests a second
        grow with its tasks, and a request buys less: the price grows as the fourth root
        of the pages' worth in flight (a task's lag and its share of requests trade at
        about the price, so requests a task fall as lag rises slowly). Fitted to the
        figures asked of it, 0.3 requests a task at 64 in flight and 0.1 at 1,000, both
        at 0.1 s of lag: at a fixed 0.5, the first-in first-out queue at 1,000 sat on its
        edge (0.100 requests a task at 0.060 s), and at 0.80 took 0.077 to 0.086 at 0.065
        to 0.072 s; at 0.45 the current model at 64 left the edge of its lag (0.087 to
        0.092 s at 0.24 requests a task). docs/benchmarks.md: the matrix, and what it
        costs a heavy tail at 1,000 in flight.

        While a batch drains, a second of its last tasks' lag holds up all its results:
        a look costs less, by the square root of the tasks left over those in flight
        when it began. (By the full ratio, the wall cost, a heavy tail's last seconds
        took 0.1 more requests a task at 1,000 in flight for the same end: 0.305 against
        0.227; with neither, the last task was found 0.43 s late.) Below `FEW_TASKS` in
        flight a look costs less the same way: a web backend's few callers each wait for
        their own task, and each look is theirs alone (one caller awaiting 20 tasks of
        about 6 s in a row through a warm client: 0.223 s lag mean, p95 0.338 s, for 5.0
        status requests a task; `benchmarks/poller.py --cells backend`)."""
        began = self._drain_from or in_flight
        pages = max(1.0, began / PAGE_ITEMS)
        growth = math.pow(pages, PRICE_GROWTH)
        left = in_flight / max(began, FEW_TASKS)
        return self.options.request_price * growth * math.sqrt(min(1.0, left))

    def _estimate_survival(self, now: float) -> None:
        """From the tasks in flight and as many that ended lately (COHORT at least)."""
        self._estimated = now
        ends = self._ends
        while len(ends) > max(COHORT, len(self._watches)):
            ends.popleft()
        took = self._prior + [seconds for seconds, seen in ends if seen]
        # Known to be running only when last looked at: counting a task as running up to
        # now would hide the ends that nobody looked for yet.
        ages = [seconds for seconds, seen in ends if not seen]
        ages += [w.looked - w.created for w in self._watches.values()]
        self.survival.estimate(took, ages)

    def _plan_blind(
        self, order: list[_Watch], now: float, growth: float
    ) -> tuple[list[tuple[list[_Watch], str]], float]:
        """Nothing has finished yet, so nothing tells when anything will: look at every
        task, each gap `growth` times the oldest task's age (`BLIND_GROWTH`)."""
        if self.webhook_grace is not None:
            # Wait for the first delivery; if none comes, the deliveries may not be
            # reaching the receiver at all: look for them in the list.
            silent_since = order[0].created + self.options.blind_overdue_after
            if now < silent_since:
                return [], silent_since
        opts = self.options
        n = len(order)
        # The gap is a share of the oldest task's age (by the client's clock: it may not
        # share the service's), so the looks keep pace with a service of any speed, and
        # never less than `blind_sweep_gap` over the square root of the tasks in flight.
        age = now - min(w.watched for w in order[:PAGE_ITEMS])
        floor = max(opts.min_sweep_gap, opts.blind_sweep_gap / math.sqrt(n))
        gap = min(opts.max_check_interval, max(floor, growth * age - BLIND_HEAD_START))
        if not self._blind_looked:
            self._blind_looked = self._blind_failed_looked = now - age
        if now < self._blind_looked + gap:
            return [], self._blind_looked + gap
        self._blind_looked = now
        sweeps = [(w, "completed") for w in cut_windows(order, self._finished.created, self._found)]
        failed_gap = min(opts.max_check_interval, max(floor, FAILED_GROWTH * age))
        if now >= self._blind_failed_looked + failed_gap and not self._asking_failed:
            # A task may fail as early as it may complete (when every task failed at once,
            # only a GET at `blind_overdue_after` found them), but failures are the rarer
            # end: looked for less often.
            sweeps += [(w, "failed") for w in cut_windows(order, self._failed.created, self._found)]
            self._blind_failed_looked = now
        return sweeps, now + gap

    # -- asking ---------------------------------------------------------------------------

    async def _sweep(self, window: list[_Watch], status: str) -> None:
        """One list query over the window's creation span; settles what it shows."""
        if status == "completed":
            for w in window:
                w.asking = True
        else:
            self._asking_failed = True
        try:
            await self._ask_list(window, status)
        finally:
            for w in window:
                w.asking = False
            if status != "completed":
                self._asking_failed = False
            self._wakeup.set()

    async def _ask_list(self, window: list[_Watch], status: str) -> None:
        after = datetime.fromtimestamp(min(w.created - w.margin for w in window), timezone.utc)
        before = datetime.fromtimestamp(max(w.created + w.margin for w in window), timezone.utc)
        started = time.time()
        items_of_status = self._finished if status == "completed" else self._failed
        found = 0
        async with self._limiter:
            pages = self._api.list_pages(status=status, created_after=after, created_before=before)
            try:
                async with contextlib.aclosing(pages):
                    async for _, _, items in pages:
                        self.counts["list_requests"] += 1
                        self.counts["list_items"] += len(items)
                        self._list_lies = 0
                        for item in items:
                            found += self._settle_item(item, items_of_status)
            except NotFoundError as exc:
                log.warning("the list endpoint is unavailable (%s); polling each task instead", exc)
                self._stop_listing()
                return
            except ProtocolError as exc:
                self._list_lies += 1
                if self._list_lies >= PROTOCOL_STRIKES:
                    log.warning(
                        "the list endpoint keeps breaking the protocol (%s); polling instead", exc
                    )
                    self._stop_listing()
                return
            except APIError as exc:
                if exc.status == 405:
                    self._stop_listing()
                else:
                    log.warning("list request failed: %s", exc)
                return
            except OutpaintError as exc:
                log.warning("list request failed: %s", exc)
                return
        if status != "completed":
            return
        self._found.append(found)
        for w in window:
            if w.id in self._watches:
                w.looked = w.swept = w.last_seen_unfinished = started
                w.lag = 0.0

    def _settle_item(self, item: dict[str, Any], seen: ListedItems) -> bool:
        """Settle what a list item shows; whether it was new to the looks."""
        item_id = item["id"]
        watch = self._watches.get(item_id)
        if watch is not None:
            prediction = Prediction.from_data(item)
            if prediction.is_final:
                self._resolve(watch, prediction, "list")
            return True
        if item_id not in seen:
            created = _parse_time(item.get("created_at"))
            if created is not None:
                seen.add(item_id, created.timestamp())
            return True
        return False

    def _stop_listing(self) -> None:
        if self._list_ok:
            self._list_ok = False
            self._ask_each_from(time.time())

    async def _get_one(self, watch: _Watch) -> None:
        opts = self.options
        async with self._limiter:
            watch.last_get = time.time()
            self.counts["result_gets"] += 1
            try:
                prediction = await self._api.get(watch.id)
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
        if prediction is not None:
            watch.last_status = prediction.status_text
        watch.gets += 1
        # Not done yet: the next check at the later of a back-off and the prediction
        # (before any task has ended, at least half the task's age later: the service
        # is slow, and nothing says how slow).
        backoff = min(opts.max_check_interval, opts.min_check_interval * 1.5 ** (watch.gets - 1))
        if not self.survival.has_samples:
            backoff = max(backoff, 0.5 * (now - watch.watched))
        predicted = self.estimator.finish(watch.created, watch.generated)
        self._schedule(watch, max(now + backoff, min(predicted, now + opts.max_check_interval)))
