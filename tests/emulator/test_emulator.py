"""The emulator speaks the protocol: the official SDK, limits, time model, audio, webhooks."""

from __future__ import annotations

import hashlib
import hmac
import io
import itertools
import json
import math
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest
import requests
import soundfile as sf
from aiohttp import web
from conftest import RATE, MakeTrack, fast_config, serving

from wavespeed_outpaint import MODEL_ID
from wavespeed_outpaint.emulator import DEFAULT_API_KEY, DEFAULT_WEBHOOK_SECRET, Emulator, Faults

pytestmark = pytest.mark.anyio
AUTH = {"Authorization": f"Bearer {DEFAULT_API_KEY}"}


async def api(emu: Emulator, method: str, path: str, **kw: Any) -> tuple[int, dict[str, Any], Any]:
    headers = {**AUTH, **kw.pop("headers", {})}
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, emu.base_url + path, headers=headers, **kw) as response,
    ):
        return response.status, dict(response.headers), await response.json(content_type=None)


def submit_body(audio: str = "https://x.invalid/a.wav", **kw: Any) -> dict[str, Any]:
    return {"audio": audio, "tags": "lofi", **kw}


async def test_the_official_sdk_works_unchanged(emulator: Emulator, make_audio: MakeTrack) -> None:
    from wavespeed import Client  # type: ignore[import-untyped]

    path = make_audio("track.wav", seconds=2.0)

    def use_official_sdk() -> bytes:
        client = Client(api_key=DEFAULT_API_KEY, base_url=emulator.base_url, max_retries=0)
        url = client.upload(str(path))
        result = client.run(
            MODEL_ID,
            {
                "audio": url,
                "tags": "lofi, chill",
                "extend_before_duration": 1,
                "extend_after_duration": 3,
            },
            timeout=30,
            poll_interval=0.05,
        )
        response = requests.get(result["outputs"][0], timeout=10)
        response.raise_for_status()
        return response.content

    with anyio.fail_after(60):
        wav = await anyio.to_thread.run_sync(use_official_sdk)
    info = sf.info(io.BytesIO(wav))
    assert info.samplerate == RATE
    assert info.frames == 6 * RATE  # 1 s before + 2 s input + 3 s after


async def test_the_official_sdk_sees_task_failures(emulator: Emulator) -> None:
    from wavespeed import Client

    def run() -> dict[str, Any]:
        client = Client(api_key=DEFAULT_API_KEY, base_url=emulator.base_url, max_retries=0)
        result: dict[str, Any] = client.run_no_throw(
            MODEL_ID, submit_body(), timeout=30, poll_interval=0.05
        )
        return result

    with anyio.fail_after(60):
        result = await anyio.to_thread.run_sync(run)
    assert result["status"] == "failed"
    assert "media access failed" in result["error"]


async def test_wrong_key_other_model_and_bad_input(emulator: Emulator) -> None:
    status, _, body = await api(
        emulator, "GET", "/api/v3/balance", headers={"Authorization": "Bearer nope"}
    )
    assert (status, body["code"]) == (401, 401)
    status, _, body = await api(
        emulator, "POST", "/api/v3/wavespeed-ai/other-model", json=submit_body()
    )
    assert status == 404
    assert body["data"] is None
    for bad, field in [
        ({"tags": "x"}, "audio"),
        (submit_body(tags=""), "tags"),
        (submit_body(extend_before_duration=-1), "extend_before_duration"),
        (submit_body(extend_after_duration="30"), "extend_after_duration"),
        (submit_body(seed=1.5), "seed"),
        (submit_body(lyrics=7), "lyrics"),
    ]:
        status, _, body = await api(emulator, "POST", f"/api/v3/{MODEL_ID}", json=bad)
        assert status == 400, bad
        assert field in body["message"]
    assert emulator.stats()["tasks_created"] == 0


async def test_list_endpoint_validates_its_query(emulator: Emulator) -> None:
    for query in (
        {"page": 1},
        {"page": 0, "page_size": 10},
        {"page": 1, "page_size": 101},
        {"page": 1, "page_size": 10, "status": "weird"},
        {"page": 1, "page_size": 10, "created_after": "yesterday"},
    ):
        status, _, _ = await api(emulator, "POST", "/api/v3/predictions", json=query)
        assert status == 400, query


