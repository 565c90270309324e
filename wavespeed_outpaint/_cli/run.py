"""`wavespeed-outpaint run`: plan, check the money, run the batch, report.

Exit codes: 0 every task succeeded, 1 some failed or are unknown, 2 bad usage or input
(nothing was sent), 130 interrupted (after a clean shutdown; the same command resumes).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import hashlib
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import anyio
import attrs

from .._audio.extras import AUDIO_EXTRA, installed
from .._cluster.claims import ObjectClaims
from .._engine.identity import FileFacts
from .._engine.journal import Journal
from .._engine.times import default_state_dir
from .._outputs.files import is_marked
from .._outputs.naming import COMMON_OUTPUT_SUFFIXES
from .._outputs.s3 import ObjectStores, is_object_url
from ..client import OutpaintClient
from ..errors import (
    APIError,
    AuthenticationError,
    ConfigurationError,
    JournalError,
    MissingExtraError,
    OutpaintError,
    OutputError,
    ValidationError,
)
from ..models import BatchProgress, ObjectRef, OutpaintRequest, expand_path
from ..seams import TaskStore
from .plan import Plan, PlanError, Planned, budget, from_inputs, from_manifest
from .progress import show
from .report import Report, print_json, print_table

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
# Every task that ran succeeded, but --max-cost held some back: not a finished batch.
EXIT_HELD_BACK = 3
JOURNAL_NAME = ".outpaint-journal.sqlite"


class UsageError(Exception):
    """Bad usage or input: printed as one line, exit 2."""


def say(args: argparse.Namespace, text: str) -> None:
    """Information for the user: stderr with --json (stdout is the document), else stdout."""
    if not args.quiet:
        print(text, file=sys.stderr if args.json else sys.stdout, flush=True)


def plan_tasks(
    args: argparse.Namespace, files: FileFacts, objects: ObjectStores
) -> Sequence[Planned]:
    # What to make of the outputs: for every INPUT, and each manifest line that does not say.
    making = {
        "output_format": args.output_format,
        "keep_tags": args.keep_tags,
        "title_suffix": args.title_suffix,
    }
    if args.manifest is not None:
        if args.inputs:
            raise UsageError("give INPUTs or --manifest, not both")
        return from_manifest(Path(args.manifest), files, making)
    if not args.inputs:
        raise UsageError(
            "give at least one INPUT (a file, a folder or an https URL), or --manifest"
        )
    if not args.tags:
        raise UsageError("--tags is required with INPUTs, e.g. --tags 'lofi, chill'")
    fields = {
        "tags": args.tags,
        "extend_before_duration": args.before,
        "extend_after_duration": args.after,
        "lyrics": args.lyrics,
        "seed": args.seed,
        **making,
    }
    return from_inputs(args.inputs, files, objects, **fields)


@contextlib.asynccontextmanager
async def connection(
    args: argparse.Namespace, files: FileFacts | None = None
) -> AsyncIterator[OutpaintClient]:
    """The client: against the embedded emulator, or the service named by flags / env.
    `files`: what the plan learned about the inputs, so they are not read again."""
    options: dict[str, Any] = {
        "file_facts": files,
        "max_in_flight": args.max_in_flight,
        "settle_grace": args.settle_grace,
        "task_deadline": args.task_deadline,
        "upload_inputs": args.upload_inputs,
    }
    if args.rpm is not None:
        options["starts_per_minute"] = args.rpm
    if args.emulator:
        from ..emulator import DEFAULT_API_KEY, Emulator, EmulatorConfig

        async with (
            Emulator(EmulatorConfig(time_scale=0.02)) as emulator,
            OutpaintClient(DEFAULT_API_KEY, emulator.base_url, **options) as client,
        ):
            yield client
        return
    async with OutpaintClient(*service(args), **options) as client:
        yield client


def service(args: argparse.Namespace) -> tuple[str, str | None]:
    """The API key and base URL the flags and the environment name."""
    api_key = args.api_key or os.environ.get("WAVESPEED_API_KEY")
    if not api_key:
        raise UsageError(
            "no API key: set WAVESPEED_API_KEY (or --api-key), or run offline with --emulator"
        )
    return api_key, args.base_url or os.environ.get("WAVESPEED_BASE_URL") or None


async def check_money(args: argparse.Namespace, client: OutpaintClient, plan: Plan) -> None:
    for problem in plan.left_out:
        print(f"left out (--skip-bad-inputs): {problem}", file=sys.stderr)
    # What the whole batch would cost first, then what the cap lets through.
    say(
        args,
        f"{plan.total} tasks, {plan.generated_seconds + plan.held_back_seconds:g} s to generate; "
        f"estimated cost ${plan.new_cost_usd + plan.held_back_cost_usd:.4f}"
        + (
            f" ({plan.paid_before} sent by an earlier run, not charged again)"
            if plan.paid_before
            else ""
        ),
    )
    if plan.held_back:
        say(
            args,
            f"--max-cost ${args.max_cost:.4f} lets {plan.to_run} tasks through "
            f"(${plan.new_cost_usd:.4f}) and holds back {plan.held_back} "
            f"(${plan.held_back_cost_usd:.4f}); the run exits {EXIT_HELD_BACK}",
        )
    try:
        balance = await client.balance()
    except AuthenticationError as exc:
        raise UsageError(f"the service refused the API key: {exc.message or exc}") from None
    except OutpaintError as exc:
        say(args, f"balance unknown ({exc}); going on")
        return
    say(args, f"account balance ${balance:.4f}")
    if plan.new_cost_usd > balance:
        raise UsageError(
            f"the balance (${balance:.4f}) cannot pay for this batch (${plan.new_cost_usd:.4f}); "
            "top up, or cap the spend below the balance with --max-cost"
        )


def check_journal_is_not_lost(journal: Path, out_dir: Path) -> None:
    """A missing or empty journal beside outputs that do not say whose they are is an
    error: starting afresh would pay again for every track already done. Outputs that
    carry their task's mark are recognised by the run itself (and not paid for again)."""
    if journal.exists() and journal.stat().st_size > 0:
        return
    if not out_dir.is_dir():
        return
    root = str(out_dir.absolute())
    outputs = (
        p for p in out_dir.rglob("*") if p.suffix.lower() in COMMON_OUTPUT_SUFFIXES and p.is_file()
    )
    unmarked = next((p for p in outputs if not is_marked(root, str(p.absolute()))), None)
    if unmarked is not None:
        state = "is empty" if journal.exists() else "is missing"
        raise UsageError(
            f"the journal {journal} {state}, but {out_dir} holds outputs of an earlier run "
            f"that carry no task mark (such as {unmarked.name}); put the journal back (or "
            "give it with --journal), or, to start afresh and pay again for tracks already "
            "done, pass --new-journal or use another --out"
        )


