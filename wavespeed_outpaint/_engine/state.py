"""What one batch (or one `outpaint()` call) decides and shares across its tasks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from ..models import BatchProgress
from ..seams import FileVersion, OutputSink, SharedTaskStore, TaskRow, TaskStore


@attrs.define
class BatchState:
    """What one batch (or one outpaint() call) decides and shares across its tasks."""

    journal: TaskStore
    # Where outputs go; None: results carry the output URLs, nothing is downloaded.
    sink: OutputSink | None
    resubmit_unknown: bool = False
    retry_failed: bool = False
    # Why submitting stopped: the account cannot pay, the key was refused, bad input.
    fatal: BaseException | None = None
    # Content hashes whose upload URL this batch's journal already holds, and local
    # file versions whose hash it holds.
    uploads_recorded: set[str] = attrs.field(factory=set)
    hashes_recorded: set[FileVersion] = attrs.field(factory=set)
    progress: BatchProgress = attrs.field(factory=BatchProgress)
    # For a store kept only while tasks run (outpaint() calls): drops a finished task's
    # record, so a long-lived client does not grow with every task it ever ran.
    forget: Callable[[str], None] | None = None
    # Why a task of this batch did not succeed, by fingerprint, until its result is out.
    exceptions: dict[str, BaseException] = attrs.field(factory=dict)
    # The journal again, when other processes share it (a claim before every submit).
    # Asked once: a runtime protocol check costs some 17 us, too much for every submit.
    shared: SharedTaskStore | None = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.shared = self.journal if isinstance(self.journal, SharedTaskStore) else None

    def failed(self, row: TaskRow, exc: BaseException, **fields: Any) -> TaskRow:
        """Record the task's failure: its text in the journal, the exception itself
        for the result."""
        self.exceptions[row.fingerprint] = exc
        return self.journal.update(row, error=str(exc), **fields)

    @property
    def stopped(self) -> bool:
        return self.fatal is not None
