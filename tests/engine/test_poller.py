"""The shared poller's scheduling, against a small fake of the service behind its API seam.

The fake keeps tasks with fixed end times and answers the two calls the poller makes (a
result GET, a page of the list) the way the service does; it counts what it was asked.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncGenerator
from datetime import datetime, timezone
from typing import Any

import anyio
import attrs
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from wavespeed_outpaint import Prediction, Status
from wavespeed_outpaint._engine.estimates import Survival
from wavespeed_outpaint._engine.poller import PollOptions, SharedPoller
from wavespeed_outpaint.errors import NotFoundError

pytestmark = pytest.mark.anyio

PAGE = 100


@attrs.define
class FakeTask:
    id: str
    created: float
    ends: float
    final: str = "completed"
    seen_final_at: float | None = None  # when an answer first showed it final


class FakeService:
    """Answers `get` and `list_pages` from a table of tasks, on the real clock."""

    def __init__(self, *, list_works: bool = True) -> None:
        self.tasks: dict[str, FakeTask] = {}
        self.list_works = list_works
        self.gets = 0
        self.list_requests = 0
        self.items_per_request: list[int] = []
        self.pages_per_look: list[int] = []
        self.looks: list[tuple[float, str]] = []  # when the list was asked, for which status
        self.spans: list[tuple[float, float]] = []  # the creation span each look asked about
        self._ids = itertools.count()

    def add(
        self, runs_for: float, *, final: str = "completed", created: float | None = None
    ) -> FakeTask:
        now = time.time()
        created = now if created is None else created
        task = FakeTask(f"task-{next(self._ids)}", created, created + runs_for, final)
        self.tasks[task.id] = task
        return task

    def _data(self, task: FakeTask, now: float) -> dict[str, Any]:
        final = now >= task.ends
        if final and task.seen_final_at is None:
            task.seen_final_at = now
        return {
            "id": task.id,
            "model": "wavespeed-ai/ace-step/audio-outpaint",
            "status": task.final if final else "processing",
            "outputs": [f"https://example.invalid/{task.id}.wav"] if final else [],
            "created_at": datetime.fromtimestamp(task.created, timezone.utc).isoformat(),
        }

    async def get(self, prediction_id: str) -> Prediction:
        self.gets += 1
        await anyio.sleep(0.002)
        return Prediction.from_data(self._data(self.tasks[prediction_id], time.time()))

    async def list_pages(
        self, *, status: str, created_after: datetime, created_before: datetime
    ) -> AsyncGenerator[tuple[int, int, list[dict[str, Any]]], None]:
        if not self.list_works:
            raise NotFoundError("no list here", status=404)
        self.looks.append((time.time(), status))
        after, before = created_after.timestamp(), created_before.timestamp()
        self.spans.append((after, before))
        await anyio.sleep(0.002)
        now = time.time()
        found = [
            t
            for t in sorted(self.tasks.values(), key=lambda t: -t.created)
            if after <= t.created <= before and now >= t.ends and t.final == status
        ]
        self.pages_per_look.append(0)
        for page in range(max(1, -(-len(found) // PAGE))):
            self.pages_per_look[-1] += 1
            items = [self._data(t, now) for t in found[page * PAGE : (page + 1) * PAGE]]
            self.list_requests += 1
            self.items_per_request.append(len(items))
            yield page + 1, len(found), items


async def watch_all(
    service: FakeService,
    tasks: list[FakeTask],
    poller: SharedPoller | None = None,
    *,
    generated: float = 2.0,
    **options: Any,
) -> dict[str, tuple[Prediction, str]]:
    """Run a poller over these tasks until each is final; returns what it learned."""
    poller = poller or SharedPoller(service, PollOptions(**options))
    results: dict[str, tuple[Prediction, str]] = {}

    async def wait(task: FakeTask) -> None:
        submitted = Prediction.from_data(service._data(task, -1.0))
        results[task.id] = await poller.wait(submitted, generated)

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(poller.run)
            async with anyio.create_task_group() as waits:
                for task in tasks:
                    waits.start_soon(wait, task)
            tg.cancel_scope.cancel()
    return results


async def test_a_heavy_tail_is_found_as_soon_as_the_quick_tasks() -> None:
    """Tasks that run ten to twenty times longer than most are still found within the
    largest gap between looks, not after a back-off that grows with their lateness."""
    service = FakeService()
    quick = [service.add(0.1 + 0.002 * i) for i in range(60)]
    slow = [service.add(1.0 + 0.25 * i) for i in range(5)]
    results = await watch_all(service, quick + slow)
    assert all(results[t.id][0].status is Status.COMPLETED for t in quick + slow)
    for task in slow:
        assert task.seen_final_at is not None
        assert task.seen_final_at - task.ends < 0.5 + 0.25, task
    assert service.gets == 0  # the list found every one of them


async def test_a_window_reads_one_page_however_much_else_has_finished() -> None:
    """Between tasks still running lie hundreds of finished predictions (another batch of
    the account): once a first look has shown where they lie, each look reads one page
    around running tasks, not the whole span."""
    service = FakeService()
    start = time.time() - 10
    for i in range(600):  # finished long ago, created among the tasks below
        service.add(0.0, created=start + i * 0.01)
    # Four tasks created among them, which end 0.5 s to 1.1 s from now.
    running = [
        service.add(time.time() - (start + i * 1.5) + 0.5 + 0.2 * i, created=start + i * 1.5)
        for i in range(4)
    ]
    # The poller learns how long tasks take from a few that finish first.
    fresh = [service.add(0.05 + 0.01 * i) for i in range(10)]
    results = await watch_all(service, running + fresh)
    assert len(results) == 14
    assert service.pages_per_look[0] == 7  # the first look reads the whole span
    assert len(service.pages_per_look) > 3
    assert set(service.pages_per_look[1:]) == {1}


async def test_a_straggler_shares_a_look_with_the_few_tasks_after_it() -> None:
    """85 finished predictions lie between a task still running and eight created after
    it: one page holds them all, with room for the eight, so one look covers the nine
    (with room for 20 whatever the window held, the straggler had a window of its own
    and a request at each of its looks)."""
    service = FakeService()
    start = time.time() - 10
    straggler = service.add(time.time() - start + 2.0, created=start)
    for i in range(85):
        service.add(0.0, created=start + 0.01 * (i + 1))
    group = [
        service.add(
            time.time() - (start + 1 + 0.01 * i) + 0.2 + 0.1 * i, created=start + 1 + 0.01 * i
        )
        for i in range(8)
    ]
    results = await watch_all(service, [straggler, *group])
    assert len(results) == 9
    assert service.gets == 0
    first_end = min(t.ends for t in group)
    together = [
        (at, (after, before))
        for (at, status), (after, before) in zip(service.looks, service.spans, strict=True)
        if status == "completed"
        and at > first_end
        and after <= straggler.created
        and before >= group[-1].created
    ]
    assert together, service.spans


async def test_a_first_wave_that_ends_at_once_is_found_soon_at_a_request_a_task() -> None:
    """Nothing has ended yet, so nothing says when anything will: with 64 tasks in flight
    the blind looks grow apart by 2 / 64 a look, so a wave that ends together after 4 s
    is found within about 0.25 s (by 1 / sqrt(64), the growth before, the looks were
    0.6 s apart by then), for under one list request a task."""
    service = FakeService()
    tasks = [service.add(4.0) for _ in range(64)]
    await watch_all(service, tasks)
    ends = tasks[0].ends
    blind = [at for at, status in service.looks if status == "completed" and at < ends]
    assert len(blind) > 10
    assert max(b - a for a, b in itertools.pairwise(blind)) < 0.4
    lags = [t.seen_final_at - t.ends for t in tasks if t.seen_final_at is not None]
    assert len(lags) == 64
    assert max(lags) < 0.4
    assert service.list_requests <= 64
    assert service.gets == 0


async def test_a_wave_on_a_service_ten_times_faster_than_the_old_guess_is_found_at_once() -> None:
    """240 generated seconds, which the built-in figure (0.1 s of work a second) put at
    24 s, take 2.4 s here (±20%): the first look no longer waits for the guess (it found
    every task some 21 s late), and the blind looks keep pace with the tasks' age, so the
    wave is found within 5% of a task's time on average (its last few ends, seen where
    the estimate's tail is thin, up to 15%), for under a request a task."""
    service = FakeService()
    tasks = [service.add(2.4 * (0.8 + 0.4 * i / 63)) for i in range(64)]
    with anyio.fail_after(10):
        await watch_all(service, tasks, generated=240.0)
    lags = sorted(t.seen_final_at - t.ends for t in tasks if t.seen_final_at is not None)
    assert len(lags) == 64
    assert sum(lags) / len(lags) <= 0.05 * 2.4, lags
    assert lags[60] <= 0.15 * 2.4, lags
    assert service.list_requests <= 64
    assert service.gets == 0


