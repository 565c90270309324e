"""The same batch in one process and on Ray Data with 2 and 4 actors; the coordinator alone.

    python benchmarks/cluster.py                                  # 2,000 tasks; 2 and 4 actors
    python benchmarks/cluster.py --tasks 100 --actors 2 --calls-seconds 2 --no-save   # CI smoke

Every run is a fresh child process with a fresh emulator (its running limit at the
account's `max_running`, so tasks beyond it queue at the service) and a fresh
S3-compatible server (moto): distinct tracks in a bucket in, extended tracks to a
prefix of the same bucket out, as a library on a cluster would run. Ray runs start a
local Ray (loopback, no dashboard) in the child.

Figures: wall over the limit (the ideal schedule of the emulator's own task durations,
`max_running` at a time), the running budget's mean occupancy (sampled at the emulator),
client CPU ms per task in all processes (the driver and the actors; Ray's own daemons
apart), coordinator calls per second, peak RSS (the driver; the largest actor).
Then the coordinator alone, under load from 4 actor processes: calls per second and
the latency its callers see (p50 / p99), at the top tier's rate (5,000 starts a
minute: 167 calls a second) and as fast as it goes. Writes
benchmarks/results/cluster.{md,json} and cluster-coordinator.{md,json}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import attrs

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))

from _harness import (
    Meter,
    TimeModel,
    emulator_process,
    emulator_stats,
    emulator_tasks,
    ideal_makespan,
    row_from_child,
    write_results,
)
from _procs import TreeMeter, command, cpu_seconds, descendants
from support.s3server import s3_server

BUCKET = "lib"
GENERATED = 2.0
# About 4 s a task: with `max_running` 100, 2,000 tasks keep the budget full for some
# 80 s, at 25 tasks a second. (Faster, moto, one Python process on this 2-core machine,
# is what limits every mode: each task is some 8 requests to the store on Ray.)
SERVICE = TimeModel(time_scale=1.75, base_seconds=0.5, jitter=0.3)
FAST: dict[str, Any] = {"initial_work_per_second": 0.5}


def prepare_library(endpoint: str, count: int) -> None:
    """`count` distinct 0.5 s tracks in the bucket, written by a helper process (so the
    measured process never imports numpy)."""
    with tempfile.TemporaryDirectory() as tmp:
        helper = [sys.executable, str(Path(__file__).parent / "s3.py"), "--prepare"]
        subprocess.run([*helper, tmp, str(count), "0.5", "8000", endpoint], check=True)


def occupancy_sampler(base_url: str, samples: list[float], stop: threading.Event) -> None:
    """Tasks at the service, every half second; its own CPU time last."""
    while not stop.wait(0.5):
        stats = emulator_stats(base_url)
        samples.append(stats["tasks_created"] - stats["tasks_finished"])
    samples.append(time.thread_time())


async def one_process(base_url: str, count: int, max_running: int) -> int:
    from wavespeed_outpaint import OutpaintClient, OutpaintRequest

    requests = (
        (
            OutpaintRequest(
                f"s3://{BUCKET}/music/t{i}.wav", tags="lofi", extend_after_duration=GENERATED
            ),
            f"t{i}",
        )
        for i in range(count)
    )
    completed = 0
    options: dict[str, Any] = {"max_in_flight": max_running, **FAST}
    async with OutpaintClient("emulator-key", base_url, **options) as client:
        async for result in client.outpaint_many(requests, f"s3://{BUCKET}/extended/"):
            completed += result.ok
    return completed


def on_ray(ray: Any, base_url: str, count: int, max_running: int, actors: int) -> tuple[int, int]:
    """Completed tasks, and the coordinator's calls."""
    from wavespeed_outpaint.ray import COORDINATOR_NAMESPACE, batch_rows, outpaint_dataset

    rows = [{"audio": f"s3://{BUCKET}/music/t{i}.wav", "output": f"t{i}"} for i in range(count)]
    batch = batch_rows(max_running, actors)
    account = uuid.uuid4().hex[:8]
    done = outpaint_dataset(
        ray.data.from_items(rows, override_num_blocks=math.ceil(count / batch)),  # a batch each
        out=f"s3://{BUCKET}/extended/",
        account=account,
        max_running=max_running,
        concurrency=actors,
        api_key="emulator-key",
        base_url=base_url,
        options=FAST,
        tags="lofi",
        extend_after_duration=GENERATED,
    )
    completed = sum(row["status"] == "completed" for row in done.iter_rows())
    coordinator = ray.get_actor(f"account-{account}", namespace=COORDINATOR_NAMESPACE)
    return completed, ray.get(coordinator.stats.remote())["calls"]


