"""What the emulator can be told: the account, the time model and the faults."""

from __future__ import annotations

from typing import Any

import attrs

DEFAULT_API_KEY = "emulator-key"
DEFAULT_WEBHOOK_SECRET = "whsec_emulator-webhook-secret"


@attrs.frozen
class Tier:
    """An account tier's limits (docs/protocol.md)."""

    name: str
    starts_per_minute: int
    running_at_once: int


TIERS = {
    tier.name: tier
    for tier in (
        Tier("bronze", 2, 2),
        Tier("silver", 500, 300),
        Tier("gold", 3000, 3000),
        Tier("ultra", 5000, 10000),
    )
}

DISTRIBUTIONS = ("uniform", "lognormal")
QUEUE_ORDERS = ("fifo", "random")

# The kinds of fault, each with its own probability per occasion.
FAULT_KINDS = (
    "submit_429",  # submit refused with 429 and Retry-After; no task created
    "submit_5xx",  # submit answered 500 / 502 / 503 before any task is created
    "submit_lost",  # task created, then the connection dropped before the answer
    "submit_500_after_create",  # task created, then a 500 answered
    "result_429",  # a result GET (or list request) answered 429
    "result_5xx",  # a result GET (or list request) answered 500 / 502 / 503
    "result_drop",  # a result GET's connection dropped
    "slow",  # any API answer delayed by `slow_seconds`
    "upload_5xx",  # an upload step answered 503
    "truncated_download",  # an output download cut short
    "task_failed",  # a task ends failed with a code from `failure_codes`
    "task_cancelled",  # a task ends cancelled
    "task_timeout",  # a task ends timeout
    "expired_output",  # an output URL answers 403 as if expired
    "webhook_lost",  # a webhook is never sent
    "webhook_duplicated",  # a webhook is sent twice
    "webhook_late",  # a webhook is sent `webhook_late_seconds` late
    "webhook_bad_signature",  # a webhook signed with the wrong secret
    # Answers that lie:
    "lie_not_json",  # a result GET answered 200 with an HTML page
    "lie_missing_fields",  # a result GET answered 200 with a prediction lacking id / status
    "lie_huge_body",  # a result GET answered 200 with a body of `huge_body_bytes`
    "lie_no_outputs",  # a task completes with no outputs
    "lie_bad_output_url",  # a task completes with a file:// output URL
    "lie_escaping_output_name",  # a task's output URL ends in ../../ (an escape attempt)
    "lie_oversize_download",  # an output streams far more bytes than the file, unannounced
    "lie_echo_key",  # a task fails with the submit's Authorization header in its error
    "lie_trickle_download",  # an output sent a few bytes at a time, slower and slower
    "lie_list_ignores_page",  # the list answers page 1 to every page, total 1,000,000,000
    "lie_unknown_status",  # a task's status becomes one no protocol names, for good
)


def _check_probabilities(inst: Faults, attribute: attrs.Attribute[Any], value: Any) -> None:
    for kind, p in value.items():
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; known: {', '.join(FAULT_KINDS)}")
        if not 0 <= p <= 1:
            raise ValueError(f"fault {kind!r} has probability {p}; give 0 to 1")


@attrs.define
class Faults:
    """Fault injection: a probability per kind, drawn from one seeded generator."""

    probabilities: dict[str, float] = attrs.field(factory=dict, validator=_check_probabilities)
    seed: int = 0
    retry_after: float = 1.0  # seconds sent in Retry-After on injected 429s
    slow_seconds: float = 0.5
    webhook_late_seconds: float = 1.0
    failure_codes: tuple[int, ...] = (1403, 1405, 5000, 5003)
    error_statuses: tuple[int, ...] = (500, 502, 503)  # drawn from for the *_5xx kinds
    huge_body_bytes: int = 2 * 1024 * 1024

    @classmethod
    def every_kind(cls, probability: float, *, seed: int = 0, **kw: Any) -> Faults:
        return cls({kind: probability for kind in FAULT_KINDS}, seed=seed, **kw)


@attrs.define
class EmulatorConfig:
    """The emulated account and service. Mutable so a test can change it mid-run."""

    api_keys: frozenset[str] = frozenset({DEFAULT_API_KEY})
    # Per-minute start limit and tasks running at once; None means no limit.
    starts_per_minute: int | None = None
    running_at_once: int = 10_000
    # Tasks beyond `running_at_once` wait in the service's queue, served first in first
    # out ("fifo") or in no fixed order ("random").
    queue_order: str = attrs.field(default="fifo", validator=attrs.validators.in_(QUEUE_ORDERS))
    # Each task runs base_seconds + time_scale × generated seconds × a spread: uniform in
    # 1 ± jitter, or lognormal, exp(sigma × N(0, 1)) (a heavy tail; its median is 1).
    time_scale: float = 0.01
    jitter: float = 0.1
    base_seconds: float = 0.02
    distribution: str = attrs.field(
        default="uniform", validator=attrs.validators.in_(DISTRIBUTIONS)
    )
    sigma: float = 0.6
    balance_usd: float = 1_000.0
    # No status is documented for "cannot pay"; clients must go by the message.
    insufficient_balance_status: int = 400
    sync_timeout: float = 30.0
    # Older deployments: no two-step upload tickets, no POST form of the list endpoint,
    # no list endpoint at all (clients then ask about each task by GET).
    ticket_uploads: bool = True
    list_post: bool = True
    list_endpoint: bool = True
    output_ttl: float | None = None  # seconds an output stays downloadable
    webhook_secret: str = DEFAULT_WEBHOOK_SECRET
    webhook_attempts: int = 3
    webhook_retry_delay: float = 0.2
    webhook_timeout: float = 5.0
    seed: int = 0
    # Seconds the service's clock runs ahead of the machine's (negative: behind): in
    # `created_at`, the list's time filters and every answer's `Date` header.
    clock_offset: float = 0.0
    # Seconds the `Date` header's clock runs ahead of the one `created_at` comes from (an
    # API edge and a database on machines whose clocks disagree).
    date_offset: float = 0.0
    faults: Faults = attrs.field(factory=Faults)

    @classmethod
    def for_tier(cls, name: str, **kw: Any) -> EmulatorConfig:
        tier = TIERS[name]
        return cls(
            starts_per_minute=tier.starts_per_minute, running_at_once=tier.running_at_once, **kw
        )
