"""The SQLite journal: every task's state, written before the code acts on it.

A task is keyed by the fingerprint of its normalised request (the audio's content hash,
not its path, plus every parameter). The rows answer the resume questions: was it
submitted (poll it, never submit again), was a submit in flight when the process died
(settle it through the list endpoint), did it complete (download again if its files are
missing). WAL mode keeps each commit cheap and survives a killed process.

Inside an event loop, writes are grouped: a row's changes are kept in memory and the
end of the loop iteration writes every changed row (a statement per set of changed
columns) in one commit, so thousands of tasks changing state together cost one commit,
not thousands. A write that must be on disk before the code acts on it (a submit about
to be sent) awaits `durable()`, which shares that commit. A crash can lose only writes
of the current iteration, none of which let anything be charged twice: a lost
"submitted" leaves the row "submitting", which is settled, never sent again.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import sqlite3
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from ..errors import JournalError, ValidationError
from ..models import expand_path
from ..seams import FileVersion, State, TaskRow

SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    fingerprint   TEXT PRIMARY KEY,
    request       TEXT NOT NULL,          -- the payload, with the audio URL once submitted
    input         TEXT NOT NULL,          -- what the user gave as audio (path or URL)
    output_stem   TEXT,                   -- claimed output name under out_dir
    state         TEXT NOT NULL,          -- see State
    prediction_id TEXT,
    created_at    REAL,                   -- the prediction's creation time (server clock)
    sent_at       REAL,                   -- a submit POST went out at (unknown window start)
    failed_at     REAL,                   -- ... and failed at (unknown window end)
    status        TEXT,                   -- the prediction's last status
    code          INTEGER,
    outputs       TEXT,                   -- JSON list of output URLs
    files         TEXT,                   -- JSON list of written paths
    error         TEXT,
    cost_usd      REAL NOT NULL,
    delivered_by  TEXT,                   -- "poll", "list" or "webhook"
    updated_at    REAL NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS tasks_output_stem ON tasks(output_stem);
CREATE TABLE IF NOT EXISTS uploads (
    content_hash TEXT PRIMARY KEY,
    url          TEXT NOT NULL,
    uploaded_at  REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS file_hashes (  -- a local input's SHA-256, by its version
    path     TEXT PRIMARY KEY,
    size     INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    inode    INTEGER NOT NULL,
    sha256   TEXT NOT NULL
);
"""

# Uploads are kept 7 days by the service; reuse one only well inside that.
UPLOAD_REUSE_SECONDS = 6 * 24 * 3600


# Columns holding JSON, and the TaskRow fields that keep their text.
_JSON_FIELDS = {"request": "request_json", "outputs": "outputs_json", "files": "files_json"}

# The columns a TaskRow is built from, in its fields' order.
ROW_COLUMNS = (
    "fingerprint, request, input, output_stem, state, prediction_id, created_at, sent_at, "
    "failed_at, status, code, outputs, files, error, cost_usd, delivered_by"
)


def _row(r: tuple[Any, ...]) -> TaskRow:
    return TaskRow(*r)


@functools.lru_cache(maxsize=64)
def _update_sql(columns: tuple[str, ...]) -> str:
    """The UPDATE of just these columns: a row's few changed columns cost a third of
    what rewriting all of them does."""
    assigned = "".join(f"{name} = ?, " for name in columns)
    return f"UPDATE tasks SET {assigned}updated_at = ? WHERE fingerprint = ?"


