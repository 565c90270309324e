"""Settling a submit whose answer was lost, through the list endpoint (docs/protocol.md).

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
from collections import OrderedDict
from collections.abc import AsyncGenerator, Callable
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

import anyio
import attrs

from ..errors import OutpaintError
from ..models import CREATED_AT_RESOLUTION, MODEL_ID, Prediction

log = logging.getLogger("wavespeed_outpaint.settle")

# How long an id forgotten by its store stays known: far longer than any submit's window
# (its read time-out, plus the clock's uncertainty and the settle grace).
REMEMBER_SEEN = 3600.0
# Absence is concluded only if nothing of this model that no other submit explains was
# created this near the submit's window: the clock estimate's few seconds trust that
# `created_at` and the `Date` header share a clock, which an API edge and a database on
# two machines need not.
ABSENCE_WINDOW = 60.0


class ListAPI(Protocol):
    """What the settler asks the service: the predictions created in a time window."""

    def list_pages(
        self, *, created_after: datetime, created_before: datetime
    ) -> AsyncGenerator[tuple[int, int, list[dict[str, Any]]], None]: ...


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


class ClockOffset:
    """Bounds on (server clock - client clock), learned from answered submits.

    A task answered between `sent` and `received` (client clock) was created in that
    span, so its `created_at` (server clock) bounds the offset on both sides. With a few
    samples the window of a lost submit is as tight as the submits themselves, instead
    of padded by a guessed skew.
    """

    RESOLUTION = CREATED_AT_RESOLUTION

    def __init__(self, fallback_skew: float) -> None:
        self._skew = fallback_skew
        self._low = -float("inf")
        self._high = float("inf")

    @property
    def margin(self) -> float:
        """How far a server time may sit past the client's, as far as is known."""
        return self._skew if self._high == float("inf") else max(0.0, self._high) + self.RESOLUTION

    @property
    def uncertainty(self) -> float:
        """How wide the server-time window of an instant on the client's clock is."""
        if self._high == float("inf"):
            return 2 * self._skew
        return self._high - self._low + 2 * self.RESOLUTION

    @property
    def known(self) -> bool:
        """Whether any answer has bounded the offset yet."""
        return self._high != float("inf")

    def observe(
        self, sent: float, received: float, created: float, resolution: float = 0.0
    ) -> None:
        """A server time `created` (to within `resolution`, later only) read from an
        answer to a request sent and answered at these client times."""
        low, high = created - received, created + resolution - sent
        if max(self._low, low) <= min(self._high, high):
            self._low, self._high = max(self._low, low), min(self._high, high)

    def observe_date(self, sent: float, received: float, date: str) -> None:
        """An answer's HTTP `Date` header (whole seconds): enough to bound the offset
        before any submit is answered, so that the first lost one is judged right."""
        if self.known and self._high - self._low < 1.5:
            return  # known to within the header's resolution already
        try:
            when = parsedate_to_datetime(date)
        except (TypeError, ValueError, IndexError):
            return
        if when.tzinfo is None:
            return
        self.observe(sent, received, when.timestamp(), resolution=1.0)

    def server_window(self, start: float, end: float) -> tuple[float, float]:
        """The span of server time in which a submit open from start to end created a task."""
        if self._low == -float("inf"):
            return start - self._skew, end + self._skew
        return start + self._low - self.RESOLUTION, end + self._high + self.RESOLUTION


@attrs.frozen
class Settlement:
    outcome: Outcome
    prediction: Prediction | None = None


