"""One long-lived batch fed by several callers: the oldest caller's tasks go first."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from conftest import MakeTrack, fast_client, fast_config

from wavespeed_outpaint import OutpaintRequest, OutpaintResult
from wavespeed_outpaint._cluster.continuous import ContinuousBatch
from wavespeed_outpaint._engine.journal import Journal
from wavespeed_outpaint.emulator import Emulator

pytestmark = pytest.mark.anyio


async def test_callers_are_served_in_turn_and_each_gets_its_own_results(
    make_audio: MakeTrack, tmp_path: Path
) -> None:
    # Three callers of 8 tasks each through 4 slots: each caller's tasks are sent
    # before the next caller's.
    callers = [
        [
            OutpaintRequest(
                make_audio(f"c{c}t{i}.wav", seconds=0.2), tags="x", extend_after_duration=2
            )
            for i in range(8)
        ]
        for c in range(3)
    ]
    got: dict[int, dict[int, OutpaintResult]] = {}
    journal = Journal(tmp_path / "j.sqlite")
    config = fast_config(time_scale=0.1, base_seconds=0.1)
    async with Emulator(config) as emu, fast_client(emu, max_in_flight=4) as client:
        batch = ContinuousBatch(client, tmp_path / "out", journal)

        async def call(c: int) -> None:
            got[c] = await batch.run(callers[c])

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                for c in range(3):
                    tg.start_soon(call, c)  # all at once, as Ray hands an actor batches
        # When the service created each caller's tasks.
        created = [
            sorted(emu.service.tasks[str(r.prediction_id)].created for r in got[c].values())
            for c in range(3)
        ]
    journal.close()
    for c, requests in enumerate(callers):
        assert set(got[c]) == {id(r) for r in requests}
        assert all(result.ok for result in got[c].values())
    # Four slots, eight tasks a caller: the first caller's go in the first two rounds,
    # the last caller's in the last two. (Sharing the slots task by task, every
    # caller would have tasks in the first round.)
    assert created[0][-1] < created[2][0]
