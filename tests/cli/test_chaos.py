"""Chaos: a few hundred tasks through the command line, every fault kind at 25%.

Checks the promise: every task that can complete does, with a whole file; tasks that
failed on the server come back with the server's error; lost submit answers are settled
or reported as unknown, never sent again; no fingerprint is created twice; no `.part`
file is left; the journal agrees with the files on disk.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import soundfile as sf
from conftest import RATE, MakeTrack

from wavespeed_outpaint.emulator import FAULT_KINDS
from wavespeed_outpaint.emulator._process import emulator_process

TASKS = 160
CHAOS_KINDS = [k for k in FAULT_KINDS if not k.startswith(("webhook_", "lie_"))]


def emulator_json(base_url: str, path: str) -> object:
    with urllib.request.urlopen(base_url + path, timeout=30) as response:
        return json.loads(response.read())


@pytest.mark.chaos
def test_chaos_through_the_command_line(make_audio: MakeTrack, tmp_path: Path) -> None:
    sources = [make_audio(f"src/{i}.wav", seconds=0.5) for i in range(4)]
    manifest = tmp_path / "jobs.jsonl"
    manifest.write_text(
        "".join(
            json.dumps(
                {
                    "audio": f"src/{i % 4}.wav",
                    "tags": "lofi",
                    "extend_after_duration": 1,
                    "seed": i,
                    "output": f"t{i:03d}",
                }
            )
            + "\n"
            for i in range(TASKS)
        )
    )
    faults = [arg for kind in CHAOS_KINDS for arg in ("--fault", f"{kind}=0.25")]
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAVESPEED_")}
    with emulator_process(
        "--time-scale",
        "0.05",
        "--seed",
        "11",
        "--retry-after",
        "0.1",
        "--slow-seconds",
        "0.2",
        *faults,
    ) as url:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "wavespeed_outpaint",
                "run",
                "--manifest",
                str(manifest),
                "--out",
                "out",
                "--base-url",
                url,
                "--api-key",
                "emulator-key",
                "--json",
                "--settle-grace",
                "2",
            ],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=tmp_path,
            env=env,
        )
        stats = emulator_json(url, "/_emulator/stats")
        listed = emulator_json(url, "/_emulator/tasks")
        assert isinstance(listed, list)
        tasks = {t["id"]: t for t in listed}
    assert done.returncode in (0, 1), done.stderr
    doc = json.loads(done.stdout)
    assert doc["total"] == TASKS
    assert len(doc["items"]) == TASKS
    assert stats["duplicate_submissions"] == 0  # type: ignore[index]
    frames = {str(p): sf.info(p).frames for p in sources}
    for item in doc["items"]:
        task = tasks.get(item["prediction_id"]) if item["prediction_id"] else None
        if item["status"] == "unknown":
            assert item["prediction_id"] is None
            continue
        assert task is not None, item
        can_complete = task["final_status"] == "completed" and not task["expired_output"]
        if can_complete:
            assert item["status"] == "completed", item
            (file,) = item["files"]
            source = tmp_path / item["input"]
            assert sf.info(file).frames == frames[str(source)] + RATE
        else:
            assert item["status"] != "completed"
            if task["final_status"] in ("failed", "cancelled", "timeout"):
                assert item["error"] == task["error"]  # the server's own words
    assert doc["completed"] > 0
    # Settling fails only where lost answers overlap: a sanity bound, far below the loss rate.
    assert doc["unknown"] < TASKS // 5
    out = tmp_path / "out"
    assert not list(out.rglob("*.part"))
    rows = (
        sqlite3.connect(out / ".outpaint-journal.sqlite")
        .execute("SELECT state, files FROM tasks")
        .fetchall()
    )
    journal_files = {f for state, files in rows if state == "downloaded" for f in json.loads(files)}
    on_disk = {str(p) for p in out.rglob("*.wav")}
    assert journal_files == on_disk
