"""The emulator in a process of its own, for benchmarks and crash tests."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def emulator_process(*args: str) -> Iterator[str]:
    """Run `wavespeed-outpaint emulator ARGS` on a free loopback port; yield its base URL.

    The process is stopped on the way out, whatever happened inside.
    """
    proc = subprocess.Popen(
        [sys.executable, "-m", "wavespeed_outpaint", "emulator", "--port", "0", *args],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if "listening on" not in line:
            raise RuntimeError(f"the emulator did not start: {line!r}")
        yield line.split()[3]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