async def test_a_warm_pollers_lone_task_is_found_soon_from_the_list() -> None:
    """A web backend's caller awaits one task at a time. Once the poller has seen tasks
    end, a task alone is looked for in the list as its odds of having ended say: here it
    ends late among its kind (at the 95th percentile) and is found within 0.25 s, for a
    handful of requests. Before, it got GETs, the first at the time most tasks took and
    the next 2 s later (`min_check_interval`): found some 1.7 s late."""
    service = FakeService()
    poller = SharedPoller(service, PollOptions())
    await watch_all(service, [service.add(1.0 + 0.4 * i / 31) for i in range(32)], poller)
    asked = service.gets + service.list_requests
    lone = service.add(1.0 + 0.4 * 0.95)
    await watch_all(service, [lone], poller)
    assert lone.seen_final_at is not None
    assert lone.seen_final_at - lone.ends <= 0.25
    assert service.gets + service.list_requests - asked <= 8


async def test_a_lone_task_is_not_looked_for_while_it_has_little_chance_of_an_end() -> None:
    """A look for a task alone is likely wasted while few of its kind end by its age: none
    comes before the age by which an eighth of them ended (tasks have taken 1 to 2 s,
    evenly). Before, the rule that bounds the lag of a few slow tasks (`STALE_CHANCE`)
    looked from the age by which a twentieth had (here at 1.09 to 1.11 s): a web
    backend's lone caller spent a request a call there, most finding nothing (4.55
    status requests a call against 3.80, `benchmarks/poller.py --cells backend`)."""
    service = FakeService()
    poller = SharedPoller(service, PollOptions())
    poller.recall({2.0: [1.0 + i / 63 for i in range(64)]})
    await watch_all(service, [service.add(1.5)], poller)  # an end seen: no more blind looks
    for _ in range(3):
        lone = service.add(1.9)
        looked = len(service.looks)
        await watch_all(service, [lone], poller)
        ages = [at - lone.created for at, _ in service.looks[looked:]]
        assert min(ages) >= 1.125, [round(a, 2) for a in ages]