def default_journal(out: str) -> Path:
    """Where a run's journal is kept unless --journal says: inside a local --out; for a
    bucket, in this machine's state folder, named after the output prefix."""
    if not is_object_url(out):
        return expand_path(out) / JOURNAL_NAME
    ref = ObjectRef.parse_prefix(out, field="--out")
    named = hashlib.sha256(str(ref).encode()).hexdigest()[:16]
    return default_state_dir() / "journals" / f"{ref.bucket}-{named}.sqlite"


async def make_plan(
    args: argparse.Namespace, journal: Path, files: FileFacts, objects: ObjectStores
) -> Plan:
    def blocking() -> Plan:
        if not is_object_url(args.out) and not args.new_journal:
            # (In a bucket, outputs carry their mark: a run recognises them itself.)
            check_journal_is_not_lost(journal, expand_path(args.out))
        left_out: list[str] = []
        try:
            planned = plan_tasks(args, files, objects)
        except PlanError as exc:
            if not args.skip_bad_inputs or not exc.planned:
                raise
            planned, left_out = exc.planned, exc.problems
        plan = budget(planned, journal, args.max_cost, files)
        return attrs.evolve(plan, left_out=left_out)

    # Reading a library's headers and hashing it takes a while: off the event loop, so
    # Ctrl-C stops the run at once (the worker thread is left to finish on its own).
    return await anyio.to_thread.run_sync(blocking, abandon_on_cancel=True)


@contextlib.asynccontextmanager
async def shared_store(
    out: str, journal: Path, objects: ObjectStores
) -> AsyncIterator[Path | TaskStore]:
    """Where a run records its tasks: its journal; for an output prefix in a bucket, also
    a claim per task under the prefix's `_tasks/` (as `run --ray` does), so that runs on
    two machines against one prefix never send one task twice: the second collects what
    the first sent. The journal alone is one machine's (20 of 20 tasks were paid twice)."""
    if not is_object_url(out):
        yield journal  # opened, and closed, by the batch
        return
    local = Journal(journal)
    claims = ObjectClaims(local, out.rstrip("/") + "/_tasks/", objects)
    try:
        yield claims
    finally:
        with anyio.CancelScope(shield=True):
            await claims.flush()
        local.close()


