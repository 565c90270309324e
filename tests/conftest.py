"""Fixtures: the real emulator on a loopback port, a client pointed at it, audio files."""

from __future__ import annotations

import contextlib
import os
import struct
import subprocess
import sys
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from support.s3server import S3Server, s3_server
from typing_extensions import Unpack

from wavespeed_outpaint import OutpaintClient
from wavespeed_outpaint._engine.identity import FileFacts
from wavespeed_outpaint.emulator import DEFAULT_API_KEY, Emulator, EmulatorConfig
from wavespeed_outpaint.emulator._audio import encode, make_track
from wavespeed_outpaint.options import OptionKeywords

if TYPE_CHECKING:
    from aiohttp import web

RATE = 8_000


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def state_folder(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test's own state folder (learned task times, bucket runs' journals), never
    the user's, and never one test's learning in another's."""
    folder = tmp_path_factory.mktemp("state")
    monkeypatch.setenv("XDG_STATE_HOME", str(folder))
    return folder


def fast_config(**kw: object) -> EmulatorConfig:
    """Tasks that finish in milliseconds."""
    defaults: dict[str, object] = {"time_scale": 0.001, "base_seconds": 0.002, "jitter": 0.0}
    defaults.update(kw)
    return EmulatorConfig(**defaults)  # type: ignore[arg-type]


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    async with Emulator(fast_config()) as emu:
        yield emu


def fast_client(
    emu: Emulator, *, file_facts: FileFacts | None = None, **kw: Unpack[OptionKeywords]
) -> OutpaintClient:
    """A client whose retries wait milliseconds, not seconds."""
    options: OptionKeywords = {
        "retry_wait_initial": 0.005,
        "retry_wait_max": 0.02,
        "retry_timeout": 10.0,
        "read_timeout": 5.0,
        "min_check_interval": 0.05,
        "settle_grace": 0.3,
        "initial_work_per_second": 0.001,
        "webhook_blind_wait": 1.0,
    }
    options.update(kw)
    return OutpaintClient(
        api_key=DEFAULT_API_KEY, base_url=emu.base_url, file_facts=file_facts, **options
    )


@pytest.fixture
async def client(emulator: Emulator) -> AsyncIterator[OutpaintClient]:
    async with fast_client(emulator) as c:
        yield c


MakeTrack = Callable[..., Path]


@pytest.fixture
def make_audio(tmp_path: Path) -> MakeTrack:
    """Write a real track: make_audio("a.wav", seconds=2.0, fmt="wav")."""

    def make(
        name: str, seconds: float = 1.0, fmt: str | None = None, seed: int | None = None
    ) -> Path:
        """Different names get different music unless `seed` says otherwise."""
        if seed is None:
            seed = zlib.crc32(name.encode())
        path = tmp_path / name

        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(encode(make_track(seconds, RATE, seed=seed), RATE, fmt or path.suffix[1:]))
        return path

    return make


def flac_claiming(path: Path, seconds: float) -> Path:
    """Rewrite a FLAC's STREAMINFO so its header claims `seconds` of audio."""
    data = bytearray(path.read_bytes())
    # STREAMINFO starts at byte 8; bytes 10..17 of it pack rate(20) ch(3) bps(5) total(36).
    (packed,) = struct.unpack(">Q", bytes(data[18:26]))
    rate = packed >> 44
    packed = (packed & ~((1 << 36) - 1)) | int(seconds * rate)
    data[18:26] = struct.pack(">Q", packed)
    path.write_bytes(bytes(data))
    return path


# The command line runs with no WAVESPEED_* variables of the developer's own.
CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith("WAVESPEED_")}


def run_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`python -m wavespeed_outpaint ARGS` in `cwd`, to the end; `env` adds variables."""
    return subprocess.run(
        [sys.executable, "-m", "wavespeed_outpaint", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        env={**CLEAN_ENV, **(env or {})},
    )


def against(base_url: str, key: str = "emulator-key") -> list[str]:
    """The flags that point the command line at an emulator process."""
    return ["--base-url", base_url, "--api-key", key]


@pytest.fixture(scope="session")
def s3_process() -> Iterator[S3Server]:
    """One S3-compatible server (moto) for the session; tests use buckets of their own."""
    pytest.importorskip("obstore", reason="the s3 extra (obstore 0.12 needs Python 3.11+)")
    with s3_server() as server:
        yield server


@pytest.fixture
def s3(s3_process: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    """The S3 server, named by this process's environment as the store to use."""
    for name, value in s3_process.env.items():
        monkeypatch.setenv(name, value)
    return s3_process


Handler = Callable[["web.Request"], Awaitable["web.StreamResponse"]]


@contextlib.asynccontextmanager
async def serving(handler: Handler) -> AsyncIterator[str]:
    """A small independent HTTP server on loopback answering every GET with `handler`;
    yields its base URL (`http://127.0.0.1:<port>`)."""
    from aiohttp import web

    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()
