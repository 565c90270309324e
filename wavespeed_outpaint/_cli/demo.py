"""The demo: three tracks it makes itself, extended through the whole pipeline.

With no WAVESPEED_API_KEY it runs on an embedded emulator: no key, no network, no cost.
With a key it runs on the service named by WAVESPEED_BASE_URL (default: WaveSpeed's
own) and costs what it prints.
"""

from __future__ import annotations

import contextlib
import os
import struct
import tempfile
import time
import zlib
from collections.abc import AsyncIterator
from pathlib import Path

from .._audio.tags import Cover, TrackTags, write_tags
from .._review.page import write_review_page
from ..client import OutpaintClient
from ..models import OutpaintRequest

DEMO_TRACKS = (("groove.wav", 6.0), ("ballad.flac", 4.0), ("chiptune.mp3", 3.0))
# CD's rate: MP3 at MPEG-2's rates (below 32 kHz) is where libsndfile's encoder makes
# frames its own decoder complains of.
DEMO_RATE = 44_100
TITLES = {"groove.wav": "Groove", "ballad.flac": "Ballad", "chiptune.mp3": "Chiptune"}


@contextlib.asynccontextmanager
async def demo_client() -> AsyncIterator[OutpaintClient]:
    if os.environ.get("WAVESPEED_API_KEY"):
        async with OutpaintClient() as client:
            print(f"WAVESPEED_API_KEY is set: running on {client.base_url}")
            yield client
        return
    from ..emulator import DEFAULT_API_KEY, Emulator, EmulatorConfig

    async with (
        Emulator(EmulatorConfig(time_scale=0.05)) as emulator,
        OutpaintClient(api_key=DEFAULT_API_KEY, base_url=emulator.base_url) as client,
    ):
        print(f"no WAVESPEED_API_KEY: running on an embedded emulator at {emulator.base_url}")
        yield client


def cover_png(size: int = 32) -> bytes:
    """A small gradient picture, as PNG: the demo tracks' cover art."""
    ramp = bytes(range(0, 256, 256 // size))[:size]
    rows = b"".join(b"\x00" + b"".join(bytes((r, 96, 255 - r)) for r in ramp) for _ in ramp)

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def make_tracks(folder: Path) -> list[OutpaintRequest]:
    """Three tagged tracks (title, artist, album, track number, cover art), and their
    requests: each output in its input's format, its tags carried over."""
    from ..emulator._audio import encode, make_track

    requests = []
    for i, (name, seconds) in enumerate(DEMO_TRACKS):
        path = folder / name
        path.write_bytes(encode(make_track(seconds, DEMO_RATE, seed=i), DEMO_RATE, path.suffix[1:]))
        fields = {
            "title": [TITLES[name]],
            "artist": ["wavespeed-outpaint demo"],
            "album": ["Extended"],
            "tracknumber": [f"{i + 1}/{len(DEMO_TRACKS)}"],
        }
        write_tags(path, path.suffix[1:], TrackTags(fields, Cover("image/png", cover_png())))
        requests.append(
            OutpaintRequest(
                path,
                tags="lofi, chill",
                extend_before_duration=2,
                extend_after_duration=4,
                output_format="same",
                title_suffix=" (extended)",
            )
        )
    return requests


async def run_demo(out_dir: Path) -> int:
    failed = 0
    results = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="outpaint-demo-in-") as tmp:
        requests = make_tracks(Path(tmp))
        async with demo_client() as client:
            print(f"{len(requests)} tracks, 6 s added to each")
            async for result in client.outpaint_many(requests, out_dir):
                results.append(result)
                assert isinstance(result.request.audio, Path)
                name = result.request.audio.name
                if result.ok:
                    added = result.request.generated_seconds
                    print(f"  {name} -> {result.files[0]} ({added:g} s added)")
                else:
                    failed += 1
                    print(f"  {name}: {result.status} {result.error}")
    page = await write_review_page(
        out_dir / "review.html", results=results, wall_seconds=time.monotonic() - started
    )
    cost = sum(r.cost_usd for r in requests)
    print(f"files in {out_dir}/, review page {page}; on the real service this costs ${cost:.4f}")
    return 1 if failed else 0
