"""Shared by the benchmarks: the emulator in its own process, counters, a source track."""

from __future__ import annotations

import bisect
import collections
import contextlib
import heapq
import json
import math
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs

from wavespeed_outpaint.emulator._process import emulator_process as spawn_emulator


@attrs.frozen
class TimeModel:
    """How the emulated service behaves: seconds of work per generated second, and spread;
    optionally a running limit with a queue in front of it."""

    time_scale: float = 1.0
    base_seconds: float = 0.5
    jitter: float = 0.2
    faults: float = 0.0  # every fault kind at this probability (webhooks aside)
    distribution: str = "uniform"  # or "lognormal", with `sigma`
    sigma: float = 0.6
    running: int | None = None  # tasks the service runs at once; None: no limit
    queue_order: str = "fifo"  # or "random"

    def emulator_args(self) -> list[str]:
        args = [
            "--time-scale",
            str(self.time_scale),
            "--base-seconds",
            str(self.base_seconds),
            "--jitter",
            str(self.jitter),
            "--distribution",
            self.distribution,
            "--sigma",
            str(self.sigma),
            "--queue-order",
            self.queue_order,
        ]
        if self.running is not None:
            args += ["--running", str(self.running)]
        for kind in FAULT_KINDS if self.faults else ():
            args += ["--fault", f"{kind}={self.faults}"]
        return args


FAULT_KINDS = (
    "submit_429",
    "submit_5xx",
    "submit_lost",
    "submit_500_after_create",
    "result_429",
    "result_5xx",
    "result_drop",
    "upload_5xx",
    "truncated_download",
    "task_failed",
    "task_cancelled",
    "task_timeout",
    "expired_output",
)


@contextlib.contextmanager
def emulator_process(model: TimeModel, *, seed: int = 1) -> Iterator[str]:
    """The emulator in its own process with this time model; yields its base URL."""
    args = [*model.emulator_args(), "--seed", str(seed), "--retry-after", "0.2"]
    with spawn_emulator(*args) as base_url:
        yield base_url


def row_from_child(script: str, *args: str, timeout: float = 1800) -> dict[str, Any]:
    """Run `script --child ARGS RESULT_FILE` in a fresh process; the row it wrote there."""
    with tempfile.TemporaryDirectory() as tmp:
        result_file = Path(tmp) / "row.json"
        command = [sys.executable, script, "--child", *args, str(result_file)]
        # A state folder of its own: no run starts from times another one learned.
        env = {**os.environ, "XDG_STATE_HOME": tmp}
        subprocess.run(command, check=True, timeout=timeout, env=env)
        return json.loads(result_file.read_text())  # type: ignore[no-any-return]


def emulator_stats(base_url: str) -> dict[str, Any]:
    with urllib.request.urlopen(base_url + "/_emulator/stats", timeout=30) as response:
        return json.loads(response.read())  # type: ignore[no-any-return]


def emulator_tasks(base_url: str) -> list[dict[str, Any]]:
    """Every task the emulator made, in creation order, with its duration."""
    with urllib.request.urlopen(base_url + "/_emulator/tasks", timeout=60) as response:
        return json.loads(response.read())  # type: ignore[no-any-return]


def ideal_makespan(
    durations: list[float], in_flight: int, running: int | None, order: str, seed: int = 0
) -> float:
    """The batch's wall time for a client that sees every finish at once and fills the
    freed slot at once: `in_flight` tasks submitted at a time, in this order, to a service
    that runs `running` at once and serves its queue in `order` ("fifo" or "random")."""
    rng = random.Random(seed)
    pending = collections.deque(durations)
    workers = running if running is not None else len(durations)
    queue: list[float] = []  # durations waiting at the service
    finishes: list[float] = []  # heap of running tasks' finish times
    now = 0.0

    def submit() -> None:
        queue.append(pending.popleft())

    def start() -> None:
        while queue and len(finishes) < workers:
            index = rng.randrange(len(queue)) if order == "random" else 0
            heapq.heappush(finishes, now + queue.pop(index))

    for _ in range(min(in_flight, len(pending))):
        submit()
    start()
    while finishes:
        now = heapq.heappop(finishes)
        if pending:
            submit()
        start()
    return now


