"""What a wave costs in blind looks: the poller's rule before any task has ended, stepped
by hand (no service, no clock), for waves of 8, 64 and 1,000 tasks ending together.

    python benchmarks/blind_cost.py

Each blind look is one list request (one window holds every task while nothing has
ended): one when the time since the last reaches BLIND_GROWTH of the oldest task's age
less BLIND_HEAD_START (never sooner than `blind_sweep_gap` over the square root of the
tasks in flight, never later than `max_check_interval`), and one for failures at
FAILED_GROWTH of the age. Counted: the requests before the wave ends.
"""

from __future__ import annotations

import math

from wavespeed_outpaint._engine.poller import (
    BLIND_GROWTH,
    BLIND_HEAD_START,
    FAILED_GROWTH,
    PollOptions,
)


def blind_requests(in_flight: int, task_seconds: float) -> int:
    opts = PollOptions()
    floor = max(opts.min_sweep_gap, opts.blind_sweep_gap / math.sqrt(in_flight))
    requests = 0
    looked = failed_looked = 0.0
    while True:
        # The first moment the gap since the last look reaches its share of the age.
        share = max(looked + floor, (looked - BLIND_HEAD_START) / (1 - BLIND_GROWTH))
        now = min(share, looked + opts.max_check_interval)
        if now >= task_seconds:
            return requests
        requests += 1
        looked = now
        if now >= failed_looked + min(opts.max_check_interval, max(floor, FAILED_GROWTH * now)):
            requests += 1
            failed_looked = now


def main() -> None:
    sizes = (8, 64, 1000)
    print("| tasks of | " + " | ".join(f"{n} in flight: requests · per task" for n in sizes) + " |")
    print("|---" * (len(sizes) + 1) + "|")
    for seconds in (3.0, 12.0, 30.0, 240.0):
        cells = []
        for n in sizes:
            count = blind_requests(n, seconds)
            cells.append(f"{count} · {count / n:.2g}")
        print(f"| {seconds:g} s | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
