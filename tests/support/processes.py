"""The emulator as a process of its own, for the tests that run the command line (or a
killed batch) against it, and its counters read over HTTP."""

from __future__ import annotations

import json
import urllib.request
from contextlib import AbstractContextManager

from wavespeed_outpaint.emulator._process import emulator_process as spawn_emulator


def emulator_process_at(
    *, time_scale: float, balance: float = 1000.0
) -> AbstractContextManager[str]:
    """The emulator as its own process (tasks of `time_scale` s per generated second)."""
    return spawn_emulator(
        "--time-scale",
        str(time_scale),
        "--base-seconds",
        "0.05",
        "--jitter",
        "0.3",
        "--balance",
        str(balance),
    )


def stats(base_url: str) -> dict[str, int]:
    with urllib.request.urlopen(base_url + "/_emulator/stats", timeout=5) as response:
        return json.loads(response.read())  # type: ignore[no-any-return]
