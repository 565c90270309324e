"""The offline demo: real tracks through the emulator and back, with no key or network."""

from __future__ import annotations

import tempfile
from pathlib import Path

import anyio

from .client import OutpaintClient
from .errors import TaskFailedError
from .models import OutpaintRequest, Prediction

DEMO_TRACKS = (("groove.wav", 6.0), ("ballad.flac", 4.0), ("chiptune.mp3", 3.0))


async def _until_final(client: OutpaintClient, prediction: Prediction) -> Prediction:
    while not prediction.is_final:
        await anyio.sleep(0.2)
        prediction = await client.get(prediction.id)
    return prediction


async def run_demo(out_dir: Path) -> int:
    from .emulator import DEFAULT_API_KEY, Emulator, EmulatorConfig
    from .emulator._audio import encode, make_track

    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="outpaint-demo-in-") as tmp:
        requests = []
        for i, (name, seconds) in enumerate(DEMO_TRACKS):
            path = Path(tmp) / name
            path.write_bytes(encode(make_track(seconds, seed=i), 22_050, path.suffix[1:]))
            requests.append(
                OutpaintRequest(
                    path,
                    tags="lofi, chill",
                    extend_before_duration=2,
                    extend_after_duration=4,
                    seed=i,
                )
            )
        async with (
            Emulator(EmulatorConfig(time_scale=0.05)) as emulator,
            OutpaintClient(api_key=DEFAULT_API_KEY, base_url=emulator.base_url) as client,
        ):
            print(f"emulator on {emulator.base_url}; {len(requests)} tracks")
            written: list[Path] = []

            async def one(request: OutpaintRequest) -> None:
                prediction = await _until_final(client, await client.submit(request))
                if not prediction.ok:
                    raise TaskFailedError(prediction)
                assert isinstance(request.audio, Path)
                dest = out_dir / (request.audio.stem + ".wav")
                written.append(await client.download(prediction.outputs[0], dest))
                print(
                    f"  {request.audio.name} -> {dest} ({request.generated_seconds:g} s generated)"
                )

            async with anyio.create_task_group() as tg:
                for request in requests:
                    tg.start_soon(one, request)
    cost = sum(r.cost_usd for r in requests)
    print(f"{len(written)} files in {out_dir}/; on the real service this would cost ${cost:.4f}")
    return 0
