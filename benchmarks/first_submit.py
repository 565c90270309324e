"""Time to the first submit of `run` over a large local library, first run and resume.

    python benchmarks/first_submit.py                       # 100 WAVs of 40 MB (4 GB)
    python benchmarks/first_submit.py --files 20 --mb 5     # a small smoke run

A library of distinct WAVs is written to a temporary folder. The command line runs
against an emulator process: the first run is stopped once its first task is created;
for the resume, a whole run (whose tasks all fail at once, so no output is generated)
records what it read in the journal, a few files are added, and the run starts again.
Each time: seconds from the command's start to the plan shown, and to the first task
created at the emulator, with the page cache dropped before each run where the machine
allows it (it needs root). Prints a line per run; writes nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from wavespeed_outpaint.emulator._process import emulator_process

KEY = "emulator-key"
RATE = 8000


def write_library(folder: Path, files: int, megabytes: float, first: int = 0) -> None:
    """Distinct mono 16-bit WAVs: one buffer of noise, each file's first bytes its own."""
    folder.mkdir(parents=True, exist_ok=True)
    data = bytearray(os.urandom(int(megabytes * 1e6) // 2 * 2))
    header = b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVE"
    header += b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, RATE, 2 * RATE, 2, 16)
    header += b"data" + struct.pack("<I", len(data))
    for i in range(first, first + files):
        data[:8] = struct.pack("<Q", i)
        (folder / f"t{i:04d}.wav").write_bytes(header + data)


def drop_page_cache() -> bool:
    try:
        subprocess.run(["sync"], check=True)
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def tasks_created(base_url: str) -> int:
    with urllib.request.urlopen(base_url + "/_emulator/stats", timeout=10) as response:
        return int(json.loads(response.read())["tasks_created"])


def timed_run(base_url: str, library: Path, out: Path, *, to_the_end: bool) -> dict[str, float]:
    """Start `run`; seconds to the plan line and to one more task created than before."""
    before = tasks_created(base_url)
    cold = drop_page_cache()
    started = time.monotonic()
    command = [sys.executable, "-m", "wavespeed_outpaint", "run", str(library), "--out", str(out)]
    command += ["--tags", "x", "--after", "1", "--base-url", base_url, "--api-key", KEY, "--json"]
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    plan_shown: list[float] = []

    def read_stderr() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            if "estimated cost" in line and not plan_shown:
                plan_shown.append(time.monotonic() - started)

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    first = float("nan")
    try:
        while proc.poll() is None and time.monotonic() - started < 600:
            if tasks_created(base_url) > before:
                first = time.monotonic() - started
                break
            time.sleep(0.01)
        if to_the_end:
            proc.wait(timeout=1800)
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=30)
        reader.join(timeout=5)
    return {
        "plan_shown_s": plan_shown[0] if plan_shown else float("nan"),
        "first_submit_s": first,
        "cold_cache": float(cold),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100)
    parser.add_argument("--mb", type=float, default=40.0, help="megabytes a file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        library, out = Path(tmp) / "library", Path(tmp) / "out"
        write_library(library, args.files, args.mb)
        size = args.files * args.mb / 1000
        with emulator_process("--time-scale", "0.01") as base_url:
            row = timed_run(base_url, library, out / "first", to_the_end=False)
            print(f"first run, {args.files} files, {size:g} GB: {fmt(row)}", flush=True)
        # The resume: a whole run records every file's hash; its tasks fail at once.
        with emulator_process("--time-scale", "0.01", "--fault", "task_failed=1.0") as base_url:
            timed_run(base_url, library, out / "resume", to_the_end=True)
            write_library(library, 3, args.mb, first=args.files)
            row = timed_run(base_url, library, out / "resume", to_the_end=False)
            print(f"resume, {args.files} + 3 new files: {fmt(row)}", flush=True)


def fmt(row: dict[str, float]) -> str:
    cache = "cold" if row["cold_cache"] else "warm (could not drop it)"
    return (
        f"plan shown at {row['plan_shown_s']:.2f} s, first submit at "
        f"{row['first_submit_s']:.2f} s ({cache} page cache)"
    )


if __name__ == "__main__":
    main()
