"""Webhooks against polling, in one run, on the emulator in its own process.

    python benchmarks/webhooks.py                  # 1,000 tasks per mode
    python benchmarks/webhooks.py --tasks 20 --no-save

Four modes, each against a fresh emulator: the shared poller alone; webhooks with none
lost; webhooks with 10% and with 20% of deliveries lost (the poller's list looks find
those, as often as the share of deliveries seen lost makes worth it).
Writes benchmarks/results/webhooks.{md,json}.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from _harness import Meter, figures, make_source, write_results

from wavespeed_outpaint.emulator._process import emulator_process

GENERATED = 2.0
MODES = {
    "poller only": None,
    "webhooks": 0.0,
    "webhooks, 10% lost": 0.1,
    "webhooks, 20% lost": 0.2,
}


async def run_mode(base_url: str, count: int, lost: float | None, workdir: Path) -> dict[str, Any]:
    from wavespeed_outpaint import OutpaintClient, OutpaintRequest, WebhookReceiver

    source = make_source(workdir / "source.wav")
    requests = [
        OutpaintRequest(source, tags="lofi", extend_after_duration=GENERATED, seed=i)
        for i in range(count)
    ]
    completed = 0
    via: dict[str, int] = {}
    async with OutpaintClient("emulator-key", base_url, webhook_grace=2.0) as client:
        receiver = WebhookReceiver(client)
        async with receiver.serve() as url:
            if lost is not None:
                client.webhook_url = url
            with Meter() as meter:
                async for result in client.outpaint_many(requests, workdir / "out"):
                    completed += result.ok
                    key = result.delivered_by or "-"
                    via[key] = via.get(key, 0) + 1
    from _harness import emulator_stats

    row = figures(meter, emulator_stats(base_url), count, completed)
    row["delivered_by"] = ", ".join(f"{k} {v}" for k, v in sorted(via.items()))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args()
    rows = []
    for mode, lost in MODES.items():
        emulator_args = [
            "--time-scale",
            "1.0",
            "--base-seconds",
            "0.5",
            "--jitter",
            "0.2",
            "--seed",
            "1",
        ]
        if lost:
            emulator_args += ["--fault", f"webhook_lost={lost}"]
        started = time.time()
        with emulator_process(*emulator_args) as base_url, tempfile.TemporaryDirectory() as tmp:
            row = {"mode": mode, **asyncio.run(run_mode(base_url, args.tasks, lost, Path(tmp)))}
        rows.append(row)
        print(
            f"{mode}: {time.time() - started:.0f} s, {row['completed']}/{args.tasks} completed, "
            f"{row['status_requests_per_task']:.3f} status req/task, "
            f"lag {1000 * row['lag_mean_s']:.0f} ms; {row['delivered_by']}",
            flush=True,
        )
    print(
        f"\n{platform.machine()}, Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}"
    )
    if not args.no_save:
        columns = [
            ("mode", "mode"),
            ("tasks", "tasks"),
            ("completed", "completed"),
            ("status_requests_per_task", "status requests / task"),
            ("lag_mean_s", "lag mean s"),
            ("lag_p95_s", "lag p95 s"),
            ("wall_over_limit", "wall / limit"),
            ("delivered_by", "delivered by"),
        ]
        print(write_results("webhooks", rows, columns).read_text())


if __name__ == "__main__":
    main()
