"""The shared poller under every time model, beside the official SDK and a hand-written loop.

    python benchmarks/poller.py                          # the whole matrix (~20 minutes)
    python benchmarks/poller.py --models lognormal --in-flight 64 --no-save
    python benchmarks/poller.py --tasks 20 --in-flight 8 --no-save   # the CI smoke size
    python benchmarks/poller.py --cells speeds           # services faster and slower than any guess
    python benchmarks/poller.py --cells backend          # a web backend's calls, fresh and warm
    python benchmarks/poller.py --cells rerun            # a second run of a similar batch

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

Every cell of that matrix asks for 2 generated seconds. `--cells speeds` asks for 30 s and
240 s on services from 10 times faster to 10 times slower than 0.1 s of work a generated
second (the figure the SDK once waited for before its first look): one wave (64 tasks at
64 in flight) and several (400 at 64), with the first wave's figures apart. `--cells
backend` is a web backend: 1 and 5 callers each awaiting `outpaint()` in a row through one
client, fresh, and warm (after a batch of the same length). `--cells rerun` runs a batch
twice (other seeds, one journal, a fresh process each): the second run's first wave
starts from what the first learned. Writes benchmarks/results/poller-{speeds,backend,
rerun}.{md,json}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import attrs

sys.path.insert(0, str(Path(__file__).parent))

from _harness import (
    TimeModel,
    emulator_stats,
    emulator_tasks,
    ideal_makespan,
    least_lag_times_requests,
    row_from_child,
    write_results,
)
from compare import CLIENTS, KEY, MODEL_ID, quiet, run_client, upload_once, workspace

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


def matrix_child(client: str, model_name: str, count: int, in_flight: int) -> dict[str, Any]:
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
    return row


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

# -- services faster and slower than any guess --------------------------------------------

# Seconds of work a generated second: ten times faster than 0.1 (the figure the SDK once
# waited for before its first look), twice as fast, that figure, ten times slower.
SPEEDS = (0.01, 0.05, 0.1, 1.0)
SPEED_IN_FLIGHT = 64
# (extension seconds, tasks): one wave of either length; several waves of the shorter (400
# tasks of 240 s at the slowest speed would take 25 minutes a client).
SPEED_BATCHES = ((30.0, 64), (240.0, 64), (30.0, 400))


def lag_figures(tasks: list[dict[str, Any]], prefix: str = "") -> dict[str, Any]:
    """Mean and p95 detection lag of these tasks, from the emulator's record."""
    lags = sorted(
        t["first_reported_at"] - t["finish_at"]
        for t in tasks
        if t.get("first_reported_at") is not None and t.get("finish_at") is not None
    )
    if not lags:
        return {f"{prefix}lag_mean_s": None, f"{prefix}lag_p95_s": None}
    return {
        f"{prefix}lag_mean_s": sum(lags) / len(lags),
        f"{prefix}lag_p95_s": lags[int(0.95 * (len(lags) - 1))],
    }


def speed_child(
    client: str, generated: float, speed: float, count: int, in_flight: int
) -> dict[str, Any]:
    model = TimeModel(time_scale=speed, base_seconds=0.0, jitter=0.2)
    run = run_client(client, model, count, in_flight, generated)
    ideal = ideal_makespan([t["duration"] for t in run.tasks], in_flight, None, "fifo")
    limit = ideal + (run.tasks[0]["created"] - run.meter.start if run.tasks else 0.0)
    task_s = generated * speed
    row = {
        "extension_s": generated,
        "work_per_s": speed,
        "task_s": task_s,
        "in_flight": in_flight,
        "client": client,
        **run.figures(count),
        "limit_s": limit,
        "wall_over_limit": run.meter.wall / limit,
        **lag_figures(run.tasks[:in_flight], "first_wave_"),
    }
    row["lag_share"] = (row["lag_mean_s"] or 0.0) / task_s
    row["p95_share"] = (row["lag_p95_s"] or 0.0) / task_s
    return row


SPEED_COLUMNS = [
    ("extension_s", "extension s"),
    ("work_per_s", "work s / s"),
    ("task_s", "task s"),
    ("tasks", "tasks"),
    ("in_flight", "in flight"),
    ("client", "client"),
    ("completed", "completed"),
    ("wall_over_limit", "wall / limit"),
    ("lag_mean_s", "lag mean s"),
    ("lag_p95_s", "lag p95 s"),
    ("lag_share", "lag mean / task"),
    ("p95_share", "lag p95 / task"),
    ("first_wave_lag_mean_s", "first wave lag mean s"),
    ("first_wave_lag_p95_s", "first wave lag p95 s"),
    ("status_requests_per_task", "status req / task"),
    ("cpu_ms_per_task", "CPU ms / task"),
]


