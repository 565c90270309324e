"""The poller's windows over the list endpoint: the tasks in flight, in creation order, cut
into runs that each fit one page of the predictions the list shows around them.

A window is one list request (status, a creation span) when it is looked at; what the
list showed before (`ListedItems`) says how many items its page will hold.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from typing import Protocol, TypeVar

# Items one list page shows, and the room a window keeps in its page for what its look
# finds beyond what it holds (see `cut_windows`): at most this many of its own tasks,
# and this many of anyone else's.
PAGE_ITEMS = 100
ROOM_ITEMS = 20
OTHERS_ITEMS = 2
# Looks whose finds set that room.
ROOM_LOOKS = 20


class Spanned(Protocol):
    """A task in flight, as a window sees it: when it was created, give or take."""

    @property
    def created(self) -> float: ...

    @property
    def margin(self) -> float: ...


W = TypeVar("W", bound=Spanned)


class ListedItems:
    """Predictions of one status the list has shown (anyone's), by creation time: how
    many items a window will hold. Only the span of the tasks in flight is kept."""

    def __init__(self) -> None:
        self.created: list[float] = []  # sorted
        self._ids: dict[str, float] = {}

    def __contains__(self, prediction_id: str) -> bool:
        return prediction_id in self._ids

    def add(self, prediction_id: str, created: float) -> None:
        if prediction_id not in self._ids:
            self._ids[prediction_id] = created
            bisect.insort(self.created, created)

    def forget_before(self, oldest: float) -> None:
        """Items created before every task in flight no longer fall in any window
        (forgotten in bulk, when they are half of what is kept)."""
        cut = bisect.bisect_left(self.created, oldest - 1.0)
        if cut > 1000 and cut > len(self.created) // 2:
            limit = self.created[cut - 1]
            del self.created[:cut]
            self._ids = {i: c for i, c in self._ids.items() if c > limit}


def cut_windows(
    order: list[W], finished: list[float], found_lately: Iterable[int]
) -> list[list[W]]:
    """The tasks in creation order, cut where a window's page would run over: the
    predictions already finished in its span, and room for what its look finds (two
    items of anyone else's, and its own tasks that end before it: no more than it
    has, nor than the most any of the last looks found). A long run of finished
    predictions between two tasks in flight is skipped, not read.

    A page that runs over costs a second request at that look; a window cut too
    short, one at each of its looks. With room for 20 in all whatever was found, a
    heavy tail's stragglers were cut off in a window of their own a look in four at
    64 in flight, where looks found 12 at most: 0.30 requests a task, 0.28 to 0.29 now
    for the same lag. Past 20 found the room stays: at 1,000 in flight, where what a
    look finds comes in waves, room for the most found cut windows short after each
    wave (base-dominated: 0.036 requests a task became 0.045). `found_lately`: how many
    each of the last looks found."""
    windows: list[list[W]] = []
    window: list[W] = []
    start = 0
    found = min(ROOM_ITEMS, max(found_lately, default=ROOM_ITEMS))
    for w in order:
        if window:
            held = bisect.bisect_right(finished, w.created + w.margin) - start
            if held + OTHERS_ITEMS + min(found, len(window) + 1) > PAGE_ITEMS:
                windows.append(window)
                window = []
        if not window:
            start = bisect.bisect_left(finished, w.created - w.margin)
        window.append(w)
    if window:
        windows.append(window)
    return windows
