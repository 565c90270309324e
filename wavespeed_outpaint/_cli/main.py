"""The `wavespeed-outpaint` command line."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from .._audio.formats import OUTPUT_FORMATS
from ..errors import MissingExtraError, OutpaintError
from ..models import expand_path


def _fault(text: str) -> tuple[str, float]:
    kind, sep, value = text.partition("=")
    try:
        if not sep:
            raise ValueError
        return kind.strip(), float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"give KIND=PROBABILITY, e.g. submit_429=0.1, not {text!r}"
        ) from None


def _emulator_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("emulator", help="run the local WaveSpeed emulator")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument(
        "--tier",
        choices=["bronze", "silver", "gold", "ultra"],
        help="account tier limits (default: no start limit, 10,000 running)",
    )
    p.add_argument("--rpm", type=int, help="tasks started per minute (overrides --tier)")
    p.add_argument("--running", type=int, help="tasks running at once (overrides --tier)")
    p.add_argument(
        "--time-scale",
        type=float,
        default=0.01,
        help="seconds of work per generated second (default 0.01)",
    )
    p.add_argument("--base-seconds", type=float, default=0.02, help="fixed seconds per task")
    p.add_argument(
        "--jitter", type=float, default=0.1, help="relative spread of uniform task times"
    )
    p.add_argument(
        "--distribution",
        choices=["uniform", "lognormal"],
        default="uniform",
        help="task times: uniform in 1 ± jitter, or lognormal (a heavy tail; see --sigma)",
    )
    p.add_argument(
        "--sigma", type=float, default=0.6, help="spread of lognormal task times (default 0.6)"
    )
    p.add_argument(
        "--queue-order",
        choices=["fifo", "random"],
        default="fifo",
        help="how tasks beyond --running wait to start: first in first out, or in no order",
    )
    p.add_argument("--balance", type=float, default=1000.0, help="account balance in USD")
    p.add_argument("--api-key", action="append", help="an accepted key (repeatable)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--clock-offset",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="the service's clock runs this far ahead of this machine's (negative: behind)",
    )
    p.add_argument(
        "--fault",
        action="append",
        type=_fault,
        default=[],
        metavar="KIND=P",
        help="inject a fault kind with probability P (repeatable)",
    )
    p.add_argument(
        "--all-faults", type=float, metavar="P", help="every fault kind at probability P"
    )
    p.add_argument("--retry-after", type=float, default=1.0, help="Retry-After of injected 429s")
    p.add_argument("--slow-seconds", type=float, default=0.5, help="delay of 'slow' answers")


def _run_emulator(args: argparse.Namespace) -> int:
    from ..emulator import DEFAULT_API_KEY, FAULT_KINDS, TIERS, EmulatorConfig, Faults, serve

    probabilities = dict.fromkeys(FAULT_KINDS, args.all_faults) if args.all_faults else {}
    probabilities.update(dict(args.fault))
    try:
        faults = Faults(
            probabilities,
            seed=args.seed,
            retry_after=args.retry_after,
            slow_seconds=args.slow_seconds,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    tier = TIERS[args.tier] if args.tier else None
    config = EmulatorConfig(
        api_keys=frozenset(args.api_key or [DEFAULT_API_KEY]),
        starts_per_minute=args.rpm
        if args.rpm is not None
        else (tier.starts_per_minute if tier else None),
        running_at_once=args.running or (tier.running_at_once if tier else 10_000),
        time_scale=args.time_scale,
        base_seconds=args.base_seconds,
        jitter=args.jitter,
        distribution=args.distribution,
        sigma=args.sigma,
        queue_order=args.queue_order,
        balance_usd=args.balance,
        seed=args.seed,
        clock_offset=args.clock_offset,
        faults=faults,
    )
    serve(config, args.host, args.port)
    return 0


def _demo_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("demo", help="a round trip on the embedded emulator: no key, no network")
    p.add_argument("--out", type=Path, default=Path("outpaint-demo"), help="where to write")


def _run_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return asyncio.run(run_demo(args.out))


def _run_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "run",
        help="extend many tracks: files, folders, https URLs or a manifest",
        description="Extend tracks with new audio before and/or after them. Running the same "
        "command again resumes from the journal: nothing finished is redone, nothing is "
        "charged twice.",
    )
    p.add_argument(
        "inputs",
        nargs="*",
        metavar="INPUT",
        help="a file, a folder (searched for MP3 / WAV / FLAC), an https URL, or an "
        "s3://bucket/key or s3://bucket/prefix/ (listed recursively)",
    )
    p.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="where the extended tracks go: a folder, or s3://bucket/prefix/",
    )
    p.add_argument(
        "--manifest",
        metavar="FILE.jsonl",
        help="one request per line instead of "
        'INPUTs: the API\'s field names plus an optional "output" name',
    )
    p.add_argument("--tags", help="style tags, e.g. 'lofi, chill' (required with INPUTs)")
    p.add_argument(
        "--before",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="seconds to add before the start (default 0)",
    )
    p.add_argument(
        "--after",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="seconds to add after the end (default 30)",
    )
    p.add_argument("--lyrics", default="", help="lyrics of the new parts; '[inst]' for none")
    p.add_argument("--seed", type=int, default=-1, help="-1 (random) or 0 to 2147483647")
    p.add_argument(
        "--format",
        dest="output_format",
        choices=OUTPUT_FORMATS,
        default="same",
        help="the outputs' format: 'same' as each input (default: files that go back into "
        "the library), 'service' (the service's WAV as it is), or wav, flac, mp3, ogg",
    )
    p.add_argument(
        "--keep-tags",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="carry each input's tags (title, artist, album, cover ...) to its output "
        "(default: yes; not with --format service)",
    )
    p.add_argument(
        "--title-suffix",
        default="",
        metavar="TEXT",
        help="added to each output's title tag, e.g. ' (extended)'",
    )
    p.add_argument("--journal", metavar="PATH", help="default: DIR/.outpaint-journal.sqlite")
    p.add_argument(
        "--report",
        metavar="PAGE.html",
        help="at the end, write the review page (waveforms, players at each seam, rows worst "
        "seam first) here: best next to the outputs",
    )
    p.add_argument("--max-in-flight", type=int, default=1000, metavar="N")
    p.add_argument("--rpm", type=float, help="task starts per minute (your account tier's limit)")
    p.add_argument("--max-cost", type=float, metavar="USD", help="never submit more than this")
    p.add_argument("--dry-run", action="store_true", help="check and price; submit nothing")
    p.add_argument(
        "--new-journal",
        action="store_true",
        help="start a journal although DIR holds outputs of an earlier run (they are not "
        "known to it: their tasks are paid for again)",
    )
    p.add_argument(
        "--skip-bad-inputs",
        action="store_true",
        help="run the inputs that can be run and list the others with why (in the report and "
        "--json's left_out; the run then exits 1), instead of refusing the whole run",
    )
    p.add_argument(
        "--retry-failed",
        action="store_true",
        help="submit again the tasks that failed in an earlier run with this journal",
    )
    p.add_argument(
        "--resubmit-unknown",
        action="store_true",
        help="send again the submits whose outcome could not be settled",
    )
    p.add_argument(
        "--settle-grace",
        type=float,
        default=15.0,
        metavar="SECONDS",
        help="how long a lost submit must stay absent from the service's list before it is "
        "sent again (default 15)",
    )
    p.add_argument(
        "--upload-inputs",
        action="store_true",
        help="send s3:// inputs through this machine's upload instead of as signed URLs "
        "(for a store the service cannot reach)",
    )
    p.add_argument(
        "--task-deadline",
        type=float,
        default=6 * 3600.0,
        metavar="SECONDS",
        help="how long to wait for a task's final status before it is reported unknown; it "
        "goes on at the service and the next run collects it (default 21600)",
    )
    p.add_argument(
        "--ray",
        nargs="?",
        const="local",
        metavar="ADDRESS",
        help="run the batch on Ray (the ray extra): a cluster's ADDRESS, 'auto' for the one "
        "this machine belongs to, or none for a Ray started here for the run; --out must "
        "be s3://, where the workers share a task store",
    )
    p.add_argument(
        "--actors",
        type=int,
        metavar="N",
        help="with --ray: workers, each with one client (default: the cluster's CPUs)",
    )
    p.add_argument("--emulator", action="store_true", help="run against an embedded emulator")
    p.add_argument("--base-url", help="default: WAVESPEED_BASE_URL, then the service")
    p.add_argument("--api-key", help="default: WAVESPEED_API_KEY")
    p.add_argument("--json", action="store_true", help="one JSON document on stdout at the end")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")


def _run_run(args: argparse.Namespace) -> int:
    if args.ray is not None:
        from .ray_run import command
    else:
        from .run import command

    return command(args)


def _status_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("status", help="what a journal holds: counts, cost, failures")
    p.add_argument("--journal", required=True, metavar="PATH")


def _run_status(args: argparse.Namespace) -> int:
    from .status import print_status

    return print_status(expand_path(args.journal))


def _report_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "report",
        help="write the review page of a batch from its journal",
        description="A static HTML page of a batch: its figures, failures by reason, and a "
        "row per track (waveform, players at each seam), the worst seams first.",
    )
    p.add_argument("--journal", required=True, metavar="PATH")
    p.add_argument(
        "--page",
        metavar="PAGE.html",
        help="where to write it (default: review.html beside the journal)",
    )


def _run_report(args: argparse.Namespace) -> int:
    from .._review.page import write_review_page

    journal = expand_path(args.journal)
    if not journal.is_file():
        print(f"error: no journal at {journal}", file=sys.stderr)
        return 2
    page = expand_path(args.page) if args.page else journal.parent / "review.html"
    print(f"review page: {asyncio.run(write_review_page(page, journal=journal))}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wavespeed-outpaint",
        description="Extend music tracks with WaveSpeedAI's ACE-Step Audio Outpaint model.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _run_parser(sub)
    _status_parser(sub)
    _report_parser(sub)
    _emulator_parser(sub)
    _demo_parser(sub)
    return parser


COMMANDS = {
    "run": _run_run,
    "status": _run_status,
    "report": _run_report,
    "emulator": _run_emulator,
    "demo": _run_demo,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "quiet", False):
        # Retries are not errors: stamina announces each one as a warning.
        logging.getLogger("stamina").setLevel(logging.ERROR)
    try:
        return COMMANDS[args.command](args)
    except MissingExtraError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OutpaintError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
