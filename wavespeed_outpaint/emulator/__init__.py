"""A local server that speaks the WaveSpeed v3 protocol, makes real audio and injects faults.

    async with Emulator(EmulatorConfig(time_scale=0.001)) as emulator:
        async with OutpaintClient(api_key=DEFAULT_API_KEY, base_url=emulator.base_url) as client:
            ...
        emulator.stats()["duplicate_submissions"]

Needs the `audio` extra (numpy, soundfile; the `emulator` extra names it too). Imports
the words (`models`) and `_api` (webhook signatures), nothing of the client; imported by
`testing`, the pytest plugin and the command line (`emulator`, `demo`, `run --emulator`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from aiohttp import web

from .._audio.extras import AUDIO_EXTRA, installed
from ..errors import MissingExtraError

if not installed(AUDIO_EXTRA):
    raise MissingExtraError("the emulator (it makes real audio)", "audio")

from ._app import EmulatorApp  # (after the check, which says what is missing)
from ._config import (
    DEFAULT_API_KEY,
    DEFAULT_WEBHOOK_SECRET,
    FAULT_KINDS,
    TIERS,
    EmulatorConfig,
    Faults,
    Tier,
)
from ._service import Service

__all__ = [
    "DEFAULT_API_KEY",
    "DEFAULT_WEBHOOK_SECRET",
    "FAULT_KINDS",
    "TIERS",
    "Emulator",
    "EmulatorConfig",
    "Faults",
    "Tier",
    "serve",
]


class Emulator:
    """The emulator on a loopback port, started and stopped with `async with`."""

    def __init__(
        self, config: EmulatorConfig | None = None, *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.config = config if config is not None else EmulatorConfig()
        self._host = host
        self._port = port
        self._app = EmulatorApp(self.config)
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    @property
    def service(self) -> Service:
        return self._app.service

    async def start(self) -> None:
        self._runner = web.AppRunner(self._app.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.base_url = f"http://{host}:{port}" if ":" not in host else f"http://[{host}]:{port}"
        self._app.own_base_url = self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Emulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def stats(self) -> dict[str, Any]:
        """Counters: submits, tasks per fingerprint, status requests, detection lag, money."""
        return self.service.stats(time.time())


async def _serve_forever(config: EmulatorConfig, host: str, port: int) -> None:
    async with Emulator(config, host=host, port=port) as emulator:
        print(
            f"emulator listening on {emulator.base_url} (API key: accepted keys as configured)",
            flush=True,
        )
        await asyncio.Event().wait()


def serve(config: EmulatorConfig, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run the emulator until interrupted (the `wavespeed-outpaint emulator` command)."""
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_forever(config, host, port))
