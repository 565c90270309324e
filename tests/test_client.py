"""Each client method against the emulator on loopback, including its retry rules."""

from __future__ import annotations

import io
import logging
import socket
from datetime import datetime, timedelta, timezone
from pathlib import Path

import aiohttp
import anyio
import numpy as np
import pytest
import soundfile as sf
import stamina
from conftest import RATE, MakeTrack, fast_client, fast_config

from wavespeed_outpaint import (
    AuthenticationError,
    BadRequestError,
    ClientOptions,
    ConfigurationError,
    InsufficientBalanceError,
    NotFoundError,
    OutpaintClient,
    OutpaintRequest,
    Prediction,
    RateLimitedError,
    ServerError,
    Status,
    TransportError,
    UnknownSubmissionError,
    ValidationError,
)
from wavespeed_outpaint.emulator import DEFAULT_API_KEY, Emulator, Faults

pytestmark = pytest.mark.anyio


async def finished(client: OutpaintClient, prediction: Prediction) -> Prediction:
    with anyio.fail_after(10):
        while not prediction.is_final:
            await anyio.sleep(0.01)
            prediction = await client.get(prediction.id)
    return prediction


async def test_upload_returns_a_url_serving_the_same_bytes(
    client: OutpaintClient, make_audio: MakeTrack
) -> None:
    path = make_audio("in.flac", seconds=1.0)
    url = await client.upload(path)
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200
        assert await response.read() == path.read_bytes()


async def test_round_trip_output_has_input_in_the_middle(
    client: OutpaintClient, emulator: Emulator, make_audio: MakeTrack, tmp_path: Path
) -> None:
    path = make_audio("song.wav", seconds=1.5)
    request = OutpaintRequest(
        path, tags="lofi", extend_before_duration=0.5, extend_after_duration=1.25, seed=3
    )
    prediction = await client.submit(request)
    # A task this short may already be done by the time the answer is written.
    assert prediction.status in (Status.CREATED, Status.PROCESSING, Status.COMPLETED)
    done = await finished(client, prediction)
    assert done.ok, done.error
    dest = await client.download(done.outputs[0], tmp_path / "out" / "song.wav")
    output, rate = sf.read(dest, dtype="int16")
    original, _ = sf.read(path, dtype="int16")
    assert rate == RATE
    assert len(output) == round(0.5 * RATE) + len(original) + round(1.25 * RATE)
    middle = output[round(0.5 * RATE) : round(0.5 * RATE) + len(original)]
    assert np.array_equal(middle, original)
    assert not list(dest.parent.glob("*.part"))
    assert emulator.stats()["outputs_asked_with_key"] == 0


async def test_download_into_a_folder_uses_the_url_name(
    client: OutpaintClient, make_audio: MakeTrack, tmp_path: Path
) -> None:
    done = await finished(
        client,
        await client.submit(
            OutpaintRequest(make_audio("a.mp3"), tags="x", extend_after_duration=1)
        ),
    )
    dest = await client.download(done.outputs[0], tmp_path)
    assert dest == tmp_path / "outpaint.wav"
    assert sf.info(dest).duration > 1.0


async def test_a_url_the_service_cannot_fetch_fails_the_task(client: OutpaintClient) -> None:
    request = OutpaintRequest("https://nowhere.invalid/a.mp3", tags="x")
    done = await finished(client, await client.submit(request))
    assert done.status is Status.FAILED
    assert done.code == 1402
    assert done.retryable is False
    assert "media access failed" in done.error


async def test_balance_is_charged_once_per_generated_second(
    client: OutpaintClient, make_audio: MakeTrack
) -> None:
    before = await client.balance()
    await client.submit(
        OutpaintRequest(
            make_audio("a.wav"), tags="x", extend_before_duration=10, extend_after_duration=15
        )
    )
    assert await client.balance() == pytest.approx(before - 25 * 0.0002)


async def test_webhook_secret(client: OutpaintClient) -> None:
    assert (await client.webhook_secret()).startswith("whsec_")


async def test_list_predictions_filters_and_pages(
    client: OutpaintClient, make_audio: MakeTrack
) -> None:
    url = await client.upload(make_audio("a.wav"))
    start = datetime.now(timezone.utc) - timedelta(seconds=1)
    ids = [
        (await client.submit(OutpaintRequest(url, tags="x", seed=i, extend_after_duration=1))).id
        for i in range(5)
    ]
    for pid in ids:
        await finished(client, await client.get(pid))
    pages = [
        page
        async for page in client.list_predictions(
            status="completed", page_size=2, created_after=start
        )
    ]
    assert [p.page for p in pages] == [1, 2, 3]
    assert pages[0].total == 5
    seen = [item.id for page in pages for item in page.items]
    assert seen == list(reversed(ids))  # newest first
    none = [page async for page in client.list_predictions(status="failed", created_after=start)]
    assert none[0].total == 0
    later = datetime.now(timezone.utc) + timedelta(seconds=5)
    assert [p.total async for p in client.list_predictions(created_after=later)] == [0]


