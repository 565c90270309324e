"""The shared poller under every time model, beside the official SDK and a hand-written loop.

    python benchmarks/poller.py                          # the whole matrix (~20 minutes)
    python benchmarks/poller.py --models lognormal --in-flight 64 --no-save
    python benchmarks/poller.py --tasks 20 --in-flight 8 --no-save   # the CI smoke size

A matrix of emulator time models (below) at 64 and at 1,000 tasks in flight. Each cell
runs each client in a fresh child process against a fresh emulator process with the same
seed. The figures: detection lag (from the service's finish to the client's first look
that shows it), status requests per task (result GETs and list pages), and wall time over
the limit: the wall time of a client that sees every finish at once and fills the freed
slot at once, over the same task durations (computed from the emulator's own record of
each task, in `_harness.ideal_makespan`). Lag and requests trade against each other, so
their product is shown too, beside the least product any client that reads the list could
have reached on the same tasks (`_harness.least_lag_times_requests`): where that is over
0.01, a lag mean of 0.1 s and 0.1 requests a task cannot both be had. Writes
benchmarks/results/poller.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import attrs

sys.path.insert(0, str(Path(__file__).parent))

from _harness import (
    TimeModel,
    ideal_makespan,
    least_lag_times_requests,
    row_from_child,
    write_results,
)
from compare import CLIENTS, run_client

# Task times for the 2 generated seconds every client asks for. "queue" models get a
# running limit of half the tasks in flight, so tasks wait at the service before they run.
MODELS = {
    "current (0.5 s + 1 s/s, ±20%)": TimeModel(time_scale=1.0, base_seconds=0.5, jitter=0.2),
    "uniform 1.75 s ±30%": TimeModel(time_scale=0.875, base_seconds=0.0, jitter=0.3),
    "lognormal σ 0.6": TimeModel(
        time_scale=0.875, base_seconds=0.0, distribution="lognormal", sigma=0.6
    ),
    "base-dominated (5 s + 0.05 s/s)": TimeModel(time_scale=0.05, base_seconds=5.0, jitter=0.2),
    "queue, first in first out": TimeModel(time_scale=1.0, base_seconds=0.5, jitter=0.2),
    "queue, random order": TimeModel(
        time_scale=1.0, base_seconds=0.5, jitter=0.2, queue_order="random"
    ),
}
SHORT = {
    "current": "current (0.5 s + 1 s/s, ±20%)",
    "uniform": "uniform 1.75 s ±30%",
    "lognormal": "lognormal σ 0.6",
    "base": "base-dominated (5 s + 0.05 s/s)",
    "fifo": "queue, first in first out",
    "random": "queue, random order",
}
TASKS = {64: 400, 1000: 3000}  # tasks per cell, for each number in flight


def model_for(name: str, in_flight: int) -> TimeModel:
    model = MODELS[name]
    if name.startswith("queue"):
        model = attrs.evolve(model, running=max(1, in_flight // 2))
    return model


def child(client: str, model_name: str, count: int, in_flight: int, result_file: Path) -> None:
    model = model_for(model_name, in_flight)
    run = run_client(client, model, count, in_flight)
    ideal = ideal_makespan(
        [t["duration"] for t in run.tasks], in_flight, model.running, model.queue_order
    )
    # The client's own start-up (upload, first submit) is not the poller's to win back.
    limit = ideal + (run.tasks[0]["created"] - run.meter.start if run.tasks else 0.0)
    row = {
        "model": model_name,
        "in_flight": in_flight,
        "client": client,
        **run.figures(count),
        "limit_s": limit,
        "wall_over_limit": run.meter.wall / limit,
        "least_lag_x_requests": least_lag_times_requests(run.tasks),
    }
    row["lag_x_requests"] = row["lag_mean_s"] * row["status_requests_per_task"]
    result_file.write_text(json.dumps(row))


COLUMNS = [
    ("model", "time model"),
    ("in_flight", "in flight"),
    ("client", "client"),
    ("tasks", "tasks"),
    ("completed", "completed"),
    ("wall_s", "wall s"),
    ("wall_over_limit", "wall / limit"),
    ("lag_mean_s", "lag mean s"),
    ("lag_p95_s", "lag p95 s"),
    ("status_requests_per_task", "status req / task"),
    ("lag_x_requests", "lag mean × req / task"),
    ("least_lag_x_requests", "least for a list reader"),
    ("cpu_ms_per_task", "CPU ms / task"),
    ("duplicates", "duplicates"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models", default=",".join(SHORT), help=f"some of {', '.join(SHORT)} (comma-separated)"
    )
    parser.add_argument("--in-flight", default="64,1000", help="comma-separated")
    parser.add_argument(
        "--tasks", type=int, help="tasks per cell (default: 400 at 64, 3000 at 1000)"
    )
    parser.add_argument(
        "--clients", default=",".join(CLIENTS), help="comma-separated; default: all three"
    )
    parser.add_argument("--no-save", action="store_true", help="print only")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        client, model_name, count, in_flight, result_file = args.child
        child(client, model_name, int(count), int(in_flight), Path(result_file))
        return
    clients = args.clients.split(",")
    for name in clients:
        if name not in CLIENTS:
            parser.error(f"unknown client {name!r}; give some of {', '.join(CLIENTS)}")
    models = []
    for short in args.models.split(","):
        if short not in SHORT:
            parser.error(f"unknown time model {short!r}; give some of {', '.join(SHORT)}")
        models.append(SHORT[short])
    rows = []
    for in_flight in (int(n) for n in args.in_flight.split(",")):
        count = args.tasks or TASKS.get(in_flight, 3 * in_flight)
        for model_name in models:
            for client in clients:
                started = time.time()
                row = row_from_child(__file__, client, model_name, str(count), str(in_flight))
                rows.append(row)
                print(
                    f"{model_name}, {in_flight} in flight, {client}: "
                    f"{time.time() - started:.0f} s; {row['completed']}/{count} completed, "
                    f"wall/limit {row['wall_over_limit']:.2f}, lag mean "
                    f"{row['lag_mean_s']:.3f} p95 {row['lag_p95_s']:.3f} s, "
                    f"{row['status_requests_per_task']:.3f} status req/task; lag x req/task "
                    f"{row['lag_x_requests']:.4f}, least for a list reader "
                    f"{row['least_lag_x_requests'] or 0:.4f}",
                    flush=True,
                )
    print(
        f"\n{platform.machine()}, Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}"
    )
    if not args.no_save:
        print(write_results("poller", rows, COLUMNS).read_text())


if __name__ == "__main__":
    main()