async def test_per_minute_start_limit_answers_429_with_retry_after() -> None:
    async with Emulator(fast_config(starts_per_minute=2)) as emulator:
        for _ in range(2):
            status, _, _ = await api(emulator, "POST", f"/api/v3/{MODEL_ID}", json=submit_body())
            assert status == 200
        status, headers, body = await api(
            emulator, "POST", f"/api/v3/{MODEL_ID}", json=submit_body()
        )
        assert (status, body["code"]) == (429, 429)
        assert 0 < float(headers["Retry-After"]) <= 60
        assert emulator.stats()["tasks_created"] == 2


async def test_tasks_beyond_the_running_limit_wait_in_a_queue() -> None:
    # Tasks of 0.5 s: the three submits reach the emulator well within the first one's
    # run, even on a loaded machine (with 0.1 s tasks, a slow third submit found the
    # worker idle and the queue empty).
    async with Emulator(
        fast_config(running_at_once=1, time_scale=0.25, base_seconds=0.0)
    ) as emulator:
        ids = []
        for _ in range(3):
            _, _, body = await api(
                emulator, "POST", f"/api/v3/{MODEL_ID}", json=submit_body(extend_after_duration=2)
            )
            ids.append(body["data"]["id"])
        _, _, last = await api(emulator, "GET", f"/api/v3/predictions/{ids[2]}/result")
        assert last["data"]["status"] == "created"  # queued behind two others
        await anyio.sleep(3 * 0.25 * 2 + 0.05)
        _, _, last = await api(emulator, "GET", f"/api/v3/predictions/{ids[2]}/result")
        assert last["data"]["status"] not in ("created", "processing")
        tasks = [emulator.service.tasks[i] for i in ids]
        for earlier, later in itertools.pairwise(tasks):
            assert later.start_at == earlier.finish_at  # the worker's next task, at once
        assert tasks[2].finish_at - tasks[0].start_at == pytest.approx(3 * 0.25 * 2, rel=0.01)


def test_a_queue_in_random_order_starts_each_task_when_a_worker_frees() -> None:
    from wavespeed_outpaint.emulator._service import Service

    service = Service(fast_config(running_at_once=2, queue_order="random", seed=3))
    body = submit_body(extend_before_duration=0, extend_after_duration=10)
    tasks = [service.create_task(body, 100.0 + i * 0.001, None) for i in range(12)]
    service.advance(1000.0)
    starts = sorted(tasks, key=lambda t: t.start_at)
    assert starts != tasks  # not in creation order
    assert all(t.start_at >= t.created for t in tasks)
    # Two workers, never idle while a task waits: each start is some earlier finish.
    finishes = sorted(t.finish_at for t in tasks)
    for task in starts[2:]:
        assert min(abs(task.start_at - f) for f in finishes) < 1e-9
    assert finishes[-1] == pytest.approx(100.0 + sum(t.duration for t in tasks) / 2, abs=0.02)


def test_lognormal_task_times_have_a_heavy_tail() -> None:
    from wavespeed_outpaint.emulator._service import Service

    service = Service(fast_config(time_scale=0.1, distribution="lognormal", sigma=0.6))
    body = submit_body(extend_before_duration=0, extend_after_duration=10)
    durations = sorted(service.create_task(body, 0.0, None).duration for _ in range(4000))
    median, p95 = durations[2000], durations[int(0.95 * 4000)]
    assert median == pytest.approx(1.0, rel=0.05)  # time_scale × generated seconds
    assert p95 / median == pytest.approx(math.exp(1.645 * 0.6), rel=0.1)


def test_time_models_refuse_unknown_names() -> None:
    with pytest.raises(ValueError, match="distribution"):
        fast_config(distribution="pareto")
    with pytest.raises(ValueError, match="queue_order"):
        fast_config(queue_order="lifo")


async def test_tier_presets() -> None:
    from wavespeed_outpaint.emulator import TIERS, EmulatorConfig

    bronze = EmulatorConfig.for_tier("bronze")
    assert (bronze.starts_per_minute, bronze.running_at_once) == (2, 2)
    assert TIERS["ultra"].running_at_once == 10_000