def test_a_request_is_worth_more_lag_beyond_a_page_of_tasks_in_flight() -> None:
    # The account's status requests a second grow with its tasks in flight: beyond a
    # page's worth, each look waits for more lag (the fourth root of the pages' worth).
    poller = SharedPoller(FakeService(), PollOptions(request_price=0.45))
    assert poller._price(64) == poller._price(100) == 0.45
    # Below 64 it costs less: a few callers each wait for their own task.
    assert poller._price(1) == pytest.approx(0.45 / 8)
    assert poller._price(16) == pytest.approx(0.45 / 2)
    assert poller._price(1000) == pytest.approx(0.45 * 10**0.25)
    assert poller._price(10_000) == pytest.approx(0.45 * 10**0.5)


async def test_a_cancelled_task_is_asked_about_on_its_own() -> None:
    """The list cannot show `cancelled`: a task missing from it long past every other
    task's end is asked for by GET."""
    service = FakeService()
    tasks = [service.add(0.05 + 0.005 * i) for i in range(20)]
    cancelled = service.add(0.05, final="cancelled")
    results = await watch_all(service, [*tasks, cancelled], min_check_interval=0.1)
    prediction, via = results[cancelled.id]
    assert (prediction.status, via) == (Status.CANCELLED, "poll")
    assert service.gets <= 3


