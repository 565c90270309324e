"""Crash and resume: a batch process killed with SIGKILL, then run again to the end."""

from __future__ import annotations

import functools
import io
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import soundfile as sf
from conftest import CLEAN_ENV, RATE, MakeTrack, against
from support.processes import emulator_process_at, stats
from support.s3server import S3Server

HERE = Path(__file__).parent


@pytest.fixture
def emulator_process() -> Iterator[str]:
    with emulator_process_at(time_scale=1.0) as url:
        yield url


def journal_states(tmp: Path) -> dict[str, int]:
    import sqlite3

    db = sqlite3.connect(tmp / "journal.sqlite")
    try:
        return dict(db.execute("SELECT state, COUNT(*) FROM tasks GROUP BY state").fetchall())
    finally:
        db.close()


def run_batch(
    base_url: str, tmp: Path, *, kill_after: float | None = None, kill_at_first_result: bool = False
) -> list[str]:
    """Run the batch; SIGKILL it `kill_after` seconds in, or once it reports a result."""
    args = [
        sys.executable,
        str(HERE.parent / "support" / "crash_runner.py"),
        base_url,
        str(tmp / "journal.sqlite"),
        str(tmp / "out"),
        str(tmp / "in"),
    ]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    try:
        if kill_at_first_result:
            # Results resumed from the journal come first; kill at the first new one,
            # while the others are still downloading.
            lines: list[str] = []
            while not lines or lines[-1].split()[2] == "True":
                lines.append(proc.stdout.readline())
            os.kill(proc.pid, signal.SIGKILL)
            return lines + proc.communicate(timeout=10)[0].splitlines()
        try:
            out, _ = proc.communicate(timeout=kill_after if kill_after is not None else 120)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            return proc.communicate(timeout=10)[0].splitlines()
        assert proc.returncode == 0
        assert kill_after is None, "the batch finished before it could be killed"
        return out.splitlines()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.slow
def test_killed_batches_resume_with_every_task_done_once(
    emulator_process: str, make_audio: MakeTrack, tmp_path: Path
) -> None:
    count = 24
    for i in range(count):
        make_audio(f"in/track{i:02d}.wav", seconds=0.5)
    # Killed while uploading and submitting, then while polling, then while downloading.
    run_batch(emulator_process, tmp_path, kill_after=1.0)
    run_batch(emulator_process, tmp_path, kill_after=2.0)
    run_batch(emulator_process, tmp_path, kill_at_first_result=True)
    lines = run_batch(emulator_process, tmp_path)
    assert len(lines) == count
    assert all(line.split()[:2] == ["completed", "True"] for line in lines), lines
    assert journal_states(tmp_path) == {"downloaded": count}
    for i in range(count):
        output = tmp_path / "out" / f"track{i:02d}.wav"
        assert sf.info(output).frames == round(2.5 * RATE)
    assert not list((tmp_path / "out").rglob("*.part"))
    counters = stats(emulator_process)
    assert counters["duplicate_submissions"] == 0
    assert counters["tasks_created"] == count


def run_cli_killed(
    base_url: str,
    tmp: Path,
    *,
    kill_after: float | None = None,
    source: str = "in",
    out: str = "out",
    env: dict[str, str] | None = None,
) -> str | None:
    """`wavespeed-outpaint run SOURCE --out OUT` in tmp; SIGKILLed `kill_after` seconds in
    (then None). `env` adds variables."""
    args = [
        sys.executable,
        "-m",
        "wavespeed_outpaint",
        "run",
        source,
        "--out",
        out,
        "--tags",
        "lofi",
        "--after",
        "2",
        "--seed",
        "1",
        *against(base_url),
        "--rpm",
        "1200",
        "--settle-grace",
        "1",
        "--json",
    ]
    proc = subprocess.Popen(
        args,
        cwd=tmp,
        env={**CLEAN_ENV, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        out, _ = proc.communicate(timeout=kill_after if kill_after is not None else 120)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=10)
        return None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out
    return out


@pytest.mark.slow
def test_the_command_line_killed_again_and_again_resumes(
    emulator_process: str, make_audio: MakeTrack, tmp_path: Path
) -> None:
    count = 24
    for i in range(count):
        make_audio(f"in/track{i:02d}.wav", seconds=0.5)
    # Killed while uploading and submitting (paced at 20 a second), while polling, while
    # downloading: whatever it was doing, four times in a row.
    for kill_after in (0.9, 1.4, 2.0, 2.6):
        run_cli_killed(emulator_process, tmp_path, kill_after=kill_after)
    out = run_cli_killed(emulator_process, tmp_path)
    assert out is not None
    doc = json.loads(out)
    assert (doc["total"], doc["completed"]) == (count, count)
    for item in doc["items"]:
        assert sf.info(item["files"][0]).frames == round(2.5 * RATE)
    assert not list((tmp_path / "out").rglob("*.part"))
    counters = stats(emulator_process)
    assert counters["duplicate_submissions"] == 0
    assert counters["tasks_created"] == count


@pytest.mark.slow
def test_killed_again_and_again_between_two_buckets_it_resumes(
    emulator_process: str, make_audio: MakeTrack, tmp_path: Path, s3: S3Server
) -> None:
    # The same, with the library in a bucket and the outputs streamed into it.
    count = 24
    s3.make_bucket("crash")
    for i in range(count):
        s3.put(
            "crash", f"in/track{i:02d}.wav", make_audio(f"t{i:02d}.wav", seconds=0.5).read_bytes()
        )
    env = {**s3.env, "XDG_STATE_HOME": str(tmp_path / "state")}
    buckets = functools.partial(
        run_cli_killed, source="s3://crash/in/", out="s3://crash/out/", env=env
    )
    for kill_after in (0.9, 1.4, 2.0, 2.6):
        buckets(emulator_process, tmp_path, kill_after=kill_after)
    out = buckets(emulator_process, tmp_path)
    assert out is not None
    doc = json.loads(out)
    assert (doc["total"], doc["completed"]) == (count, count)
    for i in range(count):
        output = s3.get("crash", f"out/track{i:02d}.wav")
        assert sf.info(io.BytesIO(output)).frames == round(2.5 * RATE)
    counters = stats(emulator_process)
    assert counters["duplicate_submissions"] == 0
    assert counters["tasks_created"] == count