class Settler:
    def __init__(
        self,
        api: ListAPI,
        *,
        clock_skew: float,
        grace: float,
        open_submits: Callable[[], list[OpenSubmit]],
        known_ids: Callable[[], set[str]],
    ) -> None:
        self._api = api
        self._skew = clock_skew
        self.clock = ClockOffset(clock_skew)
        self._grace = grace
        self._open_submits = open_submits
        self._known_ids = known_ids
        self._lock = anyio.Lock()
        # Ids adopted, or forgotten by their store, in the last `REMEMBER_SEEN` seconds:
        # still known, so that no lost submit adopts them.
        self._seen: OrderedDict[str, float] = OrderedDict()

    async def settle(self, submit: OpenSubmit, *, attempts: int = 6) -> Settlement:
        """Look for the submit's task; wait for the window to close and for neighbours."""
        for attempt in range(attempts):
            # Give a creation that raced the lost answer time to show in the list.
            await anyio.sleep(max(0.0, submit.ends_at + self.clock.margin - time.time()))
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
        if not self.clock.known:
            # No answer has shown the service's clock yet (the first submit was the lost
            # one): one look at the list does (its Date header), before any window.
            await self._window(time.time() - 1.0, time.time())
        start, end = self.clock.server_window(submit.sent_at, submit.ends_at)
        known = self._known_ids() | self._recently_seen()
        unseen = [p for p in await self._window(start, end) if p.id not in known]
        if any(_foreign(p) for p in unseen):
            # Another model's task in the window: the list is not what the rules below
            # assume (only this client's submits create unseen tasks here). Never guess.
            return Settlement(Outcome.AMBIGUOUS)
        with_input = [p for p in unseen if isinstance(p.raw.get("input"), dict)]
        if with_input:
            matches = [p for p in with_input if _same_input(p.raw["input"], submit.payload)]
            if len(matches) == 1:
                return self._adopt(matches[0])
            if matches or len(with_input) < len(unseen):
                return Settlement(Outcome.AMBIGUOUS)
            # Every task in the window says what it was asked, none this: as if the window
            # were empty (another worker's tasks, in a cluster sharing the account).
            unseen = []
        if not unseen:
            if not self.clock.known:
                # A window on a guessed offset may miss the task: absent is not proven.
                return Settlement(Outcome.AMBIGUOUS)
            # Had this submit created a task, nobody could have its id: it would be here.
            if time.time() < submit.ends_at + self._grace:
                return None
            if await self._unexplained_near(submit, start, end, known):
                return Settlement(Outcome.AMBIGUOUS)  # never sent again on a guess
            return Settlement(Outcome.ABSENT)
        # The open submits whose windows chain to this one's, and every unseen
        # prediction in their joint window: who could have created which.
        cluster = self._cluster(submit)
        now = time.time()
        if any(o.ends_at > now for o, _, _ in cluster if o.key != submit.key):
            return None  # a neighbour is still on the wire: its answer may claim a task
        low = min(lo for _, lo, _ in cluster)
        high = max(hi for _, _, hi in cluster)
        predictions = [p for p in await self._window(low, high) if p.id not in known]
        if any(_foreign(p) for p in predictions):
            return Settlement(Outcome.AMBIGUOUS)
        owner = _assign(cluster, predictions).get(submit.key)
        log.debug(
            "settling %s: %d unseen, %d open submits around it, %s",
            submit.key[:8],
            len(unseen),
            len(cluster),
            "found" if owner else "ambiguous",
        )
        return self._adopt(owner) if owner is not None else Settlement(Outcome.AMBIGUOUS)

    async def _unexplained_near(
        self, submit: OpenSubmit, start: float, end: float, known: set[str]
    ) -> bool:
        """Whether a prediction of this model, unseen, was created within `ABSENCE_WINDOW`
        of the submit's window that neither says it was asked something else nor falls
        in another open submit's window: it may be this submit's, on another clock."""
        others = [
            self.clock.server_window(o.sent_at, o.ends_at)
            for o in self._open_submits()
            if o.key != submit.key
        ]
        for p in await self._window(start - ABSENCE_WINDOW, end + ABSENCE_WINDOW):
            if p.id in known or _foreign(p):
                continue
            asked = p.raw.get("input")
            if isinstance(asked, dict):
                if _same_input(asked, submit.payload):
                    return True
                continue
            created = p.created_at.timestamp() if p.created_at else None
            if created is None or not any(low <= created <= high for low, high in others):
                log.warning(
                    "a prediction nobody owns (%s) was created near a lost submit: not sent "
                    "again (the service's clocks may disagree)",
                    p.id,
                )
                return True
        return False

    def _cluster(self, submit: OpenSubmit) -> list[tuple[OpenSubmit, float, float]]:
        """This submit and the open ones whose windows overlap it, directly or in a chain."""
        windows = [
            (o, *self.clock.server_window(o.sent_at, o.ends_at)) for o in self._open_submits()
        ]
        if not any(o.key == submit.key for o, _, _ in windows):
            windows.append((submit, *self.clock.server_window(submit.sent_at, submit.ends_at)))
        cluster = [w for w in windows if w[0].key == submit.key]
        low, high = cluster[0][1], cluster[0][2]
        grown = True
        while grown:
            grown = False
            for window in windows:
                if window not in cluster and window[1] <= high and window[2] >= low:
                    cluster.append(window)
                    low, high = min(low, window[1]), max(high, window[2])
                    grown = True
        return cluster

    def _adopt(self, prediction: Prediction) -> Settlement:
        self.seen(prediction.id)
        return Settlement(Outcome.ADOPTED, prediction)

    def seen(self, prediction_id: str) -> None:
        """Remember an id this client owns that its stores may no longer hold."""
        self._seen[prediction_id] = time.monotonic()
        self._seen.move_to_end(prediction_id)

    def _recently_seen(self) -> set[str]:
        expired = time.monotonic() - REMEMBER_SEEN
        while self._seen and next(iter(self._seen.values())) < expired:
            self._seen.popitem(last=False)
        return set(self._seen)

    async def _window(self, start: float, end: float) -> list[Prediction]:
        found: list[Prediction] = []
        async for _, _, items in self._api.list_pages(
            created_after=datetime.fromtimestamp(start, timezone.utc),
            created_before=datetime.fromtimestamp(end, timezone.utc),
        ):
            found.extend(Prediction.from_data(item) for item in items)
        return found


