"""The emulator for your own tests: a running service on loopback, from any test.

    from wavespeed_outpaint.testing import running_emulator

    with running_emulator() as service:          # a thread of its own: sync or async tests
        client = OutpaintClient(service.api_key, service.base_url)
        ...
        assert service.stats()["duplicate_submissions"] == 0

With pytest, the `outpaint_emulator` fixture does the same (`pytest_plugin`), and the
`outpaint_emulator_config` fixture, overridden in your conftest or test module, says how
the service behaves (its speed, its faults).

Needs the emulator's audio (numpy and soundfile).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .emulator import Emulator, EmulatorConfig

__all__ = ["RunningEmulator", "running_emulator"]

START_TIMEOUT = 30.0


class RunningEmulator:
    """The emulator, running in a thread of its own: where it listens, the key it takes,
    its configuration (change `config.faults` between steps of a test), its counters."""

    def __init__(self, emulator: Emulator, loop: asyncio.AbstractEventLoop) -> None:
        self._emulator = emulator
        self._loop = loop
        self.base_url = emulator.base_url
        self.config = emulator.config

    def __repr__(self) -> str:
        return f"RunningEmulator({self.base_url!r})"

    @property
    def api_key(self) -> str:
        """A key the emulator accepts."""
        return sorted(self.config.api_keys)[0]

    def stats(self) -> dict[str, Any]:
        """The emulator's counters (submits, tasks per input, status requests, money)."""

        async def read() -> dict[str, Any]:
            return self._emulator.stats()

        return asyncio.run_coroutine_threadsafe(read(), self._loop).result(START_TIMEOUT)


@contextlib.contextmanager
def running_emulator(config: EmulatorConfig | None = None) -> Iterator[RunningEmulator]:
    """The emulator on a free loopback port for the block, in a thread of its own (so
    that the test's event loop, if any, is free); stopped, and its thread joined, after."""
    from .emulator import Emulator, EmulatorConfig

    emulator = Emulator(config if config is not None else EmulatorConfig())
    loop = asyncio.new_event_loop()
    started = threading.Event()
    stop = asyncio.Event()
    failure: list[OSError] = []

    async def serve() -> None:
        try:
            await emulator.start()
        except OSError as exc:  # (a port that cannot be had): said in the caller's thread
            failure.append(exc)
            started.set()
            return
        started.set()
        try:
            await stop.wait()
        finally:
            await emulator.stop()

    thread = threading.Thread(
        target=loop.run_until_complete, args=(serve(),), name="outpaint-emulator", daemon=True
    )
    thread.start()
    try:
        if not started.wait(START_TIMEOUT):
            raise RuntimeError(f"the emulator did not start within {START_TIMEOUT:g} s")
        if failure:
            raise RuntimeError(f"the emulator did not start: {failure[0]}") from failure[0]
        yield RunningEmulator(emulator, loop)
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(START_TIMEOUT)
        if not thread.is_alive():
            loop.close()
