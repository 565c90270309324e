"""How long the service's tasks took, kept between processes.

The shared poller learns from each task it sees end how long tasks take; a new process
would otherwise start blind and look for its first wave of tasks as if the service could
have any speed. What it learned is kept, by model and generated seconds, in a small
table: in a batch's journal (it travels with the journal), and in the user's state
folder for a client without one (a web backend's restart). Each key keeps its most recent
times only, and none older than `KEPT_FOR`: a service that changed speed since is
followed by the poller within a wave (see `SharedPoller.recall`).

Its own SQLite connection, opened only to read at the start and to write at the end: no
lock is taken beyond SQLite's own, so several processes (a web server's workers) share
one state folder.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from urllib.parse import urlsplit

log = logging.getLogger("wavespeed_outpaint.times")

SCHEMA = """
CREATE TABLE IF NOT EXISTS task_times (
    model      TEXT NOT NULL,   -- the model, and the service's host (`service_key`)
    generated  REAL NOT NULL,   -- seconds of audio the task generated
    seconds    REAL NOT NULL,   -- from its creation to its end, as the poller placed it
    ended_at   REAL NOT NULL    -- when it was seen to end (Unix time)
);
CREATE INDEX IF NOT EXISTS task_times_key ON task_times(model, generated, ended_at);
"""
# Times kept for each (model, generated seconds), the newest.
KEPT = 256
# Older times say little about the service today.
KEPT_FOR = 7 * 24 * 3600.0
FILE_NAME = "task-times.sqlite"


def default_state_dir() -> Path:
    """`$XDG_STATE_HOME/wavespeed-outpaint`, else `~/.local/state/wavespeed-outpaint`."""
    state = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(state) / "wavespeed-outpaint"


def service_key(model: str, base_url: str) -> str:
    """Times are kept per model and per service (its host and port): the emulator's
    quick tasks say nothing of the real service's."""
    return f"{model}@{urlsplit(base_url).netloc}"


def generated_key(generated: float) -> float:
    """Tasks within a tenth of a second of generated audio share their times."""
    return round(generated, 1)


class TaskTimes:
    """The times kept in one SQLite file (a journal, or the state folder's own file)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @contextlib.contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=5.0, isolation_level=None)
        try:
            db.executescript(SCHEMA)
            yield db
        finally:
            db.close()

    def recall(self, model: str) -> dict[float, list[float]]:
        """The kept times of this model, oldest first, by generated seconds. Nothing (and
        a warning) if the file cannot be read: the poller then learns afresh."""
        if not self.path.exists():
            return {}
        try:
            with self._connection() as db:
                rows = db.execute(
                    "SELECT generated, seconds FROM task_times WHERE model = ? AND ended_at > ?"
                    " ORDER BY ended_at",
                    (model, time.time() - KEPT_FOR),
                ).fetchall()
        except (OSError, sqlite3.Error) as exc:
            log.warning("cannot read the task times kept in %s (%s)", self.path, exc)
            return {}
        times: dict[float, list[float]] = {}
        for generated, seconds in rows:
            times.setdefault(generated_key(generated), []).append(seconds)
        return {key: kept[-KEPT:] for key, kept in times.items()}

    def keep(self, model: str, times: Mapping[float, Sequence[float]]) -> None:
        """Add these times (newest last) and forget what is beyond `KEPT` a key or older
        than `KEPT_FOR`. A file that cannot be written costs a warning, nothing more."""
        if not any(times.values()):
            return
        now = time.time()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._connection() as db:
                db.execute("BEGIN IMMEDIATE")
                for generated, seconds in times.items():
                    key = generated_key(generated)
                    # The newest last: spaced a microsecond apart so they keep their order.
                    db.executemany(
                        "INSERT INTO task_times VALUES (?, ?, ?, ?)",
                        [
                            (model, key, s, now - 1e-6 * (len(seconds) - i))
                            for i, s in enumerate(seconds[-KEPT:])
                        ],
                    )
                    db.execute(
                        "DELETE FROM task_times WHERE model = ? AND generated = ? AND ended_at <"
                        " (SELECT MIN(ended_at) FROM (SELECT ended_at FROM task_times"
                        " WHERE model = ? AND generated = ? ORDER BY ended_at DESC LIMIT ?))",
                        (model, key, model, key, KEPT),
                    )
                db.execute("DELETE FROM task_times WHERE ended_at < ?", (now - KEPT_FOR,))
                db.execute("COMMIT")
        except (OSError, sqlite3.Error) as exc:
            log.warning("cannot keep the task times in %s (%s)", self.path, exc)
