"""The command line through its real entry point, in a subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import soundfile as sf


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wavespeed_outpaint", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


def test_the_demo_writes_whole_extended_tracks(tmp_path: Path) -> None:
    done = run_cli("demo", "--out", "demo-out", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    outputs = sorted((tmp_path / "demo-out").glob("*.wav"))
    assert [p.name for p in outputs] == ["ballad.wav", "chiptune.wav", "groove.wav"]
    # Each track gained 2 s before and 4 s after.
    assert round(sf.info(tmp_path / "demo-out" / "groove.wav").duration, 3) == 12.0
    assert "would cost $0.0036" in done.stdout


def test_the_emulator_refuses_an_unknown_fault_kind(tmp_path: Path) -> None:
    done = run_cli("emulator", "--fault", "gremlins=0.5", cwd=tmp_path)
    assert done.returncode == 2
    assert "unknown fault kind 'gremlins'" in done.stderr