def least_lag_times_requests(tasks: list[dict[str, Any]], page: int = 100) -> float | None:
    """The least (mean detection lag) x (list requests per task) a client that reads the
    list could have reached on this run's tasks (the emulator's record of each), or None
    when too few tasks finished.

    Once a second, the tasks in flight (created, not yet reported) are cut, in creation
    order, into as few windows as hold at most `page` finished items each (what one list
    request shows). A window where r_i tasks finish a second, looked at every g_i seconds,
    costs 1 / g_i requests and leaves them g_i / 2 late on average; at any rate of
    requests the least mean lag comes from g_i proportional to 1 / sqrt(r_i), where
    lag x requests per task = (sum of sqrt(r_i))^2 / (2 r^2), r the sum of the r_i. The
    seconds are weighted by their finishes. Finishes are taken as unforeseeable within a
    second: a client that could foresee them would do better.
    """
    ended = [t for t in tasks if t.get("finish_at") and t.get("first_reported_at")]
    if not ended:
        return None
    start = min(t["created"] for t in ended)
    stop = max(t["finish_at"] for t in ended)
    weighted = finishes = 0.0
    now = start + 1.0
    while now < stop - 1.0:
        known = sorted(t["created"] for t in ended if t["first_reported_at"] <= now)
        flight = sorted(
            (t["created"], t["finish_at"])
            for t in ended
            if t["created"] <= now < t["first_reported_at"]
        )
        rates: list[int] = []
        first_held = 0
        for created, finish in flight:
            held = bisect.bisect_right(known, created) - first_held
            if not rates or held > page:
                rates.append(0)
                first_held = bisect.bisect_left(known, created)
            rates[-1] += now <= finish < now + 1.0
        r = sum(rates)
        if r:
            weighted += sum(math.sqrt(x) for x in rates) ** 2 / (2 * r)
            finishes += r
        now += 1.0
    return weighted / finishes if finishes else None


def make_source(path: Path, seconds: float = 0.5, rate: int = 8000) -> Path:
    """A short WAV made in a child process, so this process never imports numpy."""
    code = (
        "import sys; from wavespeed_outpaint.emulator._audio import encode, make_track; "
        f"open(sys.argv[1], 'wb').write(encode(make_track({seconds}, {rate}), {rate}, 'wav'))"
    )
    subprocess.run([sys.executable, "-c", code, str(path)], check=True)
    return path


class Meter:
    """CPU seconds (and the kernel's share of them) and peak RSS of this process, and
    wall time, over a block."""

    def __enter__(self) -> Meter:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        self._user0, self._kernel0 = usage.ru_utime, usage.ru_stime
        self.start = time.time()
        return self

    def __exit__(self, *exc: object) -> None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        self.end = time.time()
        self.wall = self.end - self.start
        self.kernel = usage.ru_stime - self._kernel0
        self.cpu = usage.ru_utime - self._user0 + self.kernel
        self.peak_rss_mb = usage.ru_maxrss / 1024  # Linux reports KiB


def figures(meter: Meter, stats: dict[str, Any], count: int, completed: int) -> dict[str, Any]:
    """The figures every benchmark reports for one run of `count` tasks."""
    limit = stats["last_completion"] - meter.start
    return {
        "tasks": count,
        "completed": completed,
        "wall_s": meter.wall,
        "limit_s": limit,
        "wall_over_limit": meter.wall / limit,
        "status_requests_per_task": stats["status_requests"] / count,
        "lag_mean_s": stats["detection_lag_mean"],
        "lag_p95_s": stats["detection_lag_p95"],
        "cpu_ms_per_task": 1000 * meter.cpu / count,
        "kernel_ms_per_task": 1000 * meter.kernel / count,
        "peak_rss_mb": meter.peak_rss_mb,
        "duplicates": stats["duplicate_submissions"],
        "list_requests": stats["list_requests"],
        "result_gets": stats["result_gets"],
    }


def write_results(name: str, rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> Path:
    """benchmarks/results/<name>.json and .md; returns the markdown path."""
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(rows, indent=2) + "\n")
    lines = ["| " + " | ".join(title for _, title in columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row.get(key)) for key, _ in columns) + " |")
    md = out / f"{name}.md"
    md.write_text("\n".join(lines) + "\n")
    return md


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    return "" if value is None else str(value)
