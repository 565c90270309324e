"""The offline demo: real tracks through the emulator and back, with no key or network."""

from __future__ import annotations

import tempfile
from pathlib import Path

from .client import OutpaintClient
from .models import OutpaintRequest

DEMO_TRACKS = (("groove.wav", 6.0), ("ballad.flac", 4.0), ("chiptune.mp3", 3.0))


async def run_demo(out_dir: Path) -> int:
    from .emulator import DEFAULT_API_KEY, Emulator, EmulatorConfig
    from .emulator._audio import encode, make_track

    with tempfile.TemporaryDirectory(prefix="outpaint-demo-in-") as tmp:
        requests = []
        for i, (name, seconds) in enumerate(DEMO_TRACKS):
            path = Path(tmp) / name
            path.write_bytes(encode(make_track(seconds, seed=i), 22_050, path.suffix[1:]))
            requests.append(
                OutpaintRequest(
                    path, tags="lofi, chill", extend_before_duration=2, extend_after_duration=4
                )
            )
        failed = 0
        async with (
            Emulator(EmulatorConfig(time_scale=0.05)) as emulator,
            OutpaintClient(api_key=DEFAULT_API_KEY, base_url=emulator.base_url) as client,
        ):
            print(f"emulator on {emulator.base_url}; {len(requests)} tracks")
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
    print(f"files in {out_dir}/; on the real service this would cost ${cost:.4f}")
    return 1 if failed else 0