class Journal:
    """One SQLite file (or memory, for `path=None`), used from the event loop's thread."""

    def __init__(self, path: str | os.PathLike[str] | None, *, reader: bool = False) -> None:
        """`reader`: only to look (a status report), beside a run that may hold it."""
        target = ":memory:" if path is None else str(expand_path(path))
        self._lock_file: IO[str] | None = None
        if path is not None:
            try:
                Path(target).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise JournalError(
                    f"journal {target}: cannot create its folder ({exc.strerror}); "
                    "give --journal a path in a folder you can write"
                ) from None
            if not reader:
                # Taken before anything is read: two runs on one journal would each
                # submit every task (both would see it unsent).
                self._lock_file = _hold(target)
        try:
            self._db = sqlite3.connect(target, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            # NORMAL: a commit survives a killed process; only a power cut can lose the last ones.
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)
        except sqlite3.DatabaseError as exc:
            if self._lock_file is not None:
                self._lock_file.close()
            raise JournalError(
                f"journal {target} is not a usable SQLite journal ({exc}); give another path, "
                "or move the file away if it is not a journal of this tool"
            ) from None
        self.path = None if path is None else Path(target)
        self._in_transaction = False
        self._commit_error: sqlite3.Error | None = None
        # Rows changed in memory since the last write, with the columns changed.
        self._changed: dict[str, tuple[TaskRow, set[str]]] = {}
        self._commit_planned = False
        self._committed: asyncio.Future[None] | None = None

    def close(self) -> None:
        try:
            self.commit()
        finally:
            self._db.close()
            if self._lock_file is not None:
                self._lock_file.close()  # closing the file lets go of its lock
                self._lock_file = None

    def commit(self) -> None:
        """Make every write so far durable now."""
        self._raise_commit_error()
        self._commit_now()

    def _commit_now(self) -> None:
        self._save_changed()
        if self._in_transaction:
            self._in_transaction = False
            self._db.execute("COMMIT")

    async def durable(self) -> None:
        """Wait until every write so far is committed: at the end of this loop iteration,
        in the one commit every task that asks in this iteration shares."""
        if self._committed is None:
            self._committed = asyncio.get_running_loop().create_future()
            self._plan_commit()
        await asyncio.shield(self._committed)
        self._raise_commit_error()

    def _plan_commit(self) -> bool:
        """Commit at the end of this loop iteration; False outside an event loop."""
        if self._commit_planned:
            return True
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return False  # used outside an event loop: every write commits by itself
        loop.call_soon(self._commit_at_end_of_iteration)
        self._commit_planned = True
        return True

    def _commit_at_end_of_iteration(self) -> None:
        self._commit_planned = False
        committed, self._committed = self._committed, None
        if self._commit_error is None:
            try:
                self._commit_now()
            except sqlite3.Error as exc:
                # Nobody awaits this callback: keep the error for the next write to raise.
                self._commit_error = exc
                self._in_transaction = False
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
        if committed is not None and not committed.done():
            committed.set_result(None)  # `durable()` raises a failure itself

    def _save_changed(self) -> None:
        """Write the rows changed in memory: one statement for each set of columns."""
        if not self._changed:
            return
        by_columns: defaultdict[tuple[str, ...], list[tuple[Any, ...]]] = defaultdict(list)
        now = time.time()
        for row, columns in self._changed.values():
            names = tuple(sorted(columns))
            values = [getattr(row, _JSON_FIELDS.get(name, name)) for name in names]
            by_columns[names].append((*values, now, row.fingerprint))
        self._changed.clear()
        self._begin()
        for names, rows in by_columns.items():
            self._db.executemany(_update_sql(names), rows)

    def _begin(self) -> None:
        if not self._in_transaction:
            self._db.execute("BEGIN")
            self._in_transaction = True

    def _raise_commit_error(self) -> None:
        if self._commit_error is not None:
            exc, self._commit_error = self._commit_error, None
            raise JournalError(
                f"journal {self.path} could not be written ({exc}); make room or mend it, "
                "then run again with this journal: tasks already sent are found again, "
                "never sent twice"
            ) from exc

    def _write(self, sql: str, values: tuple[Any, ...]) -> sqlite3.Cursor:
        self._raise_commit_error()
        with self._damage_is_an_error():
            self._save_changed()  # in the order they were made
            if self._plan_commit():
                self._begin()
            return self._db.execute(sql, values)

    def _read(self, sql: str, values: tuple[Any, ...] = ()) -> sqlite3.Cursor:
        with self._damage_is_an_error():
            self._save_changed()  # a query sees every change made so far
            return self._db.execute(sql, values)

    @contextlib.contextmanager
    def _damage_is_an_error(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.IntegrityError:
            raise  # a constraint the caller works with (an output name already taken)
        except sqlite3.DatabaseError as exc:
            raise JournalError(
                f"journal {self.path} cannot be read or written ({exc}); if it is damaged, "
                "move it away and run with --new-journal (tasks it knew are paid for again)"
            ) from None

    # -- tasks -------------------------------------------------------------------------

    def get(self, fingerprint: str) -> TaskRow | None:
        r = self._read(
            f"SELECT {ROW_COLUMNS} FROM tasks WHERE fingerprint = ?", (fingerprint,)
        ).fetchone()
        return _row(r) if r else None

    def add(
        self,
        fingerprint: str,
        request: dict[str, Any],
        input_text: str,
        cost_usd: float,
        stems: tuple[str, ...] = (),
    ) -> TaskRow:
        """The task's row: as it was, or new, with the first of `stems` that no other task
        has as its output name."""
        request_json = json.dumps(request)
        for stem in stems or (None,):
            try:
                added = self._write(
                    "INSERT INTO tasks (fingerprint, request, input, output_stem, state, cost_usd,"
                    " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(fingerprint) DO NOTHING",
                    (
                        fingerprint,
                        request_json,
                        input_text,
                        stem,
                        State.PENDING,
                        cost_usd,
                        time.time(),
                    ),
                ).rowcount
            except sqlite3.IntegrityError:
                continue  # the name is taken by another task: try the next
            if added:
                # The row is what was just written: no need to read it back.
                return TaskRow(
                    fingerprint=fingerprint,
                    request_json=request_json,
                    input=input_text,
                    output_stem=stem,
                    state=State.PENDING,
                    prediction_id=None,
                    created_at=None,
                    sent_at=None,
                    failed_at=None,
                    status=None,
                    code=None,
                    outputs_json=None,
                    files_json=None,
                    error=None,
                    cost_usd=cost_usd,
                    delivered_by=None,
                )
            row = self.get(fingerprint)
            assert row is not None
            return self.claim_stem(row, stems) if stems else row
        raise ValidationError("output name", stems[0], "two tasks claim the same output name")

    def claim_stem(self, row: TaskRow, stems: tuple[str, ...]) -> TaskRow:
        """Give the task the first of `stems` no other task has as its output name."""
        if row.output_stem:
            return row
        for stem in stems:
            try:
                return self.update(row, output_stem=stem)
            except sqlite3.IntegrityError:
                continue
        raise ValidationError("output name", stems[0], "two tasks claim the same output name")

    def update(self, row: TaskRow, **fields: Any) -> TaskRow:
        """Change a task's row, in `row` now and in the database by the end of this loop
        iteration (at once outside a loop); returns `row`."""
        for name in ("outputs", "files"):
            if name in fields:
                fields[name] = json.dumps([str(x) for x in fields[name]])
        if "request" in fields:
            fields["request"] = json.dumps(fields["request"])
        if "output_stem" in fields:
            # Its unique index must answer now: raises IntegrityError when it is taken.
            stem = fields.pop("output_stem")
            self._write(
                "UPDATE tasks SET output_stem = ? WHERE fingerprint = ?", (stem, row.fingerprint)
            )
            row.output_stem = stem
        self._raise_commit_error()
        for name, value in fields.items():
            setattr(row, _JSON_FIELDS.get(name, name), value)
        changed = self._changed.get(row.fingerprint)
        if changed is not None:
            changed[1].update(fields)
        elif fields:
            self._changed[row.fingerprint] = (row, set(fields))
        if not self._plan_commit():
            self.commit()
        return row

    def rows(self, state: str | None = None) -> Iterator[TaskRow]:
        if state is None:
            cursor = self._read(f"SELECT {ROW_COLUMNS} FROM tasks ORDER BY rowid")
        else:
            cursor = self._read(
                f"SELECT {ROW_COLUMNS} FROM tasks WHERE state = ? ORDER BY rowid", (state,)
            )
        with self._damage_is_an_error():
            for r in cursor:
                yield _row(r)

    def open_submits(self) -> list[TaskRow]:
        """Rows whose submit may have created a task nobody has an id for."""
        cursor = self._read(
            f"SELECT {ROW_COLUMNS} FROM tasks WHERE state IN (?, ?) AND sent_at IS NOT NULL",
            (State.SUBMITTING, State.UNKNOWN),
        )
        return [_row(r) for r in cursor]

    def forget(self, fingerprint: str) -> None:
        """Drop a task's row (the in-memory store of `outpaint()` calls, once each ends)."""
        self._changed.pop(fingerprint, None)
        self._write("DELETE FROM tasks WHERE fingerprint = ?", (fingerprint,))

    def known_prediction_ids(self) -> set[str]:
        cursor = self._read("SELECT prediction_id FROM tasks WHERE prediction_id IS NOT NULL")
        return {r[0] for r in cursor}

    # -- uploads -----------------------------------------------------------------------

    def upload_url(self, content_hash: str) -> str | None:
        r = self._read(
            "SELECT url FROM uploads WHERE content_hash = ? AND uploaded_at > ?",
            (content_hash, time.time() - UPLOAD_REUSE_SECONDS),
        ).fetchone()
        return r[0] if r else None

    def remember_upload(self, content_hash: str, url: str) -> None:
        self._write(
            "INSERT OR REPLACE INTO uploads (content_hash, url, uploaded_at) VALUES (?, ?, ?)",
            (content_hash, url, time.time()),
        )

    # -- local inputs' hashes ----------------------------------------------------------

    def file_hash(self, version: FileVersion) -> str | None:
        path, size, mtime_ns, inode = version
        r = self._read(
            "SELECT sha256 FROM file_hashes WHERE path = ? AND size = ? AND mtime_ns = ?"
            " AND inode = ?",
            (path, size, mtime_ns, inode),
        ).fetchone()
        return r[0] if r else None

    def remember_file_hash(self, version: FileVersion, sha256: str) -> None:
        self._write("INSERT OR REPLACE INTO file_hashes VALUES (?, ?, ?, ?, ?)", (*version, sha256))


def _hold(journal: str) -> IO[str] | None:
    """Lock `<journal>.lock` for this journal object, or raise `JournalError` naming the
    process that holds it. An OS lock (flock): a killed process lets go of it at once."""
    try:
        import fcntl
    except ImportError:  # Windows: no flock; SQLite's own locking is all there is
        return None
    lock_path = journal + ".lock"
    try:
        f = open(lock_path, "a+")  # noqa: SIM115 - held open for the journal's life
    except OSError as exc:
        raise JournalError(f"journal {journal}: cannot open {lock_path} ({exc.strerror})") from None
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.seek(0)
        holder = f.read().strip() or "unknown"
        f.close()
        who = "this process" if holder == str(os.getpid()) else f"process {holder}"
        raise JournalError(
            f"journal {journal} is in use by {who} (another run or batch on the same "
            "journal); wait until it ends, or give this run another --out or --journal"
        ) from None
    f.seek(0)
    f.truncate()
    f.write(str(os.getpid()))
    f.flush()
    return f
