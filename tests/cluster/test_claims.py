"""A task store shared by several workers (each with a journal of its own, records in a
bucket): one task is sent by one worker only, however many are given it."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import anyio
import pytest
from conftest import MakeTrack, fast_client, fast_config
from support.s3server import S3Server, StoreProxy

from wavespeed_outpaint import OutpaintRequest, OutpaintResult
from wavespeed_outpaint._cluster.claims import ObjectClaims
from wavespeed_outpaint._engine.identity import FileFacts, fingerprint
from wavespeed_outpaint._engine.journal import Journal
from wavespeed_outpaint._outputs.s3 import ObjectStores
from wavespeed_outpaint.emulator import Emulator
from wavespeed_outpaint.seams import State

pytestmark = pytest.mark.anyio


def new_bucket(s3: S3Server) -> str:
    bucket = f"lib-{uuid.uuid4().hex[:12]}"
    s3.make_bucket(bucket)
    return bucket


async def worker(
    emu: Emulator, requests: list[OutpaintRequest], out: Path, journal: Path, store: str
) -> list[OutpaintResult]:
    """One worker of the cluster: its own client and journal, the shared store."""
    claims = ObjectClaims(Journal(journal), store, ObjectStores())
    try:
        async with fast_client(emu) as client:
            results = [r async for r in client.outpaint_many(requests, out, journal=claims)]
        await claims.flush()
        return results
    finally:
        claims.close()


async def test_workers_given_the_same_tasks_send_each_once(
    s3: S3Server, make_audio: MakeTrack, tmp_path: Path
) -> None:
    bucket = new_bucket(s3)
    store = f"s3://{bucket}/_tasks/"
    requests = [
        OutpaintRequest(make_audio(f"t{i}.wav", seconds=0.3, seed=i), tags="x", seed=i)
        for i in range(12)
    ]
    async with Emulator(fast_config(time_scale=0.02)) as emu:
        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                found: dict[int, list[OutpaintResult]] = {}

                async def run(n: int) -> None:
                    # Each worker writes to a folder of its own, as each host of a
                    # cluster does: what is shared is the store of task records.
                    found[n] = await worker(
                        emu, requests, tmp_path / f"out{n}", tmp_path / f"w{n}.sqlite", store
                    )

                for n in range(3):
                    tg.start_soon(run, n)
        stats = emu.stats()
    assert stats["submit_requests"] == 12  # each task sent once, by one of three workers
    assert stats["duplicate_submissions"] == 0
    for results in found.values():
        assert [r.error for r in results if not r.ok] == []
    # Every task has its record, and it says how the task ended.
    records = [k for k in s3.keys(bucket) if k.startswith("_tasks/")]
    assert len(records) == 12
    states = {json.loads(s3.get(bucket, key))["state"] for key in records}
    assert states == {"downloaded"}


async def test_a_task_claimed_by_a_worker_that_died_before_sending_it_is_taken_over(
    s3: S3Server, make_audio: MakeTrack, tmp_path: Path
) -> None:
    bucket = new_bucket(s3)
    store = f"s3://{bucket}/_tasks/"
    request = OutpaintRequest(make_audio("a.wav", seconds=0.3), tags="x")
    async with Emulator(fast_config()) as emu:
        # A first worker records the claim and dies before its POST leaves: its record
        # says "submitting", and the service has no task.
        first = ObjectClaims(Journal(tmp_path / "first.sqlite"), store, ObjectStores())
        assert isinstance(request.audio, Path)
        fp = fingerprint(request, "sha256:" + FileFacts().sha256(request.audio))
        row = first.add(fp, request.payload("https://x/a.wav"), str(request.audio), 0.006)
        row = first.update(row, state="submitting", sent_at=time.time() - 60)
        await first.claim(row)
        first.close()
        # The list endpoint shows no task of that submit: another worker takes it over.
        (result,) = await worker(emu, [request], tmp_path / "out", tmp_path / "w.sqlite", store)
        assert emu.stats()["submit_requests"] == 1, (result.status, result.error)
    assert result.ok, result.error
    record = json.loads(s3.get(bucket, f"_tasks/{fp}.json"))
    assert (record["state"], record["prediction_id"]) == ("downloaded", result.prediction_id)


async def test_a_tasks_records_land_in_order_though_written_in_parallel(
    s3: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Forty tasks whose state changes while their first records are still being
    # written, to a store where a later write would overtake the first: what the
    # bucket holds at the end is each task's last state.
    bucket = new_bucket(s3)
    proxy = StoreProxy(s3.endpoint)
    proxy.slow_first_writes = 0.3
    async with proxy.serving() as endpoint:
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
        store = f"s3://{bucket}/_tasks/"
        claims = ObjectClaims(Journal(tmp_path / "j.sqlite"), store, ObjectStores())
        try:
            with anyio.fail_after(60):
                rows = [claims.add(f"{i:064x}", {}, f"t{i}.wav", 0.01) for i in range(40)]
                for state in (State.SUBMITTED, State.COMPLETED, State.DOWNLOADED):
                    for i, row in enumerate(rows):
                        rows[i] = claims.update(row, state=state, prediction_id=f"p{i}")
                    await anyio.sleep(0.05)  # the first writes under way
                await claims.flush()
        finally:
            claims.close()
    records = [json.loads(s3.get(bucket, f"_tasks/{i:064x}.json")) for i in range(40)]
    assert [r["state"] for r in records] == ["downloaded"] * 40
    assert [r["prediction_id"] for r in records] == [f"p{i}" for i in range(40)]
