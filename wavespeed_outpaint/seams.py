"""The seams where other parts plug into the engine: where task records live, who may
start a task when, and where finished audio goes. Each is a typing `Protocol`: any
object with these methods fits, no base class needed. The defaults that ship:

    TaskStore      the SQLite journal (`outpaint_many(journal=path)`), or one in memory
    StartLimiter   `StartPacer`: this process's starts per minute, paused by 429s
    OutputSink     `LocalFolder`: each output written to `<name>.part`, renamed into place

Give your own with `OutpaintClient(limiter=...)`, `outpaint_many(journal=store)` and
`outpaint(..., out_dir=sink)` / `outpaint_many(..., out_dir=sink)`.
"""

from __future__ import annotations

import json
from typing import Any, Protocol, runtime_checkable

import attrs

__all__ = [
    "OutputMark",
    "OutputPart",
    "OutputSink",
    "SharedTaskStore",
    "StartLimiter",
    "State",
    "TaskRow",
    "TaskStore",
]

# A local file's version: its absolute path, size, modification time (ns) and inode.
FileVersion = tuple[str, int, int, int]


class State:
    PENDING = "pending"  # known, nothing sent
    SUBMITTING = "submitting"  # a submit POST may be on the wire
    SUBMITTED = "submitted"  # the service returned a prediction id
    COMPLETED = "completed"  # outputs known, not yet all on disk
    DOWNLOADED = "downloaded"  # files whole on disk
    FAILED = "failed"  # the task (or its input, or its download) failed
    UNKNOWN = "unknown"  # a submit whose outcome cannot be known


@attrs.define(eq=False)
class TaskRow:
    """One task's row. The JSON columns are decoded when asked for: most reads need none.

    `Journal.update` changes it in place along with the database: the engine drives
    each task from one coroutine, which holds its row.
    """

    fingerprint: str
    request_json: str
    input: str
    output_stem: str | None
    state: str
    prediction_id: str | None
    created_at: float | None
    sent_at: float | None
    failed_at: float | None
    status: str | None
    code: int | None
    outputs_json: str | None
    files_json: str | None
    error: str | None
    cost_usd: float
    delivered_by: str | None

    @property
    def request(self) -> dict[str, Any]:
        return json.loads(self.request_json)  # type: ignore[no-any-return]

    # The last decoded JSON lists, with the text they came from: a task reads its
    # outputs several times on its way.
    _outputs: tuple[str | None, tuple[str, ...]] = attrs.field(init=False, default=(None, ()))
    _files: tuple[str | None, tuple[str, ...]] = attrs.field(init=False, default=(None, ()))

    @property
    def outputs(self) -> tuple[str, ...]:
        if self._outputs[0] is not self.outputs_json:
            self._outputs = (self.outputs_json, tuple(json.loads(self.outputs_json or "[]")))
        return self._outputs[1]

    @property
    def files(self) -> tuple[str, ...]:
        if self._files[0] is not self.files_json:
            self._files = (self.files_json, tuple(json.loads(self.files_json or "[]")))
        return self._files[1]


