"""The emulated account: media, tasks on a queue of workers, balance, limits and counters.

Nothing here speaks HTTP; `_app.py` turns requests into calls on `Service`. A task's
status is worked out from the clock (queued, then running, then final), so ten thousand
tasks cost no timers: only webhook delivery needs a loop, in `_app.py`. The queue in front
of the running limit is played forward lazily (`advance`) whenever the service is asked
anything, so a queue served in random order needs no timers either.
"""

from __future__ import annotations

import collections
import hashlib
import heapq
import json
import math
import random
import uuid
from datetime import datetime, timezone
from typing import Any

import attrs

from ..models import MODEL_ID, PRICE_PER_SECOND_USD
from ._config import EmulatorConfig


@attrs.define
class Media:
    token: str
    filename: str
    content_type: str
    size: int  # announced on the ticket
    data: bytes | None = None  # None until the PUT arrives

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data or b"").hexdigest()


@attrs.define
class Task:
    id: str
    input: dict[str, Any]
    fingerprint: str
    created: float
    duration: float  # seconds of work once it runs
    start_at: float  # math.inf while it waits in the queue
    finish_at: float
    final_status: str
    seed: int
    media: Media | None
    code: int = 0
    error: str = ""
    webhook_url: str | None = None
    first_reported_at: float | None = None
    expired_output: bool = False
    output_lie: str | None = None  # one of the lie_* output kinds

    def status(self, now: float) -> str:
        if now < self.start_at:
            return "created"
        if now < self.finish_at:
            return "processing"
        return self.final_status

    @property
    def generated_seconds(self) -> float:
        return float(self.input["extend_before_duration"]) + float(
            self.input["extend_after_duration"]
        )


