"""OpenTelemetry: spans and metrics of real batches against the emulator, read back
through the OpenTelemetry SDK's in-memory exporter and metric reader, set as the global
providers (as a program that configured OpenTelemetry would)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import MakeTrack, fast_client, fast_config
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from wavespeed_outpaint import OutpaintRequest
from wavespeed_outpaint.emulator import Emulator, Faults
from wavespeed_outpaint.models import MODEL_ID

pytestmark = pytest.mark.anyio

Telemetry = tuple[InMemorySpanExporter, InMemoryMetricReader]


@pytest.fixture(scope="module")
def providers() -> Iterator[Telemetry]:
    exporter = InMemorySpanExporter()
    tracing = TracerProvider()
    tracing.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    trace.set_tracer_provider(tracing)
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    yield exporter, reader
    tracing.shutdown()


@pytest.fixture
def otel(providers: Telemetry) -> Telemetry:
    exporter, reader = providers
    exporter.clear()
    reader.collect()  # (cumulative sums: each test reads what it added)
    return providers


def sums(reader: InMemoryMetricReader) -> dict[str, Any]:
    """Each metric's value now: a sum's total (by attributes, if it has any), a
    histogram's count."""
    found: dict[str, Any] = {}
    data = reader.get_metrics_data()
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    value = getattr(point, "value", None)
                    if value is None:
                        value = getattr(point, "count", None)
                    key = metric.name
                    if point.attributes:
                        key += str(sorted(point.attributes.items()))
                    found[key] = value
    return found


