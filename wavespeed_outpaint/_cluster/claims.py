"""A task store shared by the workers of a cluster: each process keeps its own journal
(SQLite, beside it), and every task's record is also an object under a prefix of a
bucket, `<prefix><fingerprint>.json`.

The record is created when the task's submit is about to be sent, with a conditional
put that only one process can win (`claim`): a process that loses learns the winner's
record instead, and collects the task (polls its prediction, downloads its outputs)
rather than sending it. Later states (submitted with its prediction id, completed,
downloaded, failed) are written over it as they happen, in the background, so a batch
that Ray retries on another node, or a run of the same job again, finds where each task
stands. A record left "submitting" by a worker that died is settled through the list
endpoint, as a lost submit is on one machine.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import attrs

from .._engine.journal import Journal
from .._outputs.s3 import ObjectStores, _obstore, _why
from ..errors import JournalError, TaskClaimed
from ..models import ObjectRef
from ..seams import FileVersion, State, TaskRow

log = logging.getLogger("wavespeed_outpaint.claims")

# Records written at once. One at a time, a worker's store writes (some three a task,
# 20 to 50 ms each) became what paced it: 12 tasks a second for two workers where the
# service could run 25 (benchmarks/cluster.py).
PARALLEL_WRITES = 16

# The states other workers learn from a record (a pending task has no record).
SHARED_STATES = (State.SUBMITTED, State.COMPLETED, State.DOWNLOADED, State.FAILED, State.UNKNOWN)
# The fields of a row a record holds.
RECORD_FIELDS = (
    "state",
    "prediction_id",
    "created_at",
    "sent_at",
    "failed_at",
    "status",
    "code",
    "error",
    "delivered_by",
)


def record_of(row: TaskRow) -> bytes:
    doc: dict[str, Any] = {name: getattr(row, name) for name in RECORD_FIELDS}
    doc["outputs"] = list(row.outputs)
    doc["files"] = list(row.files)
    doc["fingerprint"] = row.fingerprint
    return json.dumps(doc, separators=(",", ":")).encode()


def fields_of(data: bytes) -> dict[str, Any]:
    """A record as fields of `TaskStore.update`."""
    doc = json.loads(data)
    fields = {name: doc.get(name) for name in RECORD_FIELDS}
    fields["outputs"] = tuple(doc.get("outputs") or ())
    fields["files"] = tuple(doc.get("files") or ())
    return fields


class ObjectClaims:
    """A `SharedTaskStore`: a local `Journal` plus a record per task in a bucket."""

    def __init__(self, local: Journal, prefix: str, stores: ObjectStores) -> None:
        self._local = local
        self.prefix = ObjectRef.parse_prefix(prefix, field="store")
        self._store = stores.store(self.prefix.bucket)
        # Records to write, the newest of each task (as bytes: a row changes in place),
        # the tasks whose record is being written, and the writers.
        self._pending: dict[str, bytes] = {}
        self._writing: set[str] = set()
        self._writers: set[asyncio.Task[None]] = set()
        # Tasks this process claimed (or took over), and the versions of records read.
        self._owned: set[str] = set()
        self._read_versions: dict[str, str] = {}

    def _key(self, fingerprint: str) -> str:
        return f"{self.prefix.key}{fingerprint}.json"

    # -- TaskStore ---------------------------------------------------------------------

    def add(
        self,
        fingerprint: str,
        request: dict[str, Any],
        source: str,
        cost_usd: float,
        stems: tuple[str, ...] = (),
    ) -> TaskRow:
        return self._local.add(fingerprint, request, source, cost_usd, stems)

    def update(self, row: TaskRow, **fields: Any) -> TaskRow:
        row = self._local.update(row, **fields)
        if row.state in SHARED_STATES:
            self._pending[row.fingerprint] = record_of(row)
            self._start_writers()
        return row

    async def durable(self) -> None:
        await self._local.durable()

    def open_submits(self) -> list[TaskRow]:
        return self._local.open_submits()

    def known_prediction_ids(self) -> set[str]:
        return self._local.known_prediction_ids()

    def upload_url(self, content_hash: str) -> str | None:
        return self._local.upload_url(content_hash)

    def remember_upload(self, content_hash: str, url: str) -> None:
        self._local.remember_upload(content_hash, url)

    def file_hash(self, version: FileVersion) -> str | None:
        return self._local.file_hash(version)

    def remember_file_hash(self, version: FileVersion, sha256: str) -> None:
        self._local.remember_file_hash(version, sha256)

    def close(self) -> None:
        if self._pending:
            log.warning("%d task records were not written to the store", len(self._pending))
        self._local.close()

    # -- sharing -----------------------------------------------------------------------

    async def claim(self, row: TaskRow) -> None:
        if row.fingerprint in self._owned:
            return  # (sent again after a 429, or taken over from a dead worker)
        obstore = _obstore()
        try:
            await obstore.put_async(
                self._store, self._key(row.fingerprint), record_of(row), mode="create"
            )
            self._owned.add(row.fingerprint)
            return
        except Exception as exc:  # noqa: BLE001 - obstore's "already exists" and the rest
            raise await self._lost(row.fingerprint, exc) from None

    async def record(self, fingerprint: str) -> dict[str, Any] | None:
        obstore = _obstore()
        try:
            found = await obstore.get_async(self._store, self._key(fingerprint))
            data = bytes(await found.bytes_async())
            self._read_versions[fingerprint] = found.meta.get("e_tag") or ""
            return fields_of(data)
        except FileNotFoundError:
            return None
        except Exception as exc:  # noqa: BLE001
            raise JournalError(
                f"cannot read the task's record in {self.prefix}: {_why(exc)}"
            ) from None

    async def take_over(self, row: TaskRow) -> None:
        obstore = _obstore()
        fingerprint = row.fingerprint
        version = {"e_tag": self._read_versions.get(fingerprint, "")}
        # This process's claim now, as if it had made it: submitting, from now. (The row
        # itself is pending here; a pending record would read to others as a task
        # nobody holds.)
        claim = record_of(attrs.evolve(row, state=State.SUBMITTING, sent_at=time.time()))
        try:
            # Only over the record as it was read: of two workers, one wins.
            await obstore.put_async(self._store, self._key(fingerprint), claim, mode=version)
        except Exception as exc:  # noqa: BLE001
            raise await self._lost(fingerprint, exc) from None
        self._owned.add(fingerprint)

    async def _lost(self, fingerprint: str, exc: BaseException) -> Exception:
        """What a failed conditional write means: another process holds the task (its
        record, as `TaskClaimed`), or the store cannot be written (`JournalError`)."""
        if not _already_exists(exc):
            return JournalError(f"cannot claim the task in {self.prefix}: {_why(exc)}")
        held = await self.record(fingerprint)
        return TaskClaimed(fingerprint, held or {"state": State.SUBMITTING})

    async def flush(self) -> None:
        """Write every record changed so far (a write that fails is tried again later)."""
        while self._start_writers():
            await asyncio.gather(*self._writers)

    def _start_writers(self) -> bool:
        """Writers for what is pending, up to `PARALLEL_WRITES`; whether any is at work."""
        self._writers = {writer for writer in self._writers if not writer.done()}
        waiting = len(self._pending) - len(self._writing)
        loop = asyncio.get_running_loop()
        for _ in range(min(waiting, PARALLEL_WRITES - len(self._writers))):
            self._writers.add(loop.create_task(self._write_pending()))
        return bool(self._writers)

    async def _write_pending(self) -> None:
        obstore = _obstore()
        while True:
            # A task whose record no other writer holds: a task's records land in order.
            fingerprint = next((f for f in self._pending if f not in self._writing), None)
            if fingerprint is None:
                return
            record = self._pending[fingerprint]
            self._writing.add(fingerprint)
            try:
                await obstore.put_async(self._store, self._key(fingerprint), record)
            except Exception as exc:  # noqa: BLE001
                log.warning("task record %s not written yet: %s", fingerprint[:12], _why(exc))
                await asyncio.sleep(1.0)
                continue
            finally:
                self._writing.discard(fingerprint)
            if self._pending.get(fingerprint) is record:  # (not changed meanwhile)
                del self._pending[fingerprint]


def _already_exists(exc: BaseException) -> bool:
    from obstore.exceptions import AlreadyExistsError, PreconditionError

    return isinstance(exc, (AlreadyExistsError, PreconditionError))