def start_ray(env: dict[str, str]) -> Any:
    import ray

    ray.init(
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        runtime_env={"env_vars": {**env, "RAY_DATA_DISABLE_PROGRESS_BARS": "1"}},
        logging_level=logging.ERROR,
        log_to_driver=False,
    )
    ray.data.DataContext.get_current().enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    return ray


def child(mode: str, count: int, max_running: int, result_file: Path) -> None:
    """One run: `mode` is "one process" or the number of actors."""
    model = attrs.evolve(SERVICE, running=max_running)
    with s3_server() as server, emulator_process(model) as base_url:
        prepare_library(server.endpoint, count)
        os.environ.update(server.env)
        servers = descendants(os.getpid(), set())  # moto and the emulator: not the client's
        store = next(pid for pid in servers if "moto" in command(pid))
        store_cpu = cpu_seconds(store) or 0.0
        ray_started = time.monotonic()
        ray = start_ray(server.env) if mode != "one process" else None
        ray_start_s = time.monotonic() - ray_started
        samples: list[float] = []
        stop = threading.Event()
        sampler = threading.Thread(target=occupancy_sampler, args=(base_url, samples, stop))
        with TreeMeter(servers) as tree, Meter() as meter:
            sampler.start()
            if ray is None:
                completed, calls = asyncio.run(one_process(base_url, count, max_running)), 0
            else:
                completed, calls = on_ray(ray, base_url, count, max_running, int(mode))
            stop.set()
        sampler.join()
        store_cpu = (cpu_seconds(store) or 0.0) - store_cpu
        sampling_cpu = samples.pop() + tree.own_cpu
        if ray is not None:
            ray.shutdown()
        stats = emulator_stats(base_url)
        durations = [t["duration"] for t in emulator_tasks(base_url)]
    limit = ideal_makespan(durations, max_running, max_running, "fifo")
    actor_pids = tree.matching("OutpaintBatches")
    worker_pids = actor_pids | tree.matching("AccountCoordinator")
    ray_daemons = set(tree.cpu) - worker_pids
    client_cpu = meter.cpu - sampling_cpu + tree.cpu_used(worker_pids)
    row = {
        "mode": "one process" if mode == "one process" else f"Ray, {mode} actors",
        "tasks": count,
        "completed": completed,
        "max_running": max_running,
        "wall_s": meter.wall,
        "limit_s": limit,
        "wall_over_limit": meter.wall / limit,
        "occupancy": statistics.fmean(samples) / max_running if samples else None,
        "cpu_ms_per_task": 1000 * client_cpu / count,
        "ray_daemons_cpu_ms_per_task": 1000 * tree.cpu_used(ray_daemons) / count,
        "coordinator_calls_per_s": calls / meter.wall,
        "store_busy": store_cpu / meter.wall,
        "driver_rss_mb": meter.peak_rss_mb,
        "actor_rss_mb": max((tree.rss[p] for p in actor_pids), default=None),
        "ray_start_s": ray_start_s if ray is not None else None,
        "first_task_s": stats["first_created"] - meter.start,
        "duplicates": stats["duplicate_submissions"],
    }
    result_file.write_text(json.dumps(row))


