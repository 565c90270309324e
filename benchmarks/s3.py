"""A library in object storage against the same library on disk.

    python benchmarks/s3.py                                # 1,000 tasks, then 50 MB outputs
    python benchmarks/s3.py --tasks 20 --big 2 --big-seconds 60 --no-save   # CI smoke size

Each run is a fresh child process with a fresh emulator process and, for the bucket runs,
a fresh S3-compatible server (moto, in its own process). Inputs are distinct tracks,
made and stored by a helper process before the measured one starts, so the measured
process's peak RSS is the client's own. "folder" runs read a local folder and write
to one; "bucket" runs read `s3://` objects (sent to the service as presigned URLs) and
write to a prefix of the same bucket. Figures: wall over the emulator's limit (its last
completion), client CPU ms per task, input bytes through the client per task (what the
emulator received by upload; presigned inputs are fetched by the service itself),
output bytes per task, peak RSS. Writes benchmarks/results/s3.{md,json}.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))

from _harness import (
    Meter,
    TimeModel,
    emulator_process,
    emulator_stats,
    row_from_child,
    write_results,
)
from support.s3server import S3Server, s3_server

SERVICE = TimeModel(time_scale=0.05, base_seconds=0.5, jitter=0.2)
BUCKET = "lib"
GENERATED = 2.0


def prepare(folder: Path, count: int, seconds: float, rate: int, endpoint: str | None) -> None:
    """Write `count` distinct tracks to `folder` (and, given an endpoint, to the bucket)."""
    from wavespeed_outpaint.emulator._audio import encode, make_track

    folder.mkdir(parents=True, exist_ok=True)
    server = S3Server(endpoint) if endpoint else None
    if server is not None:
        server.make_bucket(BUCKET)
    for i in range(count):
        data = encode(make_track(seconds, rate, seed=i), rate, "wav")
        (folder / f"t{i}.wav").write_bytes(data)
        if server is not None:
            server.put(BUCKET, f"music/t{i}.wav", data)


async def run_client(base_url: str, inputs: list[str], out: str) -> tuple[Meter, int]:
    from wavespeed_outpaint import OutpaintClient, OutpaintRequest

    requests = (
        (OutpaintRequest(audio, tags="lofi", extend_after_duration=GENERATED), f"t{i}")
        for i, audio in enumerate(inputs)
    )
    completed = 0
    async with OutpaintClient("emulator-key", base_url, max_in_flight=1000) as client:
        with Meter() as meter:
            async for result in client.outpaint_many(requests, out):
                completed += result.ok
    return meter, completed


def child(where: str, count: int, seconds: float, rate: int, result_file: Path) -> None:
    store = s3_server() if where == "bucket" else contextlib.nullcontext(None)
    with tempfile.TemporaryDirectory() as tmp, store as server:
        endpoint = server.endpoint if server else None
        helper = [sys.executable, __file__, "--prepare", tmp, str(count), str(seconds), str(rate)]
        subprocess.run([*helper, endpoint or ""], check=True, timeout=1800)
        if server is not None:
            os.environ.update(server.env)
            inputs = [f"s3://{BUCKET}/music/t{i}.wav" for i in range(count)]
            out = f"s3://{BUCKET}/extended/"
        else:
            inputs = [str(Path(tmp) / "in" / f"t{i}.wav") for i in range(count)]
            out = str(Path(tmp) / "out")
        with emulator_process(SERVICE) as base_url:
            meter, completed = asyncio.run(run_client(base_url, inputs, out))
            stats = emulator_stats(base_url)
    row = {
        "where": where,
        "tasks": count,
        "input_seconds": seconds,
        "completed": completed,
        "wall_s": meter.wall,
        "wall_over_limit": meter.wall / (stats["last_completion"] - meter.start),
        "cpu_ms_per_task": 1000 * meter.cpu / count,
        "input_bytes_per_task": stats["upload_bytes"] / count,
        "fetched_bytes_per_task": stats["fetched_bytes"] / count,
        "output_bytes_per_task": stats["output_bytes"] / count,
        "peak_rss_mb": meter.peak_rss_mb,
        "duplicates": stats["duplicate_submissions"],
    }
    result_file.write_text(json.dumps(row))


COLUMNS = [
    ("where", "inputs and outputs"),
    ("tasks", "tasks"),
    ("input_seconds", "input s"),
    ("completed", "completed"),
    ("wall_s", "wall s"),
    ("wall_over_limit", "wall / limit"),
    ("cpu_ms_per_task", "client CPU ms / task"),
    ("input_bytes_per_task", "input bytes through the client / task"),
    ("fetched_bytes_per_task", "input bytes fetched by the service / task"),
    ("output_bytes_per_task", "output bytes / task"),
    ("peak_rss_mb", "peak RSS MB"),
    ("duplicates", "duplicate submits"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000, help="small tasks each way")
    parser.add_argument("--big", type=int, default=16, help="tasks with ~50 MB outputs")
    parser.add_argument("--big-seconds", type=float, default=520.0, help="their input's length")
    parser.add_argument("--no-save", action="store_true", help="print only")
    parser.add_argument("--prepare", nargs=5, help=argparse.SUPPRESS)
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.prepare:
        folder, count, seconds, rate, endpoint = args.prepare
        prepare(Path(folder) / "in", int(count), float(seconds), int(rate), endpoint or None)
        return
    if args.child:
        where, count, seconds, rate, result_file = args.child
        child(where, int(count), float(seconds), int(rate), Path(result_file))
        return
    rows = []
    # Small tracks at 8 kHz (the client's own costs), then long ones at 48 kHz: each
    # output ~50 MB, where streaming (or not) shows in the peak RSS.
    runs = [(args.tasks, 0.5, 8000), (args.big, args.big_seconds, 48000)]
    for count, seconds, rate in runs:
        if count <= 0:
            continue
        for where in ("folder", "bucket"):
            started = time.time()
            row = row_from_child(__file__, where, str(count), str(seconds), str(rate))
            rows.append(row)
            print(
                f"{where}, {count} x {seconds:g} s: {time.time() - started:.0f} s: {row}",
                flush=True,
            )
    print(f"{platform.machine()}, Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}")
    if not args.no_save:
        print(write_results("s3", rows, COLUMNS))


if __name__ == "__main__":
    main()
