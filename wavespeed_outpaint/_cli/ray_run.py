"""`wavespeed-outpaint run --ray [ADDRESS]`: the batch `run` plans, run on a Ray cluster.

The plan, the money check and the report are `run`'s; the tasks go to Ray Data as
rows (`wavespeed_outpaint.ray.outpaint_dataset`), and the task store in the output
bucket, not this machine's journal, is what keeps a task from being paid twice.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import sys
from collections.abc import Iterator
from typing import Any

from .._engine.identity import FileFacts
from .._outputs.s3 import ObjectStores, is_object_url
from ..models import REQUEST_FIELDS, expand_path
from .plan import Plan
from .report import Report
from .run import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    UsageError,
    check_extras,
    check_money,
    connection,
    default_journal,
    exit_code,
    make_plan,
    outcome,
    print_report,
    say,
    service,
)

# Rows go to Ray in tables of this many, so that the driver never holds a whole
# library's rows as Python objects (a table's rows take some 100 bytes each).
ROWS_PER_TABLE = 10_000
# `--ray` alone: a Ray started on this machine for the run, and stopped after it.
LOCAL = "local"


def command(args: argparse.Namespace) -> int:
    return exit_code(lambda: run_on_ray(args))


def run_on_ray(args: argparse.Namespace) -> int:
    check_extras(args)
    check_usage(args)
    planned = asyncio.run(prepare(args))
    if planned is None:
        return EXIT_OK  # a dry run
    plan, tables = planned
    report = Report(every_item=args.json)
    try:
        cost = run_rows(args, tables, report) if tables else 0.0
    except KeyboardInterrupt:
        print(
            "interrupted: nothing is lost; run the same command again: the task store in "
            "the bucket says what was sent",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    doc = report.document(held_back=plan.held_back, cost_usd=cost, left_out=plan.left_out)
    print_report(args, doc)
    return outcome(doc)


def run_rows(args: argparse.Namespace, tables: list[Any], report: Report) -> float:
    """The rows through Ray, each result row into `report`; what the tasks cost."""
    api_key, base_url = service(args)
    cost = 0.0
    with cluster(args.ray) as ray:
        from ..ray import batch_rows, outpaint_dataset, stop_starting

        actors = args.actors or max(1, int(ray.cluster_resources().get("CPU", 1)))
        # A block goes to one actor: blocks of a batch each spread the tasks evenly.
        count = sum(table.num_rows for table in tables)
        batch = batch_rows(args.max_in_flight, actors)
        rows = ray.data.from_arrow(tables).repartition(math.ceil(count / batch))
        results = outpaint_dataset(
            rows,
            out=args.out,
            starts_per_minute=args.rpm,
            max_running=args.max_in_flight,
            concurrency=actors,
            batch_size=batch,
            api_key=api_key,
            base_url=base_url,
            options={
                "settle_grace": args.settle_grace,
                "task_deadline": args.task_deadline,
                "upload_inputs": args.upload_inputs,
            },
        )
        try:
            for row in results.iter_rows():
                report.add_row(row)
                cost += 0.0 if row["skipped"] else row["cost_usd"]  # (paid by an earlier run)
                if not args.quiet and not args.json and row["status"] != "completed":
                    print(f"not done: {row['audio']}: {row['error']}", file=sys.stderr)
        except KeyboardInterrupt:
            print("stopping: the submits under way are answered first", file=sys.stderr)
            stop_starting()
            raise
    return cost


def check_usage(args: argparse.Namespace) -> None:
    if not is_object_url(args.out):
        raise UsageError(
            "--ray writes where every worker can: give --out s3://bucket/prefix/ (the task "
            "store the workers share goes under its _tasks/)"
        )
    if args.emulator:
        raise UsageError(
            "--ray cannot use the embedded emulator (it lives in this process, the workers "
            "in theirs): start one with `wavespeed-outpaint emulator` and give --base-url"
        )
    if args.report:
        raise UsageError(
            "--report reads this machine's journal, which a Ray run does not keep: write "
            "the result rows with --json instead"
        )


async def prepare(args: argparse.Namespace) -> tuple[Plan, list[Any]] | None:
    """The plan, checked against the balance, and its tasks as Arrow tables of rows;
    None for a dry run."""
    files, objects = FileFacts(), ObjectStores()
    journal = expand_path(args.journal) if args.journal else default_journal(args.out)
    plan = await make_plan(args, journal, files, objects)
    local = next((task for task in plan.run if not isinstance(task.request.audio, str)), None)
    if args.ray != LOCAL and local is not None:
        raise UsageError(
            f"{local.input} is a file on this machine, which workers on other nodes cannot "
            "read: put the inputs in the bucket (s3://...), or give --ray without an ADDRESS "
            "(a Ray started on this machine)"
        )
    async with connection(args, files) as client:
        await check_money(args, client, plan)
    if args.dry_run:
        say(args, "dry run: nothing submitted")
        return None
    return plan, await tables(plan, objects)


async def tables(plan: Plan, objects: ObjectStores) -> list[Any]:
    import pyarrow as pa

    out: list[Any] = []
    rows: list[dict[str, Any]] = []
    async for task in plan.tasks(objects):
        row = {field: getattr(task.request, field) for field in REQUEST_FIELDS}
        rows.append({"audio": str(task.request.audio), "output": task.name, **row})
        if len(rows) == ROWS_PER_TABLE:
            out.append(pa.Table.from_pylist(rows))
            rows = []
    if rows:
        out.append(pa.Table.from_pylist(rows))
    return out


@contextlib.contextmanager
def cluster(address: str) -> Iterator[Any]:
    """Ray, connected: to the cluster at `address` (or `auto`), or one started on this
    machine for the run (loopback only, no dashboard) and stopped after it."""
    from ..ray import require_ray

    ray = require_ray()
    if address == LOCAL:
        ray.init(
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            logging_level="ERROR",
            log_to_driver=False,
        )
    else:
        ray.init(address=address, logging_level="ERROR", log_to_driver=False)
    # The command line reports itself; Ray Data's progress lines would bury it.
    ray.data.DataContext.get_current().enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    try:
        yield ray
    finally:
        ray.shutdown()
