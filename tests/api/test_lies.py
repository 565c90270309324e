"""Server answers that lie: each gets a clear error on its task, the batch goes on, and no
file appears outside out_dir."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from conftest import MakeTrack, fast_client, fast_config, serving
from typing_extensions import Unpack

from wavespeed_outpaint import (
    DeadlineError,
    OutpaintClient,
    OutpaintRequest,
    OutpaintResult,
    ProtocolError,
    Status,
    ValidationError,
)
from wavespeed_outpaint.emulator import Emulator, Faults
from wavespeed_outpaint.options import OptionKeywords

pytestmark = pytest.mark.anyio


async def one_task(
    faults: Faults, make_audio: MakeTrack, out: Path, **options: Unpack[OptionKeywords]
) -> OutpaintResult:
    """A batch of one against an emulator that lies, with no list endpoint (so the poller
    asks by GET, whose answers lie)."""
    config = fast_config(faults=faults, list_endpoint=False)
    async with Emulator(config) as emu, fast_client(emu, **options) as client:
        with anyio.fail_after(30):
            results = [
                r
                async for r in client.outpaint_many(
                    [OutpaintRequest(make_audio("a.wav"), tags="x")], out
                )
            ]
    assert len(results) == 1
    return results[0]


@pytest.mark.parametrize(
    ("kind", "words"),
    [
        ("lie_not_json", "not a JSON object"),
        ("lie_missing_fields", "no prediction id"),
        ("lie_huge_body", "over 1048576 bytes"),
    ],
)
async def test_status_answers_that_lie(
    kind: str, words: str, make_audio: MakeTrack, tmp_path: Path
) -> None:
    result = await one_task(
        Faults({kind: 1.0}), make_audio, tmp_path / "out", max_json_bytes=1024 * 1024
    )
    assert not result.ok
    assert words in (result.error or "")
    assert result.prediction_id is not None  # kept: the next run asks again


@pytest.mark.parametrize(
    ("kind", "words"),
    [
        ("lie_no_outputs", "completed without any output"),
        ("lie_bad_output_url", "not an https:// URL"),
        ("lie_oversize_download", "max_download_bytes"),
    ],
)
async def test_outputs_that_lie(
    kind: str, words: str, make_audio: MakeTrack, tmp_path: Path
) -> None:
    result = await one_task(
        Faults({kind: 1.0}), make_audio, tmp_path / "out", max_download_bytes=200_000
    )
    assert not result.ok
    assert words in (result.error or "")
    assert not list((tmp_path / "out").rglob("*.part"))


async def test_an_output_name_that_escapes_lands_inside(
    make_audio: MakeTrack, tmp_path: Path
) -> None:
    out = tmp_path / "deep" / "out"
    result = await one_task(Faults({"lie_escaping_output_name": 1.0}), make_audio, out)
    # The batch names files itself; the URL's name never becomes a path.
    for path in result.files:
        assert path.resolve().is_relative_to(out.resolve())
    assert not list(tmp_path.rglob("escaped*"))


async def test_download_into_a_folder_never_follows_the_url_name(
    emulator: Emulator, make_audio: MakeTrack, tmp_path: Path
) -> None:
    emulator.config.faults = Faults({"lie_escaping_output_name": 1.0})
    out = tmp_path / "a" / "b"
    out.mkdir(parents=True)
    async with fast_client(emulator) as client:
        done = await client.outpaint(OutpaintRequest(make_audio("x.wav"), tags="x"))
        assert "..%2F" in done.outputs[0]
        with pytest.raises(Exception, match=r"not found|HTTP 404"):
            await client.download(done.outputs[0], out)
    assert not list(tmp_path.rglob("escaped*"))
    assert list(out.iterdir()) == []


async def test_a_huge_list_answer_is_refused_not_read(emulator: Emulator) -> None:
    async with fast_client(emulator, max_json_bytes=1000) as client:
        for seed in range(20):
            await client.submit(OutpaintRequest("https://x.invalid/a.wav", tags="x", seed=seed))
        with pytest.raises(ProtocolError, match="over 1000 bytes"):
            [page async for page in client.list_predictions()]


async def test_a_download_that_trickles_is_given_up_not_waited_for(
    make_audio: MakeTrack, tmp_path: Path
) -> None:
    # Every read comes within the read time-out; the whole would take an hour.
    config = fast_config(faults=Faults({"lie_trickle_download": 1.0}))
    async with (
        Emulator(config) as emu,
        fast_client(emu, download_read_timeout=0.3, retry_attempts=2) as client,
    ):
        with anyio.fail_after(30):
            request = OutpaintRequest(make_audio("a.wav"), tags="x", extend_after_duration=1)
            results = [r async for r in client.outpaint_many([request], tmp_path / "out")]
    assert not results[0].ok
    assert "KB/s" in (results[0].error or "") or "Timeout" in (results[0].error or "")
    assert results[0].prediction_id is not None  # paid for and kept: a later run fetches it
    assert not list((tmp_path / "out").rglob("*.part"))


async def test_a_list_that_ignores_the_page_asked_for_does_not_loop(
    make_audio: MakeTrack, tmp_path: Path
) -> None:
    # It answers page 1, total 1,000,000,000, whatever page is asked for. Tasks end over
    # a second (0.3 to 0.9 s), so a client that reads on has the time to loop.
    config = fast_config(time_scale=0.02, jitter=0.5, faults=Faults({"lie_list_ignores_page": 1.0}))
    async with Emulator(config) as emu, fast_client(emu) as client:
        with anyio.fail_after(30):
            requests = [OutpaintRequest(make_audio("a.wav"), tags="x", seed=s) for s in range(7)]
            results = [r async for r in client.outpaint_many(requests)]
        stats = emu.stats()
    assert all(r.ok for r in results), [r.error for r in results]
    assert stats["list_requests"] < 200


@pytest.mark.parametrize("fifo", ["input.wav"])
async def test_a_pipe_given_as_input_is_refused_without_blocking(fifo: str, tmp_path: Path) -> None:
    import os

    path = tmp_path / fifo
    os.mkfifo(path)  # opening it to read would block until a writer comes
    with anyio.fail_after(10), pytest.raises(ValidationError, match="not a regular file"):
        await OutpaintRequest.from_file(path, tags="x")


async def test_a_status_nobody_knows_is_waited_on_then_reported_unknown(
    make_audio: MakeTrack, tmp_path: Path
) -> None:
    # The task's status becomes "warming_up" and stays so: it may still complete (and it
    # is paid for), so it is neither final nor failed; the deadline bounds the wait.
    config = fast_config(faults=Faults({"lie_unknown_status": 1.0}))
    request = OutpaintRequest(make_audio("a.wav"), tags="x", extend_after_duration=1)
    journal = tmp_path / "j.sqlite"
    async with Emulator(config) as emu:
        for _ in range(2):  # the second run asks about the same task, sends nothing new
            async with fast_client(emu, task_deadline=1.5) as client:
                with anyio.fail_after(30):
                    (result,) = [
                        r
                        async for r in client.outpaint_many(
                            [request], tmp_path / "out", journal=journal
                        )
                    ]
            assert result.status is Status.UNKNOWN
            assert isinstance(result.exception, DeadlineError)
            assert "'warming_up'" in (result.error or "")
            assert result.prediction_id is not None
        stats = emu.stats()
    assert stats["submit_requests"] == 1
    assert stats["result_gets"] >= 2  # it was asked about, not given up at the first answer


async def test_a_prediction_id_with_url_characters_is_asked_about_as_itself() -> None:
    # An independent server whose ids hold `/`, `?` and `#`: the id is one path segment,
    # escaped, never a path, a query or a fragment of the URL.
    from aiohttp import web

    odd = "jobs/7?v=2#x"
    asked: list[str] = []

    async def answer(request: web.Request) -> web.Response:
        asked.append(request.raw_path)
        data = {"id": odd, "status": "processing", "outputs": []}
        return web.json_response({"code": 200, "message": "success", "data": data})

    async with serving(answer) as base_url, OutpaintClient("k", base_url) as client:
        with anyio.fail_after(10):
            prediction = await client.get(odd)
    assert prediction.id == odd
    assert asked == ["/api/v3/predictions/jobs%2F7%3Fv=2%23x/result"]  # one segment
