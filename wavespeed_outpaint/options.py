"""The client's knobs, in one frozen object with the defaults a production batch wants."""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Any, TypedDict
from urllib.parse import urlsplit

import attrs

from ._audio.probe import DEFAULT_MAX_UPLOAD_BYTES
from .errors import ValidationError

__all__ = ["DEFAULT_BASE_URL", "ClientOptions", "OptionKeywords"]

DEFAULT_BASE_URL = "https://api.wavespeed.ai"
"""The service's own address; `WAVESPEED_BASE_URL` or `base_url=` names another."""


def _positive(inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValidationError(attribute.name, value, "give a number above 0")


def _optional_positive(inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None:
        _positive(inst, attribute, value)


def _optional_url(inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, str) or urlsplit(value).scheme not in ("http", "https"):
        raise ValidationError(attribute.name, value, "give the http(s) URL the service should call")


def _statuses(inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not all(isinstance(s, int) and 400 <= s <= 599 for s in value):
        raise ValidationError(attribute.name, value, "give HTTP error statuses (400 to 599)")


def _pattern(inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    try:
        re.compile(value)
    except (re.error, TypeError) as exc:
        raise ValidationError(attribute.name, value, f"not a regular expression ({exc})") from None


@attrs.frozen
class ClientOptions:
    """Time-outs, retry budget and limits. Change one with `attrs.evolve(options, x=...)`."""

    connect_timeout: float = attrs.field(default=10.0, validator=_positive)
    # Longest silence on a socket while reading an answer.
    read_timeout: float = attrs.field(default=30.0, validator=_positive)
    download_read_timeout: float = attrs.field(default=60.0, validator=_positive)
    # Retries of one call: attempts, and a total time budget across them.
    retry_attempts: int = attrs.field(default=8, validator=_positive)
    retry_timeout: float = attrs.field(default=180.0, validator=_positive)
    retry_wait_initial: float = attrs.field(default=0.5, validator=_positive)
    retry_wait_max: float = attrs.field(default=30.0, validator=_positive)
    # A submit is sent again only after these answers, which mean "not accepted"
    # (docs/protocol.md: 429 and 503 for sure, 502 from the gateway before the service).
    submit_resend_statuses: frozenset[int] = attrs.field(
        default=frozenset({429, 502, 503}), converter=frozenset, validator=_statuses
    )
    # No status code is documented for an empty balance: it is known by its words.
    insufficient_balance_pattern: str = attrs.field(
        default=r"(?i)insufficient|balance|top[ -]?up|not enough (credit|fund)",
        validator=_pattern,
    )
    max_upload_bytes: int = attrs.field(default=DEFAULT_MAX_UPLOAD_BYTES, validator=_positive)
    max_download_bytes: int = attrs.field(default=4 * 1024**3, validator=_positive)
    # The largest JSON answer read; anything bigger is a protocol error, not a crash.
    max_json_bytes: int = attrs.field(default=16 * 1024**2, validator=_positive)
    connection_limit: int = attrs.field(default=100, validator=_positive)
    # Plain http:// to a host that is not loopback sends the key in the clear.
    allow_insecure_http: bool = False
    # How long the URL an s3:// input is signed with stays valid: the service fetches it
    # when the task starts, which a queue at the service can put off for hours.
    presign_seconds: float = attrs.field(default=6 * 3600.0, validator=_positive)
    # Send s3:// inputs through the client's upload instead, for a store the service
    # cannot reach (a private endpoint); each object version is uploaded once.
    upload_inputs: bool = False

    # -- the batch engine --
    # Tasks submitted and not yet final, across every batch and outpaint() of the client
    # (the top tier runs 10,000 at once).
    max_in_flight: int = attrs.field(default=1000, validator=_positive)
    parallel_submits: int = attrs.field(default=16, validator=_positive)
    parallel_downloads: int = attrs.field(default=16, validator=_positive)
    # Local files read (checked and hashed) and uploaded at once: in the batch's order,
    # so that its first task is sent first, whatever the library's size.
    parallel_uploads: int = attrs.field(default=4, validator=_positive)
    parallel_status_requests: int = attrs.field(default=16, validator=_positive)
    # Task starts per minute (the account tier's limit); None: no pacing until a 429.
    starts_per_minute: float | None = attrs.field(default=None, validator=_optional_positive)
    # Seconds of waiting for a final status before a task is reported `unknown` (it goes
    # on at the service; the journal collects it on the next run). Every wait has a bound:
    # a service that never ends a task, or names a status no client knows, holds nothing
    # for longer. Six hours is far longer than any task plus a queue the account allows.
    task_deadline: float | None = attrs.field(default=6 * 3600.0, validator=_optional_positive)
    # Never two result GETs of one task closer than this (the docs advise >= 2 s).
    min_check_interval: float = attrs.field(default=2.0, validator=_positive)
    # The price of one list request in seconds of detection lag: lower, less lag and more
    # requests (with more than 100 tasks in flight it grows as the fourth root of the
    # hundreds in flight). And the longest gap between looks at tasks that may have
    # finished.
    request_price: float = attrs.field(default=0.45, validator=_positive)
    max_sweep_gap: float = attrs.field(default=0.5, validator=_positive)
    # Seconds of service work per generated second, before finished tasks teach better:
    # when a task alone is first asked about by GET where the list is not there. Never
    # a wait before the first look at the list.
    initial_work_per_second: float = attrs.field(default=0.1, validator=_positive)
    # Keep what the poller learned of how long tasks take (in a batch's journal, and in
    # `state_dir`) and start from it: a new process looks for its first wave as a warm
    # one does. `state_dir` None: $XDG_STATE_HOME/wavespeed-outpaint, else
    # ~/.local/state/wavespeed-outpaint.
    remember_task_times: bool = True
    state_dir: str | None = None
    # Spans and metrics through OpenTelemetry's global providers, when opentelemetry-api
    # is installed (the `otel` extra); False: none, even then.
    telemetry: bool = True
    # An unknown submit counts as "no task created" only if the list still shows none
    # this long after its window closed.
    settle_grace: float = attrs.field(default=15.0, validator=_positive)
    clock_skew: float = attrs.field(default=2.0, validator=_positive)
    # After a submit's answer is lost, submits go one at a time this long, so that the
    # list endpoint can tell the next lost submits' tasks apart by creation time.
    serial_submits_after_loss: float = attrs.field(default=30.0, validator=_positive)

    # -- webhooks --
    # Where the service should POST each finished prediction (a WebhookReceiver's URL).
    webhook_url: str | None = attrs.field(default=None, validator=_optional_url)
    # How the submit names it: the "webhook" query parameter (the guide's form) or a
    # "webhook_url" body field (one newer page's form).
    webhook_field: str = attrs.field(
        default="query", validator=attrs.validators.in_(("query", "body"))
    )
    # A task with no delivery this long after its predicted finish is polled for.
    webhook_grace: float = attrs.field(default=10.0, validator=_positive)
    # Before any task has finished there is no prediction: the first poll of a task
    # waiting for its webhook comes this long after its creation (plus the grace).
    webhook_blind_wait: float = attrs.field(default=30.0, validator=_positive)


class OptionKeywords(TypedDict, total=False):
    """`ClientOptions`' fields as keywords of `OutpaintClient(...)`, so that a type checker
    catches a misspelt option (a test keeps the two lists the same)."""

    connect_timeout: float
    read_timeout: float
    download_read_timeout: float
    retry_attempts: int
    retry_timeout: float
    retry_wait_initial: float
    retry_wait_max: float
    submit_resend_statuses: Collection[int]
    insufficient_balance_pattern: str
    max_upload_bytes: int
    max_download_bytes: int
    max_json_bytes: int
    connection_limit: int
    allow_insecure_http: bool
    presign_seconds: float
    upload_inputs: bool
    max_in_flight: int
    parallel_submits: int
    parallel_downloads: int
    parallel_uploads: int
    parallel_status_requests: int
    starts_per_minute: float | None
    task_deadline: float | None
    min_check_interval: float
    request_price: float
    max_sweep_gap: float
    initial_work_per_second: float
    remember_task_times: bool
    state_dir: str | None
    telemetry: bool
    settle_grace: float
    clock_skew: float
    serial_submits_after_loss: float
    webhook_url: str | None
    webhook_field: str
    webhook_grace: float
    webhook_blind_wait: float
