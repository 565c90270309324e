"""The floor: the least CPU any aiohttp client can spend on the same work, on this machine.

It sends every submit, waits until the list endpoint counts them all completed (a
one-item page, four times a second), reads each finished task once from the list, then
fetches every output and writes it to a file. No journal, retries, checks, pacing,
`.part` files or per-task state: not a client anyone should ship, but what a batch of
this size costs in HTTP and file writes alone. The engine benchmark reports its own CPU
next to this figure, since the absolute numbers swing with the machine.

`safe=True` adds only what a client needs to charge nothing twice and leave every
output whole (the project's standards, not its design): a row per task in a SQLite
journal, committed before the task's submit leaves (one commit for the submits of a
loop iteration) and updated with its id and its file; outputs written to `.part`,
marked with their task in an extended attribute, and renamed into place; a time limit
on every read from the socket. What the client spends beyond this is its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import sqlite3
from pathlib import Path
from typing import Any

import aiohttp

from wavespeed_outpaint.models import MODEL_ID

HEADERS = {"Authorization": "Bearer emulator-key"}


class _Ledger:
    """The least journal: rows written at once in an open transaction; `durable()`
    commits at the end of this loop iteration, once for every task that asks in it."""

    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE tasks (seed INTEGER PRIMARY KEY, request TEXT, state TEXT, id TEXT)"
        )
        self._db.execute("BEGIN")
        self._committed: asyncio.Future[None] | None = None

    def write(self, sql: str, *values: object) -> None:
        self._db.execute(sql, values)

    async def durable(self) -> None:
        if self._committed is None:
            self._committed = asyncio.get_running_loop().create_future()
            asyncio.get_running_loop().call_soon(self._commit)
        await asyncio.shield(self._committed)

    def _commit(self) -> None:
        self._db.execute("COMMIT")
        self._db.execute("BEGIN")
        committed, self._committed = self._committed, None
        assert committed is not None
        committed.set_result(None)

    def close(self) -> None:
        self._db.execute("COMMIT")
        self._db.close()


async def bare_batch(
    base_url: str, count: int, source: Path, out: Path, generated: float, *, safe: bool = False
) -> int:
    """Run `count` tasks the bare way (with `safe`, the least safe way); returns how many
    outputs were written."""
    out.mkdir(parents=True, exist_ok=True)
    ledger = _Ledger(out.parent / "floor-journal.sqlite") if safe else None
    connector = aiohttp.TCPConnector(limit=200)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=60) if safe else aiohttp.ClientTimeout()
    async with (
        aiohttp.ClientSession(connector=connector, headers=HEADERS, timeout=timeout) as session,
        contextlib.AsyncExitStack() as closing,
    ):
        if ledger is not None:
            closing.callback(ledger.close)
        form = aiohttp.FormData()
        form.add_field("file", source.read_bytes(), filename=source.name)
        async with session.post(f"{base_url}/api/v3/media/upload/binary", data=form) as r:
            audio = (await r.json())["data"]["download_url"]

        gate = asyncio.Semaphore(200)

        ids: dict[str, int] = {}

        async def submit(seed: int) -> None:
            body = {"audio": audio, "tags": "lofi", "extend_after_duration": generated}
            async with gate:
                if ledger is not None:
                    ledger.write(
                        "INSERT INTO tasks VALUES (?, ?, 'sending', NULL)", seed, json.dumps(body)
                    )
                    await ledger.durable()
                async with session.post(
                    f"{base_url}/api/v3/{MODEL_ID}", json={**body, "seed": seed}
                ) as r:
                    answer = await r.json()
                if ledger is not None:
                    ids[answer["data"]["id"]] = seed
                    ledger.write(
                        "UPDATE tasks SET state = 'sent', id = ? WHERE seed = ?",
                        answer["data"]["id"],
                        seed,
                    )

        await asyncio.gather(*(submit(i) for i in range(count)))

        async def page(number: int, size: int) -> dict[str, Any]:
            query = {"page": number, "page_size": size, "model": MODEL_ID, "status": "completed"}
            async with session.post(f"{base_url}/api/v3/predictions", json=query) as r:
                return (await r.json())["data"]  # type: ignore[no-any-return]

        while (await page(1, 1))["total"] < count:  # noqa: ASYNC110 - polling is the point
            await asyncio.sleep(0.25)
        pages = await asyncio.gather(*(page(n + 1, 100) for n in range((count + 99) // 100)))
        finished = [(item["id"], item["outputs"][0]) for data in pages for item in data["items"]]

        async def fetch(i: int, prediction_id: str, url: str) -> None:
            async with gate, session.get(url) as r:
                data = await r.read()
            # A bare script writes with plain blocking calls, on the event loop.
            if ledger is None:
                with open(out / f"t{i}.wav", "wb") as f:  # noqa: ASYNC230
                    f.write(data)
                return
            part = out / f"t{i}.wav.part"
            with open(part, "wb") as f:  # noqa: ASYNC230
                f.write(data)
            os.setxattr(part, "user.mark", json.dumps([prediction_id, url, len(data)]).encode())
            part.replace(out / f"t{i}.wav")
            ledger.write("UPDATE tasks SET state = 'written' WHERE seed = ?", ids[prediction_id])

        await asyncio.gather(*(fetch(i, *item) for i, item in enumerate(finished)))
        return len(finished)


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