# -- a second run of a similar batch --------------------------------------------------------


async def ours_with_journal(
    base_url: str, count: int, generated: float, source: Path, out: Path, first_seed: int
) -> None:
    from wavespeed_outpaint import OutpaintClient, OutpaintRequest

    requests = (
        (
            OutpaintRequest(
                source, tags="lofi", extend_after_duration=generated, seed=first_seed + i
            ),
            f"t{first_seed + i}",
        )
        for i in range(count)
    )
    async with OutpaintClient(KEY, base_url, max_in_flight=SPEED_IN_FLIGHT) as client:
        async for _ in client.outpaint_many(requests, out, journal=out / "journal.sqlite"):
            pass


def rerun_child(generated: float, speed: float, count: int) -> dict[str, Any]:
    """This SDK runs a batch, then another of the same length (other seeds) with the same
    journal, from a fresh client: the second's first wave starts from the
    times the first learned."""
    model = TimeModel(time_scale=speed, base_seconds=0.0, jitter=0.2)
    row: dict[str, Any] = {"extension_s": generated, "work_per_s": speed, "tasks": count}
    with workspace(model) as (base_url, source, out):
        for run in ("first", "second"):
            began = time.time()
            before = emulator_stats(base_url)["status_requests"]
            seed = 0 if run == "first" else 1_000_000
            asyncio.run(ours_with_journal(base_url, count, generated, source, out, seed))
            asked = emulator_stats(base_url)["status_requests"] - before
            tasks = [t for t in emulator_tasks(base_url) if t["created"] >= began]
            row.update(lag_figures(tasks[:SPEED_IN_FLIGHT], f"{run}_first_wave_"))
            row.update(lag_figures(tasks, f"{run}_"))
            row[f"{run}_status_requests_per_task"] = asked / max(1, len(tasks))
    return row


RERUN_COLUMNS = [
    ("extension_s", "extension s"),
    ("work_per_s", "work s / s"),
    ("tasks", "tasks"),
    ("first_first_wave_lag_mean_s", "run 1: first wave lag mean s"),
    ("first_first_wave_lag_p95_s", "run 1: first wave lag p95 s"),
    ("first_status_requests_per_task", "run 1: status req / task"),
    ("second_first_wave_lag_mean_s", "run 2: first wave lag mean s"),
    ("second_first_wave_lag_p95_s", "run 2: first wave lag p95 s"),
    ("second_lag_mean_s", "run 2: lag mean s"),
    ("second_status_requests_per_task", "run 2: status req / task"),
]


# -- a web backend ------------------------------------------------------------------------

# Tasks of about 6 s (30 generated seconds at 0.2 s of work each, ±20%).
BACKEND_SERVICE = TimeModel(time_scale=0.2, base_seconds=0.0, jitter=0.2)
BACKEND_GENERATED = 30.0
WARM_UP_TASKS = 64


async def ours_backend(
    base_url: str, callers: int, calls: int, warm: bool, source: Path, out: Path
) -> tuple[float, int]:
    """Callers each awaiting `outpaint()` in a row through one client (after a batch, if
    warm); when the calls began, and the status requests the emulator had seen by then."""
    from wavespeed_outpaint import OutpaintClient, OutpaintRequest

    def request(seed: int) -> OutpaintRequest:
        return OutpaintRequest(
            source, tags="lofi", extend_after_duration=BACKEND_GENERATED, seed=seed
        )

    async with OutpaintClient(KEY, base_url) as client:
        if warm:
            batch = ((request(100_000 + i), f"w{i}") for i in range(WARM_UP_TASKS))
            async for _ in client.outpaint_many(batch, out / "warm"):
                pass
        began = time.time()
        before = await asyncio.to_thread(emulator_stats, base_url)

        async def caller(c: int) -> None:
            for i in range(calls):
                await client.outpaint(request(c * calls + i), out)

        await asyncio.gather(*(caller(c) for c in range(callers)))
    return began, int(before["status_requests"])


