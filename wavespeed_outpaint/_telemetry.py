"""OpenTelemetry: a span per task and per HTTP request, and the batch's metrics, through
the global tracer and meter providers, as every instrumented library does: a program
that has configured OpenTelemetry sees them with no other change. It needs the `otel`
extra (opentelemetry-api); without it, or with `ClientOptions(telemetry=False)`, the
client's `Telemetry` does nothing and imports nothing.

HTTP client spans follow the semantic conventions (the span is named by the method;
`http.request.method`, `url.full` without its query, `server.address`, `server.port`,
`http.response.status_code`, `error.type`). The other names are this project's own:

    span  outpaint.task      a task from its start to its last output: outpaint.prediction_id,
                             outpaint.model, outpaint.generated_seconds, outpaint.cost_usd,
                             outpaint.status, outpaint.delivered_by, outpaint.retries,
                             outpaint.bytes (its HTTP spans are its children, with
                             outpaint.operation: upload, submit, get, list, download)
    span  outpaint.finish    an output converted and tagged
    outpaint.tasks.in_flight   (up-down counter) tasks submitted and not yet ended
    outpaint.tasks.queued      (up-down counter) tasks read, not yet sent
    outpaint.tasks.started     tasks the service accepted
    outpaint.rate_limited      429 answers
    outpaint.status_requests   status requests, by outpaint.request.kind (get, list)
    outpaint.retries           requests sent again
    outpaint.detection_gap     (histogram, s) from the last look that saw a task running
                               to the one that saw it ended: a bound on its detection lag
    outpaint.task.duration     (histogram, s) from a task's submit to its end
    outpaint.downloaded        bytes of output downloaded
    outpaint.spent             USD charged
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib.util
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

INSTRUMENTATION = "wavespeed_outpaint"
TASK_SPAN = "outpaint.task"
FINISH_SPAN = "outpaint.finish"


class TaskSpan:
    """What a task's span is told at its end (nothing, here)."""

    def ended(self, attributes: dict[str, Any]) -> None:
        pass


class HttpSpan:
    """An HTTP request's span (nothing, here), its own context manager."""

    def __enter__(self) -> HttpSpan:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: object, tb: object) -> None:
        pass

    def answered(self, status: int) -> None:
        pass


_NO_TASK = TaskSpan()
_NO_HTTP = HttpSpan()


class Telemetry:
    """Does nothing: a client's telemetry when OpenTelemetry is off or not installed."""

    enabled = False

    @contextlib.contextmanager
    def task(self, attributes: dict[str, Any]) -> Iterator[TaskSpan]:
        yield _NO_TASK

    def http(self, method: str, url: str, operation: str) -> HttpSpan:
        return _NO_HTTP

    @contextlib.contextmanager
    def finishing(self, fmt: str) -> Iterator[None]:
        yield

    def retried(self) -> None:
        pass

    def in_flight(self, change: int) -> None:
        pass

    def queued(self, change: int) -> None:
        pass

    def started(self, cost_usd: float) -> None:
        pass

    def detection_gap(self, seconds: float) -> None:
        pass

    def task_time(self, seconds: float) -> None:
        pass

    def downloaded(self, size: int) -> None:
        pass


def telemetry(enabled: bool, version: str) -> Telemetry:
    """OpenTelemetry's, when asked for and installed; else the one that does nothing."""
    if enabled and importlib.util.find_spec("opentelemetry") is not None:
        return OpenTelemetry(version)
    return Telemetry()


class _OpenTask(TaskSpan):
    def __init__(self, span: Any) -> None:
        self.span = span
        # Counted by the requests made under the task's span (see `OpenTelemetry._task`).
        self.retries = 0
        self.bytes = 0

    def ended(self, attributes: dict[str, Any]) -> None:
        self.span.set_attributes(attributes)


class _OpenHttp(HttpSpan):
    """Never made the current span: nothing is started under it, and making it current
    (`start_as_current_span`) cost a third more CPU a request."""

    def __init__(self, span: Any, telemetry: OpenTelemetry) -> None:
        self.span = span
        self.status: int | None = None
        self._telemetry = telemetry

    def __exit__(self, kind: type[BaseException] | None, exc: object, tb: object) -> None:
        if kind is not None:
            if self.status is None or self.status < 400:  # the connection's or the body's
                self.span.set_attribute("error.type", kind.__name__)
            self.span.set_status(self._telemetry.error)
        self.span.end()

    def answered(self, status: int) -> None:
        self.status = status
        self.span.set_attribute("http.response.status_code", status)
        if status >= 400:
            self.span.set_attribute("error.type", str(status))
            self.span.set_status(self._telemetry.error)
        if status == 429:
            self._telemetry.rate_limited.add(1)