async def test_without_the_list_each_task_is_asked_by_get() -> None:
    service = FakeService(list_works=False)
    tasks = [service.add(0.05 * (1 + i % 3)) for i in range(6)]
    results = await watch_all(service, tasks, min_check_interval=0.05)
    assert {via for _, via in results.values()} == {"poll"}
    assert service.gets >= len(tasks)


async def test_ends_seen_late_still_teach_how_long_tasks_take() -> None:
    """Blind looks far apart find every task long after its end: those ends only bound the
    time a task takes, but without them the looks would stay blind."""
    service = FakeService()
    # The first look comes 6 / sqrt(6) s after the tasks were handed in: 2.45 s.
    poller = SharedPoller(service, PollOptions(blind_sweep_gap=6.0))
    await watch_all(service, [service.add(0.3) for _ in range(6)], poller)
    assert poller.survival.has_samples
    assert 0.3 <= poller.survival.mean < 1.5


def test_survival_counts_the_tasks_still_running() -> None:
    """Ten tasks ended after 1 s while ninety have run 5 s: most tasks take longer than
    1 s, not all of them (what the ten alone would say)."""
    survival = Survival()
    survival.estimate(took=[1.0] * 10, ages=[5.0] * 90)
    assert survival.running(0.5) == 1.0
    assert survival.running(2.0) == pytest.approx(0.9)
    # Past the last end seen, the chance decays rather than drops to nothing.
    assert 0 < survival.running(8.0) < survival.running(6.0) < 0.9


times = st.lists(st.floats(0.01, 300.0), max_size=40)


@given(took=times.filter(bool), ages=times)
@example(took=[1.0, 2.0], ages=[1.9])
def test_the_chance_of_still_running_never_rises_with_age(
    took: list[float], ages: list[float]
) -> None:
    """Whatever was seen, an older task is no likelier to be running than a younger one.
    When the last end seen leaves nobody at risk, the chance there is 0, and past the
    oldest age seen it decays from a floor above 0: in a straight line to 0 first, it rose
    again past it, so the chance of having ended since a look came out negative and
    the last two tasks of a wave (+240 s, times recalled) went unlooked for 27 s."""
    survival = Survival()
    survival.estimate(took, ages)
    grid = sorted({*took, *ages, *(a + d for a in took for d in (-1e-3, 1e-3)), 0.0, 400.0})
    chances = [survival.running(age) for age in grid if age >= 0]
    assert all(0.0 <= c <= 1.0 for c in chances)
    assert all(later <= earlier + 1e-12 for earlier, later in itertools.pairwise(chances))


async def test_a_task_past_its_overdue_time_is_looked_for_whatever_the_odds_say() -> None:
    """A long task handed in late (a lost submit found again) has run longer than any
    task seen to end, so the chance of ending looks flat up to its age: tasks younger
    than it seem never to end. A cancelled one (never in the list) was then never looked
    at again once that flat stretch began, so never found overdue, until the long one
    ended and then some (the chaos run: a cancelled task unreported after 194 s). An
    overdue task is now taken to have ended: its window is looked at, then it gets its
    GET."""
    service = FakeService()
    poller = SharedPoller(service, PollOptions(min_check_interval=0.1))
    now = time.time()
    long_task = service.add(60.0, created=now - 3.0)
    # Other clients' finished tasks between the two: their windows are looked at apart.
    for i in range(PAGE):
        service.add(0.0, created=now - 2.9 + i * 0.02)

    async def wait(task: FakeTask) -> None:
        await poller.wait(Prediction.from_data(service._data(task, -1.0)), 2.0)

    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(poller.run)
            tg.start_soon(wait, long_task)
            async with anyio.create_task_group() as waits:
                for _ in range(10):
                    waits.start_soon(wait, service.add(0.5))
            cancelled = service.add(0.5, final="cancelled")
            await wait(cancelled)
            found = time.time()
            tg.cancel_scope.cancel()
    # Its look comes once it is overdue, its GET at the next check (`blind_max_gap`, 2 s,
    # apart). Before: no look after the first, and no GET while the long task ran.
    assert found - cancelled.ends < 5.0, found - cancelled.ends


