"""Every error the SDK raises, under one root.

    OutpaintError
    ├── ValidationError            bad input, refused before anything is sent or charged
    ├── ConfigurationError         no API key, a refused base URL
    │   └── MissingExtraError          an optional part not installed (also an ImportError)
    ├── APIError                   the service answered and said no (status, code, message)
    │   ├── BadRequestError            400: the service refused the input
    │   ├── AuthenticationError        401 / 403: wrong, inactive or suspended key
    │   ├── InsufficientBalanceError   the account cannot pay (recognised by its message)
    │   ├── NotFoundError              404: unknown prediction, model or URL
    │   ├── RateLimitedError           429: too many starts; carries retry_after
    │   └── ServerError                5xx
    ├── TransportError             no usable answer: connection, time-out, truncated body
    │   └── ProtocolError              an answer that does not follow the protocol
    ├── UnknownSubmissionError     a submit whose outcome cannot be known: never re-sent
    ├── TaskFailedError            the task ran and ended failed, cancelled or timed out
    ├── DeadlineError              no final status within `task_deadline`; the task goes on
    ├── OutputError                an output cannot be written (folder, disk full, rights)
    ├── JournalError               the journal cannot be opened, read or written
    └── WebhookVerificationError   a webhook delivery that is not genuine, fresh and new

Messages never contain the API key: the transport redacts every text taken from the
network before it builds an error.
"""

from __future__ import annotations

from typing import Any

from ._root_errors import OutpaintError, ValidationError
from .models import OutpaintRequest, Prediction

__all__ = [
    "APIError",
    "AuthenticationError",
    "BadRequestError",
    "ConfigurationError",
    "DeadlineError",
    "InsufficientBalanceError",
    "JournalError",
    "MissingExtraError",
    "NotFoundError",
    "OutpaintError",
    "OutputError",
    "ProtocolError",
    "RateLimitedError",
    "ServerError",
    "TaskFailedError",
    "TransportError",
    "UnknownSubmissionError",
    "ValidationError",
    "WebhookVerificationError",
]


class ConfigurationError(OutpaintError):
    """The client cannot work as configured (no API key, a refused base URL)."""


class MissingExtraError(ConfigurationError, ImportError):
    """A feature needs an optional part of the package that is not installed; the message
    says which extra to install. Raised before anything is sent or charged. (An
    `ImportError` too, for code that imports optional parts in a `try`.)"""

    def __init__(self, feature: str, extra: str, instead: str | None = None) -> None:
        self.extra = extra
        text = f"{feature} needs the {extra} extra: pip install 'wavespeed-outpaint[{extra}]'"
        super().__init__(text + (f", or {instead}" if instead else ""))


class APIError(OutpaintError):
    """The service answered with an error.

    `status` is the HTTP status, `code` the envelope's code (often the same),
    `message` the service's own words and `prediction_id` the task it concerns, if any.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int,
        code: int | None = None,
        prediction_id: str | None = None,
        hint: str = "",
    ) -> None:
        self.message = message
        self.status = status
        self.code = code
        self.prediction_id = prediction_id
        self.hint = hint
        text = f"HTTP {status}"
        if code is not None and code != status:
            text += f" (code {code})"
        text += f": {message or 'no message'}"
        if prediction_id:
            text += f" [prediction {prediction_id}]"
        if hint:
            text += f". {hint}"
        super().__init__(text)


class BadRequestError(APIError):
    """400: the service refused the request's input; change it before sending again."""


class AuthenticationError(APIError):
    """401 / 403: the key is wrong, not yet activated by a first top-up, or suspended."""


class InsufficientBalanceError(APIError):
    """The account's balance cannot pay for the task. Top up before submitting more."""


class NotFoundError(APIError):
    """404: no such prediction, model or endpoint."""


class RateLimitedError(APIError):
    """429: the account started too many tasks; `retry_after` is the server's hint."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kw)


class ServerError(APIError):
    """5xx: the service failed; result reads retry these, submits only when it is safe."""


class TransportError(OutpaintError):
    """No usable answer: the connection failed, timed out, or the body was cut short."""


class ProtocolError(TransportError):
    """The answer does not follow the protocol (not JSON, fields missing or mistyped)."""


class UnknownSubmissionError(OutpaintError):
    """A submit POST got no usable answer after it may have reached the service.

    The task may exist and be charged, so the SDK never sends it again on its own.
    `sent_at` and `failed_at` bound the window in which such a task was created: the
    list endpoint can settle it (a prediction of this model created in that window).
    """

    def __init__(
        self,
        request: OutpaintRequest,
        *,
        sent_at: float,
        failed_at: float,
        cause: str,
    ) -> None:
        self.request = request
        self.sent_at = sent_at
        self.failed_at = failed_at
        self.cause = cause
        super().__init__(
            f"the submit may or may not have created a task ({cause}); it was not sent "
            "again, because a second submit could be charged twice. Look for a prediction "
            "created between sent_at and failed_at before submitting it again"
        )


class TaskClaimed(OutpaintError):
    """Another process (a worker of the same cluster) holds this task's claim in a shared
    task store: it sent the task, or is sending it. `fields` is its record (state,
    prediction id, outputs ...), for this process to collect the task instead of sending
    it again."""

    def __init__(self, fingerprint: str, fields: dict[str, Any]) -> None:
        self.fingerprint = fingerprint
        self.fields = fields
        super().__init__(f"task {fingerprint[:12]} is claimed by another worker")


class TaskFailedError(OutpaintError):
    """The task reached a final status other than completed."""

    def __init__(self, prediction: Prediction) -> None:
        self.prediction = prediction
        advice = prediction.advice
        text = f"prediction {prediction.id} ended {prediction.status_text}"
        if prediction.code:
            text += f" with code {prediction.code}"
        text += f": {prediction.error or 'no error text'}"
        if advice:
            text += f". {advice}"
        super().__init__(text)

    @property
    def retryable(self) -> bool | None:
        """True when a new submit may succeed, False when the input must change."""
        return self.prediction.retryable


class DeadlineError(OutpaintError, TimeoutError):
    """No final status came within `task_deadline`. The task goes on at the service, and
    the next run with the same journal collects it (nothing is submitted again)."""


class OutputError(OutpaintError):
    """An output cannot be written where it should go. `location` is where; the message
    says why (a folder that cannot be made, a full disk, no write permission)."""

    def __init__(self, location: str, problem: str) -> None:
        self.location = location
        self.problem = problem
        super().__init__(f"cannot write {location}: {problem}")


class JournalError(OutpaintError):
    """The journal cannot be opened, read or written (a full disk, a locked or broken file).
    Nothing is submitted while the journal cannot record it."""


class WebhookVerificationError(OutpaintError):
    """A webhook delivery was refused. `status` is the HTTP answer a receiver gives:
    400 malformed, 401 bad signature or stale timestamp, 409 a replayed webhook-id."""

    def __init__(self, message: str, *, status: int = 401) -> None:
        self.status = status
        super().__init__(message)
