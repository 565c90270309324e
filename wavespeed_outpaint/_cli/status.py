"""`wavespeed-outpaint status --journal PATH`: what a batch's journal says."""

from __future__ import annotations

import collections
from pathlib import Path

from .._engine.journal import Journal
from ..seams import State
from .plan import PAID_STATES


def print_status(path: Path) -> int:
    if not path.is_file():
        print(f"error: no journal at {path}")
        return 2
    journal = Journal(path, reader=True)
    try:
        rows = list(journal.rows())
    finally:
        journal.close()
    counts = collections.Counter(row.state for row in rows)
    spent = sum(row.cost_usd for row in rows if row.state in PAID_STATES or row.prediction_id)
    print(f"{len(rows)} tasks in {path}")
    for state in (
        State.DOWNLOADED,
        State.COMPLETED,
        State.SUBMITTED,
        State.SUBMITTING,
        State.PENDING,
        State.FAILED,
        State.UNKNOWN,
    ):
        if counts[state]:
            print(f"  {state:<11} {counts[state]}")
    print(f"cost so far: ${spent:.4f}")
    for row in rows:
        if row.state in (State.FAILED, State.UNKNOWN):
            ident = row.prediction_id or "no prediction"
            print(f"{row.state}: {row.input} ({ident}): {row.error}")
    return 0