class OpenTelemetry(Telemetry):
    """Spans and metrics through the global providers (`opentelemetry-api`)."""

    enabled = True

    def __init__(self, version: str) -> None:
        from opentelemetry import metrics, trace

        self._trace = trace
        self._tracer = trace.get_tracer(INSTRUMENTATION, version)
        self._client = trace.SpanKind.CLIENT
        self.error = trace.Status(trace.StatusCode.ERROR)
        # The task whose span is current in this context: its retries and bytes.
        self._task: contextvars.ContextVar[_OpenTask | None] = contextvars.ContextVar(
            "outpaint_task", default=None
        )
        meter = metrics.get_meter(INSTRUMENTATION, version)
        self._in_flight = meter.create_up_down_counter(
            "outpaint.tasks.in_flight", unit="{task}", description="tasks submitted, not ended"
        )
        self._queued = meter.create_up_down_counter(
            "outpaint.tasks.queued", unit="{task}", description="tasks read, not yet sent"
        )
        self._started = meter.create_counter(
            "outpaint.tasks.started", unit="{task}", description="tasks the service accepted"
        )
        self.rate_limited = meter.create_counter(
            "outpaint.rate_limited", unit="{response}", description="429 answers"
        )
        self._status_requests = meter.create_counter(
            "outpaint.status_requests", unit="{request}", description="status requests"
        )
        self._request_kinds = {kind: {"outpaint.request.kind": kind} for kind in ("get", "list")}
        self._retries = meter.create_counter(
            "outpaint.retries", unit="{request}", description="requests sent again"
        )
        self._gap = meter.create_histogram(
            "outpaint.detection_gap",
            unit="s",
            description="from the last look that saw a task running to the one that saw it end",
        )
        self._task_time = meter.create_histogram(
            "outpaint.task.duration", unit="s", description="from a task's submit to its end"
        )
        self._downloaded = meter.create_counter(
            "outpaint.downloaded", unit="By", description="output bytes downloaded"
        )
        self._spent = meter.create_counter(
            "outpaint.spent", unit="USD", description="what the service charged"
        )

    @contextlib.contextmanager
    def task(self, attributes: dict[str, Any]) -> Iterator[TaskSpan]:
        with self._tracer.start_as_current_span(TASK_SPAN, attributes=attributes) as span:
            task = _OpenTask(span)
            token = self._task.set(task)
            try:
                yield task
            finally:
                self._task.reset(token)
                span.set_attributes(
                    {"outpaint.retries": task.retries, "outpaint.bytes": task.bytes}
                )

    def http(self, method: str, url: str, operation: str) -> HttpSpan:
        parts = urlsplit(url)
        attributes: dict[str, Any] = {
            "http.request.method": method,
            # Without its query: an output host's signature lives there.
            "url.full": url.partition("?")[0].partition("#")[0],
            "server.address": parts.hostname or "",
            "server.port": parts.port or (443 if parts.scheme == "https" else 80),
            "outpaint.operation": operation,
        }
        request_kind = self._request_kinds.get(operation)
        if request_kind is not None:
            self._status_requests.add(1, request_kind)
        span = self._tracer.start_span(method, kind=self._client, attributes=attributes)
        return _OpenHttp(span, self)

    @contextlib.contextmanager
    def finishing(self, fmt: str) -> Iterator[None]:
        with self._tracer.start_as_current_span(FINISH_SPAN, attributes={"outpaint.format": fmt}):
            yield

    def retried(self) -> None:
        self._retries.add(1)
        task = self._task.get()
        if task is not None:
            task.retries += 1

    def in_flight(self, change: int) -> None:
        self._in_flight.add(change)

    def queued(self, change: int) -> None:
        self._queued.add(change)

    def started(self, cost_usd: float) -> None:
        self._started.add(1)
        self._spent.add(cost_usd)

    def detection_gap(self, seconds: float) -> None:
        self._gap.record(seconds)

    def task_time(self, seconds: float) -> None:
        self._task_time.record(seconds)

    def downloaded(self, size: int) -> None:
        self._downloaded.add(size)
        task = self._task.get()
        if task is not None:
            task.bytes += size
