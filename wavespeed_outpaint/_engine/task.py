"""One task's way through the pipeline, shared by `outpaint()` and `outpaint_many()`.

    journal lookup → upload (once per content) → paced submit → shared poller → downloads

Every state change is written to the journal before the next step acts on it, so a
killed process resumes where it stopped: submitted tasks are polled again, never
re-submitted; a submit that was on the wire is settled through the list endpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import anyio
import attrs

from .._api.endpoints import WaveSpeedAPI
from .._outputs.finish import Finisher, delivered_names
from .._outputs.naming import COMMON_OUTPUT_SUFFIXES, checked_stem, default_stem
from .._outputs.s3 import ObjectStores, is_object_url
from ..errors import (
    APIError,
    AuthenticationError,
    DeadlineError,
    InsufficientBalanceError,
    OutpaintError,
    OutputError,
    ProtocolError,
    RateLimitedError,
    TaskClaimed,
    TaskFailedError,
    TransportError,
    UnknownSubmissionError,
)
from ..models import (
    MODEL_ID,
    ObjectRef,
    OutpaintRequest,
    OutpaintResult,
    Prediction,
    Status,
    parse_status,
)
from ..options import ClientOptions
from ..seams import (
    OutputMark,
    OutputSink,
    StartLimiter,
    State,
    TaskRow,
    TaskStore,
)
from .identity import FileFacts, fingerprint
from .inputs import Inputs
from .pacing import StartPacer
from .poller import PollOptions, SharedPoller
from .settle import OpenSubmit, Outcome, Settler, unsigned
from .signal import Signal
from .state import BatchState

log = logging.getLogger("wavespeed_outpaint.engine")

# How long past a claimed submit's read time-out its record may take to be written, and
# how often another worker's record is read meanwhile.
CLAIM_RECORD_GRACE = 5.0
CLAIM_RECORD_POLL = 0.25
# Submits of one task that may be lost (and proven to have created nothing) in a row.
MAX_LOST_SUBMITS = 5


@attrs.define
class _Shared:
    done: Signal = attrs.field(factory=Signal)
    result: OutpaintResult | None = None


class Engine:
    """Drives tasks through the service's API; owns the shared poller and the settler."""

    def __init__(
        self,
        api: WaveSpeedAPI,
        options: ClientOptions,
        files: FileFacts,
        finisher: Finisher,
        limiter: StartLimiter | None = None,
        objects: ObjectStores | None = None,
    ) -> None:
        opts = options
        self._api = api
        self.finisher = finisher
        self.inputs = Inputs(api, opts, files, objects or ObjectStores())
        self.options = opts
        self.telemetry = api.transport.telemetry
        self.poller = SharedPoller(
            api,
            PollOptions(
                min_check_interval=opts.min_check_interval,
                request_price=opts.request_price,
                max_sweep_gap=opts.max_sweep_gap,
                parallel_status_requests=opts.parallel_status_requests,
                initial_work_per_second=opts.initial_work_per_second,
                clock_skew=opts.clock_skew,
                webhook_grace=opts.webhook_grace if api.webhook_url else None,
                blind_overdue_after=opts.webhook_blind_wait,
            ),
            self.telemetry,
        )
        self.pacer = limiter if limiter is not None else StartPacer(opts.starts_per_minute)
        # asyncio's own primitives, not anyio's, on every task's path: a free slot is
        # taken without a trip through the event loop or a cancellation check, which at
        # thousands of tasks is a measurable share of the client's CPU. (aiohttp ties
        # the client to asyncio anyway.)
        self.in_flight = asyncio.Semaphore(opts.max_in_flight)
        self._submits = asyncio.Semaphore(opts.parallel_submits)
        self._downloads = asyncio.Semaphore(opts.parallel_downloads)
        self._serial = asyncio.Lock()
        self._careful_until = 0.0
        self._on_the_wire: dict[str, OpenSubmit] = {}
        self._journals: list[TaskStore] = []
        # Tasks being driven now, so a second caller with the same request shares it.
        self._driving: dict[str, _Shared] = {}
        self.settler = Settler(
            api,
            clock_skew=opts.clock_skew,
            grace=opts.settle_grace,
            open_submits=self._open_submits,
            known_ids=self._known_ids,
        )
        api.transport.on_date = self.settler.clock.observe_date

    def attach(self, journal: TaskStore) -> None:
        self._journals.append(journal)

    def detach(self, journal: TaskStore) -> None:
        self._journals.remove(journal)

    def _known_ids(self) -> set[str]:
        known: set[str] = set()
        for journal in self._journals:
            known |= journal.known_prediction_ids()
        return known

    def _open_submits(self) -> list[OpenSubmit]:
        """Submits that could own an unseen prediction: on the wire now, or unsettled."""
        found = dict(self._on_the_wire)
        for journal in self._journals:
            for row in journal.open_submits():
                if row.fingerprint not in found and row.sent_at is not None:
                    found[row.fingerprint] = self._open_submit(row)
        return list(found.values())

    def _open_submit(self, row: TaskRow) -> OpenSubmit:
        assert row.sent_at is not None
        # A crash leaves no failure time: the service had until our read time-out.
        ends_at = (
            row.failed_at if row.failed_at is not None else row.sent_at + self.options.read_timeout
        )
        return OpenSubmit(row.fingerprint, row.request, row.sent_at, ends_at)

    # -- one task ----------------------------------------------------------------------

    async def run(
        self,
        request: OutpaintRequest,
        stem: str | None,
        batch: BatchState,
        sent: Callable[[], None] | None = None,
    ) -> OutpaintResult | None:
        """Take one request as far as it goes; None when the batch stopped before it.
        `sent` is called once the task no longer waits to be submitted."""
        journal = batch.journal
        content_hash = identity = None
        if isinstance(request.audio, Path):
            content_hash = await self.inputs.content_hash(request.audio, batch)
            identity = "sha256:" + content_hash
        elif request.is_object:
            # Checked from the object (ranged reads), known by its version: signing the
            # URL anew on every run changes nothing of the task's identity.
            identity = (await self.inputs.objects.check(ObjectRef.parse(request.audio))).identity
        fp = fingerprint(request, identity)
        running = self._driving.get(fp)
        if running is not None:
            # The same task is already on its way for another caller: share its outcome.
            await running.done.wait()
            if running.result is None:
                return None
            return await self._twin(request, stem, fp, running.result, batch)
        shared = self._driving[fp] = _Shared()
        try:
            stems: tuple[str, ...] = ()
            if batch.sink is not None:
                wanted = checked_stem(stem) if stem else default_stem(request)
                stems = (wanted, f"{wanted}-{fp[:8]}")
            payload = request.payload("") | {"audio": None}
            row = journal.add(fp, payload, str(request.audio), request.cost_usd, stems)
            started = {
                "outpaint.model": MODEL_ID,
                "outpaint.generated_seconds": request.generated_seconds,
                "outpaint.cost_usd": request.cost_usd,
            }
            with self.telemetry.task(started) as span:
                shared.result = await self._drive(request, row, content_hash, batch, sent)
                if shared.result is not None:
                    span.ended(self._ended(shared.result))
            if shared.result is not None and stems and row.output_stem not in stems:
                # The journal's record is another input's (the same audio by another name).
                return await self._twin(request, stem, fp, shared.result, batch)
            return shared.result
        finally:
            del self._driving[fp]
            shared.done.set()
            if batch.forget is not None:
                self._forget(batch.forget, fp, shared.result)

    def _ended(self, result: OutpaintResult) -> dict[str, Any]:
        """What a task's span says of its end; its time, to the task time histogram."""
        if not result.skipped and result.submitted_at and result.finished_at:
            self.telemetry.task_time(result.finished_at - result.submitted_at)
        return {
            "outpaint.prediction_id": result.prediction_id or "",
            "outpaint.status": result.outcome,
            "outpaint.delivered_by": result.delivered_by or "",
            "outpaint.skipped": result.skipped,
        }

    async def _twin(
        self,
        request: OutpaintRequest,
        stem: str | None,
        fp: str,
        result: OutpaintResult,
        batch: BatchState,
    ) -> OutpaintResult:
        """The result of a task that another input paid for (byte-identical audio under
        another name, an album's track on a compilation): its outputs go to this input's
        own name as well, in this input's own format, and nothing is charged again."""
        mine = attrs.evolve(result, request=request)
        if batch.sink is None:
            return mine
        # (The record as it is: `add` creates nothing for a fingerprint it holds.)
        payload = request.payload("") | {"audio": None}
        row = batch.journal.add(fp, payload, str(request.audio), request.cost_usd)
        if row.state != State.DOWNLOADED:
            return mine
        wanted = checked_stem(stem) if stem else default_stem(request)
        if wanted == row.output_stem:
            return mine
        twin = attrs.evolve(row, output_stem=wanted)
        known = await _marked_outputs(request, twin, batch.sink)
        if known is not None:  # delivered by a run before
            locations = known[1]
            return attrs.evolve(
                mine, skipped=True, files=_paths(locations), locations=tuple(locations)
            )
        try:
            paths, kept, notes = await self._deliver(request, twin, batch)
        except Exception as exc:  # the first input's outputs stand; this copy failed alone
            if not isinstance(exc, OutpaintError):
                log.warning("a copy of the outputs of %s failed", row.prediction_id, exc_info=exc)
            return attrs.evolve(mine, error=str(exc), exception=exc, files=(), locations=())
        return attrs.evolve(
            mine,
            skipped=False,
            files=_paths(paths),
            locations=tuple(paths),
            format_error="; ".join(kept) or None,
            notes=tuple(notes),
        )

    def _forget(
        self, forget: Callable[[str], None], fp: str, result: OutpaintResult | None
    ) -> None:
        if result is not None and result.status is Status.UNKNOWN and not result.prediction_id:
            return  # an open submit: the settler needs it to tell its neighbours apart
        if result is not None and result.prediction_id:
            # Still a known id, for a while: a lost submit's window may hold its creation.
            self.settler.seen(result.prediction_id)
        forget(fp)

    async def _drive(
        self,
        request: OutpaintRequest,
        row: TaskRow,
        content_hash: str | None,
        batch: BatchState,
        sent: Callable[[], None] | None,
    ) -> OutpaintResult | None:
        # Finished by an earlier run?
        if row.state == State.DOWNLOADED and (
            batch.sink is None or await _outputs_exist(request, row, batch.sink)
        ):
            return self._result(request, row, batch, skipped=True)
        if row.state == State.FAILED and not batch.retry_failed:
            return self._result(request, row, batch, skipped=True)
        if row.state == State.PENDING and batch.sink is not None:
            # New to this journal: its outputs may be whole already (the journal they
            # were made with is lost or elsewhere); they say so by their mark.
            known = await _marked_outputs(request, row, batch.sink)
            if known is not None:
                mark, files = known
                row = batch.journal.update(
                    row,
                    state=State.DOWNLOADED,
                    prediction_id=mark.prediction_id,
                    status=Status.COMPLETED.value,
                    outputs=mark.outputs,
                    files=files,
                    delivered_by="output",
                )
                return self._result(request, row, batch, skipped=True, via="output")
        if row.state in (State.COMPLETED, State.DOWNLOADED):
            if batch.sink is None:
                return self._result(request, row, batch, skipped=True)
            return await self._download(request, row, batch)
        if batch.stopped:
            return None
        async with self.in_flight, self._counted_in_flight():
            if row.state in (State.SUBMITTING, State.UNKNOWN):
                row = await self._settle(row, batch)
            if row.state in (State.PENDING, State.FAILED):
                row = await self._submit(request, row, content_hash, batch)
            if sent is not None:
                sent()
            if row.state == State.SUBMITTED:
                row = await self._wait(request, row, batch)
        if row.state == State.PENDING:
            return None  # the batch stopped before this task was sent
        if row.state == State.COMPLETED and batch.sink is not None:
            return await self._download(request, row, batch)
        return self._result(request, row, batch)

    @contextlib.asynccontextmanager
    async def _counted_in_flight(self) -> AsyncIterator[None]:
        self.telemetry.in_flight(1)
        try:
            yield
        finally:
            self.telemetry.in_flight(-1)

    async def _submit(
        self, request: OutpaintRequest, row: TaskRow, content_hash: str | None, batch: BatchState
    ) -> TaskRow:
        """Send the task; returns its row SUBMITTED, FAILED, UNKNOWN, or PENDING if stopped."""
        journal, fp = batch.journal, row.fingerprint
        try:
            url = await self.inputs.audio_url(request, content_hash, batch)
        except OutpaintError as exc:
            return batch.failed(row, exc, state=State.FAILED, status=Status.FAILED.value)
        payload = request.payload(url)
        # What the journal keeps: an object's signed URL without its signature.
        stored_payload = payload | {"audio": unsigned(url)} if request.is_object else payload
        lost = 0
        while not batch.stopped:
            if lost >= MAX_LOST_SUBMITS:
                trouble = TransportError(
                    f"{lost} submits in a row got no answer and created no task; "
                    "the service is in trouble, try again later"
                )
                return batch.failed(row, trouble, state=State.FAILED, status=Status.FAILED.value)
            await self.pacer.slot()
            if batch.stopped:
                break
            async with self._place_on_the_wire() as careful:
                sent_at = time.time()
                # Written before the POST leaves: from here a crash is settled, not re-sent.
                row = journal.update(
                    row,
                    state=State.SUBMITTING,
                    sent_at=sent_at,
                    failed_at=None,
                    request=stored_payload,
                )
                await journal.durable()
                if batch.shared is not None:
                    try:
                        await batch.shared.claim(row)
                    except TaskClaimed as claimed:
                        row = await self._claimed_elsewhere(row, claimed, batch)
                        if row.state != State.PENDING:
                            batch.progress.sent_elsewhere += 1
                            return row
                        continue  # taken over from a worker that died: sent from here
                self._on_the_wire[fp] = OpenSubmit(
                    fp, payload, sent_at, sent_at + self.options.read_timeout
                )
                try:
                    prediction = await self._api.submit(request, payload, pooled=True)
                except RateLimitedError as exc:
                    # Not accepted, so nothing exists: the whole pool waits, then this retries.
                    self.pacer.rate_limited(exc.retry_after)
                    row = journal.update(row, state=State.PENDING)
                    continue
                except UnknownSubmissionError as exc:
                    batch.exceptions[fp] = exc
                    row = journal.update(
                        row, state=State.UNKNOWN, failed_at=exc.failed_at, error=exc.cause
                    )
                    # Lost answers are settled by creation time; submits one at a time for
                    # a while keep the next lost ones' windows apart.
                    self._careful_until = time.monotonic() + self.options.serial_submits_after_loss
                except (InsufficientBalanceError, AuthenticationError) as exc:
                    # The account takes no more tasks: stop the batch; this one stays pending.
                    batch.fatal = batch.fatal or exc
                    return journal.update(row, state=State.PENDING, error=str(exc))
                except APIError as exc:
                    return batch.failed(
                        row, exc, state=State.FAILED, status=Status.FAILED.value, code=exc.code
                    )
                except OutpaintError as exc:  # never connected, even after retries
                    return batch.failed(row, exc, state=State.FAILED, status=Status.FAILED.value)
                else:
                    self.pacer.accepted()
                    if prediction.created_at is not None:
                        self.settler.clock.observe(
                            sent_at, time.time(), prediction.created_at.timestamp()
                        )
                    return self._accepted(batch, row, prediction, "submit")
                finally:
                    self._on_the_wire.pop(fp, None)
                    if careful:
                        # Hold the line until the next submit's window cannot touch this one.
                        await anyio.sleep(self.settler.clock.uncertainty)
            row = await self._settle(row, batch)
            if row.state != State.PENDING:
                return row
            # The list proved that no task was created: sending again is safe.
            lost += 1
        return row

    @contextlib.asynccontextmanager
    async def _place_on_the_wire(self) -> AsyncIterator[bool]:
        """One of the parallel submits' places; the only one on the wire while submits
        are careful (yields whether they are). Careful is decided once the place is
        taken: a loss answered while this submit waited for it counts, else the whole
        batch queued behind the first submits would go out in parallel after it."""
        async with self._submits:
            if time.monotonic() >= self._careful_until:
                yield False
                return
            async with self._serial:
                yield True

    def _accepted(
        self, batch: BatchState, row: TaskRow, prediction: Prediction, via: str
    ) -> TaskRow:
        """The service has the task (from the submit's answer, or found in the list)."""
        batch.exceptions.pop(row.fingerprint, None)  # a lost answer, found again
        batch.progress.submitted += 1
        batch.progress.charged_usd += row.cost_usd
        self.telemetry.started(row.cost_usd)
        row = batch.journal.update(
            row,
            state=State.SUBMITTED,
            prediction_id=prediction.id,
            error=None,
            status=prediction.status_text,
            created_at=prediction.created_at.timestamp() if prediction.created_at else None,
        )
        if prediction.is_final:
            return self._record_final(batch, row, prediction, via)
        return row

    async def _claimed_elsewhere(
        self, row: TaskRow, claimed: TaskClaimed, batch: BatchState
    ) -> TaskRow:
        """Another worker sharing the task store sent this task, or is sending it:
        collect it from where that worker's record says it stands. Pending (to be sent
        from here) only when that worker died sending it and the list endpoint shows its
        submit created nothing, and this process took the task over."""
        journal = batch.shared
        assert journal is not None
        while True:
            fields = claimed.fields
            # "Submitting": its answer is not recorded yet. Wait for it while that
            # worker's submit may still be on its way (a read time-out, and the writing).
            sent_at = fields.get("sent_at") or time.time()
            settled_by = sent_at + self.options.read_timeout + CLAIM_RECORD_GRACE
            while fields.get("state") == State.SUBMITTING and time.time() < settled_by:
                await anyio.sleep(CLAIM_RECORD_POLL)
                fields = await journal.record(row.fingerprint) or fields
            row = journal.update(row, **fields)
            if row.state != State.SUBMITTING:
                return row  # submitted (poll it), completed (download it), or its end
            # That worker died sending it: the list endpoint may show its task (adopt
            # it), prove there is none (take the task over), or not tell (unknown).
            row = await self._settle(row, batch)
            if row.state != State.PENDING:
                return row
            try:
                await journal.take_over(row)
                return row
            except TaskClaimed as first:
                claimed = first  # another worker took it over first: collect from it

    async def _settle(self, row: TaskRow, batch: BatchState) -> TaskRow:
        """A submit whose answer was lost: adopt its task, or prove there is none."""
        journal = batch.journal
        settlement = await self.settler.settle(self._open_submit(row))
        if settlement.outcome is Outcome.ADOPTED:
            prediction = settlement.prediction
            assert prediction is not None
            log.info("a lost submit was found again as prediction %s", prediction.id)
            return self._accepted(batch, row, prediction, "list")
        if settlement.outcome is Outcome.ABSENT or batch.resubmit_unknown:
            return journal.update(row, state=State.PENDING)
        return journal.update(
            row,
            state=State.UNKNOWN,
            status=Status.UNKNOWN.value,
            error=(
                "the submit's answer was lost and the list endpoint cannot tell which task, "
                "if any, it created; it was not sent again (resubmit_unknown=True sends it)"
            ),
        )

    async def _wait(self, request: OutpaintRequest, row: TaskRow, batch: BatchState) -> TaskRow:
        assert row.prediction_id is not None
        prediction = Prediction(
            row.prediction_id,
            parse_status(row.status or "processing"),
            created_at=_datetime(row.created_at) if row.created_at is not None else None,
        )
        try:
            final, via = await self.poller.wait(
                prediction,
                request.generated_seconds,
                sent_at=row.sent_at,
                deadline=self.options.task_deadline,
            )
        except OutpaintError as exc:
            return batch.failed(row, exc)
        return self._record_final(batch, row, final, via)

    @staticmethod
    def _record_final(batch: BatchState, row: TaskRow, prediction: Prediction, via: str) -> TaskRow:
        journal = batch.journal
        if prediction.ok and prediction.outputs:
            return journal.update(
                row,
                state=State.COMPLETED,
                status=prediction.status_text,
                outputs=prediction.outputs,
                delivered_by=via,
                error=None,
            )
        if prediction.ok:
            failure: OutpaintError = ProtocolError(
                f"prediction {prediction.id} completed without any output"
            )
        else:
            failure = TaskFailedError(prediction)
        batch.exceptions[row.fingerprint] = failure
        return journal.update(
            row,
            state=State.FAILED,
            status=prediction.status_text,
            code=prediction.code,
            outputs=prediction.outputs,
            delivered_by=via,
            error=prediction.error or str(failure),
        )

    async def _download(
        self, request: OutpaintRequest, row: TaskRow, batch: BatchState
    ) -> OutpaintResult:
        journal = batch.journal
        try:
            paths, format_errors, notes = await self._deliver(request, row, batch)
        except Exception as exc:  # one output's trouble never stops the batch
            if not isinstance(exc, OutpaintError):
                # Something nobody foresaw (a library's own error): the task's, reported on
                # it; the task stays completed, so the next run downloads it again.
                log.warning("finishing the outputs of %s failed", row.prediction_id, exc_info=exc)
                problem = f"its outputs could not be finished ({type(exc).__name__}: {exc})"
                exc = OutputError(row.output_stem or str(request.audio), problem)
            batch.exceptions[row.fingerprint] = exc
            row = journal.update(row, error=str(exc))
            return self._result(request, row, batch)
        row = journal.update(row, state=State.DOWNLOADED, files=paths, error=None)
        result = self._result(request, row, batch)
        return attrs.evolve(
            result, format_error="; ".join(format_errors) or None, notes=tuple(notes)
        )

    async def _deliver(
        self, request: OutpaintRequest, row: TaskRow, batch: BatchState
    ) -> tuple[list[str], list[str], list[str]]:
        """The task's outputs under `row.output_stem` in the sink, in the request's format;
        where each landed, why any was kept as the service made it, and what of the
        input's tags was left out."""
        sink = batch.sink
        assert sink is not None
        assert row.output_stem is not None
        names = delivered_names(request, row.output_stem, row.outputs)
        mark = OutputMark(row.fingerprint, row.prediction_id or "", row.outputs)
        paths: list[str] = []
        kept: list[str] = []
        notes: list[str] = []
        async with self._downloads:
            batch.progress.downloading += 1
            try:
                for url, (name, fmt) in zip(row.outputs, names, strict=True):
                    if fmt is None:
                        paths.append(await self._api.download(url, sink, name, mark))
                        continue
                    made = await self.finisher.deliver(url, sink, name, fmt, mark, request)
                    paths.append(made.location)
                    if made.kept_as_made:
                        kept.append(made.kept_as_made)
                    if made.note:
                        notes.append(made.note)
            finally:
                batch.progress.downloading -= 1
        return paths, kept, notes

    @staticmethod
    def _result(
        request: OutpaintRequest,
        row: TaskRow,
        batch: BatchState,
        *,
        skipped: bool = False,
        via: str | None = None,
    ) -> OutpaintResult:
        if row.state == State.UNKNOWN:
            status: Status | str = Status.UNKNOWN
        elif row.state in (State.COMPLETED, State.DOWNLOADED):
            status = Status.COMPLETED
        else:
            status = parse_status(row.status or "processing")
        exception = batch.exceptions.pop(row.fingerprint, None)
        if isinstance(exception, DeadlineError):
            status = Status.UNKNOWN  # how it ends is not known yet
        if exception is None and not skipped:
            exception = _exception_from_row(request, row, status)
        landed = row.files if row.state == State.DOWNLOADED else ()
        return OutpaintResult(
            request=request,
            status=status,
            prediction_id=row.prediction_id,
            outputs=row.outputs,
            files=tuple(Path(f) for f in landed if not is_object_url(f)),
            locations=tuple(landed),
            error=row.error,
            code=row.code,
            skipped=skipped,
            delivered_by=via or ("journal" if skipped else row.delivered_by),
            submitted_at=row.sent_at,
            finished_at=time.time(),
            exception=exception,
        )


