"""The demo: three tracks it makes itself, extended through the whole pipeline.

With no WAVESPEED_API_KEY it runs on an embedded emulator: no key, no network, no cost.
With a key it runs on the service named by WAVESPEED_BASE_URL (default: WaveSpeed's
own) and costs what it prints.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from .client import OutpaintClient
from .models import OutpaintRequest

DEMO_TRACKS = (("groove.wav", 6.0), ("ballad.flac", 4.0), ("chiptune.mp3", 3.0))


@contextlib.asynccontextmanager
async def demo_client() -> AsyncIterator[OutpaintClient]:
    if os.environ.get("WAVESPEED_API_KEY"):
        async with OutpaintClient() as client:
            print(f"WAVESPEED_API_KEY is set: running on {client.base_url}")
            yield client
        return
    from .emulator import DEFAULT_API_KEY, Emulator, EmulatorConfig

    async with (
        Emulator(EmulatorConfig(time_scale=0.05)) as emulator,
        OutpaintClient(api_key=DEFAULT_API_KEY, base_url=emulator.base_url) as client,
    ):
        print(f"no WAVESPEED_API_KEY: running on an embedded emulator at {emulator.base_url}")
        yield client


def make_tracks(folder: Path) -> list[OutpaintRequest]:
    from .emulator._audio import encode, make_track

    requests = []
    for i, (name, seconds) in enumerate(DEMO_TRACKS):
        path = folder / name
        path.write_bytes(encode(make_track(seconds, seed=i), 22_050, path.suffix[1:]))
        requests.append(
            OutpaintRequest(
                path, tags="lofi, chill", extend_before_duration=2, extend_after_duration=4
            )
        )
    return requests


async def run_demo(out_dir: Path) -> int:
    failed = 0
    with tempfile.TemporaryDirectory(prefix="outpaint-demo-in-") as tmp:
        requests = make_tracks(Path(tmp))
        async with demo_client() as client:
            print(f"{len(requests)} tracks, 6 s added to each")
            async for result in client.outpaint_many(requests, out_dir):
                assert isinstance(result.request.audio, Path)
                name = result.request.audio.name
                if result.ok:
                    added = result.request.generated_seconds
                    print(f"  {name} -> {result.files[0]} ({added:g} s added)")
                else:
                    failed += 1
                    print(f"  {name}: {result.status} {result.error}")
    cost = sum(r.cost_usd for r in requests)
    print(f"files in {out_dir}/; on the real service this costs ${cost:.4f}")
    return 1 if failed else 0