def _assign(
    submits: list[tuple[OpenSubmit, float, float]], predictions: list[Prediction]
) -> dict[str, Prediction]:
    """Which submit created which prediction, as far as creation times can tell.

    Every unseen prediction was created by one of these submits, and a submit creates at
    most one task. A prediction that only one unassigned submit could have created is
    that submit's; assigning it can leave another prediction with a single possible
    owner, and so on. What stays open after that is truly ambiguous.
    """
    assigned: dict[str, Prediction] = {}
    # A submit that is the only possible owner of two predictions shows the rule broken
    # (someone else created one): it is never assigned, whichever was listed first.
    doubtful: set[str] = set()
    open_predictions = list(predictions)
    progress = True
    while progress:
        progress = False
        forced: dict[str, list[Prediction]] = {}
        for prediction in open_predictions:
            created = prediction.created_at.timestamp() if prediction.created_at else None
            owners = [
                o
                for o, low, high in submits
                if o.key not in assigned and (created is None or low <= created <= high)
            ]
            if len(owners) == 1:
                forced.setdefault(owners[0].key, []).append(prediction)
        for key, only_theirs in forced.items():
            if len(only_theirs) > 1 or key in doubtful:
                doubtful.add(key)
                continue
            assigned[key] = only_theirs[0]
            open_predictions.remove(only_theirs[0])
            progress = True
    return {key: p for key, p in assigned.items() if key not in doubtful}


def _foreign(prediction: Prediction) -> bool:
    """A list item that names another model (the list was asked for this one)."""
    model = prediction.raw.get("model")
    return isinstance(model, str) and model != MODEL_ID


def _same_input(item_input: dict[str, Any], payload: dict[str, Any]) -> bool:
    # A signed URL's query is not kept in the journal (it is a credential): the audio
    # is the same when all but the query is.
    return all(
        _unsigned(item_input.get(key)) == _unsigned(value)
        if key == "audio"
        else item_input.get(key) == value
        for key, value in payload.items()
    )


def unsigned(url: str) -> str:
    """`url` without its query, where a signed URL keeps its signature."""
    return url.split("?", 1)[0]


def _unsigned(value: Any) -> Any:
    return unsigned(value) if isinstance(value, str) else value
