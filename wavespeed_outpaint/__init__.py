"""wavespeed-outpaint: run many ACE-Step Audio Outpaint tasks at once, safely.

Everything a user needs is importable from here; the modules starting with `_` are
private.
"""

import logging

from ._engine.identity import FileFacts
from ._engine.pacing import StartPacer
from ._version import __version__
from .client import OutpaintClient
from .errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    DeadlineError,
    InsufficientBalanceError,
    JournalError,
    MissingExtraError,
    NotFoundError,
    OutpaintError,
    OutputError,
    ProtocolError,
    RateLimitedError,
    ServerError,
    TaskFailedError,
    TransportError,
    UnknownSubmissionError,
    ValidationError,
    WebhookVerificationError,
)
from .models import (
    MODEL_ID,
    PRICE_PER_SECOND_USD,
    BatchProgress,
    OutpaintRequest,
    OutpaintResult,
    Prediction,
    PredictionPage,
    Status,
)
from .options import DEFAULT_BASE_URL, ClientOptions
from .seams import OutputMark, OutputPart, OutputSink, StartLimiter, TaskStore
from .webhooks import WebhookReceiver, WebhookVerifier

# A library logs, the application decides where it goes.
logging.getLogger("wavespeed_outpaint").addHandler(logging.NullHandler())

__all__ = [
    "DEFAULT_BASE_URL",
    "MODEL_ID",
    "PRICE_PER_SECOND_USD",
    "APIError",
    "AuthenticationError",
    "BadRequestError",
    "BatchProgress",
    "ClientOptions",
    "ConfigurationError",
    "DeadlineError",
    "FileFacts",
    "InsufficientBalanceError",
    "JournalError",
    "MissingExtraError",
    "NotFoundError",
    "OutpaintClient",
    "OutpaintError",
    "OutpaintRequest",
    "OutpaintResult",
    "OutputError",
    "OutputMark",
    "OutputPart",
    "OutputSink",
    "Prediction",
    "PredictionPage",
    "ProtocolError",
    "RateLimitedError",
    "ServerError",
    "StartLimiter",
    "StartPacer",
    "Status",
    "TaskFailedError",
    "TaskStore",
    "TransportError",
    "UnknownSubmissionError",
    "ValidationError",
    "WebhookReceiver",
    "WebhookVerificationError",
    "WebhookVerifier",
    "__version__",
]
