"""The batch on Ray Data: a local Ray instance (2 CPUs, loopback only, no dashboard)
started by these tests, the emulator and an S3-compatible server as their own
processes, every worker a real Ray actor."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import soundfile as sf
from conftest import RATE
from support.processes import emulator_process_at, stats
from support.s3server import S3Server

from wavespeed_outpaint.emulator._audio import encode, make_track
from wavespeed_outpaint.emulator._process import emulator_process as spawn_emulator

ray = pytest.importorskip("ray", reason="the ray extra is not installed")

pytestmark = pytest.mark.slow

# Retries that wait milliseconds, polls that start soon, and a short read time-out: a
# submit cut off by a killed worker is settled (or taken over) seconds later, not 35 s.
FAST = {
    "read_timeout": 3.0,
    "retry_wait_initial": 0.01,
    "retry_wait_max": 0.1,
    "min_check_interval": 0.05,
    "initial_work_per_second": 0.5,
}


@pytest.fixture(scope="module")
def local_ray(s3_process: S3Server) -> Iterator[Any]:
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        runtime_env={"env_vars": {**s3_process.env, "RAY_DATA_DISABLE_PROGRESS_BARS": "1"}},
        logging_level="ERROR",
        log_to_driver=False,
    )
    try:
        yield ray
    finally:
        ray.shutdown()


def library(s3: S3Server, count: int) -> tuple[str, list[dict[str, str]]]:
    bucket = f"lib-{uuid.uuid4().hex[:12]}"
    s3.make_bucket(bucket)
    rows = []
    for i in range(count):
        s3.put(bucket, f"music/t{i}.wav", encode(make_track(0.2, RATE, seed=i), RATE, "wav"))
        rows.append({"audio": f"s3://{bucket}/music/t{i}.wav"})
    return bucket, rows


def extend(
    rows: list[dict[str, str]],
    bucket: str,
    url: str,
    account: str = "default",
    starts_per_minute: float | None = None,
) -> list[dict[str, Any]]:
    from wavespeed_outpaint.ray import outpaint_dataset

    ds = ray.data.from_items(rows)
    done = outpaint_dataset(
        ds,
        out=f"s3://{bucket}/extended/",
        account=account,
        starts_per_minute=starts_per_minute,
        tags="lofi",
        extend_after_duration=1,
        concurrency=2,
        batch_size=20,
        base_url=url,
        api_key="emulator-key",
        options=FAST,
    )
    return list(done.take_all())


def test_a_library_is_extended_on_ray_once_and_a_second_run_sends_nothing(
    local_ray: Any, s3_process: S3Server
) -> None:
    bucket, rows = library(s3_process, 200)
    with emulator_process_at(time_scale=0.05) as url:
        first = extend(rows, bucket, url)
        assert len(first) == 200
        assert [r["error"] for r in first if r["status"] != "completed"] == []
        after_first = stats(url)
        assert after_first["tasks_created"] == 200
        assert after_first["duplicate_submissions"] == 0
        again = extend(rows, bucket, url)
        assert stats(url)["tasks_created"] == 200  # the second run sent nothing
    assert all(r["status"] == "completed" for r in again)
    outputs = [k for k in s3_process.keys(bucket) if k.startswith("extended/music/")]
    assert len(outputs) == 200
    data = s3_process.get(bucket, "extended/music/t7.wav")
    import io

    assert sf.info(io.BytesIO(data)).frames == round(1.2 * RATE)


def test_an_actor_killed_mid_batch_charges_nothing_twice(
    local_ray: Any, s3_process: S3Server
) -> None:
    from wavespeed_outpaint.ray import COORDINATOR_NAMESPACE

    bucket, rows = library(s3_process, 120)
    account = bucket  # a coordinator of its own: its leases are this test's workers
    killed: list[int] = []
    with emulator_process_at(time_scale=0.5) as url:

        def kill_one_worker() -> None:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and stats(url)["submit_requests"] < 20:
                time.sleep(0.1)
            # The workers' pids, from the leases the account's coordinator holds.
            coordinator = ray.get_actor(f"account-{account}", namespace=COORDINATOR_NAMESPACE)
            leases = ray.get(coordinator.stats.remote())["leases"]
            pid = int(next(iter(leases)).split("-")[0])
            os.kill(pid, signal.SIGKILL)  # as a lost node would
            killed.append(pid)

        killer = threading.Thread(target=kill_one_worker)
        killer.start()
        done = extend(rows, bucket, url, account)
        killer.join(timeout=60)
        final = stats(url)
    assert killed, "no worker was killed"
    assert final["duplicate_submissions"] == 0
    assert final["tasks_created"] <= 120
    by_audio = {r["audio"]: r for r in done}
    assert len(by_audio) == 120
    outputs = [k for k in s3_process.keys(bucket) if k.startswith("extended/music/")]
    completed = [r for r in by_audio.values() if r["status"] == "completed"]
    assert len(outputs) == len(completed)
    # A worker's death loses nothing silently: every task has its row, completed (by
    # it or by its successor) or, where the dead worker's submit cannot be told apart
    # from its neighbours' in the list, unknown: reported, never sent twice.
    unknown = [r for r in by_audio.values() if r["status"] != "completed"]
    assert {r["status"] for r in unknown} <= {"unknown"}
    assert len(unknown) <= 40  # at most the dead worker's two batches of 20
    assert all("not sent again" in (r["error"] or "") for r in unknown)


def test_workers_in_other_processes_share_one_start_schedule(local_ray: Any) -> None:
    from wavespeed_outpaint.ray import coordinator

    account = coordinator(f"schedule-{uuid.uuid4().hex[:8]}", 600, 100)  # one per 0.1 s

    @ray.remote(num_cpus=0.25)  # type: ignore[untyped-decorator]
    def starts(account: Any, count: int) -> list[float]:
        import asyncio

        async def ask() -> list[float]:
            granted = []
            for _ in range(count):
                await account.slot.remote()
                granted.append(time.time())
            return granted

        return asyncio.run(ask())

    granted = sorted(
        t for times in ray.get([starts.remote(account, 10) for _ in range(2)]) for t in times
    )
    # Two processes, twenty starts, one schedule: 19 gaps of 0.1 s at least, in all.
    assert len(granted) == 20
    assert granted[-1] - granted[0] >= 1.8


def test_two_workers_keep_to_the_accounts_start_limit(local_ray: Any, s3_process: S3Server) -> None:
    # 150 tasks against a limit of 120 starts a minute: the emulator refuses a start
    # beyond it with a 429. Two workers that each kept the limit on their own would send
    # twice as fast and meet a refusal for every start of the run's second half minute.
    bucket, rows = library(s3_process, 150)
    with spawn_emulator("--time-scale", "0.05", "--base-seconds", "0.05", "--rpm", "120") as url:
        started = time.monotonic()
        done = extend(rows, bucket, url, account=bucket, starts_per_minute=120)
        wall = time.monotonic() - started
        final = stats(url)
    assert [r["error"] for r in done if r["status"] != "completed"] == []
    assert final["tasks_created"] == 150
    assert final["duplicate_submissions"] == 0
    assert final["start_limit_refusals"] <= 3
    assert wall >= 149 * 60 / 120 * 0.95  # one schedule: a start every half second


def ray_run(bucket: str, url: str, *flags: str) -> list[str]:
    """`run --ray` over the library's tracks, against the emulator at `url`."""
    return [
        sys.executable, "-m", "wavespeed_outpaint", "run", f"s3://{bucket}/music/",
        "--out", f"s3://{bucket}/extended/", "--tags", "lofi", "--after", "1",
        "--ray", "--actors", "2", "--json", "--base-url", url, "--api-key", "emulator-key",
        *flags,
    ]  # fmt: skip