@attrs.frozen
class OutputMark:
    """What an output remembers of the task that made it, stored with the output itself
    (an extended attribute, object metadata): with the journal lost, a run still knows
    which outputs are whole and whose they are, and pays for none of them again.
    `size` is the output's length when it was written (a file of another length is not
    the one that was marked), or -1 where a store's writes are whole by themselves and
    the length was not known when the mark was set (a multipart upload's)."""

    fingerprint: str
    prediction_id: str
    outputs: tuple[str, ...]  # the service's output URLs of the task, in order
    size: int = -1

    def encode(self) -> bytes:
        return json.dumps(
            {
                "fingerprint": self.fingerprint,
                "prediction_id": self.prediction_id,
                "outputs": list(self.outputs),
                "size": self.size,
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def decode(cls, data: bytes) -> OutputMark | None:
        """The mark in `data`, or None for anything that is not one."""
        try:
            doc = json.loads(data)
            mark = cls(doc["fingerprint"], doc["prediction_id"], tuple(doc["outputs"]), doc["size"])
        except (ValueError, TypeError, KeyError):
            return None
        strings = [mark.fingerprint, mark.prediction_id, *mark.outputs]
        if not all(isinstance(s, str) and s for s in strings):
            return None
        if isinstance(mark.size, bool) or not isinstance(mark.size, int) or mark.size < -1:
            return None
        return mark


class OutputPart(Protocol):
    """One output being written. Nothing is visible at its location until `commit`."""

    async def write(self, chunk: bytes) -> None:
        """Append the next bytes of the output."""

    async def commit(self) -> str:
        """Make the output whole at its location, at once; returns the location."""

    async def abort(self) -> None:
        """Give the output up: nothing of it stays (safe to call after a failed commit)."""


class OutputSink(Protocol):
    """Where finished audio goes, by relative names such as `album/song.wav`."""

    async def prepare(self) -> None:
        """Check that outputs can be written here (make the folder, reach the bucket);
        called before a batch submits anything. Raises `OutputError` saying what to fix."""

    def location(self, name: str) -> str:
        """Where `name` lands (a path, a URL). Raises `ValidationError` for a name that
        would land outside the sink."""

    async def exists(self, name: str) -> bool:
        """Whether a whole output is at `name` already."""

    async def open_part(self, name: str, mark: OutputMark | None = None) -> OutputPart:
        """Start writing `name`; once committed, it carries `mark` (with its size).
        Raises `OutputError` when it cannot be written."""

    async def mark(self, name: str) -> OutputMark | None:
        """The mark of the output at `name`, if one is there, carries a mark, and is
        still the length it was written with; else None."""


class StartLimiter(Protocol):
    """Who may start a task when: `slot()` before every submit, then `accepted()` or
    `rate_limited()` with what the service said. One limiter can serve many clients,
    and a limiter shared by several processes can sit behind this seam."""

    async def slot(self) -> None:
        """Wait until a submit may be sent."""

    def accepted(self) -> None:
        """The service took the submit."""

    def rate_limited(self, retry_after: float | None) -> None:
        """The service answered 429; `retry_after` is its hint in seconds, if any."""


class TaskStore(Protocol):
    """Where each task's record lives, keyed by its fingerprint (the input's identity
    and every parameter): what was sent, which prediction it became, where its files
    are. Every change is recorded before the engine acts on it, so a store that outlives
    the process lets the next run resume without paying twice."""

    def add(
        self,
        fingerprint: str,
        request: dict[str, Any],
        source: str,
        cost_usd: float,
        stems: tuple[str, ...] = (),
    ) -> TaskRow:
        """The task's record as it is, or a new one (state `pending`) holding the first
        of `stems` that no other task holds as its output name."""

    def update(self, row: TaskRow, **fields: Any) -> TaskRow:
        """Change fields of a record; returns the changed record."""

    async def durable(self) -> None:
        """Return once every change so far would survive the process being killed."""

    def open_submits(self) -> list[TaskRow]:
        """Records whose submit was sent and whose outcome is not known yet."""

    def known_prediction_ids(self) -> set[str]:
        """Every prediction id the store has recorded."""

    def upload_url(self, content_hash: str) -> str | None:
        """The URL an earlier upload of this content returned, if recorded."""

    def remember_upload(self, content_hash: str, url: str) -> None:
        """Record the URL an upload of this content returned."""

    def file_hash(self, version: FileVersion) -> str | None:
        """The SHA-256 recorded for this version of a local file (its absolute path,
        size, modification time in ns and inode), if any: a resumed batch of unchanged
        files reads none of them again."""

    def remember_file_hash(self, version: FileVersion, sha256: str) -> None:
        """Record a local file's SHA-256 for this version of it."""

    def close(self) -> None:
        """Make everything durable and let go of the store."""


@runtime_checkable
class SharedTaskStore(TaskStore, Protocol):
    """A `TaskStore` that several processes share (the workers of a cluster). Before a
    task's submit is sent, the engine asks to `claim` it: only one process may send a
    task."""

    async def claim(self, row: TaskRow) -> None:
        """Make the task of `row` (just marked submitting) this process's to send, or
        raise `TaskClaimed` with the record of the process that holds it."""

    async def record(self, fingerprint: str) -> dict[str, Any] | None:
        """The task's shared record now, as fields of `update`; None if it has none."""

    async def take_over(self, row: TaskRow) -> None:
        """The holder of this task's claim died sending it, and the list endpoint shows
        its submit created nothing: make the task this process's to send (as its record
        was last read), or raise `TaskClaimed` if another process took it over first."""
