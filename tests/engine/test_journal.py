"""The journal on its own: changes reach the disk in one commit per loop iteration."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from wavespeed_outpaint._engine.journal import Journal
from wavespeed_outpaint.seams import State

pytestmark = pytest.mark.anyio


async def test_tasks_that_ask_for_durability_at_once_share_one_commit(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite")
    statements: list[str] = []
    journal._db.set_trace_callback(statements.append)
    try:
        rows = [journal.add(f"fp{i}", {"seed": i}, "a.wav", 0.006) for i in range(50)]
        await journal.durable()
        statements.clear()

        async def submitting(i: int) -> None:
            journal.update(rows[i], state=State.SUBMITTING, sent_at=float(i))
            await journal.durable()

        async with anyio.create_task_group() as tg:
            for i in range(50):
                tg.start_soon(submitting, i)
        assert statements.count("COMMIT") == 1
    finally:
        journal.close()
    again = Journal(tmp_path / "j.sqlite")
    try:
        assert {row.state for row in again.rows()} == {State.SUBMITTING}
    finally:
        again.close()
