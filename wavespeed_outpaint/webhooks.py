"""Signed webhook deliveries: verify them, and hand the prediction to the waiting client.

    receiver = WebhookReceiver(client)                  # secret fetched from the API
    app.add_subapp("/outpaint", receiver.app)           # an existing aiohttp app, or:
    async with receiver.serve("127.0.0.1", 8080): ...  # on its own

In another framework (FastAPI, Starlette, plain ASGI), verify the raw body yourself:

    verifier = WebhookVerifier(await client.webhook_secret())
    prediction = verifier.verify(await request.body(), request.headers)
    client.deliver(prediction)

A delivery is accepted when its `webhook-signature` is HMAC-SHA256 over
`{webhook-id}.{webhook-timestamp}.{raw body}` with the account's secret (docs/protocol.md),
its timestamp is at most `tolerance` seconds old (or ahead), and its `webhook-id` has not
been accepted before. Anything else raises `WebhookVerificationError` and changes nothing.
"""

from __future__ import annotations

import collections
import contextlib
import heapq
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING

from aiohttp import web

from ._api.signing import signature_matches
from .errors import WebhookVerificationError
from .models import Prediction

if TYPE_CHECKING:
    from .client import OutpaintClient

__all__ = ["WebhookReceiver", "WebhookVerificationError", "WebhookVerifier"]

log = logging.getLogger("wavespeed_outpaint.webhooks")

DEFAULT_TOLERANCE = 300.0
MAX_BODY_BYTES = 1024 * 1024
# Unix seconds, as the docs send them: digits only (no sign, fraction, "nan" or "inf").
TIMESTAMP = re.compile(r"[0-9]{1,12}")


class WebhookVerifier:
    """Checks deliveries against the account's secret; remembers ids to refuse replays."""

    def __init__(self, secret: str, *, tolerance: float = DEFAULT_TOLERANCE) -> None:
        if not secret:
            raise WebhookVerificationError("no webhook secret: get it with client.webhook_secret()")
        self._secret = secret
        self.tolerance = tolerance
        # Ids accepted whose timestamp is within the tolerance window, with those
        # timestamps, oldest first; older ones are refused by their timestamp.
        self._seen: set[str] = set()
        self._seen_by_stamp: list[tuple[int, str]] = []

    def __repr__(self) -> str:
        return f"WebhookVerifier(tolerance={self.tolerance})"

    def verify(
        self, body: bytes, headers: Mapping[str, str], *, now: float | None = None
    ) -> Prediction:
        """The delivered prediction, or `WebhookVerificationError` saying what is wrong."""
        lowered = {k.lower(): v for k, v in headers.items()}
        webhook_id = lowered.get("webhook-id", "")
        timestamp = lowered.get("webhook-timestamp", "")
        signature = lowered.get("webhook-signature", "")
        if not webhook_id or not timestamp or not signature:
            raise WebhookVerificationError(
                "missing webhook-id, webhook-timestamp or webhook-signature header", status=400
            )
        if not TIMESTAMP.fullmatch(timestamp):
            raise WebhookVerificationError(
                "webhook-timestamp is not a whole number of Unix seconds", status=400
            )
        sent = int(timestamp)
        now = time.time() if now is None else now
        if abs(now - sent) > self.tolerance:
            raise WebhookVerificationError(
                f"webhook-timestamp is {now - sent:.0f} s from now; "
                f"the tolerance is {self.tolerance:g} s"
            )
        if not signature_matches(self._secret, webhook_id, timestamp, body, signature):
            raise WebhookVerificationError("the signature does not match the account's secret")
        self._forget_sent_before(now - self.tolerance)
        if webhook_id in self._seen:
            raise WebhookVerificationError(
                f"webhook-id {webhook_id} was accepted before (replay)", status=409
            )
        try:
            doc = json.loads(body)
            prediction = Prediction.from_data(doc)
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError):
            raise WebhookVerificationError(
                "the body is not a prediction object", status=400
            ) from None
        self._seen.add(webhook_id)
        heapq.heappush(self._seen_by_stamp, (sent, webhook_id))
        return prediction

    def _forget_sent_before(self, cutoff: float) -> None:
        """Ids are kept until their own timestamp leaves the window (a delivery stamped
        ahead of this clock is accepted for longer, and refused as a replay as long)."""
        stamps = self._seen_by_stamp
        while stamps and stamps[0][0] < cutoff:
            self._seen.discard(heapq.heappop(stamps)[1])


class WebhookReceiver:
    """An aiohttp application that takes the service's POSTs and feeds `client`.

    It answers at once: 204 for a verified delivery (handed to the client), 400 for a
    malformed one, 401 for a bad signature or a stale timestamp, 409 for a replay.
    """

    def __init__(
        self,
        client: OutpaintClient,
        *,
        secret: str | None = None,
        path: str = "/webhook",
        tolerance: float = DEFAULT_TOLERANCE,
    ) -> None:
        self._client = client
        self._secret = secret
        self._tolerance = tolerance
        self._verifier: WebhookVerifier | None = None
        self.path = path
        self.app = web.Application(client_max_size=MAX_BODY_BYTES)
        self.app.router.add_post(path, self._handle)
        self.app.on_startup.append(self._prepare)
        self.counts: collections.Counter[str] = collections.Counter()

    async def _prepare(self, app: web.Application) -> None:
        await self.verifier()

    async def verifier(self) -> WebhookVerifier:
        if self._verifier is None:
            secret = self._secret or await self._client.webhook_secret()
            self._verifier = WebhookVerifier(secret, tolerance=self._tolerance)
        return self._verifier

    async def _handle(self, request: web.Request) -> web.Response:
        verifier = await self.verifier()
        body = await request.read()
        try:
            prediction = verifier.verify(body, request.headers)
        except WebhookVerificationError as exc:
            self.counts["refused"] += 1
            log.warning("webhook refused: %s", exc)
            return web.Response(status=exc.status, text=str(exc))
        self.counts["accepted"] += 1
        self._client.deliver(prediction)
        return web.Response(status=204)

    @contextlib.asynccontextmanager
    async def serve(self, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
        """Run the receiver on its own; yields the URL to give as `webhook_url`."""
        runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port)
            await site.start()
            bound_host, bound_port = runner.addresses[0][:2]
            shown = f"[{bound_host}]" if ":" in bound_host else bound_host
            yield f"http://{shown}:{bound_port}{self.path}"
        finally:
            await runner.cleanup()