def by_name(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [span for span in spans if span.name == name]


async def test_each_task_is_a_span_with_its_requests_under_it_and_the_batch_is_counted(
    otel: Telemetry, make_audio: MakeTrack, tmp_path: Path
) -> None:
    exporter, reader = otel
    before = sums(reader)
    requests = [OutpaintRequest(make_audio(f"{i}.wav"), tags="x") for i in range(3)]
    async with Emulator(fast_config()) as emu, fast_client(emu) as client:
        results = [r async for r in client.outpaint_many(requests, tmp_path / "out")]
    assert all(r.ok for r in results)
    spans = exporter.get_finished_spans()
    tasks = by_name(spans, "outpaint.task")
    assert len(tasks) == 3
    ids = {r.prediction_id for r in results}
    assert {span.attributes["outpaint.prediction_id"] for span in tasks} == ids  # type: ignore[index]
    for task in tasks:
        attributes = task.attributes or {}
        assert attributes["outpaint.status"] == "completed"
        assert attributes["outpaint.model"] == MODEL_ID
        assert attributes["outpaint.generated_seconds"] == 30.0
        assert attributes["outpaint.cost_usd"] == requests[0].cost_usd
        assert attributes["outpaint.retries"] == 0
        assert int(str(attributes["outpaint.bytes"])) > 0
        assert attributes["outpaint.delivered_by"] in ("list", "poll", "submit")
        assert task.context is not None
        children = [s for s in spans if s.parent and s.parent.span_id == task.context.span_id]
        operations = sorted(str((s.attributes or {})["outpaint.operation"]) for s in children)
        assert "submit" in operations
        assert "download" in operations
        assert "upload" in operations
        for http in children:
            semantic = http.attributes or {}
            assert http.kind is trace.SpanKind.CLIENT
            assert http.name == semantic["http.request.method"]
            assert semantic["server.address"] == "127.0.0.1"
            assert "?" not in str(semantic["url.full"])
            assert semantic["http.response.status_code"] in (200, 201)
    now = sums(reader)

    def added(name: str) -> Any:
        return now.get(name, 0) - before.get(name, 0)

    assert added("outpaint.tasks.started") == 3
    assert added("outpaint.spent") == pytest.approx(3 * requests[0].cost_usd)
    assert added("outpaint.downloaded") == sum(r.files[0].stat().st_size for r in results)
    assert added("outpaint.task.duration") == 3
    assert added("outpaint.tasks.in_flight") == 0  # each task counted in, and out again
    assert added("outpaint.tasks.queued") == 0
    looks = added("outpaint.status_requests[('outpaint.request.kind', 'list')]")
    looks += added("outpaint.status_requests[('outpaint.request.kind', 'get')]")
    assert looks >= 1
    assert added("outpaint.detection_gap") >= 1


async def test_429s_and_requests_sent_again_are_counted(
    otel: Telemetry, make_audio: MakeTrack, tmp_path: Path
) -> None:
    exporter, reader = otel
    before = sums(reader)
    faults = Faults({"result_5xx": 0.5, "submit_429": 0.5}, seed=7, retry_after=0.01)
    requests = [OutpaintRequest(make_audio(f"{i}.wav"), tags="x") for i in range(4)]
    async with Emulator(fast_config(faults=faults)) as emu, fast_client(emu) as client:
        results = [r async for r in client.outpaint_many(requests, tmp_path / "out")]
        injected = emu.stats()["faults_injected"]
    assert all(r.ok for r in results)
    now = sums(reader)
    assert injected["submit_429"] >= 1
    assert now.get("outpaint.rate_limited", 0) - before.get("outpaint.rate_limited", 0) == (
        injected["submit_429"] + injected.get("result_429", 0)
    )
    retries = now.get("outpaint.retries", 0) - before.get("outpaint.retries", 0)
    assert retries >= injected["result_5xx"] - 1  # a list look that failed is not retried
    errors = [
        s
        for s in exporter.get_finished_spans()
        if (s.attributes or {}).get("http.response.status_code") in (429, 500, 502, 503)
    ]
    assert errors
    assert all(s.status.status_code is trace.StatusCode.ERROR for s in errors)
    assert all((s.attributes or {})["error.type"] in ("429", "500", "502", "503") for s in errors)


async def test_a_download_cut_short_is_an_error_span_named_by_what_broke_it(
    otel: Telemetry, make_audio: MakeTrack, tmp_path: Path
) -> None:
    exporter, _ = otel
    faults = Faults({"truncated_download": 0.5}, seed=3)
    requests = [OutpaintRequest(make_audio(f"{i}.wav"), tags="x") for i in range(4)]
    async with Emulator(fast_config(faults=faults)) as emu, fast_client(emu) as client:
        results = [r async for r in client.outpaint_many(requests, tmp_path / "out")]
        cut = emu.stats()["faults_injected"]["truncated_download"]
    assert all(r.ok for r in results)
    downloads = [
        s
        for s in exporter.get_finished_spans()
        if (s.attributes or {}).get("outpaint.operation") == "download"
    ]
    broken = [s for s in downloads if s.status.status_code is trace.StatusCode.ERROR]
    assert cut >= 1
    assert len(broken) == cut
    # The answer was a 200; what failed is the body, and the span says so by its class.
    assert all((s.attributes or {})["http.response.status_code"] == 200 for s in broken)
    assert all(not str((s.attributes or {})["error.type"]).isdigit() for s in broken)
    assert all(s.end_time is not None for s in downloads)


async def test_a_conversion_is_a_span_of_its_own_and_telemetry_off_records_nothing(
    otel: Telemetry, make_audio: MakeTrack, tmp_path: Path
) -> None:
    exporter, reader = otel
    request = OutpaintRequest(make_audio("a.wav"), tags="x", output_format="flac")
    async with Emulator(fast_config()) as emu:
        async with fast_client(emu) as client:
            await client.outpaint(request, tmp_path / "on")
        (task,) = by_name(exporter.get_finished_spans(), "outpaint.task")
        (finish,) = by_name(exporter.get_finished_spans(), "outpaint.finish")
        assert finish.attributes == {"outpaint.format": "flac"}
        assert task.context is not None
        assert finish.parent is not None
        assert finish.parent.span_id == task.context.span_id

        exporter.clear()
        before = sums(reader)
        async with fast_client(emu, telemetry=False) as client:
            result = await client.outpaint(request, tmp_path / "off")
        assert result.ok
    assert exporter.get_finished_spans() == ()
    assert sums(reader) == before
