"""Settling lost submits: which unseen prediction, if any, a submit created (no service)."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from datetime import datetime, timezone
from typing import Any

import pytest

from wavespeed_outpaint._engine.settle import OpenSubmit, Outcome, Settler, _assign
from wavespeed_outpaint.models import MODEL_ID, Prediction


def submit(key: str, sent: float, ends: float) -> OpenSubmit:
    return OpenSubmit(key, {"seed": key}, sent, ends)


def made(pid: str, at: float, model: str = MODEL_ID) -> Prediction:
    created = datetime.fromtimestamp(at, timezone.utc)
    raw = {"id": pid, "status": "processing", "model": model, "created_at": created.isoformat()}
    return Prediction.from_data(raw)


@pytest.mark.parametrize(
    ("windows", "created", "expected"),
    [
        # One submit, one prediction in its window: that one.
        ({"a": (0, 10)}, {"p": 5}, {"a": "p"}),
        # One submit, two predictions: someone else made one; neither is adopted.
        ({"a": (0, 10)}, {"p": 2, "q": 5}, {}),
        # Two submits apart in time, one prediction each.
        ({"a": (0, 10), "b": (20, 30)}, {"p": 5, "q": 25}, {"a": "p", "b": "q"}),
        # Overlapping windows, one prediction only in a's part: a's; the other is b's.
        ({"a": (0, 10), "b": (5, 15)}, {"p": 2, "q": 8}, {"a": "p", "b": "q"}),
        # Overlapping windows, both predictions where both could own them: unknown.
        ({"a": (0, 10), "b": (5, 15)}, {"p": 6, "q": 8}, {}),
        # Overlapping, one prediction in the overlap and nothing else: unknown.
        ({"a": (0, 10), "b": (5, 15)}, {"p": 7}, {}),
    ],
)
def test_assignment_by_creation_time(
    windows: dict[str, tuple[float, float]], created: dict[str, float], expected: dict[str, str]
) -> None:
    submits = [(submit(k, lo, hi), float(lo), float(hi)) for k, (lo, hi) in windows.items()]
    predictions = [made(pid, at) for pid, at in created.items()]
    assigned = _assign(submits, predictions)
    assert {k: p.id for k, p in assigned.items()} == expected


class FakeList:
    """The list endpoint: pages of the predictions created in a window."""

    def __init__(self, predictions: list[Prediction]) -> None:
        self.predictions = predictions

    async def list_pages(
        self, *, created_after: datetime, created_before: datetime
    ) -> AsyncGenerator[tuple[int, int, list[dict[str, Any]]], None]:
        items = [
            p.raw
            for p in self.predictions
            if p.created_at is not None and created_after <= p.created_at <= created_before
        ]
        yield 1, len(items), items


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("listed", "outcome"),
    [
        ([("ours", MODEL_ID)], Outcome.ADOPTED),
        ([("theirs", "someone/else-model")], Outcome.AMBIGUOUS),
        ([("ours", MODEL_ID), ("theirs", "someone/else-model")], Outcome.AMBIGUOUS),
        ([("first", MODEL_ID), ("second", MODEL_ID)], Outcome.AMBIGUOUS),
    ],
)
async def test_a_lost_submit_adopts_only_the_one_candidate_of_its_model(
    listed: list[tuple[str, str]], outcome: Outcome
) -> None:
    import time

    now = time.time()
    fake = FakeList([made(pid, now - 0.5, model) for pid, model in listed])
    settler = Settler(fake, clock_skew=0.1, grace=0.0, open_submits=lambda: [], known_ids=set)
    settlement = await settler.settle(submit("a", now - 1.0, now - 0.2), attempts=1)
    assert settlement.outcome is outcome
    if outcome is Outcome.ADOPTED:
        assert settlement.prediction is not None
        assert settlement.prediction.id == "ours"
