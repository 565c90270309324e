"""This SDK against the official `wavespeed` SDK and a hand-written aiohttp loop.

    python benchmarks/compare.py                       # 100 and 1,000 for all, 10,000 for two
    python benchmarks/compare.py --sizes 20 --no-save  # the CI smoke size

Each (client, size) runs in a fresh child process against a fresh emulator process with
the same seed and time model, so every figure is that client's own: wall time and its
ratio to the emulator's last completion (1.0 cannot be beaten), status requests per task,
mean and p95 detection lag, client CPU ms per task, peak RSS, tasks completed, duplicate
submissions. A last run adds 10% faults of every kind, where completed counts matter.
Writes benchmarks/results/compare.{md,json,png}.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import attrs

sys.path.insert(0, str(Path(__file__).parent))

from _harness import (
    Meter,
    TimeModel,
    emulator_process,
    emulator_stats,
    emulator_tasks,
    figures,
    make_source,
    row_from_child,
    write_results,
)

MODEL_ID = "wavespeed-ai/ace-step/audio-outpaint"
KEY = "emulator-key"
GENERATED = 2.0
# About 2.5 s a task, ±20%: the service's order of magnitude, scaled down.
SERVICE = TimeModel(time_scale=1.0, base_seconds=0.5, jitter=0.2)
FINAL = {"completed", "failed", "cancelled", "timeout", "deleted"}


def body(seed: int, audio: str, generated: float) -> dict[str, Any]:
    return {"audio": audio, "tags": "lofi", "extend_after_duration": generated, "seed": seed}


def upload_once(base_url: str, source: Path) -> str:
    """The official SDK's upload, done once before the clock starts (as a user would)."""
    from wavespeed import Client  # type: ignore[import-untyped]

    return str(Client(api_key=KEY, base_url=base_url).upload(str(source)))


# -- the three clients ---------------------------------------------------------------------


def run_ours(
    base_url: str, count: int, concurrency: int, source: Path, out: Path, generated: float
) -> int:
    from wavespeed_outpaint import OutpaintClient, OutpaintRequest

    async def main() -> int:
        requests = (
            (OutpaintRequest(source, tags="lofi", extend_after_duration=generated, seed=i), f"t{i}")
            for i in range(count)
        )
        done = 0
        async with OutpaintClient(
            KEY, base_url, max_in_flight=concurrency, connection_limit=200
        ) as client:
            async for result in client.outpaint_many(requests, out):
                done += result.ok
        return done

    return asyncio.run(main())


def run_official(
    base_url: str, count: int, concurrency: int, source: Path, out: Path, generated: float
) -> int:
    import requests
    from wavespeed import Client

    audio = upload_once(base_url, source)
    client = Client(api_key=KEY, base_url=base_url)

    def one(seed: int) -> bool:
        try:
            result = client.run(
                MODEL_ID, body(seed, audio, generated), timeout=600, poll_interval=1.0
            )
            response = requests.get(result["outputs"][0], timeout=60)
            response.raise_for_status()
            (out / f"t{seed}.wav").write_bytes(response.content)
            return True
        except Exception:  # noqa: BLE001 - a failed task counts as not completed
            return False

    with ThreadPoolExecutor(concurrency) as pool:
        return sum(pool.map(one, range(count)))


def run_loop(
    base_url: str, count: int, concurrency: int, source: Path, out: Path, generated: float
) -> int:
    """What a user writes by hand: a coroutine per task, polling every second."""
    import aiohttp

    audio = upload_once(base_url, source)
    headers = {"Authorization": f"Bearer {KEY}"}

    async def main() -> int:
        gate = asyncio.Semaphore(concurrency)
        connector = aiohttp.TCPConnector(limit=200)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def one(seed: int) -> bool:
                async with gate:
                    try:
                        url = f"{base_url}/api/v3/{MODEL_ID}"
                        async with session.post(
                            url, json=body(seed, audio, generated), headers=headers
                        ) as r:
                            data = (await r.json())["data"]
                        while data["status"] not in FINAL:
                            await asyncio.sleep(1.0)
                            async with session.get(data["urls"]["get"], headers=headers) as r:
                                if r.status == 200:
                                    data = (await r.json())["data"]
                        if data["status"] != "completed":
                            return False
                        async with session.get(data["outputs"][0]) as r:
                            r.raise_for_status()
                            # A hand-written loop writes with plain blocking file calls.
                            with open(out / f"t{seed}.wav", "wb") as f:  # noqa: ASYNC230
                                async for chunk in r.content.iter_chunked(65536):
                                    f.write(chunk)
                        return True
                    except Exception:  # noqa: BLE001 - a failed task counts as not completed
                        return False

            return sum(await asyncio.gather(*(one(i) for i in range(count))))

    return asyncio.run(main())


