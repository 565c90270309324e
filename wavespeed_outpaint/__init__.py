"""wavespeed-outpaint: run many ACE-Step Audio Outpaint tasks at once, safely.

Everything a user needs is importable from here; the modules starting with `_` are
private.
"""

import logging

from .client import OutpaintClient
from .errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    DeadlineError,
    InsufficientBalanceError,
    JournalError,
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
from .webhooks import WebhookReceiver, WebhookVerifier

__version__ = "0.1.0"

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
    "InsufficientBalanceError",
    "JournalError",
    "NotFoundError",
    "OutpaintClient",
    "OutpaintError",
    "OutpaintRequest",
    "OutpaintResult",
    "OutputError",
    "Prediction",
    "PredictionPage",
    "ProtocolError",
    "RateLimitedError",
    "ServerError",
    "Status",
    "TaskFailedError",
    "TransportError",
    "UnknownSubmissionError",
    "ValidationError",
    "WebhookReceiver",
    "WebhookVerificationError",
    "WebhookVerifier",
    "__version__",
]