async def run_batch(args: argparse.Namespace) -> int:
    out_dir: str | Path = args.out if is_object_url(args.out) else expand_path(args.out)
    journal = expand_path(args.journal) if args.journal else default_journal(args.out)
    files = FileFacts()
    objects = ObjectStores()
    plan = await make_plan(args, journal, files, objects)
    if not args.dry_run:
        journal.parent.mkdir(parents=True, exist_ok=True)  # (a state folder's)
    report = Report(every_item=args.json)
    started = time.monotonic()
    progress = BatchProgress()
    # What the user gave for each request in flight, for the report.
    shown: dict[int, str] = {}

    async def requests() -> AsyncIterator[tuple[OutpaintRequest, str]]:
        async for task in plan.tasks(objects):
            shown[id(task.request)] = task.input
            yield task.request, task.name

    async with connection(args, files) as client:
        await check_money(args, client, plan)
        if args.dry_run:
            say(args, "dry run: nothing submitted")
            return EXIT_OK
        stopped: OutpaintError | None = None
        async with (
            shared_store(args.out, journal, objects) as store,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(functools.partial(show, progress, plan.to_run, quiet=args.quiet))
            try:
                async for result in client.outpaint_many(
                    requests(),
                    out_dir,
                    journal=store,
                    resubmit_unknown=args.resubmit_unknown,
                    retry_failed=args.retry_failed,
                    progress=progress,
                ):
                    name = shown.pop(id(result.request), str(result.request.audio))
                    report.add(name, result)
                    if not args.quiet and not args.json:
                        if not result.ok:
                            print(f"not done: {name}: {result.error}", file=sys.stderr)
                        for note in filter(None, (result.format_error, *result.notes)):
                            print(f"note: {name}: {note}", file=sys.stderr)
            except OutpaintError as exc:
                stopped = exc  # the account cannot go on; report what was done first
            finally:
                tg.cancel_scope.cancel()
    if isinstance(stopped, (JournalError, OutputError)) and not report.received:
        # Refused before anything was sent (the journal is another run's, --out cannot
        # be written): a usage error, like bad input.
        raise UsageError(f"{stopped} (nothing was sent)")
    doc = report.document(
        held_back=plan.held_back,
        cost_usd=progress.charged_usd,
        left_out=plan.left_out,
        sent_by_another_run=progress.sent_elsewhere,
    )
    if progress.sent_elsewhere:
        say(
            args,
            f"{progress.sent_elsewhere} of these tasks another run on {args.out} had sent "
            "(its claims are under _tasks/ there): collected here, not paid for twice",
        )
    if args.report:
        from .._review.page import write_review_page

        page = await write_review_page(
            expand_path(args.report), journal=journal, wall_seconds=time.monotonic() - started
        )
        say(args, f"review page: {page}")
    print_report(args, doc)
    if stopped is not None:
        if progress.submitted == 0 and not report.received:
            print(f"error: nothing was submitted: {stopped}", file=sys.stderr)
        else:
            print(
                f"error: submitting stopped after {progress.submitted} tasks: {stopped}",
                file=sys.stderr,
            )
        return EXIT_FAILED
    return outcome(doc)


def print_report(args: argparse.Namespace, doc: dict[str, Any]) -> None:
    if args.json:
        print_json(doc, sys.stdout)
    elif not args.quiet:
        print_table(doc, sys.stdout)


def outcome(doc: dict[str, Any]) -> int:
    """The exit code of a batch that ran to its end, from its report."""
    if doc["completed"] != doc["total"] - doc["held_back"] or doc["left_out"]:
        return EXIT_FAILED
    return EXIT_HELD_BACK if doc["held_back"] else EXIT_OK


async def run_with_interrupts(args: argparse.Namespace) -> int:
    """Ctrl-C cancels the batch, which shuts down cleanly; then 130 and the resume hint."""
    main = asyncio.current_task()
    assert main is not None
    interrupted = False

    def on_interrupt() -> None:
        nonlocal interrupted
        interrupted = True
        main.cancel()

    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, on_interrupt)
    try:
        return await run_batch(args)
    except asyncio.CancelledError:
        if not interrupted:
            raise
        print(
            "interrupted: nothing is lost; run the same command again to resume from the journal",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    finally:
        loop.remove_signal_handler(signal.SIGINT)


def command(args: argparse.Namespace) -> int:
    def run() -> int:
        check_extras(args)
        return asyncio.run(run_with_interrupts(args))

    return exit_code(run)


def check_extras(args: argparse.Namespace) -> None:
    """Refuse, before anything is read or sent, what needs the `audio` extra without it."""
    if installed(AUDIO_EXTRA):
        return
    if args.output_format != "service":
        raise MissingExtraError(
            f"--format {args.output_format} (converting the outputs)",
            "audio",
            "--format service (the service's files as they are)",
        )
    if args.report:
        raise MissingExtraError("--report (the review page)", "audio")
    if args.emulator:
        raise MissingExtraError("--emulator (it makes real audio)", "audio")


def exit_code(run: Callable[[], int]) -> int:
    """`run`'s exit code, or that of the error that stopped it (printed in one line)."""
    try:
        return run()
    except (UsageError, ConfigurationError, ValidationError, JournalError, OutputError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except PlanError as exc:
        print("error: these inputs cannot be run (nothing was sent):", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_USAGE
    except APIError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
