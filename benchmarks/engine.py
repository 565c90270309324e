"""The batch engine's own figures (issue 3), on the emulator in its own process.

    python benchmarks/engine.py                  # 5, 1,000 and 10,000 tasks
    python benchmarks/engine.py --sizes 20       # the CI smoke size
    python benchmarks/engine.py --workdir /dev/shm   # outputs on a RAM disk
    python benchmarks/engine.py --telemetry --sizes 1000   # OpenTelemetry on, and off

Per size: wall time and its ratio to the emulator's last completion (1.0 is the limit),
status requests per task, mean and p95 detection lag, client CPU ms per task, peak RSS,
completed tasks and duplicate submissions. Each size runs in a fresh child process, so
its peak RSS is its own. Next to the client's CPU, the floor's (`_floor.py`: the same
HTTP requests and file writes with nothing else) in its own child, and their ratio:
absolute CPU figures swing with the machine, the ratio much less. And the safe floor's
(the floor plus a journal committed before each submit, `.part` files, marks and read
time limits: what charging nothing twice and whole outputs cost by themselves), so
the client's own cost can be told from the cost of being safe. The kernel's share of
each CPU figure is printed too: most of it is the file system's cost of creating the
output files, which `--workdir` on a RAM disk takes out of the picture; and what writing
one output file costs there by itself (a loop of plain writes and renames).

With `--telemetry`: the client with OpenTelemetry's SDK as the global providers (every
span ended and handed to an exporter that drops it; metrics aggregated, never exported)
against the client with `telemetry=False`, each in a child of its own, side by side;
and beside each pair, the tracer provider alone and the meter provider alone.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from _floor import bare_batch, file_write_cpu
from _harness import (
    Meter,
    TimeModel,
    emulator_process,
    emulator_stats,
    figures,
    make_source,
    write_results,
)

# A service that takes a few seconds a task: 2 s of work per generated second for 2 s
# generated, plus half a second, with ±20% spread.
MODEL = TimeModel(time_scale=1.0, base_seconds=0.5, jitter=0.2)
GENERATED = 2.0


async def run_size(
    base_url: str, count: int, workdir: Path, *, telemetry: bool = True
) -> dict[str, Any]:
    from wavespeed_outpaint import OutpaintClient, OutpaintRequest

    source = make_source(workdir / "source.wav")
    requests = (
        (OutpaintRequest(source, tags="lofi", extend_after_duration=GENERATED, seed=i), f"t{i}")
        for i in range(count)
    )
    completed = 0
    async with OutpaintClient(
        api_key="emulator-key",
        base_url=base_url,
        max_in_flight=10_000,
        connection_limit=200,
        telemetry=telemetry,
    ) as client:
        with Meter() as meter:
            async for result in client.outpaint_many(requests, workdir / "out"):
                completed += result.ok
    return figures(meter, emulator_stats(base_url), count, completed)


async def run_floor(base_url: str, count: int, workdir: Path) -> dict[str, Any]:
    source = make_source(workdir / "source.wav")
    with Meter() as meter:
        await bare_batch(base_url, count, source, workdir / "out", GENERATED)
    output_size = next((workdir / "out").iterdir()).stat().st_size
    return {
        "floor_cpu_ms_per_task": 1000 * meter.cpu / count,
        "floor_kernel_ms_per_task": 1000 * meter.kernel / count,
        "file_write_ms": 1000 * file_write_cpu(workdir / "writes", output_size),
    }


async def run_safe_floor(base_url: str, count: int, workdir: Path) -> dict[str, Any]:
    source = make_source(workdir / "source.wav")
    with Meter() as meter:
        await bare_batch(base_url, count, source, workdir / "out", GENERATED, safe=True)
    return {"safe_floor_cpu_ms_per_task": 1000 * meter.cpu / count}


async def run_untraced(base_url: str, count: int, workdir: Path) -> dict[str, Any]:
    row = await run_size(base_url, count, workdir, telemetry=False)
    return {"tasks": count, "untraced_cpu_ms_per_task": row["cpu_ms_per_task"]}


async def run_traced(
    base_url: str, count: int, workdir: Path, *, spans: bool = True, metrics_on: bool = True
) -> dict[str, Any]:
    """The SDK's tracer provider (every span dropped at export) and meter provider (an
    in-memory reader, never read), or one of them: which part costs what."""
    from collections.abc import Sequence

    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

    class Dropped(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    if spans:
        tracing = TracerProvider()
        tracing.add_span_processor(SimpleSpanProcessor(Dropped()))
        trace.set_tracer_provider(tracing)
    if metrics_on:
        metrics.set_meter_provider(MeterProvider(metric_readers=[InMemoryMetricReader()]))
    row = await run_size(base_url, count, workdir)
    name = "traced" if spans and metrics_on else "spans" if spans else "metrics"
    return {
        f"{name}_cpu_ms_per_task": row["cpu_ms_per_task"],
        f"{name}_completed": row["completed"],
    }


async def run_spans(base_url: str, count: int, workdir: Path) -> dict[str, Any]:
    return await run_traced(base_url, count, workdir, metrics_on=False)


async def run_metrics(base_url: str, count: int, workdir: Path) -> dict[str, Any]:
    return await run_traced(base_url, count, workdir, spans=False)


RUNS = {"client": run_size, "floor": run_floor, "safe": run_safe_floor}
TELEMETRY_RUNS = {
    "untraced": run_untraced,
    "traced": run_traced,
    "spans": run_spans,
    "metrics": run_metrics,
}


def child(count: int, run: str, workdir: str | None) -> None:
    with emulator_process(MODEL) as base_url, tempfile.TemporaryDirectory(dir=workdir) as tmp:
        row = asyncio.run({**RUNS, **TELEMETRY_RUNS}[run](base_url, count, Path(tmp)))
    print(json.dumps(row))


def in_child(size: int, workdir: str | None, run: str) -> dict[str, Any]:
    flags = ("--run", run) if workdir is None else ("--run", run, "--workdir", workdir)
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(size), *flags],
        capture_output=True,
        text=True,
        timeout=1800,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


COLUMNS = [
    ("tasks", "tasks"),
    ("completed", "completed"),
    ("wall_s", "wall s"),
    ("wall_over_limit", "wall / emulator limit"),
    ("status_requests_per_task", "status requests / task"),
    ("lag_mean_s", "lag mean s"),
    ("lag_p95_s", "lag p95 s"),
    ("cpu_ms_per_task", "CPU ms / task"),
    ("kernel_ms_per_task", "of it kernel"),
    ("floor_cpu_ms_per_task", "floor CPU ms / task"),
    ("floor_kernel_ms_per_task", "of it kernel"),
    ("file_write_ms", "CPU ms to write one output file"),
    ("cpu_over_floor", "CPU / floor"),
    ("safe_floor_cpu_ms_per_task", "safe floor CPU ms / task"),
    ("cpu_over_safe_floor", "CPU / safe floor"),
    ("peak_rss_mb", "peak RSS MB"),
    ("duplicates", "duplicate submits"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="5,1000,10000")
    parser.add_argument(
        "--no-save", action="store_true", help="print only; keep benchmarks/results as it is"
    )
    parser.add_argument(
        "--workdir", help="where the outputs are written (default: the system's temp folder)"
    )
    parser.add_argument(
        "--telemetry", action="store_true", help="the client's CPU with OpenTelemetry on and off"
    )
    parser.add_argument("--repeat", type=int, default=5, help="pairs per size (--telemetry)")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument(
        "--run", choices=[*RUNS, *TELEMETRY_RUNS], default="client", help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child:
        child(args.child, args.run, args.workdir)
        return
    if args.telemetry:
        telemetry_figures(args)
        return
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        started = time.time()
        row: dict[str, Any] = {}
        for run in RUNS:
            row |= in_child(size, args.workdir, run)
        row["cpu_over_floor"] = row["cpu_ms_per_task"] / row["floor_cpu_ms_per_task"]
        row["cpu_over_safe_floor"] = row["cpu_ms_per_task"] / row["safe_floor_cpu_ms_per_task"]
        rows.append(row)
        print(f"{size} tasks in {time.time() - started:.1f} s: {row}", flush=True)
    print(f"\n{platform.node()} {platform.machine()} Python {platform.python_version()}")
    if not args.no_save:
        print(write_results("engine", rows, COLUMNS).read_text())


TELEMETRY_COLUMNS = [
    ("tasks", "tasks"),
    ("pairs", "pairs"),
    ("untraced_cpu_ms_per_task", "CPU ms / task, telemetry=False (median)"),
    ("traced_cpu_ms_per_task", "CPU ms / task, traced, exporter drops (median)"),
    ("traced_over_untraced", "traced / untraced (median of the pairs)"),
    ("ratios", "each pair's ratio"),
    ("spans_over_untraced", "spans only / untraced (median)"),
    ("metrics_over_untraced", "metrics only / untraced (median)"),
]


def telemetry_figures(args: argparse.Namespace) -> None:
    """Pairs of children, traced and untraced, `--repeat` times per size: the machine's
    CPU figures swing by a fifth from one child to the next, so one pair proves little;
    the median of the pairs' ratios is the figure. Beside each pair, a child with spans
    only and one with metrics only, each against the pair's untraced child."""
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        ratios: dict[str, list[float]] = {"traced": [], "spans": [], "metrics": []}
        untraced, traced = [], []
        for _ in range(args.repeat):
            pair: dict[str, Any] = {}
            for run in TELEMETRY_RUNS:
                pair |= in_child(size, args.workdir, run)
            untraced.append(pair["untraced_cpu_ms_per_task"])
            traced.append(pair["traced_cpu_ms_per_task"])
            for name, kept in ratios.items():
                kept.append(pair[f"{name}_cpu_ms_per_task"] / untraced[-1])
            print(f"{size} tasks: {pair}", flush=True)
        row = {
            "tasks": size,
            "pairs": args.repeat,
            "untraced_cpu_ms_per_task": statistics.median(untraced),
            "traced_cpu_ms_per_task": statistics.median(traced),
            "traced_over_untraced": statistics.median(ratios["traced"]),
            "ratios": " ".join(f"{r:.2f}" for r in sorted(ratios["traced"])),
            "spans_over_untraced": statistics.median(ratios["spans"]),
            "metrics_over_untraced": statistics.median(ratios["metrics"]),
        }
        rows.append(row)
        print(row, flush=True)
    if not args.no_save:
        print(write_results("engine-telemetry", rows, TELEMETRY_COLUMNS).read_text())


if __name__ == "__main__":
    main()