def official_backend(
    base_url: str, callers: int, calls: int, source: Path, out: Path
) -> tuple[float, int]:
    from wavespeed import Client  # type: ignore[import-untyped]

    audio = upload_once(base_url, source)
    client = Client(api_key=KEY, base_url=base_url)
    body = {"audio": audio, "tags": "lofi", "extend_after_duration": BACKEND_GENERATED}

    def caller(c: int) -> None:
        for i in range(calls):
            client.run(MODEL_ID, {**body, "seed": c * calls + i}, timeout=600, poll_interval=1.0)

    began = time.time()
    before = emulator_stats(base_url)
    with ThreadPoolExecutor(callers) as pool:
        list(pool.map(caller, range(callers)))
    return began, int(before["status_requests"])


def backend_child(client: str, callers: int, calls: int, warm: bool) -> dict[str, Any]:
    with workspace(BACKEND_SERVICE) as (base_url, source, out):
        with quiet():
            if client == "this SDK":
                began, asked = asyncio.run(
                    ours_backend(base_url, callers, calls, warm, source, out)
                )
            else:
                began, asked = official_backend(base_url, callers, calls, source, out)
        stats = emulator_stats(base_url)
        tasks = [t for t in emulator_tasks(base_url) if t["created"] >= began]
    return {
        "client": client,
        "callers": callers,
        "calls": callers * calls,
        "client_state": "warm" if warm else "fresh",
        "completed": sum(t["final_status"] == "completed" for t in tasks),
        **lag_figures(tasks),
        "status_requests_per_task": (stats["status_requests"] - asked) / max(1, len(tasks)),
    }


BACKEND_COLUMNS = [
    ("client", "client"),
    ("client_state", "client state"),
    ("callers", "callers"),
    ("calls", "calls"),
    ("completed", "completed"),
    ("lag_mean_s", "lag mean s"),
    ("lag_p95_s", "lag p95 s"),
    ("status_requests_per_task", "status req / task"),
]


def run_matrix(args: argparse.Namespace, clients: list[str]) -> list[dict[str, Any]]:
    models = [SHORT[short] for short in args.models.split(",")]
    rows = []
    for in_flight in (int(n) for n in args.in_flight.split(",")):
        count = args.tasks or TASKS.get(in_flight, 3 * in_flight)
        for model_name in models:
            for client in clients:
                started = time.time()
                row = row_from_child(
                    __file__, "matrix", client, model_name, str(count), str(in_flight)
                )
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
    return rows


def run_speeds(args: argparse.Namespace, clients: list[str]) -> list[dict[str, Any]]:
    speeds = [float(x) for x in args.speeds.split(",")]
    batches = [(generated, count, SPEED_IN_FLIGHT) for generated, count in SPEED_BATCHES]
    if args.wave:  # one wave of that many tasks, of each length
        batches = [(generated, args.wave, args.wave) for generated in (30.0, 240.0)]
    rows = []
    for generated, count, in_flight in batches:
        if args.extensions and generated not in [float(x) for x in args.extensions.split(",")]:
            continue
        for speed in speeds:
            for client in clients:
                started = time.time()
                row = row_from_child(
                    __file__,
                    "speed",
                    client,
                    str(generated),
                    str(speed),
                    str(args.tasks or count),
                    str(in_flight),
                )
                rows.append(row)
                print(
                    f"+{generated:g} s at {speed:g} s/s ({row['task_s']:g} s tasks), "
                    f"{row['tasks']} tasks at {in_flight}, {client}: "
                    f"{time.time() - started:.0f} s; "
                    f"wall/limit {row['wall_over_limit']:.2f}, lag mean "
                    f"{row['lag_mean_s']:.3f} p95 {row['lag_p95_s']:.3f} s "
                    f"({100 * row['lag_share']:.1f}% / {100 * row['p95_share']:.1f}% of a task), "
                    f"first wave {row['first_wave_lag_mean_s']:.3f} / "
                    f"{row['first_wave_lag_p95_s']:.3f} s, "
                    f"{row['status_requests_per_task']:.3f} status req/task",
                    flush=True,
                )
    return rows


def run_backend(args: argparse.Namespace, clients: list[str]) -> list[dict[str, Any]]:
    rows = []
    for callers in (1, 5):
        for client in clients:
            if client == "hand-written loop":
                continue  # the official SDK's loop, by hand: nothing new to learn here
            for warm in (False, True) if client == "this SDK" else (False,):
                started = time.time()
                row = row_from_child(
                    __file__, "backend", client, str(callers), str(args.calls), str(int(warm))
                )
                rows.append(row)
                print(
                    f"backend, {callers} caller(s) x {args.calls}, {client} "
                    f"({row['client_state']}): {time.time() - started:.0f} s; "
                    f"{row['completed']}/{row['calls']} completed, lag mean "
                    f"{row['lag_mean_s']:.3f} p95 {row['lag_p95_s']:.3f} s, "
                    f"{row['status_requests_per_task']:.2f} status req/task",
                    flush=True,
                )
    return rows


