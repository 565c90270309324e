"""When the poller expects tasks to end: from the times of the tasks that already ended,
with no model of the service built in.
"""

from __future__ import annotations

import bisect
import collections
import math


class FinishEstimator:
    """Predicts when a task finishes, from the work per generated second seen so far
    (for per-task GETs, where one look at the wrong moment costs a request)."""

    def __init__(self, initial: float) -> None:
        self._samples: collections.deque[float] = collections.deque(maxlen=256)
        self._initial = initial
        self._sorted: list[float] | None = None

    def observe(self, generated: float, seconds: float) -> None:
        if generated > 0:
            self._samples.append(max(0.0, seconds) / generated)
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


class Survival:
    """How long tasks take from creation to their end: the chance that a task is still
    running at a given age, estimated (Kaplan-Meier) from a cohort of recent tasks, the
    finished ones with the time they took and the running ones with their age so far.
    Counting the running ones matters: at the start of a batch only the quick tasks have
    finished, and from them alone every task would look overdue. Past the oldest age seen,
    the chance decays with the mean time (a tail not seen yet is not ruled out)."""

    def __init__(self) -> None:
        self._ages: list[float] = []  # ages at which tasks were seen to end, ascending
        self._running: list[float] = []  # the chance of still running just after each
        self.mean = 0.0  # of the times seen
        self._seen_until = 0.0  # the oldest age any task of the cohort reached
        self.nearly_all = 0.0  # 99% of tasks end by this age (or the last end seen)

    @property
    def has_samples(self) -> bool:
        return bool(self._ages)

    def estimate(self, took: list[float], ages: list[float]) -> None:
        """From the times finished tasks took and the ages at which others were last
        seen running."""
        if not took:
            self._ages, self._running = [], []
            return
        at_risk = len(took) + len(ages)
        still = 1.0
        self._ages, self._running = [], []
        events = sorted(took)
        censored = sorted(ages)
        j = 0
        for age in events:
            # Tasks still running at a younger age than this left the count unseen.
            while j < len(censored) and censored[j] < age:
                j += 1
                at_risk -= 1
            still *= 1 - 1 / at_risk
            at_risk -= 1
            self._ages.append(age)
            self._running.append(still)
        self.mean = max(1e-3, sum(events) / len(events))
        self._seen_until = max(events[-1], censored[-1] if censored else 0.0)
        cut = next((i for i, s in enumerate(self._running) if s <= 0.01), len(events) - 1)
        self.nearly_all = self._ages[cut]
        # The last ends seen may leave nobody at risk (a chance of 0); a tail not seen
        # yet is not ruled out: the chance stops at a floor, from which it decays past
        # the oldest age seen. Never above an earlier chance, so it never rises with age.
        floor = min([0.5 / len(events), *(s for s in self._running if s > 0)])
        self._running = [max(s, floor) for s in self._running]

    def running(self, age: float) -> float:
        """The chance that a task is still running at `age` seconds (1 with no samples).

        Between two ends seen it falls in a straight line, not in a step at the second:
        the ends are a sample, and a gap between two of them is no stretch where tasks
        cannot end. (As steps, times recalled from a run that found its first ends late,
        all at one moment, left the next run's first wave unlooked for from there to
        the next recalled end: 64 tasks of +240 s found up to 11 s late.)"""
        ages = self._ages
        if not ages:
            return 1.0
        i = bisect.bisect_right(ages, age)
        if i < len(ages):
            if not i:
                return 1.0
            before, after = ages[i - 1], ages[i]
            share = (age - before) / (after - before)
            return self._running[i - 1] + share * (self._running[i] - self._running[i - 1])
        if age <= self._seen_until:
            return self._running[-1]
        return self._running[-1] * math.exp(-(age - self._seen_until) / self.mean)
