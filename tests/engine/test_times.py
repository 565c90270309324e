"""What the poller learned of the service's times outlives the process: kept with a batch's
journal, and in the state folder for a client without one (a web backend's restart)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from conftest import MakeTrack, fast_client, fast_config

from wavespeed_outpaint import OutpaintClient, OutpaintRequest
from wavespeed_outpaint._engine.times import FILE_NAME, TaskTimes, service_key
from wavespeed_outpaint.emulator import Emulator
from wavespeed_outpaint.models import MODEL_ID

pytestmark = pytest.mark.anyio

# Tasks of about 0.3 s: long enough that a poller with nothing learned looks blind.
SERVICE = fast_config(time_scale=0.1, base_seconds=0.1, jitter=0.1)


def requests(source: Path, first_seed: int, count: int) -> list[OutpaintRequest]:
    return [
        OutpaintRequest(source, tags="lofi", extend_after_duration=2.0, seed=first_seed + i)
        for i in range(count)
    ]


def blind_looks(client: OutpaintClient) -> int:
    assert client._engine is not None
    return client._engine.poller.counts["looks_blind"]


async def test_a_second_client_on_the_same_journal_starts_from_the_learned_times(
    make_audio: MakeTrack, tmp_path: Path
) -> None:
    source = make_audio("a.wav", seconds=0.5)
    journal = tmp_path / "journal.sqlite"
    async with Emulator(SERVICE) as emu:
        # Each client with a state folder of its own: only the journal is shared.
        async with fast_client(emu, state_dir=str(tmp_path / "one")) as first:
            async for result in first.outpaint_many(
                requests(source, 0, 16), tmp_path / "out", journal=journal
            ):
                assert result.ok
            assert blind_looks(first) > 0
        key = service_key(MODEL_ID, emu.base_url)
        kept = TaskTimes(journal).recall(key)
        assert list(kept) == [2.0]
        assert len(kept[2.0]) >= 8

        async with fast_client(emu, state_dir=str(tmp_path / "two")) as second:
            async for result in second.outpaint_many(
                requests(source, 100, 16), tmp_path / "out", journal=journal
            ):
                assert result.ok
            # Its first wave was looked for from the journal's times, not blind.
            assert blind_looks(second) == 0
        assert len(TaskTimes(journal).recall(key)[2.0]) > len(kept[2.0])


async def test_a_restarted_web_backend_starts_from_its_state_folder(
    make_audio: MakeTrack, tmp_path: Path
) -> None:
    source = make_audio("a.wav", seconds=0.5)
    state = tmp_path / "state"
    async with Emulator(SERVICE) as emu:
        async with fast_client(emu, state_dir=str(state)) as backend:
            for request in requests(source, 0, 3):
                await backend.outpaint(request, tmp_path / "out")
            assert blind_looks(backend) > 0
        assert (state / FILE_NAME).is_file()
        async with fast_client(emu, state_dir=str(state)) as restarted:
            await restarted.outpaint(requests(source, 10, 1)[0], tmp_path / "out")
            assert blind_looks(restarted) == 0


async def test_nothing_is_kept_when_asked_not_to(make_audio: MakeTrack, tmp_path: Path) -> None:
    source = make_audio("a.wav", seconds=0.5)
    state = tmp_path / "state"
    journal = tmp_path / "journal.sqlite"
    async with (
        Emulator(SERVICE) as emu,
        fast_client(emu, state_dir=str(state), remember_task_times=False) as client,
    ):
        async for result in client.outpaint_many(
            requests(source, 0, 4), tmp_path / "out", journal=journal
        ):
            assert result.ok
    assert not state.exists()
    assert TaskTimes(journal).recall(service_key(MODEL_ID, emu.base_url)) == {}


async def test_an_unreadable_state_file_costs_a_warning_not_the_task(
    make_audio: MakeTrack, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = make_audio("a.wav", seconds=0.5)
    state = tmp_path / "state"
    state.mkdir()
    (state / FILE_NAME).write_bytes(b"not a database" * 100)
    async with Emulator(SERVICE) as emu, fast_client(emu, state_dir=str(state)) as client:
        with caplog.at_level(logging.WARNING, "wavespeed_outpaint.times"):
            result = await client.outpaint(requests(source, 0, 1)[0], tmp_path / "out")
    assert result.ok
    assert "cannot read the task times" in caplog.text


def test_times_are_kept_per_service() -> None:
    # The emulator's quick tasks say nothing of the real service's.
    assert service_key(MODEL_ID, "http://127.0.0.1:8123") != service_key(
        MODEL_ID, "https://api.wavespeed.ai"
    )


def test_each_length_keeps_its_newest_times_only(tmp_path: Path) -> None:
    times = TaskTimes(tmp_path / FILE_NAME)
    times.keep(MODEL_ID, {30.0: [float(i) for i in range(200)]})
    times.keep(MODEL_ID, {30.0: [float(i) for i in range(200, 400)], 240.0: [12.0]})
    kept = times.recall(MODEL_ID)
    assert kept[30.0] == [float(i) for i in range(144, 400)]  # the newest 256
    assert kept[240.0] == [12.0]
    assert times.recall("another/model") == {}
