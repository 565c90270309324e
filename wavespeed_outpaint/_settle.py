"""Settling a submit whose answer was lost, through the list endpoint (PROTOCOL.md).

A lost submit may or may not have created a task. The list shows every prediction of the
model created in a time window, so the question becomes: which predictions were created
while that submit was on the wire, whose ids this client has never seen? If the list
items carry the submitted input, match on it. Otherwise a candidate is adopted only when
it is the one unseen prediction in the window and no other open submit of this client
could own it. No candidate long after the window closed means nothing was created.
Anything else stays unknown: never guessed, never re-sent.

This assumes one client submits this model on the account during the window; another
process sharing the key can make its tasks look like candidates.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import anyio
import attrs

from .errors import OutpaintError
from .models import Prediction

if TYPE_CHECKING:
    from .client import OutpaintClient

log = logging.getLogger("wavespeed_outpaint.settle")


class Outcome(enum.Enum):
    ADOPTED = "adopted"  # the task was created: here it is
    ABSENT = "absent"  # no task was created: sending it again is safe
    AMBIGUOUS = "ambiguous"  # cannot tell


@attrs.frozen
class OpenSubmit:
    """A submit that may own a prediction: in flight now, or unknown from before."""

    key: str
    payload: dict[str, Any]
    sent_at: float
    ends_at: float  # by when the service would have created its task


@attrs.frozen
class Settlement:
    outcome: Outcome
    prediction: Prediction | None = None


class Settler:
    def __init__(
        self,
        client: OutpaintClient,
        *,
        clock_skew: float,
        grace: float,
        open_submits: Callable[[], list[OpenSubmit]],
        known_ids: Callable[[], set[str]],
    ) -> None:
        self._client = client
        self._skew = clock_skew
        self._grace = grace
        self._open_submits = open_submits
        self._known_ids = known_ids
        self._lock = anyio.Lock()
        self._adopted: set[str] = set()

    async def settle(self, submit: OpenSubmit, *, attempts: int = 6) -> Settlement:
        """Look for the submit's task; wait for the window to close and for neighbours."""
        for attempt in range(attempts):
            # Give a creation that raced the lost answer time to show in the list.
            await anyio.sleep(max(0.0, submit.ends_at + self._skew - time.time()))
            try:
                async with self._lock:
                    settlement = await self._try(submit)
            except OutpaintError as exc:
                log.warning("settling a lost submit failed: %s", exc)
                settlement = None
            if settlement is not None:
                return settlement
            # Not settled yet: a neighbour is still open, or absence is not yet conclusive.
            await anyio.sleep(min(self._grace, 1.0 * 2**attempt))
        return Settlement(Outcome.AMBIGUOUS)

    async def _try(self, submit: OpenSubmit) -> Settlement | None:
        start, end = submit.sent_at - self._skew, submit.ends_at + self._skew
        known = self._known_ids() | self._adopted
        unseen = [p for p in await self._window(start, end) if p.id not in known]
        with_input = [p for p in unseen if isinstance(p.raw.get("input"), dict)]
        if with_input:
            matches = [p for p in with_input if _same_input(p.raw["input"], submit.payload)]
            if len(matches) == 1:
                return self._adopt(matches[0])
        others = [o for o in self._open_submits() if o.key != submit.key]
        if not unseen:
            conclusive = time.time() >= submit.ends_at + self._grace
            blocked = any(
                o.sent_at - self._skew <= end and o.ends_at + self._skew >= start for o in others
            )
            if conclusive and not blocked:
                return Settlement(Outcome.ABSENT)
            return None
        if len(unseen) == 1 and not with_input:
            created = unseen[0].created_at.timestamp() if unseen[0].created_at else None
            rivals = [
                o
                for o in others
                if created is None or o.sent_at - self._skew <= created <= o.ends_at + self._skew
            ]
            if not rivals:
                return self._adopt(unseen[0])
            if any(o.ends_at > time.time() for o in rivals):
                return None  # a rival is still on the wire; its answer may claim the task
        return Settlement(Outcome.AMBIGUOUS)

    def _adopt(self, prediction: Prediction) -> Settlement:
        self._adopted.add(prediction.id)
        return Settlement(Outcome.ADOPTED, prediction)

    async def _window(self, start: float, end: float) -> list[Prediction]:
        found: list[Prediction] = []
        async for page in self._client.list_predictions(
            created_after=datetime.fromtimestamp(start, timezone.utc),
            created_before=datetime.fromtimestamp(end, timezone.utc),
        ):
            found.extend(page.items)
        return found


def _same_input(item_input: dict[str, Any], payload: dict[str, Any]) -> bool:
    return all(item_input.get(key) == value for key, value in payload.items())
