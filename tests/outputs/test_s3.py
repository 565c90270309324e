"""Music libraries in object storage: against a real S3-compatible server (moto) on
loopback and the emulator, which fetches the presigned input URLs as the service would."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import re
import subprocess
import sys
import uuid
from pathlib import Path

import anyio
import attrs
import pytest
import soundfile as sf
from conftest import (
    CLEAN_ENV,
    RATE,
    MakeTrack,
    against,
    fast_client,
    fast_config,
    run_cli,
    serving,
)
from support.processes import stats
from support.s3server import S3Server, StoreProxy

from wavespeed_outpaint import OutpaintRequest, OutpaintResult, OutputError, ValidationError
from wavespeed_outpaint._cli.plan import budget, from_inputs
from wavespeed_outpaint._engine.identity import FileFacts
from wavespeed_outpaint._outputs.s3 import ObjectPrefix, ObjectStores
from wavespeed_outpaint.emulator import Emulator, Faults

pytestmark = pytest.mark.anyio


def new_bucket(s3: S3Server) -> str:
    bucket = f"lib-{uuid.uuid4().hex[:12]}"
    s3.make_bucket(bucket)
    return bucket


def frames(data: bytes) -> int:
    return int(sf.info(io.BytesIO(data)).frames)


async def run_batch(
    emu: Emulator, requests: list[tuple[OutpaintRequest, str]], out: str, journal: Path
) -> list[OutpaintResult]:
    async with fast_client(emu) as client:
        with anyio.fail_after(60):
            return [r async for r in client.outpaint_many(requests, out, journal=journal)]


async def test_a_library_in_a_bucket_is_extended_into_the_bucket(
    s3: S3Server, make_audio: MakeTrack, tmp_path: Path
) -> None:
    bucket = new_bucket(s3)
    names = {"music/one.wav": 1.0, "music/rock/twö 2.flac": 2.0}
    for key, seconds in names.items():
        s3.put(bucket, key, make_audio(Path(key).name, seconds=seconds).read_bytes())
    stems = {key: key.removeprefix("music/").rsplit(".", 1)[0] for key in names}
    requests = [
        (OutpaintRequest(f"s3://{bucket}/{key}", tags="x", extend_after_duration=1), stems[key])
        for key in names
    ]
    out = f"s3://{bucket}/extended/"
    async with Emulator(fast_config()) as emu:
        results = await run_batch(emu, requests, out, tmp_path / "j.sqlite")
        assert [r.error for r in results if not r.ok] == []
        stats = emu.stats()
        assert stats["upload_requests"] == 0  # no input byte passed through the client
        assert stats["tasks_created"] == 2
        # Output keys mirror the input keys under the output prefix; whole audio.
        for key, seconds in names.items():
            data = s3.get(bucket, f"extended/{stems[key]}.wav")
            assert frames(data) == int((seconds + 1) * RATE)
        assert all(r.files == () for r in results)  # no local file
        assert sorted(loc for r in results for loc in r.locations) == [
            f"s3://{bucket}/extended/one.wav",
            f"s3://{bucket}/extended/rock/twö 2.wav",
        ]

        # A signed URL is a credential: sent to the service, never written down.
        for journal_file in tmp_path.glob("j.sqlite*"):
            assert b"X-Amz-Signature" not in journal_file.read_bytes()

        # Signed anew, the same objects are the same tasks: nothing is sent again, with
        # the journal or (by the outputs' marks) without it.
        again = await run_batch(emu, requests, out, tmp_path / "j.sqlite")
        assert all(r.ok and r.skipped for r in again)
        lost = await run_batch(emu, requests, out, tmp_path / "new.sqlite")
        assert {r.delivered_by for r in lost} == {"output"}
        assert emu.stats()["submit_requests"] == 2
    assert s3.open_uploads(bucket) == 0


async def test_inputs_that_cannot_be_read_fail_before_anything_is_sent(
    s3: S3Server, make_audio: MakeTrack, tmp_path: Path
) -> None:
    bucket = new_bucket(s3)
    s3.put(bucket, "notes.mp3", b"these are not audio bytes " * 100)
    inputs = {
        f"s3://{bucket}/missing.wav": "no such object",
        f"s3://no-such-bucket-{uuid.uuid4().hex[:8]}/a.wav": "no such bucket",
        f"s3://{bucket}/notes.mp3": "not MP3, WAV or FLAC",
    }
    requests = [(OutpaintRequest(url, tags="x"), f"t{i}") for i, url in enumerate(inputs)]
    async with Emulator(fast_config()) as emu:
        results = await run_batch(emu, requests, str(tmp_path / "out"), tmp_path / "j.sqlite")
        assert emu.stats()["submit_requests"] == 0
    assert len(results) == len(inputs)
    for result in results:
        assert not result.ok
        assert inputs[str(result.request.audio)] in (result.error or ""), result.error


@pytest.mark.slow
def test_the_command_line_extends_a_bucket_prefix_into_another(
    s3: S3Server, make_audio: MakeTrack, tmp_path: Path
) -> None:
    bucket = new_bucket(s3)
    for key in ("music/one.wav", "music/jazz/two.mp3", "music/cover.jpg"):
        s3.put(
            bucket,
            key,
            make_audio(Path(key).name, seconds=0.5).read_bytes()
            if not key.endswith(".jpg")
            else b"\xff\xd8 not audio",
        )
    env = {**s3.env, "XDG_STATE_HOME": str(tmp_path / "state")}
    args = [
        "run",
        f"s3://{bucket}/music/",
        "--out",
        f"s3://{bucket}/extended/",
        "--tags",
        "lofi",
        "--after",
        "1",
        "--emulator",
        "--json",
    ]
    first = run_cli(*args, cwd=tmp_path, env=env)
    assert first.returncode == 0, first.stderr
    doc = json.loads(first.stdout)
    assert doc["completed"] == 2
    # Each in its input's format (the command line's default).
    outputs = [k for k in s3.keys(bucket) if k.startswith("extended/")]
    assert sorted(k for k in outputs if not k.startswith("extended/_tasks/")) == [
        "extended/jazz/two.mp3",
        "extended/one.wav",
    ]
    # The journal lives in the state folder; a second run finds everything done.
    again = json.loads(run_cli(*args, cwd=tmp_path, env=env).stdout)
    assert again["skipped"] == 2
    # With the journal gone, the outputs' marks say the same.
    for journal in (tmp_path / "state").rglob("*.sqlite"):
        journal.unlink()
    lost = json.loads(run_cli(*args, cwd=tmp_path, env=env).stdout)
    assert {item["delivered_by"] for item in lost["items"]} == {"output"}


async def test_a_large_output_streams_in_parts_and_a_cut_one_leaves_nothing(
    s3: S3Server, make_audio: MakeTrack, tmp_path: Path
) -> None:
    bucket = new_bucket(s3)
    # 1,200 s at 8 kHz: a 19 MB output, over two parts (8 MiB), so a multipart upload;
    # cut at half, past the first part.
    s3.put(bucket, "long.wav", make_audio("long.wav", seconds=1200).read_bytes())
    request = OutpaintRequest(f"s3://{bucket}/long.wav", tags="x", extend_after_duration=1)
    async with Emulator(fast_config()) as emu:
        (done,) = await run_batch(emu, [(request, "long")], f"s3://{bucket}/out/", tmp_path / "a")
        assert done.ok, done.error
        assert frames(s3.get(bucket, "out/long.wav")) == 1201 * RATE
    # Every download cut short: each attempt's upload is aborted; no object, no parts.
    config = fast_config(faults=Faults({"truncated_download": 1.0}))
    async with Emulator(config) as emu:
        (cut,) = await run_batch(emu, [(request, "cut")], f"s3://{bucket}/out/", tmp_path / "b")
    assert not cut.ok
    assert "download failed" in (cut.error or "")
    assert "out/cut.wav" not in s3.keys(bucket)
    assert s3.open_uploads(bucket) == 0


async def test_an_input_url_the_service_cannot_fetch_fails_the_task_once(
    make_audio: MakeTrack, tmp_path: Path
) -> None:
    # A URL that has expired by the time the service fetches it (here: a server that
    # answers 403, as a store does to an expired signature).
    from aiohttp import web

    async def expired(request: web.Request) -> web.Response:
        return web.Response(status=403, text="Request has expired")

    async with serving(expired) as source, Emulator(fast_config()) as emu:
        request = OutpaintRequest(f"{source}/a.wav?X-Amz-Signature=s", tags="x")
        (result,) = await run_batch(emu, [(request, "a")], str(tmp_path / "out"), tmp_path / "j")
        assert emu.stats()["submit_requests"] == 1  # not sent again
    assert not result.ok
    assert "HTTP 403" in (result.error or "")
    assert "expired" in (result.error or "")
    assert result.retryable is False


async def test_a_store_that_cannot_be_reached_stops_the_batch_before_anything_is_sent(
    s3: S3Server, make_audio: MakeTrack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    request = OutpaintRequest(make_audio("a.wav"), tags="x")
    async with Emulator(fast_config()) as emu:
        async with fast_client(emu, retry_timeout=2.0, retry_attempts=2) as client:
            with anyio.fail_after(30), pytest.raises(OutputError, match="s3://lib/out/"):
                async for _ in client.outpaint_many([request], "s3://lib/out/"):
                    pass
        assert emu.stats()["submit_requests"] == 0


@pytest.mark.parametrize("ticket_uploads", [True, False])
async def test_inputs_can_go_through_the_client_for_a_store_the_service_cannot_reach(
    s3: S3Server, make_audio: MakeTrack, tmp_path: Path, ticket_uploads: bool
) -> None:
    bucket = new_bucket(s3)
    s3.put(bucket, "a.flac", make_audio("a.flac", seconds=1.0).read_bytes())
    requests = [
        (
            OutpaintRequest(f"s3://{bucket}/a.flac", tags="x", extend_after_duration=1, seed=s),
            f"{s}",
        )
        for s in range(3)
    ]
    async with Emulator(fast_config(ticket_uploads=ticket_uploads)) as emu:
        async with fast_client(emu, upload_inputs=True) as client:
            with anyio.fail_after(60):
                results = [r async for r in client.outpaint_many(requests, str(tmp_path))]
        stats = emu.stats()
    assert all(r.ok for r in results), [r.error for r in results]
    assert all(frames(r.files[0].read_bytes()) == 2 * RATE for r in results)
    # One object version, one upload (without tickets: the refused ticket, then the form).
    assert stats["upload_requests"] == (1 if ticket_uploads else 2)


def test_output_names_never_leave_the_prefix() -> None:
    sink = ObjectPrefix("s3://lib/extended", ObjectStores())
    assert sink.location("rock/twö 2.wav") == "s3://lib/extended/rock/twö 2.wav"
    for name in ("../x.wav", "rock/../../x.wav", "/x.wav/../.."):
        with pytest.raises(ValidationError, match="outside the output prefix"):
            sink.location(name)
    with pytest.raises(ValidationError, match=r"'\.\.' segments"):
        ObjectPrefix("s3://lib/a/../b/", ObjectStores())


async def test_an_output_given_up_during_its_commit_never_stays(s3: S3Server) -> None:
    # What a download does when it is cancelled while its part commits: abort.
    bucket = new_bucket(s3)
    stores = ObjectStores()
    sink = ObjectPrefix(f"s3://{bucket}/out/", stores)
    await sink.prepare()
    for size in (1000, 6 * 1024 * 1024):  # one PUT; a multipart upload
        part = await sink.open_part(f"a{size}.wav")
        await part.write(b"z" * size)
        commit = asyncio.ensure_future(part.commit())
        # Late enough that the store has the object: the cancel comes as it lands.
        await asyncio.sleep(0.2)
        commit.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await commit
        await part.abort()
    assert [k for k in s3.keys(bucket) if k.startswith("out/")] == []
    assert s3.open_uploads(bucket) == 0


async def test_writes_the_store_fails_are_retried_and_never_leave_a_part(
    s3: S3Server, make_audio: MakeTrack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = new_bucket(s3)
    s3.put(bucket, "a.wav", make_audio("a.wav", seconds=1.0).read_bytes())
    proxy = StoreProxy(s3.endpoint)
    small = OutpaintRequest(f"s3://{bucket}/a.wav", tags="x", extend_after_duration=1)
    # 481 s of 16-bit audio at 8 kHz, 7.7 MB: a multipart upload.
    large = attrs.evolve(small, extend_before_duration=240, extend_after_duration=240)
    requests = [(small, "small"), (large, "large")]
    out = f"s3://{bucket}/out/"
    async with proxy.serving() as endpoint, Emulator(fast_config()) as emu:
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
        # The store fails for a while: every write of an output is refused, so both
        # outputs fail, each upload aborted; nothing of them stays.
        proxy.failing_writes = 10**6
        async with fast_client(emu, retry_timeout=2.0, retry_attempts=2) as client:
            with anyio.fail_after(60):
                failed = [
                    r async for r in client.outpaint_many(requests, out, journal=tmp_path / "j")
                ]
        assert [r.ok for r in failed] == [False, False]
        for result in failed:
            assert f"cannot write s3://{bucket}/out/" in (result.error or ""), result.error
            assert "the store kept failing" in (result.error or ""), result.error
        assert [k for k in s3.keys(bucket) if k.startswith("out/")] == []
        assert s3.open_uploads(bucket) == 0
        # Then a 500 and a dropped connection, each retried: whole outputs, paid once.
        proxy.failing_writes, proxy.dropped_writes, proxy.refused_writes = 1, 1, 0
        done = await run_batch(emu, requests, out, tmp_path / "j")
        assert [r.error for r in done if not r.ok] == []
        assert proxy.refused_writes == 2
        assert emu.stats()["submit_requests"] == 2
    assert frames(s3.get(bucket, "out/small.wav")) == 2 * RATE
    assert frames(s3.get(bucket, "out/large.wav")) == 481 * RATE
    assert s3.open_uploads(bucket) == 0


# A signature or credential whose value is there to read.
SIGNED = re.compile(r"X-Amz-(?:Signature|Credential)=(?!\[redacted\])")


async def test_a_presigned_url_that_expired_before_the_fetch_fails_its_task_once(
    s3: S3Server, make_audio: MakeTrack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = new_bucket(s3)
    s3.put(bucket, "a.wav", make_audio("a.wav", seconds=1.0).read_bytes())
    proxy = StoreProxy(s3.endpoint)
    proxy.clock_ahead = 2 * 3600  # as if the task waited two hours in the service's queue
    request = OutpaintRequest(f"s3://{bucket}/a.wav", tags="x", extend_after_duration=1)
    async with proxy.serving() as endpoint, Emulator(fast_config()) as emu:
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
        for _ in range(2):  # the second run sends nothing again
            async with fast_client(emu, presign_seconds=3600) as client:
                with anyio.fail_after(60):
                    (result,) = [
                        r
                        async for r in client.outpaint_many(
                            [request], str(tmp_path / "out"), journal=tmp_path / "j"
                        )
                    ]
            assert not result.ok
            assert "expired" in (result.error or ""), result.error
            # The service quotes the URL it was given: a 6-hour read link, signature and
            # all, that nothing the project keeps or shows may hold.
            assert f"{bucket}/a.wav" in (result.error or ""), result.error
            assert "X-Amz-Signature=[redacted]" in (result.error or ""), result.error
            assert not SIGNED.search(result.error or ""), result.error
        assert emu.stats()["submit_requests"] == 1
    kept = b"".join(p.read_bytes() for p in tmp_path.glob("j*") if p.is_file())
    assert not SIGNED.search(kept.decode("latin-1"))


async def test_a_prefix_is_planned_as_a_count_and_listed_as_the_batch_takes_it(
    s3: S3Server, tmp_path: Path
) -> None:
    # A library of a million objects is never held in memory: the plan counts a
    # prefix's objects (and checks their names), the batch lists them again as it goes.
    bucket = new_bucket(s3)
    for i in range(5):
        s3.put(bucket, f"music/a{i}.wav", b"RIFF")  # listing reads no content
    s3.put(bucket, "music/cover.jpg", b"\xff\xd8")
    objects, files = ObjectStores(), FileFacts()
    fields = {"tags": "x", "extend_after_duration": 10}
    planned = from_inputs([f"s3://{bucket}/music/"], files, objects, **fields)
    each = OutpaintRequest(f"s3://{bucket}/k.wav", **fields).cost_usd  # type: ignore[arg-type]
    plan = budget(planned, tmp_path / "j.sqlite", 3 * each, files)
    assert (plan.run, plan.to_run, plan.held_back) == ([], 3, 2)
    assert plan.new_cost_usd == pytest.approx(3 * each)
    s3.put(bucket, "music/a-new.wav", b"RIFF")  # added after the plan: the cap holds
    assert [t.name async for t in plan.tasks(objects)] == ["a-new", "a0", "a1"]
    # Without a cap, the batch takes what is there when it lists.
    uncapped = budget(planned, tmp_path / "j.sqlite", None, files)
    assert [t.input async for t in uncapped.tasks(objects)] == [
        f"s3://{bucket}/music/a{i}.wav" for i in ("-new", 0, 1, 2, 3, 4)
    ]


@pytest.mark.slow
def test_two_machines_on_one_output_prefix_pay_for_each_task_once(
    s3: S3Server, make_audio: MakeTrack, tmp_path: Path
) -> None:
    """`run s3://lib/music/ --out s3://lib/extended/` started at once on two machines
    (two state folders, so two journals): every task was created twice, both runs exit
    0. The claims now live under the output prefix (`_tasks/`), as on Ray: each task is
    sent once, and the other run collects it."""
    from support.processes import emulator_process_at

    bucket = new_bucket(s3)
    for i in range(8):
        s3.put(bucket, f"music/t{i}.wav", make_audio(f"t{i}.wav", seconds=0.5, seed=i).read_bytes())
    args = ["run", f"s3://{bucket}/music/", "--out", f"s3://{bucket}/extended/", "--tags", "x"]
    args += ["--after", "1", "--json"]
    with emulator_process_at(time_scale=0.5) as url:
        machines = [
            subprocess.Popen(
                [sys.executable, "-m", "wavespeed_outpaint", *args, *against(url)],
                cwd=tmp_path,
                env={**CLEAN_ENV, **s3.env, "XDG_STATE_HOME": str(tmp_path / f"m{i}")},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for i in range(2)
        ]
        try:
            outs = [m.communicate(timeout=120) for m in machines]
        finally:
            for m in machines:
                if m.poll() is None:
                    m.kill()
        created = stats(url)["tasks_created"]
    docs = []
    for machine, (out, err) in zip(machines, outs, strict=True):
        assert machine.returncode == 0, err
        docs.append(json.loads(out))
        assert docs[-1]["completed"] == 8
    assert created == 8
    # Each says what the other held: every task was sent by one run and collected (or
    # found whole, if it was done first) by the other.
    assert sum(d["sent_by_another_run"] + d["skipped"] for d in docs) == 8
    for doc, (_, err) in zip(docs, outs, strict=True):
        if doc["sent_by_another_run"]:
            assert "another run on s3://" in err
