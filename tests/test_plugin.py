"""The pytest plugin users test their own code with: the emulator as a fixture, from a
sync test (the official SDK) and an async one (this SDK), with faults of the test's own."""

from __future__ import annotations

import anyio
import pytest
from conftest import MakeTrack

from wavespeed_outpaint import OutpaintClient, OutpaintRequest
from wavespeed_outpaint.emulator import EmulatorConfig, Faults
from wavespeed_outpaint.models import MODEL_ID
from wavespeed_outpaint.testing import RunningEmulator


@pytest.fixture
def outpaint_emulator_config() -> EmulatorConfig:
    # The fixture's own knob: every other submit refused with 429 at first.
    return EmulatorConfig(time_scale=0.001, base_seconds=0.002, faults=Faults({"submit_429": 0.5}))


def test_a_sync_test_drives_the_official_sdk(
    outpaint_emulator: RunningEmulator, make_audio: MakeTrack
) -> None:
    from wavespeed import Client  # type: ignore[import-untyped]

    client = Client(api_key=outpaint_emulator.api_key, base_url=outpaint_emulator.base_url)
    audio = client.upload(str(make_audio("a.wav")))
    result = client.run(MODEL_ID, {"audio": audio, "tags": "x"}, timeout=30)
    assert result["outputs"], result  # run() answers with the outputs once completed
    assert outpaint_emulator.stats()["tasks_created"] == 1


@pytest.mark.anyio
async def test_an_async_test_drives_this_sdk(
    outpaint_emulator: RunningEmulator, make_audio: MakeTrack
) -> None:
    async with OutpaintClient(
        outpaint_emulator.api_key, outpaint_emulator.base_url, retry_wait_initial=0.01
    ) as client:
        with anyio.fail_after(30):
            result = await client.outpaint(OutpaintRequest(make_audio("a.wav"), tags="x"))
    assert result.ok
    stats = outpaint_emulator.stats()
    assert (stats["tasks_created"], stats["duplicate_submissions"]) == (1, 0)