async def test_recalled_times_stand_in_for_a_first_wave_until_it_ends() -> None:
    """Times an earlier process learned: the first wave is looked for as a later one is
    (no blind look at every task, each a little later than the last), and the ends it
    sees replace the recalled times one by one."""
    service = FakeService()
    first = SharedPoller(service, PollOptions())
    await watch_all(service, [service.add(1.0 + 0.2 * i / 31) for i in range(32)], first)
    assert first.counts["looks_blind"] > 0
    learned = first.learned()
    assert list(learned) == [2.0]
    assert len(learned[2.0]) == 32

    service = FakeService()
    poller = SharedPoller(service, PollOptions())
    poller.recall(learned)
    tasks = [service.add(1.0 + 0.2 * i / 31) for i in range(32)]
    await watch_all(service, tasks, poller)
    assert poller.counts["looks_blind"] == 0
    lags = [t.seen_final_at - t.ends for t in tasks if t.seen_final_at is not None]
    assert len(lags) == 32
    assert sum(lags) / len(lags) < 0.15
    assert poller._prior == []  # the wave's own ends replaced every recalled time


async def test_recalled_times_with_a_gap_leave_no_stretch_unlooked_at() -> None:
    """An earlier process found its first ends late, in one look, and placed them at one
    moment; its next ends came much later. Between the two, the chance of a task ending
    was a flat step: a second run's first wave, ending in that gap, was not looked for
    until its end (64 tasks of +240 s: the ends of 192 to 200 s found at 203.6 s, 8.8 s
    late at p95, where the first run had found its own 7.2 s late). Now the chance falls
    between the ends it was learned from."""
    service = FakeService()
    poller = SharedPoller(service, PollOptions())
    poller.recall({2.0: [1.0] * 8 + [3.0 + 0.05 * i for i in range(24)]})
    tasks = [service.add(1.2 + 1.6 * i / 31) for i in range(32)]
    await watch_all(service, tasks, poller)
    lags = sorted(t.seen_final_at - t.ends for t in tasks if t.seen_final_at is not None)
    assert len(lags) == 32
    assert lags[-2] < 0.6, str([round(x, 2) for x in lags])  # before: up to 1.6 s, the gap's length
    assert poller.counts["list_requests"] <= 2 * len(tasks)


@pytest.mark.parametrize("speed", [0.3, 3.0])
async def test_recalled_times_from_a_service_of_another_speed_are_dropped(speed: float) -> None:
    """The service is now three times faster (or slower) than the recalled times say:
    the first end seen (or a task still running well past them) proves them out of date,
    and the wave is found as a fresh poller would find it, not where they said."""
    service = FakeService()
    poller = SharedPoller(service, PollOptions())
    poller.recall({2.0: [1.0 + 0.2 * i / 31 for i in range(32)]})
    tasks = [service.add(speed * (1.0 + 0.2 * i / 31)) for i in range(32)]
    await watch_all(service, tasks, poller)
    assert poller._prior == []
    lags = sorted(t.seen_final_at - t.ends for t in tasks if t.seen_final_at is not None)
    assert len(lags) == 32
    # Faster: the first ends are found by sparse blind looks (up to the task's age late).
    assert lags[16] < 0.2 * speed + 0.1, lags


async def test_before_anything_ends_only_the_oldest_task_is_asked_about_on_its_own() -> None:
    """A slow service: every task outlives `blind_overdue_after` before any has ended.
    Each task got GETs of its own from then on (240 s tasks: 14 requests a task); now
    only the oldest is asked (a cancelled wave would still be found), ever more rarely."""
    service = FakeService()
    tasks = [service.add(4.0) for _ in range(16)]
    await watch_all(service, tasks, blind_overdue_after=1.0, min_check_interval=0.1)
    assert all(t.seen_final_at is not None for t in tasks)
    assert 1 <= service.gets <= 5, service.gets