def run_rerun(args: argparse.Namespace, clients: list[str]) -> list[dict[str, Any]]:
    rows = []
    for speed in [float(x) for x in args.speeds.split(",")]:
        for generated, count in ((30.0, args.tasks or 400), (240.0, args.tasks or 64)):
            if args.extensions and generated not in [float(x) for x in args.extensions.split(",")]:
                continue
            started = time.time()
            row = row_from_child(__file__, "rerun", str(generated), str(speed), str(count))
            rows.append(row)
            print(
                f"rerun +{generated:g} s at {speed:g} s/s, {count} tasks: "
                f"{time.time() - started:.0f} s; first wave lag mean / p95: run 1 "
                f"{row['first_first_wave_lag_mean_s']:.3f} / "
                f"{row['first_first_wave_lag_p95_s']:.3f} s, run 2 "
                f"{row['second_first_wave_lag_mean_s']:.3f} / "
                f"{row['second_first_wave_lag_p95_s']:.3f} s; status req/task: run 1 "
                f"{row['first_status_requests_per_task']:.3f}, run 2 "
                f"{row['second_status_requests_per_task']:.3f}",
                flush=True,
            )
    return rows


CELLS = {
    "matrix": ("poller", COLUMNS, run_matrix),
    "speeds": ("poller-speeds", SPEED_COLUMNS, run_speeds),
    "backend": ("poller-backend", BACKEND_COLUMNS, run_backend),
    "rerun": ("poller-rerun", RERUN_COLUMNS, run_rerun),
}


def child(kind: str, *args: str) -> dict[str, Any]:
    if kind == "matrix":
        client, model_name, count, in_flight = args
        return matrix_child(client, model_name, int(count), int(in_flight))
    if kind == "speed":
        client, generated, speed, count, in_flight = args
        return speed_child(client, float(generated), float(speed), int(count), int(in_flight))
    if kind == "rerun":
        generated, speed, count = args
        return rerun_child(float(generated), float(speed), int(count))
    client, callers, calls, warm = args
    return backend_child(client, int(callers), int(calls), warm == "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", default="matrix", help=f"one of {', '.join(CELLS)}")
    parser.add_argument(
        "--models", default=",".join(SHORT), help=f"some of {', '.join(SHORT)} (comma-separated)"
    )
    parser.add_argument("--in-flight", default="64,1000", help="comma-separated")
    parser.add_argument(
        "--tasks", type=int, help="tasks per cell (default: 400 at 64, 3000 at 1000)"
    )
    parser.add_argument(
        "--speeds",
        default=",".join(f"{s:g}" for s in SPEEDS),
        help="speeds cells: seconds of work a generated second (comma-separated)",
    )
    parser.add_argument("--extensions", help="speeds cells: only these (comma-separated)")
    parser.add_argument(
        "--wave", type=int, help="speeds cells: one wave of this many tasks, all in flight"
    )
    parser.add_argument("--calls", type=int, default=20, help="backend cells: calls a caller")
    parser.add_argument(
        "--clients", default=",".join(CLIENTS), help="comma-separated; default: all three"
    )
    parser.add_argument("--no-save", action="store_true", help="print only")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        *child_args, result_file = args.child
        Path(result_file).write_text(json.dumps(child(*child_args)))
        return
    if args.cells not in CELLS:
        parser.error(f"unknown cells {args.cells!r}; give one of {', '.join(CELLS)}")
    clients = args.clients.split(",")
    for name in clients:
        if name not in CLIENTS:
            parser.error(f"unknown client {name!r}; give some of {', '.join(CLIENTS)}")
    for short in args.models.split(","):
        if short not in SHORT:
            parser.error(f"unknown time model {short!r}; give some of {', '.join(SHORT)}")
    name, columns, run = CELLS[args.cells]
    rows = run(args, clients)
    print(
        f"\n{platform.machine()}, Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}"
    )
    if not args.no_save:
        print(write_results(name, rows, columns).read_text())


if __name__ == "__main__":
    main()
