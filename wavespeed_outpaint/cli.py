"""The `wavespeed-outpaint` command line."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

from .errors import OutpaintError


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
    p.add_argument("--jitter", type=float, default=0.1, help="relative spread of task times")
    p.add_argument("--balance", type=float, default=1000.0, help="account balance in USD")
    p.add_argument("--api-key", action="append", help="an accepted key (repeatable)")
    p.add_argument("--seed", type=int, default=0)
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


def _run_emulator(args: argparse.Namespace) -> int:
    from .emulator import DEFAULT_API_KEY, FAULT_KINDS, TIERS, EmulatorConfig, Faults, serve

    probabilities = dict.fromkeys(FAULT_KINDS, args.all_faults) if args.all_faults else {}
    probabilities.update(dict(args.fault))
    try:
        faults = Faults(probabilities, seed=args.seed, retry_after=args.retry_after)
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
        balance_usd=args.balance,
        seed=args.seed,
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wavespeed-outpaint",
        description="Extend music tracks with WaveSpeedAI's ACE-Step Audio Outpaint model.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _emulator_parser(sub)
    _demo_parser(sub)
    return parser


COMMANDS = {"emulator": _run_emulator, "demo": _run_demo}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except OutpaintError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