CLIENTS = {"this SDK": run_ours, "official SDK": run_official, "hand-written loop": run_loop}


@attrs.frozen
class Run:
    """One client's batch against a fresh emulator: what it cost and what the emulator saw."""

    meter: Meter
    completed: int
    stats: dict[str, Any]  # the emulator's counters
    tasks: list[dict[str, Any]]  # the emulator's record of each task

    def figures(self, count: int) -> dict[str, Any]:
        return figures(self.meter, self.stats, count, self.completed)


@contextlib.contextmanager
def workspace(model: TimeModel) -> Iterator[tuple[str, Path, Path]]:
    """A fresh emulator process, a source track and an output folder: (base URL, source,
    out)."""
    with emulator_process(model) as base_url, tempfile.TemporaryDirectory() as tmp:
        source = make_source(Path(tmp) / "source.wav")
        out = Path(tmp) / "out"
        out.mkdir()
        yield base_url, source, out


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """The official SDK prints its retries and tracebacks; keep them off a run's output."""
    with (
        open(os.devnull, "w") as sink,
        contextlib.redirect_stdout(sink),
        contextlib.redirect_stderr(sink),
    ):
        yield


def run_client(
    client: str, model: TimeModel, count: int, concurrency: int, generated: float = GENERATED
) -> Run:
    with workspace(model) as (base_url, source, out):
        with quiet(), Meter() as meter:
            completed = CLIENTS[client](base_url, count, concurrency, source, out, generated)
        return Run(meter, completed, emulator_stats(base_url), emulator_tasks(base_url))


def child(client: str, count: int, faults: float, result_file: Path) -> None:
    run = run_client(client, attrs.evolve(SERVICE, faults=faults), count, min(count, 1000))
    row = {"client": client, "faults": faults, **run.figures(count)}
    result_file.write_text(json.dumps(row))


COLUMNS = [
    ("client", "client"),
    ("tasks", "tasks"),
    ("faults", "faults"),
    ("completed", "completed"),
    ("wall_s", "wall s"),
    ("wall_over_limit", "wall / limit"),
    ("status_requests_per_task", "status req / task"),
    ("lag_mean_s", "lag mean s"),
    ("lag_p95_s", "lag p95 s"),
    ("cpu_ms_per_task", "CPU ms / task"),
    ("peak_rss_mb", "peak RSS MB"),
    ("duplicates", "duplicates"),
]


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (wall, requests) = plt.subplots(1, 2, figsize=(11, 4.2))
    for client in CLIENTS:
        mine = sorted(
            (r for r in rows if r["client"] == client and not r["faults"]), key=lambda r: r["tasks"]
        )
        if not mine:
            continue
        sizes = [r["tasks"] for r in mine]
        wall.plot(sizes, [r["wall_s"] for r in mine], marker="o", label=client)
        requests.plot(
            sizes, [r["status_requests_per_task"] for r in mine], marker="o", label=client
        )
    for axis, title in ((wall, "wall time (s)"), (requests, "status requests per task")):
        axis.set_xscale("log")
        axis.set_xlabel("tasks")
        axis.set_title(title)
        axis.grid(alpha=0.3)
        axis.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000,10000")
    parser.add_argument("--fault-size", type=int, default=100, help="tasks in the 10%% fault run")
    parser.add_argument("--no-save", action="store_true", help="print only")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        client, count, faults, result_file = args.child
        child(client, int(count), float(faults), Path(result_file))
        return
    runs = []
    for size in (int(s) for s in args.sizes.split(",")):
        for client in CLIENTS:
            if size > 1000 and client == "official SDK":
                continue  # ten thousand threads polling once a second: not a fair ask of it
            runs.append((client, size, 0.0))
    if args.fault_size:
        runs += [(client, args.fault_size, 0.1) for client in CLIENTS]
    rows = []
    for client, size, faults in runs:
        started = time.time()
        row = row_from_child(__file__, client, str(size), str(faults))
        rows.append(row)
        print(
            f"{client}, {size} tasks, faults {faults}: {time.time() - started:.0f} s; "
            f"{row['completed']} completed, wall/limit {row['wall_over_limit']:.2f}, "
            f"{row['status_requests_per_task']:.2f} status req/task",
            flush=True,
        )
    print(
        f"\n{platform.machine()}, Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}"
    )
    if args.no_save:
        return
    md = write_results("compare", rows, COLUMNS)
    plot(rows, md.with_suffix(".png"))
    print(md.read_text())


if __name__ == "__main__":
    main()