async def test_same_seed_same_audio_different_seed_different(
    emulator: Emulator, make_audio: MakeTrack
) -> None:
    from wavespeed_outpaint import OutpaintClient, OutpaintRequest

    async with OutpaintClient(api_key=DEFAULT_API_KEY, base_url=emulator.base_url) as client:
        url = await client.upload(make_audio("a.wav", seconds=2.5))
        outputs = []
        for seed in (11, 11, 12):
            p = await client.submit(
                OutpaintRequest(
                    url, tags="x", extend_before_duration=3, extend_after_duration=3, seed=seed
                )
            )
            with anyio.fail_after(10):
                while not p.is_final:
                    await anyio.sleep(0.01)
                    p = await client.get(p.id)
            async with aiohttp.ClientSession() as s, s.get(p.outputs[0]) as r:
                outputs.append(await r.read())
    assert outputs[0] == outputs[1]
    assert outputs[0] != outputs[2]
    # New material really is sound, not silence.
    samples, rate = sf.read(io.BytesIO(outputs[0]))
    assert abs(samples[rate : 2 * rate]).mean() > 0.01


def hosted(emu: Emulator, path: Path) -> str:
    """Put a file in the emulator's media store, as an upload would."""
    media = emu.service.store_upload(path.name, "audio/wav", path.read_bytes())
    return f"{emu.base_url}/media/{media.token}/{path.name}"


async def test_task_fault_kinds_end_with_their_status_and_code(make_audio: MakeTrack) -> None:
    config = fast_config()
    async with Emulator(config) as emulator:
        audio = hosted(emulator, make_audio("a.wav"))
        for kind, status in (
            ("task_failed", "failed"),
            ("task_cancelled", "cancelled"),
            ("task_timeout", "timeout"),
        ):
            config.faults = Faults({kind: 1.0}, failure_codes=(5003,))
            _, _, body = await api(emulator, "POST", f"/api/v3/{MODEL_ID}", json=submit_body(audio))
            await anyio.sleep(0.1)
            _, _, body = await api(emulator, "GET", f"/api/v3/predictions/{body['data']['id']}")
            assert body["data"]["status"] == status
            assert body["data"]["error"]
            if kind == "task_failed":
                assert body["data"]["code"] == 5003
        assert emulator.stats()["faults_injected"] == {
            "task_failed": 1,
            "task_cancelled": 1,
            "task_timeout": 1,
        }


async def test_counters_over_http_and_duplicates_by_fingerprint(emulator: Emulator) -> None:
    for _ in range(2):
        await api(emulator, "POST", f"/api/v3/{MODEL_ID}", json=submit_body(seed=5))
    await api(emulator, "POST", f"/api/v3/{MODEL_ID}", json=submit_body(seed=6))
    _, _, stats = await api(emulator, "GET", "/_emulator/stats")
    assert stats["submit_requests"] == 3
    assert stats["tasks_created"] == 3
    assert stats["fingerprints"] == 2
    assert stats["duplicate_submissions"] == 1


async def test_detection_lag_counts_from_completion_to_first_report() -> None:
    # A task of 50 ms, so that it is still running when the submit is answered.
    async with Emulator(fast_config(time_scale=0.05)) as emulator:
        _, _, body = await api(
            emulator, "POST", f"/api/v3/{MODEL_ID}", json=submit_body(extend_after_duration=1)
        )
        await anyio.sleep(0.3)
        await api(emulator, "GET", f"/api/v3/predictions/{body['data']['id']}/result")
        await api(emulator, "GET", f"/api/v3/predictions/{body['data']['id']}/result")
        stats = emulator.stats()
    assert stats["detected"] == 1
    assert 0.2 < stats["detection_lag_mean"] < 2.0


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[str, list[tuple[dict[str, str], bytes]], list[int]]]:
    """A loopback webhook receiver: records deliveries, answers from a scripted list."""
    got: list[tuple[dict[str, str], bytes]] = []
    answers: list[int] = []

    async def hook(request: web.Request) -> web.Response:
        got.append((dict(request.headers), await request.read()))
        return web.Response(status=answers.pop(0) if answers else 200)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    yield f"http://{host}:{port}/hook", got, answers
    await runner.cleanup()


def expected_signature(secret: str, headers: dict[str, str], body: bytes) -> str:
    key = secret.removeprefix("whsec_").encode()
    message = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    return "v3," + hmac.new(key, message, hashlib.sha256).hexdigest()