def _exception_from_row(
    request: OutpaintRequest, row: TaskRow, status: Status | str
) -> OutpaintError | None:
    """The exception of a task that did not succeed and raised none in this process (a
    submit settled as unknown after a crash, a task found failed in the list)."""
    if row.state == State.UNKNOWN:
        sent_at = row.sent_at or time.time()
        return UnknownSubmissionError(
            request,
            sent_at=sent_at,
            failed_at=row.failed_at or sent_at,
            cause=row.error or "answer lost",
        )
    if row.state == State.FAILED:
        return TaskFailedError(
            Prediction(row.prediction_id or "", status, error=row.error or "", code=row.code)
        )
    if row.error:
        return OutpaintError(row.error)
    return None


async def _marked_outputs(
    request: OutpaintRequest, row: TaskRow, sink: OutputSink
) -> tuple[OutputMark, list[str]] | None:
    """This task's outputs, if they are all at their names, whole and marked as its."""
    if row.output_stem is None:
        return None
    for suffix in COMMON_OUTPUT_SUFFIXES:
        first = await sink.mark(row.output_stem + suffix)
        if first is not None and first.fingerprint == row.fingerprint:
            break
    else:
        return None
    names = [name for name, _ in delivered_names(request, row.output_stem, first.outputs)]
    if names[0] != row.output_stem + suffix:
        return None
    for name in names[1:]:
        other = await sink.mark(name)
        if other is None or other.fingerprint != row.fingerprint:
            return None
    return first, [sink.location(name) for name in names]


async def _outputs_exist(request: OutpaintRequest, row: TaskRow, sink: OutputSink) -> bool:
    if row.output_stem is None:
        return False
    for name, _ in delivered_names(request, row.output_stem, row.outputs):
        if not await sink.exists(name):
            return False
    return True


def _paths(locations: list[str]) -> tuple[Path, ...]:
    return tuple(Path(f) for f in locations if not is_object_url(f))


def _datetime(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, timezone.utc)