def coordinator_load(calls_per_s: float | None, seconds: float, result_file: Path) -> None:
    """The coordinator under load from 4 actors: paced at `calls_per_s` in all, or (None)
    as fast as 64 callers in each actor go. The latency is what a caller waits for an
    answer to `slot` (no start limit: the wait is the coordinator's, not a schedule's)."""
    ray = start_ray({})
    from wavespeed_outpaint.ray import coordinator

    account = coordinator(uuid.uuid4().hex[:8], None, 1000)
    ray.get(account.stats.remote())

    @ray.remote(num_cpus=0.25)
    class Caller:
        async def run(self, account: Any, rate: float | None, seconds: float) -> list[float]:
            latencies: list[float] = []
            await account.stats.remote()  # connected before the clock starts
            end = time.monotonic() + seconds

            async def one() -> None:
                started = time.monotonic()
                await account.slot.remote()
                latencies.append(time.monotonic() - started)

            if rate is None:

                async def loop() -> None:
                    while time.monotonic() < end:
                        await one()

                await asyncio.gather(*(loop() for _ in range(64)))
            else:
                pending = set()
                next_at = time.monotonic()
                while next_at < end:
                    await asyncio.sleep(max(0.0, next_at - time.monotonic()))
                    pending.add(asyncio.ensure_future(one()))
                    next_at += 1 / rate
                await asyncio.gather(*pending)
            return latencies

    callers = [Caller.remote() for _ in range(4)]  # type: ignore[attr-defined]
    per_caller = None if calls_per_s is None else calls_per_s / len(callers)
    ray.get([c.__ray_ready__.remote() for c in callers])
    parts = ray.get([c.run.remote(account, per_caller, seconds) for c in callers])
    latencies = sorted(t for part in parts for t in part)
    ray.shutdown()
    row = {
        "offered": "as fast as it goes" if calls_per_s is None else f"{calls_per_s:g} calls/s",
        "calls": len(latencies),
        "calls_per_s": len(latencies) / seconds,
        "p50_ms": 1000 * latencies[len(latencies) // 2],
        "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))],
    }
    result_file.write_text(json.dumps(row))


RUN_COLUMNS = [
    ("mode", "client"),
    ("tasks", "tasks"),
    ("completed", "completed"),
    ("max_running", "max running"),
    ("wall_s", "wall s"),
    ("wall_over_limit", "wall / limit"),
    ("occupancy", "running budget used (mean)"),
    ("cpu_ms_per_task", "client CPU ms / task (all processes)"),
    ("ray_daemons_cpu_ms_per_task", "Ray daemons CPU ms / task"),
    ("coordinator_calls_per_s", "coordinator calls / s"),
    ("store_busy", "S3 server (moto) busy, of one core"),
    ("driver_rss_mb", "driver peak RSS MB"),
    ("actor_rss_mb", "largest actor peak RSS MB"),
    ("ray_start_s", "Ray start s"),
    ("first_task_s", "first task created after s"),
    ("duplicates", "duplicate submits"),
]
LOAD_COLUMNS = [
    ("offered", "offered load (4 actors)"),
    ("calls", "calls"),
    ("calls_per_s", "calls / s"),
    ("p50_ms", "latency p50 ms"),
    ("p99_ms", "latency p99 ms"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--max-running", type=int, default=100)
    parser.add_argument("--actors", type=int, nargs="+", default=[2, 4])
    parser.add_argument(
        "--calls-seconds", type=float, default=10.0, help="per load level (0: no load runs)"
    )
    parser.add_argument("--no-save", action="store_true", help="print only")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child and args.child[0] == "load":
        _, rate, seconds, result_file = args.child
        coordinator_load(float(rate) if rate != "max" else None, float(seconds), Path(result_file))
        return
    if args.child:
        mode, count, max_running, result_file = args.child
        child(mode, int(count), int(max_running), Path(result_file))
        return
    runs = []
    for mode in ["one process", *map(str, args.actors)] if args.tasks > 0 else []:
        started = time.time()
        row = row_from_child(__file__, mode, str(args.tasks), str(args.max_running))
        runs.append(row)
        print(f"{row['mode']}: {time.time() - started:.0f} s: {row}", flush=True)
    loads = []
    for rate in ("167", "1000", "max") if args.calls_seconds > 0 else ():
        row = row_from_child(__file__, "load", rate, str(args.calls_seconds))
        loads.append(row)
        print(f"coordinator at {row['offered']}: {row}", flush=True)
    print(f"{platform.machine()}, Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}")
    if not args.no_save:
        print(write_results("cluster", runs, RUN_COLUMNS))
        print(write_results("cluster-coordinator", loads, LOAD_COLUMNS))


if __name__ == "__main__":
    main()
