"""The floor: the least CPU any aiohttp client can spend on the same work, on this machine.

It sends every submit, waits until the list endpoint counts them all completed (a
one-item page, four times a second), reads each finished task once from the list, then
fetches every output and writes it to a file. No journal, retries, checks, pacing,
`.part` files or per-task state: not a client anyone should ship, but what a batch of
this size costs in HTTP and file writes alone. The engine benchmark reports its own CPU
next to this figure, since the absolute numbers swing with the machine.
"""

from __future__ import annotations

import asyncio
import os
import resource
from pathlib import Path
from typing import Any

import aiohttp

from wavespeed_outpaint.models import MODEL_ID

HEADERS = {"Authorization": "Bearer emulator-key"}


async def bare_batch(base_url: str, count: int, source: Path, out: Path, generated: float) -> int:
    """Run `count` tasks the bare way; returns how many outputs were written."""
    out.mkdir(parents=True, exist_ok=True)
    connector = aiohttp.TCPConnector(limit=200)
    async with aiohttp.ClientSession(connector=connector, headers=HEADERS) as session:
        form = aiohttp.FormData()
        form.add_field("file", source.read_bytes(), filename=source.name)
        async with session.post(f"{base_url}/api/v3/media/upload/binary", data=form) as r:
            audio = (await r.json())["data"]["download_url"]

        gate = asyncio.Semaphore(200)

        async def submit(seed: int) -> None:
            body = {"audio": audio, "tags": "lofi", "extend_after_duration": generated}
            async with (
                gate,
                session.post(f"{base_url}/api/v3/{MODEL_ID}", json={**body, "seed": seed}) as r,
            ):
                await r.read()

        await asyncio.gather(*(submit(i) for i in range(count)))

        async def page(number: int, size: int) -> dict[str, Any]:
            query = {"page": number, "page_size": size, "model": MODEL_ID, "status": "completed"}
            async with session.post(f"{base_url}/api/v3/predictions", json=query) as r:
                return (await r.json())["data"]  # type: ignore[no-any-return]

        while (await page(1, 1))["total"] < count:  # noqa: ASYNC110 - polling is the point
            await asyncio.sleep(0.25)
        pages = await asyncio.gather(*(page(n + 1, 100) for n in range((count + 99) // 100)))
        outputs = [item["outputs"][0] for data in pages for item in data["items"]]

        async def fetch(i: int, url: str) -> None:
            async with gate, session.get(url) as r:
                data = await r.read()
            # A bare script writes with plain blocking calls, on the event loop.
            with open(out / f"t{i}.wav", "wb") as f:  # noqa: ASYNC230
                f.write(data)

        await asyncio.gather(*(fetch(i, url) for i, url in enumerate(outputs)))
        return len(outputs)


def file_write_cpu(folder: Path, size: int, count: int = 1000) -> float:
    """CPU seconds (user and kernel) to write one file of `size` bytes in `folder` the
    way the client does (a `.part` file renamed into place), over `count` new files."""
    folder.mkdir(parents=True, exist_ok=True)
    data = os.urandom(size)
    before = resource.getrusage(resource.RUSAGE_SELF)
    for i in range(count):
        part = folder / f"w{i}.wav.part"
        part.write_bytes(data)
        part.replace(folder / f"w{i}.wav")
    after = resource.getrusage(resource.RUSAGE_SELF)
    used = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return used / count