async def test_list_falls_back_to_get_when_post_is_refused(
    emulator: Emulator, client: OutpaintClient
) -> None:
    emulator.config.list_post = False
    await client.submit(OutpaintRequest("https://x.invalid/a.wav", tags="x"))
    pages = [page async for page in client.list_predictions()]
    assert pages[0].total == 1


async def test_upload_falls_back_to_the_single_step_form(
    emulator: Emulator, client: OutpaintClient, make_audio: MakeTrack
) -> None:
    emulator.config.ticket_uploads = False
    path = make_audio("a.wav")
    url = await client.upload(path)
    assert "/media/" in url
    done = await finished(
        client, await client.submit(OutpaintRequest(url, tags="x", extend_after_duration=1))
    )
    assert done.ok


async def test_a_retried_single_step_upload_sends_the_whole_file_again(
    emulator: Emulator, client: OutpaintClient, make_audio: MakeTrack, tmp_path: Path
) -> None:
    emulator.config.ticket_uploads = False
    emulator.config.faults = Faults({"upload_5xx": 0.5}, seed=3, error_statuses=(503,))
    for i in range(4):
        path = make_audio(f"a{i}.wav", seconds=0.5 + i / 4)
        url = await client.upload(path)
        fetched = await client.download(url, tmp_path / f"fetched{i}.wav")
        assert fetched.read_bytes() == path.read_bytes()
    assert emulator.stats()["upload_requests"] > 4  # some attempts were refused


