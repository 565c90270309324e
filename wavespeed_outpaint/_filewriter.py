"""Small finished downloads, written and renamed into place on one thread of their own.

A trip to a worker thread per file (anyio.to_thread, run_in_executor) costs more CPU
than writing a 100 KB file, and thousands of outputs make that the client's largest
cost after HTTP. One long-lived writer thread takes every file queued since it last
looked and hands the results back to the event loop in one wake-up per batch. The
loop itself never touches the disk, so a slow disk delays files, not the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import threading
from collections import defaultdict

_Job = tuple[str, bytes, str, asyncio.AbstractEventLoop, "asyncio.Future[None]"]

_Outcome = tuple["asyncio.Future[None]", Exception | None]

_jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
_started = threading.Lock()
_thread: threading.Thread | None = None


async def write_whole(part: str, data: bytes, dest: str) -> None:
    """Write `data` to `part`, then rename it to `dest`: `dest` is whole or absent."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    _ensure_thread()
    _jobs.put((part, data, dest, loop, done))
    await done


def _ensure_thread() -> None:
    global _thread
    if _thread is not None:
        return
    with _started:
        if _thread is None:
            # A daemon: idle it holds nothing, and every write is awaited before a
            # client closes, so none is cut off at exit.
            _thread = threading.Thread(target=_run, name="wavespeed-outpaint-writer", daemon=True)
            _thread.start()


def _run() -> None:
    while True:
        batch = [_jobs.get()]
        while len(batch) < 256:
            try:
                batch.append(_jobs.get_nowait())
            except queue.Empty:
                break
        outcomes: defaultdict[asyncio.AbstractEventLoop, list[_Outcome]] = defaultdict(list)
        for part, data, dest, loop, done in batch:
            if not done.cancelled():  # a download given up meanwhile gets no file
                outcomes[loop].append((done, _write(part, data, dest)))
        for loop, results in outcomes.items():
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                loop.call_soon_threadsafe(_settle, results)


def _write(part: str, data: bytes, dest: str) -> Exception | None:
    try:
        try:
            f = open(part, "wb")  # noqa: SIM115 - closed below
        except FileNotFoundError:
            # Its folder was made when the download began: removed since, make it again.
            os.makedirs(os.path.dirname(part), exist_ok=True)
            f = open(part, "wb")  # noqa: SIM115
        with f:
            f.write(data)
        os.replace(part, dest)
    except Exception as exc:  # noqa: BLE001 - handed to the awaiting download; the thread lives on
        return exc
    return None


def _settle(results: list[_Outcome]) -> None:
    for done, error in results:
        if done.cancelled():
            continue  # the download was given up; it removes its own `.part`
        if error is None:
            done.set_result(None)
        else:
            done.set_exception(error)
