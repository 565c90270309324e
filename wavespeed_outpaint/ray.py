"""The batch on a Ray cluster, with Ray Data (the `[ray]` extra).

    import ray
    from wavespeed_outpaint.ray import outpaint_dataset

    ds = ray.data.read_parquet("s3://lib/manifest.parquet")   # a column `audio`
    results = outpaint_dataset(ds, out="s3://lib/extended/", tags="lofi",
                               extend_after_duration=30, starts_per_minute=3000,
                               max_running=3000, concurrency=8)
    results.write_parquet("s3://lib/extended/_report/")      # one row per task

Each of `concurrency` actors keeps one client (one event loop, one shared poller) for
its whole life, fed batch after batch. The guarantees of one machine hold across the
cluster through two shared parts:
- one `AccountCoordinator` actor per account (named, created if absent): the start
  schedule for the whole cluster (starts per minute, a pause for every worker on a 429),
  and the running budget, handed out as leases that a dead worker's heartbeat no longer
  renews, so its share goes to the others;
- a task store in the bucket (`ObjectClaims`): a task is claimed before its submit
  leaves, so a batch that Ray retries on another node, or the same job run again,
  collects what was sent instead of sending it again.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import os
import shutil
import tempfile
import time
import uuid
import weakref
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs

from ._cluster.claims import ObjectClaims
from ._cluster.continuous import ContinuousBatch
from ._engine.journal import Journal
from ._engine.pacing import StartPacer
from ._outputs.s3 import ObjectStores
from .client import OutpaintClient
from .errors import ConfigurationError
from .models import REQUEST_FIELDS, ObjectRef, OutpaintRequest, OutpaintResult

# Columns of a result row, one per task.
RESULT_COLUMNS = (
    "audio",
    "output",
    "status",
    "prediction_id",
    "files",
    "error",
    "code",
    "cost_usd",
    "delivered_by",
    "skipped",  # finished by an earlier run: collected, not sent
    "generated_seconds",
    "format_error",  # why the output is the service's file, not the format asked for
)
# A worker's running lease lasts this long without a heartbeat.
LEASE_SECONDS = 30.0
COORDINATOR_NAMESPACE = "wavespeed-outpaint"


def require_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigurationError(
            "running on Ray needs the ray extra: pip install 'wavespeed-outpaint[ray]'"
        ) from None
    return ray


class AccountCoordinator:
    """The account's limits for the whole cluster (run as one named async Ray actor):
    start slots on one schedule, a pause for everyone on a 429, and running leases."""

    def __init__(
        self,
        starts_per_minute: float | None,
        max_running: int,
        lease_seconds: float = LEASE_SECONDS,
    ) -> None:
        self._pacer = StartPacer(starts_per_minute)
        self._max_running = max_running
        self._lease_seconds = lease_seconds
        self._leases: dict[str, tuple[int, float]] = {}  # worker -> (slots, expires at)
        self.calls = 0
        # A job being stopped: no start until then (monotonic), and when one last went out.
        self._stopped_until = 0.0
        self._last_accepted = 0.0

    async def slot(self) -> None:
        self.calls += 1
        await self._wait_while_stopped()
        await self._pacer.slot()
        await self._wait_while_stopped()  # (stopped while this waited for its turn)

    async def _wait_while_stopped(self) -> None:
        # A deadline that a later stop may move, so sleeps to it and looks again.
        while (left := self._stopped_until - time.monotonic()) > 0:  # noqa: ASYNC110
            await asyncio.sleep(left)

    def accepted(self) -> None:
        self.calls += 1
        self._last_accepted = time.monotonic()
        self._pacer.accepted()

    def stop(self, seconds: float) -> None:
        """Start nothing for `seconds`: the job is stopping. (A stop lapses so that a
        detached coordinator serves the next job.)"""
        self._stopped_until = time.monotonic() + seconds
        self._last_accepted = time.monotonic()

    def quiet_seconds(self) -> float:
        """Seconds since a start was last accepted (or since the stop)."""
        return time.monotonic() - self._last_accepted

    def rate_limited(self, retry_after: float | None) -> None:
        self.calls += 1
        self._pacer.rate_limited(retry_after)

    def lease(self, worker: str, wanted: int) -> int:
        """How many tasks `worker` may have running, renewed for `lease_seconds`: its
        share, out of what the live workers do not hold (a dead worker's lease lapses)."""
        self.calls += 1
        now = time.monotonic()
        self._leases = {w: lease for w, lease in self._leases.items() if lease[1] > now}
        held = sum(slots for w, (slots, _) in self._leases.items() if w != worker)
        granted = max(1, min(wanted, self._max_running - held))
        self._leases[worker] = (granted, now + self._lease_seconds)
        return granted

    def stats(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "leases": {w: slots for w, (slots, _) in self._leases.items()},
            "starts_per_minute": self._pacer.starts_per_minute,
        }


def stop_starting(account: str = "default", *, quiet: float = 1.5, timeout: float = 15.0) -> None:
    """Before a job's Ray is shut down (Ctrl-C, a stop): no worker of `account` starts
    another task, and this returns once none has been accepted for `quiet` seconds
    (at most `timeout`), so that the submits on the wire are answered and recorded in
    the task store. Killed mid-submit, a task's claim stays "submitting", and the next
    run can only settle it from the list, where other workers' submits of the same
    moment make it unknown."""
    ray = require_ray()
    actor = ray.get_actor(f"account-{account}", namespace=COORDINATOR_NAMESPACE)
    ray.get(actor.stop.remote(timeout))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and ray.get(actor.quiet_seconds.remote()) < quiet:
        time.sleep(0.1)


def coordinator(
    account: str, starts_per_minute: float | None, max_running: int, *, detached: bool = False
) -> Any:
    """The account's coordinator actor: the running one, or a new one. Made by the
    driver (`outpaint_dataset`), it lives as long as the job; `detached`, beyond it (for
    pipelines that make their `OutpaintBatches` themselves): never owned by a worker,
    whose death would take it along."""
    ray = require_ray()
    actor = ray.remote(num_cpus=0, max_restarts=-1, max_concurrency=10_000)(AccountCoordinator)
    return actor.options(
        name=f"account-{account}",
        namespace=COORDINATOR_NAMESPACE,
        get_if_exists=True,
        lifetime="detached" if detached else None,
    ).remote(starts_per_minute, max_running)


@attrs.define
class ClusterLimiter:
    """The `StartLimiter` of a worker: every start asks the account's coordinator."""

    coordinator: Any

    async def slot(self) -> None:
        await self.coordinator.slot.remote()

    def accepted(self) -> None:
        self.coordinator.accepted.remote()

    def rate_limited(self, retry_after: float | None) -> None:
        self.coordinator.rate_limited.remote(retry_after)


class OutpaintBatches:
    """A callable class for `Dataset.map_batches`: each batch of rows (a column `audio`,
    optionally `output` and request fields) in, a batch of result rows out. One client
    per actor, and one batch of it fed by every batch Ray hands the actor, oldest
    first (`ContinuousBatch`)."""

    def __init__(
        self,
        *,
        out: str,
        store: str | None = None,
        account: str = "default",
        starts_per_minute: float | None = None,
        max_running: int = 1000,
        workers: int = 1,
        coordinator_actor: Any = None,
        api_key: str | None = None,
        base_url: str | None = None,
        options: dict[str, Any] | None = None,
        **fields: Any,
    ) -> None:
        self.out = out
        self.store = store or _default_store(out)
        self.fields = fields
        # Held so that a repr of the actor's arguments (Ray prints them on some errors)
        # shows no key; a worker without one reads WAVESPEED_API_KEY from its own env.
        self._api_key = Hidden(api_key) if api_key else None
        self._base_url = base_url
        self._options = options or {}
        self._coordinator = coordinator_actor or coordinator(
            account, starts_per_minute, max_running, detached=True
        )
        self._share = share_of(max_running, workers)
        self._worker = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._batch: ContinuousBatch | None = None
        self._claims: ObjectClaims | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._opening = asyncio.Lock()

    async def _open(self) -> tuple[ContinuousBatch, ObjectClaims]:
        # Blocks run at once on the actor's one event loop: the first opens, the others wait.
        async with self._opening:
            return await self._open_once()

    async def _open_once(self) -> tuple[ContinuousBatch, ObjectClaims]:
        if self._batch is None or self._claims is None:
            in_flight = await self._coordinator.lease.remote(self._worker, self._share)
            # Renewed while the actor lives, between batches and during a long one: a
            # lease lapses only when its worker is gone.
            self._heartbeat = asyncio.create_task(self._renew_lease())
            client = OutpaintClient(
                self._api_key.value if self._api_key else None,
                self._base_url,
                limiter=ClusterLimiter(self._coordinator),
                **{"max_in_flight": in_flight, **self._options},
            )
            await client.__aenter__()
            # This worker's own journal: scratch (the bucket's records are what last),
            # removed when the actor ends (a killed one leaves it to the temp cleaner).
            folder = tempfile.mkdtemp(prefix="outpaint-worker-")
            weakref.finalize(self, shutil.rmtree, folder, True)
            journal = Path(folder) / "journal.sqlite"
            self._claims = ObjectClaims(Journal(journal), self.store, ObjectStores())
            self._batch = ContinuousBatch(client, self.out, self._claims)
        return self._batch, self._claims

    async def _renew_lease(self) -> None:
        while True:
            await asyncio.sleep(LEASE_SECONDS / 3)
            try:
                await self._coordinator.lease.remote(self._worker, self._share)
            except Exception:  # noqa: BLE001 - the coordinator restarting: try again
                continue

    async def __call__(self, batch: dict[str, Any]) -> AsyncIterator[dict[str, list[Any]]]:
        continuous, claims = await self._open()
        rows = _rows(batch)
        requests = [self._request(row) for row in rows]
        ready: list[OutpaintRequest | tuple[OutpaintRequest, str]] = [
            request if name is None else (request, name)
            for request, name in requests
            if isinstance(request, OutpaintRequest)
        ]
        results = await continuous.run(ready)
        await claims.flush()
        out: dict[str, list[Any]] = {column: [] for column in RESULT_COLUMNS}
        for row, (request, name) in zip(rows, requests, strict=True):
            ended = results.get(id(request)) if isinstance(request, OutpaintRequest) else request
            for column, value in _result_row(row, name, ended).items():
                out[column].append(value)
        yield out

    def _request(self, row: dict[str, Any]) -> tuple[OutpaintRequest | str, str | None]:
        """The row's request and output name, or why it cannot be one (a failed row)."""
        # A row's own request fields win over those given for the whole dataset.
        own = {k: row[k] for k in REQUEST_FIELDS if row.get(k) is not None}
        fields = {**self.fields, **own}
        name = row.get("output")
        try:
            request = OutpaintRequest(str(row.get("audio")), **fields)
        except Exception as exc:  # noqa: BLE001 - a bad row is a row, not a failed job
            return str(exc), name
        if name is None and request.is_object:
            name = ObjectRef.parse(str(request.audio)).key.rsplit(".", 1)[0]
        return request, name


@attrs.frozen(repr=False)
class Hidden:
    """A secret that prints as nothing."""

    value: str

    def __repr__(self) -> str:
        return "Hidden(***)"


def _default_store(out: str) -> str:
    if not out.startswith("s3://"):
        raise ConfigurationError(
            "give store='s3://bucket/prefix/' (the task store every worker shares), or an "
            "s3:// out, whose _tasks/ prefix is then the store"
        )
    return out.rstrip("/") + "/_tasks/"


def _rows(batch: dict[str, Any]) -> list[dict[str, Any]]:
    columns = list(batch)
    count = len(batch[columns[0]]) if columns else 0
    return [{c: _plain(batch[c][i]) for c in columns} for i in range(count)]


def _plain(value: Any) -> Any:
    """A cell as Python: numpy's scalars unwrapped, and the NaN that a column of nulls
    becomes in a numpy batch read as the missing value it was."""
    value = value.item() if hasattr(value, "item") else value
    return None if isinstance(value, float) and math.isnan(value) else value


def _result_row(
    row: dict[str, Any], name: str | None, ended: OutpaintResult | str | None
) -> dict[str, Any]:
    """One task's row: its result, or why it was not sent (a bad row: text; the batch
    stopped before it: None)."""
    base: dict[str, Any] = {
        "audio": str(row.get("audio")),
        "output": name,
        "files": [],
        "cost_usd": 0.0,
        "skipped": False,
        "generated_seconds": 0.0,
        "format_error": None,
    }
    nothing: dict[str, Any] = {"prediction_id": None, "code": None, "delivered_by": None}
    if ended is None:
        return {**base, **nothing, "status": "not sent", "error": "the batch stopped first"}
    if isinstance(ended, str):
        return {**base, **nothing, "status": "invalid", "error": ended}
    return {
        **base,
        "status": ended.outcome,
        "prediction_id": ended.prediction_id,
        "files": list(ended.locations),
        "error": ended.error,
        "code": ended.code,
        "cost_usd": ended.request.cost_usd if ended.prediction_id else 0.0,
        "delivered_by": ended.delivered_by,
        "skipped": ended.skipped,
        "generated_seconds": ended.request.generated_seconds,
        "format_error": ended.format_error,
    }


def outpaint_dataset(
    ds: Any,
    *,
    out: str,
    store: str | None = None,
    account: str = "default",
    starts_per_minute: float | None = None,
    max_running: int = 1000,
    concurrency: int = 2,
    batch_size: int | None = None,
    api_key: str | None = None,
    base_url: str | None = None,
    options: dict[str, Any] | None = None,
    **fields: Any,
) -> Any:
    """`ds` (rows with `audio`, optionally `output` and request fields) extended: a
    dataset of one result row per task (`RESULT_COLUMNS`). Lazy, as Ray Data is: it
    runs when consumed (`write_parquet`, `take_all`, ...)."""
    ray = require_ray()
    account_actor = coordinator(account, starts_per_minute, max_running)
    batch_size = batch_size or batch_rows(max_running, concurrency)
    blocks = blocks_at_once(share_of(max_running, concurrency), batch_size)
    return ds.map_batches(
        OutpaintBatches,
        fn_constructor_kwargs={
            "out": out,
            "store": store,
            "account": account,
            "starts_per_minute": starts_per_minute,
            "max_running": max_running,
            "workers": concurrency,
            "coordinator_actor": account_actor,
            "api_key": api_key,
            "base_url": base_url,
            "options": options,
            **fields,
        },
        batch_size=batch_size,
        batch_format="numpy",
        # Waiting on the service is not work for a CPU: the actors take a fraction.
        num_cpus=0.25,
        **_actor_pool(ray, concurrency, blocks),
    )


def _actor_pool(ray: Any, actors: int, blocks: int) -> dict[str, Any]:
    """`map_batches` arguments for `actors` actors taking `blocks` blocks each at once.
    An actor takes no more blocks than it runs: Ray Data would otherwise queue most of
    a small dataset at the first actor ready, and the others would sit idle."""
    strategy = ray.data.ActorPoolStrategy
    if "max_concurrent_calls_per_actor" in inspect.signature(strategy).parameters:
        return {
            "compute": strategy(
                size=actors,
                max_tasks_in_flight_per_actor=blocks,
                max_concurrent_calls_per_actor=blocks,
            )
        }
    # A Ray without that parameter: the actor's own concurrency, as a remote argument.
    pool = strategy(size=actors, max_tasks_in_flight_per_actor=blocks)
    return {"compute": pool, "max_concurrency": blocks}


def batch_rows(max_running: int, actors: int) -> int:
    """Rows in a batch (and, best, in a block of the dataset): at most half an actor's
    share of `max_running`, so that an actor holds no more than some three times its
    share (see `blocks_at_once`): Ray Data hands blocks to the actors ready first, and
    rows queued at a busy actor wait while another one's share sits idle."""
    return max(1, min(64, share_of(max_running, actors) // 2))


def share_of(max_running: int, actors: int) -> int:
    """An actor's share of the account's running budget: its lease."""
    return max(1, max_running // max(1, actors))


def blocks_at_once(share: int, batch_size: int) -> int:
    """How many blocks (of about a batch each) an actor takes at once. Ray Data hands an
    actor one block at a time by default and starts the next when the last task of
    this one ends: the tail of every block would leave the actor's share of the running
    budget idle. Twice the blocks that fill the share, so that fresh blocks fill it
    while others drain, and one more."""
    return 2 * math.ceil(share / batch_size) + 1