async def test_missing_key_is_an_error_at_first_use(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WAVESPEED_API_KEY", raising=False)
    async with OutpaintClient(base_url=emulator.base_url) as client:
        with pytest.raises(ConfigurationError, match="WAVESPEED_API_KEY"):
            await client.balance()


async def test_key_and_base_url_come_from_the_environment(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WAVESPEED_API_KEY", DEFAULT_API_KEY)
    monkeypatch.setenv("WAVESPEED_BASE_URL", emulator.base_url)
    async with OutpaintClient() as client:
        assert await client.balance() > 0


async def test_a_wrong_key_is_refused_and_never_shown(
    emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "sk-live-0123456789abcdef"
    caplog.set_level(logging.DEBUG)
    async with fast_client(emulator, retry_attempts=2) as client:
        object.__setattr__(client._transport, "_api_key", secret)
        with pytest.raises(AuthenticationError) as info:
            await client.balance()
        assert info.value.status == 401
        assert secret not in str(info.value)
        assert secret not in repr(client)
        assert secret not in repr(client._transport)
    assert secret not in caplog.text


def test_plain_http_to_a_remote_host_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="in the clear"):
        OutpaintClient(api_key="k", base_url="http://api.example.com")
    OutpaintClient(api_key="k", base_url="http://api.example.com", allow_insecure_http=True)


def test_unknown_options_are_named() -> None:
    # A type checker refuses the misspelling (the ignore below says so); untyped code
    # gets the error when the client is built.
    with pytest.raises(ConfigurationError, match="known options"):
        OutpaintClient(api_key="k", base_url="http://127.0.0.1:1", retry_atempts=3)  # type: ignore[call-arg]


async def test_the_poll_trade_off_is_an_option_checked_up_front() -> None:
    with pytest.raises(ValidationError, match="request_price"):
        OutpaintClient(api_key="k", base_url="http://127.0.0.1:1", request_price=0)
    async with OutpaintClient(
        api_key="k", base_url="http://127.0.0.1:1", request_price=2.0, max_sweep_gap=1.5
    ) as client:
        assert client._engine is not None
        poll = client._engine.poller.options
        assert (poll.request_price, poll.max_sweep_gap) == (2.0, 1.5)


async def test_the_service_refusal_names_the_field(client: OutpaintClient) -> None:
    request = OutpaintRequest("https://x.invalid/a.wav", tags="x")
    with pytest.raises(
        BadRequestError, match="extend_after_duration must be a number from 0 to 240"
    ):
        await client.submit(request, extra={"extend_after_duration": 999})


async def test_an_unknown_prediction_is_not_found(client: OutpaintClient) -> None:
    with pytest.raises(NotFoundError):
        await client.get("does-not-exist")


async def test_insufficient_balance_is_recognised_by_its_message(
    emulator: Emulator, client: OutpaintClient
) -> None:
    emulator.config.balance_usd = 0.001  # less than 30 s × $0.0002
    with pytest.raises(InsufficientBalanceError, match="top up"):
        await client.submit(OutpaintRequest("https://x.invalid/a.wav", tags="x"))
    assert emulator.stats()["tasks_created"] == 0
    assert emulator.stats()["submit_requests"] == 1


async def test_result_reads_retry_through_429_5xx_and_drops(
    emulator: Emulator, client: OutpaintClient
) -> None:
    prediction = await client.submit(OutpaintRequest("https://x.invalid/a.wav", tags="x"))
    emulator.config.faults = Faults(
        {"result_429": 0.3, "result_5xx": 0.3, "result_drop": 0.2}, seed=1, retry_after=0.01
    )
    for _ in range(20):
        assert (await client.get(prediction.id)).id == prediction.id
    stats = emulator.stats()
    assert stats["result_gets"] > 20
    assert sum(stats["faults_injected"].values()) == stats["result_gets"] - 20


async def test_retry_after_is_read_from_the_answer(emulator: Emulator) -> None:
    emulator.config.faults = Faults({"result_429": 1.0}, retry_after=0.25)
    async with fast_client(emulator, retry_attempts=1) as client:
        with pytest.raises(RateLimitedError) as info:
            await client.get("any")
    assert info.value.retry_after == 0.25


async def test_submit_is_resent_after_429_and_503_and_created_once(
    emulator: Emulator, client: OutpaintClient
) -> None:
    emulator.config.faults = Faults(
        {"submit_429": 0.4, "submit_5xx": 0.4}, seed=2, retry_after=0.01, error_statuses=(503,)
    )
    for seed in range(5):
        await client.submit(OutpaintRequest("https://x.invalid/a.wav", tags="x", seed=seed))
    stats = emulator.stats()
    assert stats["tasks_created"] == 5
    assert stats["duplicate_submissions"] == 0
    assert stats["submit_requests"] > 5


@pytest.mark.parametrize(
    ("faults", "created"),
    [
        (Faults({"submit_5xx": 1.0}, error_statuses=(500,)), 0),
        (Faults({"submit_lost": 1.0}), 1),
        (Faults({"submit_500_after_create": 1.0}), 1),
    ],
)
async def test_an_ambiguous_submit_is_never_resent(
    emulator: Emulator, client: OutpaintClient, faults: Faults, created: int
) -> None:
    emulator.config.faults = faults
    request = OutpaintRequest("https://x.invalid/a.wav", tags="x")
    with pytest.raises(UnknownSubmissionError) as info:
        await client.submit(request)
    assert info.value.request is request
    assert info.value.sent_at <= info.value.failed_at
    stats = emulator.stats()
    assert stats["submit_requests"] == 1
    assert stats["tasks_created"] == created


async def test_a_slow_submit_answer_is_unknown_not_resent(emulator: Emulator) -> None:
    emulator.config.faults = Faults({"slow": 1.0}, slow_seconds=1.0)
    async with fast_client(emulator, read_timeout=0.2) as client:
        with pytest.raises(UnknownSubmissionError, match="may or may not"):
            await client.submit(OutpaintRequest("https://x.invalid/a.wav", tags="x"))
    await anyio.sleep(1.0)
    assert emulator.stats()["submit_requests"] == 1
    assert emulator.stats()["tasks_created"] == 1


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_a_submit_that_never_connected_is_not_unknown() -> None:
    async with OutpaintClient(
        api_key="k",
        base_url=f"http://127.0.0.1:{_closed_port()}",
        retry_attempts=2,
        retry_wait_initial=0.01,
    ) as client:
        with pytest.raises(TransportError, match="could not connect") as info:
            await client.submit(OutpaintRequest("https://x.invalid/a.wav", tags="x"))
    assert not isinstance(info.value, UnknownSubmissionError)


async def test_truncated_downloads_are_retried_to_a_whole_file(
    emulator: Emulator, client: OutpaintClient, make_audio: MakeTrack, tmp_path: Path
) -> None:
    done = await finished(
        client,
        await client.submit(
            OutpaintRequest(make_audio("a.wav"), tags="x", extend_after_duration=2)
        ),
    )
    emulator.config.faults = Faults({"truncated_download": 0.5}, seed=4)
    for i in range(6):
        dest = await client.download(done.outputs[0], tmp_path / f"{i}.wav")
        assert sf.info(dest).frames == round(3.0 * RATE)
    stats = emulator.stats()
    assert stats["download_requests"] > stats["downloads_completed"] == 6


async def test_a_download_that_keeps_failing_leaves_no_file(
    emulator: Emulator, make_audio: MakeTrack, tmp_path: Path
) -> None:
    async with fast_client(emulator, retry_attempts=3) as client:
        done = await finished(
            client,
            await client.submit(
                OutpaintRequest(make_audio("a.wav"), tags="x", extend_after_duration=1)
            ),
        )
        emulator.config.faults = Faults({"truncated_download": 1.0})
        with pytest.raises(TransportError, match="download"):
            await client.download(done.outputs[0], tmp_path / "x.wav")
    assert list(tmp_path.glob("x.wav*")) == []


async def test_an_expired_output_is_a_clear_error(
    emulator: Emulator, client: OutpaintClient, make_audio: MakeTrack, tmp_path: Path
) -> None:
    emulator.config.faults = Faults({"expired_output": 1.0})
    done = await finished(
        client,
        await client.submit(
            OutpaintRequest(make_audio("a.wav"), tags="x", extend_after_duration=1)
        ),
    )
    with pytest.raises(Exception, match="expired") as info:
        await client.download(done.outputs[0], tmp_path / "x.wav")
    assert getattr(info.value, "status", None) == 403
    assert not (tmp_path / "x.wav").exists()


async def test_non_http_output_urls_are_refused(client: OutpaintClient, tmp_path: Path) -> None:
    with pytest.raises(TransportError, match="not an https"):
        await client.download("file:///etc/passwd", tmp_path / "x")


async def test_upload_and_submit_a_mp3_and_flac(
    client: OutpaintClient, make_audio: MakeTrack, tmp_path: Path
) -> None:
    for name in ("a.mp3", "b.flac"):
        path = make_audio(name, seconds=1.0)
        done = await finished(
            client,
            await client.submit(
                OutpaintRequest(path, tags="x", extend_before_duration=1, extend_after_duration=1)
            ),
        )
        assert done.ok
        dest = await client.download(done.outputs[0], tmp_path / (name + ".wav"))
        decoded, rate = sf.read(io.BytesIO(path.read_bytes()))
        assert sf.info(dest).frames == len(decoded) + 2 * rate


async def test_sync_mode_holds_the_post_until_the_task_ends(client: OutpaintClient) -> None:
    prediction = await client.submit(
        OutpaintRequest("https://x.invalid/a.wav", tags="x"), extra={"enable_sync_mode": True}
    )
    assert prediction.status is Status.FAILED  # the emulator cannot fetch that URL
    assert prediction.code == 1402


async def test_emulator_fast_config_is_fast() -> None:
    # The fixtures' own promise: a task of 30 generated seconds takes milliseconds.
    assert fast_config().time_scale * 30 < 0.1


async def test_a_large_output_streams_to_disk_whole(
    emulator: Emulator, client: OutpaintClient, make_audio: MakeTrack, tmp_path: Path
) -> None:
    # 80 s at 8 kHz, 16 bit: over a megabyte, so it is written in several pieces.
    request = OutpaintRequest(make_audio("a.wav"), tags="x", extend_after_duration=80)
    done = await finished(client, await client.submit(request))
    emulator.config.faults = Faults({"truncated_download": 0.5}, seed=5)
    dest = await client.download(done.outputs[0], tmp_path / "out" / "big.wav")
    assert dest.stat().st_size > 1024 * 1024
    assert sf.info(dest).frames == 81 * RATE
    assert list(dest.parent.iterdir()) == [dest]


async def test_every_retry_is_stamina_s_so_set_testing_covers_the_first_one(
    emulator: Emulator,
) -> None:
    async with fast_client(emulator, retry_attempts=5) as client:
        prediction = await client.submit(OutpaintRequest("https://x.invalid/a.wav", tags="x"))
        emulator.config.faults = Faults({"result_5xx": 1.0})
        before = emulator.stats()["status_requests"]
        stamina.set_testing(True, attempts=1)  # tests turn retries off this way
        try:
            with pytest.raises(ServerError):
                await client.get(prediction.id)
        finally:
            stamina.set_testing(False)
        assert emulator.stats()["status_requests"] - before == 1
        with pytest.raises(ServerError):
            await client.get(prediction.id)
        assert emulator.stats()["status_requests"] - before == 1 + 5


def test_the_option_keywords_are_exactly_the_options() -> None:
    import attrs

    from wavespeed_outpaint.options import OptionKeywords

    assert set(OptionKeywords.__annotations__) == {f.name for f in attrs.fields(ClientOptions)}