def test_the_command_line_runs_a_library_on_a_ray_it_starts(
    s3_process: S3Server, tmp_path: Path
) -> None:
    # `run --ray` alone starts a Ray on this machine for the run (its own, beside the
    # one of these tests) and stops it; run twice, the second run sends nothing.
    bucket, _ = library(s3_process, 12)
    with spawn_emulator("--time-scale", "0.05", "--base-seconds", "0.05") as url:
        command = ray_run(bucket, url)
        env = {**os.environ, **s3_process.env, "XDG_STATE_HOME": str(tmp_path)}
        runs = [
            subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
            for _ in range(2)
        ]
        final = stats(url)
    first, second = (json.loads(run.stdout) for run in runs)
    assert {i["error"] for doc in (first, second) for i in doc["items"]} == {None}
    assert [run.returncode for run in runs] == [0, 0]
    assert (first["completed"], first["skipped"]) == (12, 0)
    assert (second["completed"], second["skipped"]) == (12, 12)
    assert final["tasks_created"] == 12  # the second run sent nothing
    outputs = [k for k in s3_process.keys(bucket) if k.startswith("extended/")]
    assert len([k for k in outputs if k.endswith(".wav")]) == 12
    assert "emulator-key" not in runs[0].stderr + runs[0].stdout


def test_a_ray_run_stopped_with_ctrl_c_resumes_without_sending_twice(
    s3_process: S3Server, tmp_path: Path
) -> None:
    # Ctrl-C stops the driver, and with it the Ray it started (its actors killed with
    # tasks in flight, as a lost node's); the same command again finishes the batch.
    bucket, _ = library(s3_process, 40)
    with spawn_emulator("--time-scale", "0.5", "--base-seconds", "0.05") as url:
        command = ray_run(bucket, url, "--max-in-flight", "8")  # most still unsent at the stop
        env = {**os.environ, **s3_process.env, "XDG_STATE_HOME": str(tmp_path)}
        first = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and stats(url)["submit_requests"] < 10:
                time.sleep(0.1)
            first.send_signal(signal.SIGINT)
            _, err = first.communicate(timeout=120)
        finally:
            if first.poll() is None:
                first.kill()
                first.wait()
        sent_first = stats(url)["tasks_created"]
        again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        final = stats(url)
    assert first.returncode == 130, err.decode()[-2000:]
    assert "run the same command again" in err.decode()
    doc = json.loads(again.stdout)
    assert final["duplicate_submissions"] == 0
    assert final["tasks_created"] <= 40
    assert doc["completed"] + doc["unknown"] == 40
    assert sent_first >= 10  # the second run found those and collected them
    outputs = [k for k in s3_process.keys(bucket) if k.endswith(".wav") and "extended/" in k]
    assert len(outputs) == doc["completed"]