async def test_webhooks_are_signed_and_carry_the_input(emulator: Emulator, receiver: Any) -> None:
    url, got, _ = receiver
    await api(emulator, "POST", f"/api/v3/{MODEL_ID}?webhook={url}", json=submit_body(seed=1))
    await api(emulator, "POST", f"/api/v3/{MODEL_ID}", json=submit_body(seed=2, webhook_url=url))
    with anyio.fail_after(5):
        while len(got) < 2:
            await anyio.sleep(0.01)
    for headers, body in got:
        assert headers["webhook-signature"] == expected_signature(
            DEFAULT_WEBHOOK_SECRET, headers, body
        )
        assert abs(int(headers["webhook-timestamp"]) - time.time()) < 5
        doc = json.loads(body)
        assert "code" not in doc or doc["code"] == 1402  # a bare prediction, not an envelope
        assert doc["status"] == "failed"
        assert doc["input"]["tags"] == "lofi"
    assert sorted(json.loads(b)["input"]["seed"] for _, b in got) == [1, 2]


async def test_failed_webhook_deliveries_are_retried(emulator: Emulator, receiver: Any) -> None:
    url, got, answers = receiver
    emulator.config.webhook_retry_delay = 0.01
    answers.extend([500, 503])
    await api(emulator, "POST", f"/api/v3/{MODEL_ID}?webhook={url}", json=submit_body())
    with anyio.fail_after(5):
        while emulator.stats()["webhooks_delivered"] < 1:
            await anyio.sleep(0.01)
    assert len(got) == 3
    assert len({h["webhook-id"] for h, _ in got}) == 1  # the same message, retried


async def test_webhook_faults_wrong_secret_and_duplicates(
    emulator: Emulator, receiver: Any
) -> None:
    url, got, _ = receiver
    emulator.config.faults = Faults({"webhook_bad_signature": 1.0, "webhook_duplicated": 1.0})
    await api(emulator, "POST", f"/api/v3/{MODEL_ID}?webhook={url}", json=submit_body())
    with anyio.fail_after(5):
        while len(got) < 2:
            await anyio.sleep(0.01)
    for headers, body in got:
        assert headers["webhook-signature"] != expected_signature(
            DEFAULT_WEBHOOK_SECRET, headers, body
        )


async def test_webhooks_only_go_to_loopback(emulator: Emulator) -> None:
    await api(
        emulator, "POST", f"/api/v3/{MODEL_ID}?webhook=https://example.com/hook", json=submit_body()
    )
    await anyio.sleep(0.2)
    assert emulator.stats()["webhook_attempts"] == 0


async def test_upload_put_refuses_an_authorization_header(
    emulator: Emulator, tmp_path: Path
) -> None:
    _, _, ticket = await api(
        emulator, "POST", "/api/v3/media/uploads", json={"filename": "a.wav", "size": 4}
    )
    async with (
        aiohttp.ClientSession() as s,
        s.put(ticket["data"]["upload"]["url"], data=b"RIFF", headers=AUTH) as r,
    ):
        assert r.status == 400


async def test_balance_runs_out(emulator: Emulator) -> None:
    emulator.config.balance_usd = 0.0070  # room for one task of 30 s plus a bit
    status, _, _ = await api(emulator, "POST", f"/api/v3/{MODEL_ID}", json=submit_body())
    assert status == 200
    status, _, body = await api(emulator, "POST", f"/api/v3/{MODEL_ID}", json=submit_body())
    assert status == 400
    assert "Insufficient balance" in body["message"]
    _, _, balance = await api(emulator, "GET", "/api/v3/balance")
    assert balance["data"]["balance"] == pytest.approx(0.001)


async def test_tasks_whose_input_is_fetched_slowly_stay_in_creation_order(
    make_audio: MakeTrack,
) -> None:
    # Inputs from a URL that answers after a different delay each: a task's creation
    # time is taken when it is created, so the list's creation windows stay true.
    data = make_audio("a.wav").read_bytes()
    delays = itertools.cycle([0.2, 0.0, 0.1, 0.05])

    async def slow(request: web.Request) -> web.Response:
        await anyio.sleep(next(delays))
        return web.Response(body=data, content_type="audio/wav")

    async with (
        serving(slow) as source,
        Emulator(fast_config()) as emu,
        aiohttp.ClientSession() as http,
    ):

        async def submit(seed: int) -> None:
            body = {"audio": f"{source}/a.wav", "tags": "x", "seed": seed}
            headers = {"Authorization": f"Bearer {DEFAULT_API_KEY}"}
            url = f"{emu.base_url}/api/v3/{MODEL_ID}"
            async with http.post(url, json=body, headers=headers) as response:
                assert response.status == 200

        async with anyio.create_task_group() as tg:
            for seed in range(8):
                tg.start_soon(submit, seed)
        created = [task.created for task in emu.service.order]
    assert len(created) == 8
    assert created == sorted(created)