def iso(ts: float) -> str:
    return (
        datetime.fromtimestamp(ts, timezone.utc)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def parse_iso(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@attrs.define
class Counters:
    submit_requests: int = 0
    tasks_created: int = 0
    per_fingerprint: collections.Counter[str] = attrs.field(factory=collections.Counter)
    result_gets: collections.Counter[str] = attrs.field(factory=collections.Counter)
    list_requests: int = 0
    start_limit_refusals: int = 0  # submits refused with a 429 by the start limit
    upload_requests: int = 0
    upload_bytes: int = 0  # input bytes clients sent through uploads
    fetched_bytes: int = 0  # input bytes the service fetched from URLs itself
    download_requests: int = 0
    downloads_completed: int = 0
    output_bytes: int = 0  # of the downloads served whole
    outputs_asked_with_key: int = 0  # output GETs that carried an Authorization header
    webhook_attempts: int = 0
    webhooks_delivered: int = 0
    faults_injected: collections.Counter[str] = attrs.field(factory=collections.Counter)


OUTPUT_LIES = (
    "lie_no_outputs",
    "lie_bad_output_url",
    "lie_escaping_output_name",
    "lie_oversize_download",
    "lie_trickle_download",
)


class InsufficientBalance(Exception):
    pass


class Service:
    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.tasks: dict[str, Task] = {}
        self.order: list[Task] = []  # creation order, so `created` ascends
        self.media: dict[str, Media] = {}
        self.counters = Counters()
        self.charged_usd = 0.0
        self._workers: list[float] = []  # heap of the times each worker is next free
        self._queue: collections.deque[Task] = collections.deque()  # waiting to run
        self._starts: collections.deque[float] = collections.deque()
        self._rng = random.Random(config.seed)
        # Its own generator: which queued task starts next depends on when clients ask,
        # and must not shift the task times drawn from `_rng`.
        self._queue_rng = random.Random(config.seed + 1)
        self._fault_rng = random.Random(config.faults.seed)

    # -- faults ------------------------------------------------------------------------

    def fault(self, kind: str) -> bool:
        p = self.config.faults.probabilities.get(kind, 0.0)
        if p and self._fault_rng.random() < p:
            self.counters.faults_injected[kind] += 1
            return True
        return False

    def fault_choice(self, options: tuple[int, ...]) -> int:
        return self._fault_rng.choice(options)

    # -- media -------------------------------------------------------------------------

    def new_upload(self, filename: str, size: int, content_type: str) -> Media:
        media = Media(uuid.uuid4().hex, filename, content_type, size)
        self.media[media.token] = media
        return media

    def store_upload(self, filename: str, content_type: str, data: bytes) -> Media:
        media = self.new_upload(filename, len(data), content_type)
        media.data = data
        self.counters.upload_bytes += len(data)
        return media

    def media_for_url(self, url: str) -> Media | None:
        """The emulator hosts media at `/media/<token>/<name>`, whatever host name was used."""
        parts = url.split("/media/", 1)
        if len(parts) != 2:
            return None
        media = self.media.get(parts[1].split("/", 1)[0])
        return media if media is not None and media.data is not None else None

    # -- limits ------------------------------------------------------------------------

    def start_limit_wait(self, now: float) -> float:
        """Seconds until another start fits the per-minute limit; 0 when it fits now."""
        limit = self.config.starts_per_minute
        while self._starts and self._starts[0] <= now - 60:
            self._starts.popleft()
        if limit is None or len(self._starts) < limit:
            return 0.0
        self.counters.start_limit_refusals += 1
        return max(0.001, self._starts[0] + 60 - now)

    # -- tasks -------------------------------------------------------------------------

    def fingerprint(self, body: dict[str, Any], media: Media | None) -> str:
        """Identifies a request by what it asks for: the audio's content, not its URL."""
        keyed = {k: v for k, v in body.items() if k not in ("webhook_url", "enable_sync_mode")}
        if media is not None:
            keyed["audio"] = "sha256:" + media.sha256
        return hashlib.sha256(json.dumps(keyed, sort_keys=True).encode()).hexdigest()

    def create_task(
        self,
        body: dict[str, Any],
        now: float,
        webhook_url: str | None,
        fetched: Media | None = None,
        fetch_error: str = "",
    ) -> Task:
        """`fetched`: the input, if the app fetched it from its URL (else the URL names
        an upload); `fetch_error`: why that failed, the task's error then."""
        cfg = self.config
        generated = float(body["extend_before_duration"]) + float(body["extend_after_duration"])
        cost = generated * PRICE_PER_SECOND_USD
        if cost > cfg.balance_usd + 1e-12:
            raise InsufficientBalance
        cfg.balance_usd -= cost
        self.charged_usd += cost
        self._starts.append(now)

        duration = self._draw_duration(generated)
        self.advance(now)
        media = fetched or self.media_for_url(str(body["audio"]))
        seed = int(body.get("seed", -1))
        task = Task(
            id=uuid.uuid4().hex,
            input=body,
            fingerprint=self.fingerprint(body, media),
            created=now,
            duration=duration,
            start_at=math.inf,
            finish_at=math.inf,
            final_status="completed",
            seed=seed if seed >= 0 else self._rng.randrange(2**31),
            media=media,
            webhook_url=webhook_url,
        )
        self._decide_outcome(task)
        if media is None and fetch_error:
            task.error = f"media access failed: {fetch_error}"
        self.tasks[task.id] = task
        self.order.append(task)
        self._queue.append(task)
        self.advance(now)
        self.counters.tasks_created += 1
        self.counters.per_fingerprint[task.fingerprint] += 1
        return task

    def _draw_duration(self, generated: float) -> float:
        cfg = self.config
        if cfg.distribution == "lognormal":
            spread = math.exp(cfg.sigma * self._rng.gauss(0.0, 1.0))
        else:
            spread = 1 + cfg.jitter * self._rng.uniform(-1, 1)
        return max(0.0, cfg.base_seconds + cfg.time_scale * generated * spread)

    def advance(self, now: float) -> None:
        """Start queued tasks on the workers that came free by `now`, in time order.

        Every task in the queue was created before any worker time still on the heap
        (creation advances first), so a task never starts before it exists."""
        cfg = self.config
        while len(self._workers) < cfg.running_at_once:
            heapq.heappush(self._workers, -math.inf)
        while self._queue and self._workers[0] <= now:
            free_at = heapq.heappop(self._workers)
            if cfg.queue_order == "random" and len(self._queue) > 1:
                index = self._queue_rng.randrange(len(self._queue))
                task = self._queue[index]
                del self._queue[index]
            else:
                task = self._queue.popleft()
            task.start_at = max(free_at, task.created)
            task.finish_at = task.start_at + task.duration
            heapq.heappush(self._workers, task.finish_at)

    def _decide_outcome(self, task: Task) -> None:
        if task.media is None:
            task.final_status, task.code = "failed", 1402
            task.error = "media access failed: the audio URL could not be fetched"
        elif self.fault("task_failed"):
            task.final_status = "failed"
            task.code = self.fault_choice(self.config.faults.failure_codes)
            task.error = f"task execution failed (emulated fault, code {task.code})"
        elif self.fault("task_cancelled"):
            task.final_status, task.error = "cancelled", "task cancelled (emulated fault)"
        elif self.fault("task_timeout"):
            task.final_status, task.code = "timeout", 5004
            task.error = "task timed out (emulated fault)"
        elif self.fault("expired_output"):
            task.expired_output = True
        elif self.fault("lie_unknown_status"):
            task.final_status = "warming_up"  # never final, never listed
        else:
            for lie in OUTPUT_LIES:
                if self.fault(lie):
                    task.output_lie = lie
                    break

    def fail_undecodable(self, task: Task, reason: str) -> None:
        task.final_status, task.code, task.error = "failed", 1402, f"media access failed: {reason}"

    def prediction(self, task: Task, now: float, base_url: str) -> dict[str, Any]:
        self.advance(now)
        status = task.status(now)
        done = status == "completed"
        data: dict[str, Any] = {
            "id": task.id,
            "model": MODEL_ID,
            "outputs": self.outputs(task, base_url) if done else [],
            "urls": {"get": f"{base_url}/api/v3/predictions/{task.id}/result"},
            "has_nsfw_contents": [False] if done else [],
            "status": status,
            "created_at": iso(task.created + self.config.clock_offset),
            "error": task.error if status in ("failed", "cancelled", "timeout") else "",
            "timings": {"inference": round((task.finish_at - task.start_at) * 1000)}
            if status not in ("created", "processing")
            else {},
        }
        if status in ("failed", "timeout") and task.code:
            data["code"] = task.code
        if status not in ("created", "processing") and task.first_reported_at is None:
            task.first_reported_at = now
        return data

    @staticmethod
    def outputs(task: Task, base_url: str) -> list[str]:
        if task.output_lie == "lie_no_outputs":
            return []
        if task.output_lie == "lie_bad_output_url":
            return ["file:///etc/passwd"]
        if task.output_lie == "lie_escaping_output_name":
            return [f"{base_url}/outputs/{task.id}/..%2F..%2F..%2Fescaped.wav"]
        return [f"{base_url}/outputs/{task.id}/outpaint.wav"]

    def list_window(
        self, now: float, *, status: str | None, after: float | None, before: float | None
    ) -> list[Task]:
        """Tasks matching the filters, newest first (the list endpoint's order)."""
        wanted = {"processing": ("created", "processing")}.get(status or "", (status,))
        self.advance(now)
        found = []
        for task in reversed(self.order):
            if before is not None and task.created > before:
                continue
            if after is not None and task.created < after:
                break
            if status is None or task.status(now) in wanted:
                found.append(task)
        return found

    def last_completion(self) -> float | None:
        return max((t.finish_at for t in self.order if t.finish_at < math.inf), default=None)

    def stats(self, now: float) -> dict[str, Any]:
        self.advance(now)
        c = self.counters
        lags = [
            t.first_reported_at - t.finish_at for t in self.order if t.first_reported_at is not None
        ]
        finished = sum(1 for t in self.order if t.finish_at <= now)
        first_created = self.order[0].created if self.order else None
        return {
            "submit_requests": c.submit_requests,
            "tasks_created": c.tasks_created,
            "tasks_finished": finished,
            "duplicate_submissions": sum(n - 1 for n in c.per_fingerprint.values() if n > 1),
            "fingerprints": len(c.per_fingerprint),
            "result_gets": sum(c.result_gets.values()),
            "list_requests": c.list_requests,
            "start_limit_refusals": c.start_limit_refusals,
            "status_requests": sum(c.result_gets.values()) + c.list_requests,
            "upload_requests": c.upload_requests,
            "upload_bytes": c.upload_bytes,
            "fetched_bytes": c.fetched_bytes,
            "download_requests": c.download_requests,
            "downloads_completed": c.downloads_completed,
            "output_bytes": c.output_bytes,
            "outputs_asked_with_key": c.outputs_asked_with_key,
            "webhook_attempts": c.webhook_attempts,
            "webhooks_delivered": c.webhooks_delivered,
            "detected": len(lags),
            "detection_lag_mean": sum(lags) / len(lags) if lags else None,
            "detection_lag_p95": sorted(lags)[int(0.95 * (len(lags) - 1))] if lags else None,
            "first_created": first_created,
            "last_completion": self.last_completion(),
            "charged_usd": round(self.charged_usd, 6),
            "balance_usd": round(self.config.balance_usd, 6),
            "faults_injected": dict(c.faults_injected),
        }
