"""CPU time and peak memory of a tree of processes, read from /proc (Linux)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces: split after its closing parenthesis.
    return text[text.rindex(")") + 2 :].split()


def descendants(root: int, leave_out: set[int]) -> set[int]:
    """`root`'s live descendants (not `root`), without the trees under `leave_out`."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat(int(entry))) is not None:
            children.setdefault(int(fields[1]), []).append(int(entry))
    found: set[int] = set()
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in leave_out:
                found.add(child)
                todo.append(child)
    return found


def cpu_seconds(pid: int) -> float | None:
    fields = _stat(pid)
    # utime and stime, fields 14 and 15 of the stat line (11 and 12 after the name).
    return None if fields is None else (int(fields[11]) + int(fields[12])) / TICKS


def peak_rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


class TreeMeter:
    """Samples this process's descendants (less `leave_out`) every `every` seconds: the
    last CPU time and peak RSS seen of each, so that a process that ends between two
    samples loses at most one interval of its CPU."""

    def __init__(self, leave_out: set[int], every: float = 0.25) -> None:
        self._leave_out = leave_out
        self._every = every
        self.cpu: dict[int, float] = {}
        self.cpu_at_start: dict[int, float] = {}
        self.rss: dict[int, float] = {}
        self.names: dict[int, str] = {}
        self.own_cpu = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> TreeMeter:
        self._sample()
        self.cpu_at_start = dict(self.cpu)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            self._sample()
        self.own_cpu = time.thread_time()  # the sampling's own cost, in this process

    def _sample(self) -> None:
        for pid in descendants(os.getpid(), self._leave_out):
            cpu, rss = cpu_seconds(pid), peak_rss_mb(pid)
            if cpu is not None:
                self.cpu[pid] = cpu
            if rss is not None:
                self.rss[pid] = max(rss, self.rss.get(pid, 0.0))
            # A Ray worker takes its actor's name once the actor is placed on it.
            if name := command(pid):
                self.names[pid] = name

    def cpu_used(self, pids: set[int] | None = None) -> float:
        """CPU seconds used during the block, by `pids` (default: all seen)."""
        chosen = self.cpu.keys() if pids is None else pids & self.cpu.keys()
        return sum(self.cpu[p] - self.cpu_at_start.get(p, 0.0) for p in chosen)

    def matching(self, text: str) -> set[int]:
        return {pid for pid, name in self.names.items() if text in name}
