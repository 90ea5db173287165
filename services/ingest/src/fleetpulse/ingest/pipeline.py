"""One pipeline behind every source: collect -> validate -> write -> forward -> acknowledge.

Sources hand messages to a bounded buffer: ``offer(envelope)`` (synchronous; ``False`` when full,
then ``when_space(callback)`` calls the source back once there is room again) or ``await
submit(envelope)``. So when writes slow down the sources stop pulling (and the broker's in-flight
window stops sending). The collector takes messages in chunks, looks up unknown devices once per
chunk, and validates without a coroutine per message. A batch flushes at
``max_rows`` readings or ``max_ms`` after its first message; ``writers`` batches are written
concurrently, each on its own pool connection. A committed batch leaves its database slot at
once: forwarding its readings and acknowledging its messages happen while the next batch
commits (up to ``completing`` committed batches at a time, acknowledged in the order the batches
were collected), so a slow forward (the evaluator queue) never holds a write back. A source with
an in-flight window (an MQTT connection: the broker sends at most ``window`` unacknowledged
messages) ends the wait early: once a batch holds ``window // writers`` of its messages and
nothing more is buffered, the batch is written at once instead of waiting
out ``max_ms`` for messages the broker may not send before the acks; while it commits the next
batch fills from the rest of the window, and its acks reopen the window. While messages keep
coming the batch keeps filling up to ``max_rows`` (a broker that sends past the window costs
nothing in batch size). A write that fails for a transient reason (``fleetpulse.common.db.errors``) is
retried with backoff until it commits; only then are the stored readings forwarded and the
messages acknowledged to their source. A write whose data PostgreSQL refuses (class 22 data
exception, 23 constraint violation) is bisected until the offending messages are isolated:
those are quarantined ``STORAGE_REJECTED``, the rest is written, and acknowledgements go on.
Any other permanent failure (undefined table, permission denied) is the same for every row: it
is retried with backoff and logged as an error, and nothing is acknowledged or dropped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any, Protocol

from fleetpulse.common.db import DATABASE_ERRORS, describe, is_data_error, is_transient
from fleetpulse.common.mqtt import Backoff
from fleetpulse.common.observability import tracer
from fleetpulse.ingest.batch import Batch, Envelope, QuarantineThrottle
from fleetpulse.ingest.domain import Reason, Rejected, Validator, Verdict, parse_topic
from fleetpulse.ingest.forwarder import ReadingsForwarder
from fleetpulse.ingest.metrics import IngestMetrics
from fleetpulse.ingest.registry import DeviceRegistry
from fleetpulse.ingest.store import Written

log = logging.getLogger(__name__)
Acknowledge = Callable[[list[Any]], Awaitable[None]]
CHUNK = 256


_Turn = asyncio.Event


def _done_turn() -> _Turn:
    turn = _Turn()
    turn.set()
    return turn


class TelemetryStore(Protocol):
    async def write(self, batch: Batch) -> Written: ...


@dataclass(frozen=True, slots=True)
class PipelineConfig:
    max_rows: int = 5000
    max_ms: int = 100
    writers: int = 2
    max_pending: int = 20_000
    #: committed batches being forwarded and acknowledged while ``writers`` write the next ones
    completing: int = 2


def now_us() -> int:
    return time.time_ns() // 1000


class Pipeline:
    def __init__(
        self,
        *,
        validator: Validator,
        registry: DeviceRegistry,
        store: TelemetryStore,
        forwarder: ReadingsForwarder,
        throttle: QuarantineThrottle,
        metrics: IngestMetrics,
        config: PipelineConfig,
    ) -> None:
        self._validator = validator
        self._registry = registry
        self._store = store
        self._forwarder = forwarder
        self._throttle = throttle
        self._metrics = metrics
        self._config = config
        self._pending: deque[Envelope] = deque()
        self._arrived = asyncio.Event()
        self._space_callbacks: list[Callable[[], None]] = []
        # resume a paused source only when a quarter of the buffer is free: no pause/resume churn
        self._resume_below = config.max_pending - max(1, config.max_pending // 4)
        self._batches: asyncio.Queue[tuple[Batch, _Turn, _Turn] | None] = asyncio.Queue(
            config.writers
        )
        # a batch holds a database slot only while it is written (see the module docstring)
        self._db_slots = asyncio.Semaphore(config.writers)
        self._last_turn: _Turn = _done_turn()
        self._ackers: dict[Hashable, Acknowledge] = {}
        self._per_batch: dict[Hashable, int] = {}
        self._tracer = tracer("fleetpulse.ingest")

    @property
    def pending(self) -> int:
        return len(self._pending)

    def register_source(
        self, source: Hashable, acknowledge: Acknowledge, *, window: int | None = None
    ) -> None:
        """``acknowledge(tokens)`` is awaited after the batch holding them committed;
        ``window``: at most this many of the source's messages are unacknowledged at a time."""
        self._ackers[source] = acknowledge
        if window is not None:
            self._per_batch[source] = max(1, window // self._config.writers)

    def offer(self, envelope: Envelope) -> bool:
        """Buffer ``envelope`` unless full; ``False`` means full: see :meth:`when_space`."""
        if len(self._pending) >= self._config.max_pending:
            return False
        self._pending.append(envelope)
        if not self._arrived.is_set():
            self._arrived.set()
        return True

    def when_space(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once, when the buffer has room again."""
        if callback not in self._space_callbacks:
            self._space_callbacks.append(callback)
        if len(self._pending) <= self._resume_below:
            self._notify_space()

    async def submit(self, envelope: Envelope) -> None:
        while not self.offer(envelope):
            room = asyncio.Event()
            self.when_space(room.set)
            await room.wait()

    def _notify_space(self) -> None:
        callbacks, self._space_callbacks = self._space_callbacks, []
        for callback in callbacks:
            callback()

    async def run(self, stop: asyncio.Event) -> None:
        """Batch until ``stop`` is set and nothing is pending, then let the writers finish."""
        workers = self._config.writers + self._config.completing
        writers = [asyncio.create_task(self._writer()) for _ in range(workers)]
        try:
            while not (stop.is_set() and not self._pending):
                batch = await self._collect(stop)
                if batch is not None:
                    # acknowledgements go out in collection order: each batch waits for the
                    # one before it (``previous``) and then opens the turn of the next (``own``)
                    previous, own = self._last_turn, _Turn()
                    self._last_turn = own
                    await self._batches.put((batch, previous, own))
        finally:
            for _ in writers:
                await self._batches.put(None)
            await asyncio.gather(*writers)

    async def _collect(self, stop: asyncio.Event) -> Batch | None:
        if not await self._first(stop):
            return None
        batch = Batch(self._throttle, forward=self._forwarder.enabled)
        deadline = time.monotonic() + self._config.max_ms / 1000
        max_rows = self._config.max_rows
        pending = self._pending
        per_batch, counts, window_share = self._per_batch, dict[Hashable, int](), False
        while batch.rows < max_rows:
            if not pending:
                if window_share:
                    break  # a window's share is here and nothing more came: write it now
                if not await self._arrival(deadline):
                    break
                continue
            chunk = [pending.popleft() for _ in range(min(CHUNK, len(pending)))]
            if self._space_callbacks and len(pending) <= self._resume_below:
                self._notify_space()
            await self._lookup_unknown(chunk)
            for index, envelope in enumerate(chunk):
                if batch.rows >= max_rows:
                    pending.extendleft(reversed(chunk[index:]))  # next batch, same order
                    break
                self._add(batch, envelope)
                if per_batch and (cap := per_batch.get(envelope.source)) is not None:
                    counted = counts[envelope.source] = counts.get(envelope.source, 0) + 1
                    window_share = window_share or counted >= cap
        return batch

    async def _first(self, stop: asyncio.Event) -> bool:
        while not self._pending:
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), 0.2)
            except TimeoutError:
                if stop.is_set() and not self._pending:
                    return False
        return True

    async def _arrival(self, deadline: float) -> bool:
        timeout = deadline - time.monotonic()
        if timeout <= 0:
            return False
        self._arrived.clear()
        try:
            await asyncio.wait_for(self._arrived.wait(), timeout)
        except TimeoutError:
            return bool(self._pending)
        return True

    async def _lookup_unknown(self, chunk: list[Envelope]) -> None:
        keys: set[tuple[str, str]] = set()
        needs_lookup = self._registry.needs_lookup
        for envelope in chunk:
            if envelope.defect is not None:
                continue
            where = parse_topic(envelope.topic)
            if where is not None:
                key = (where.tenant_id, where.device_id)
                if key not in keys and needs_lookup(key):
                    keys.add(key)
        if keys:
            wanted = sorted(keys)
            await self._retrying(lambda: self._registry.lookup(wanted), "registry lookup")

    def _add(self, batch: Batch, envelope: Envelope) -> None:
        if envelope.retained:
            batch.add_retained(envelope)
            return
        if envelope.defect is not None:
            batch.add(envelope, Rejected(Reason.BAD_JSON, envelope.defect))
            return
        batch.add(
            envelope,
            self._validator.validate(envelope.topic, envelope.payload, envelope.received_us),
        )

    async def _writer(self) -> None:
        while (item := await self._batches.get()) is not None:
            batch, previous, own = item
            try:
                with self._tracer.start_as_current_span("ingest.batch") as span:
                    span.set_attribute("messages", len(batch.envelopes))
                    span.set_attribute("readings", len(batch.times))
                    await self._complete(batch, previous)
            finally:
                own.set()  # even after a failure (the service stops): later batches go on

    async def _complete(self, batch: Batch, previous: _Turn) -> None:
        async with self._db_slots:
            committed = await self._write_isolating(batch)
        for part, written, commit_ms in committed:
            records = part.evaluator_records(written.stored)
            if records:
                await self._forwarder.forward(records)
            self._metrics.batch_done(
                messages=len(part.envelopes),
                accepted=part.accepted_messages,
                readings=len(part.times) + part.duplicates_in_batch,
                duplicates=written.duplicates,
                retained=part.retained,
                quarantined=part.quarantined,
                commit_ms=commit_ms,
                lag_ms=(now_us() - part.first_received_us) / 1000,
            )
        await previous.wait()
        await self._acknowledge(batch)

    async def _write_isolating(self, batch: Batch) -> list[tuple[Batch, Written, float]]:
        """Write ``batch``; on a permanent failure write its halves, down to single messages,
        which are then quarantined ``STORAGE_REJECTED``. Returns what was committed."""
        started = time.perf_counter()
        try:
            written = await self._retrying(lambda: self._store.write(batch), "batch write")
        except Exception as exc:
            if not is_data_error(exc):
                raise
            if len(batch.envelopes) > 1:
                first, second = batch.halves(self._revalidate)
                return [*await self._write_isolating(first), *await self._write_isolating(second)]
            return await self._reject(batch, exc)
        return [(batch, written, (time.perf_counter() - started) * 1000)]

    def _revalidate(self, envelope: Envelope) -> Verdict:
        return self._validator.validate(
            envelope.topic, envelope.payload, envelope.received_us, rate_limit=False
        )

    async def _reject(self, batch: Batch, exc: BaseException) -> list[tuple[Batch, Written, float]]:
        detail = f"the database refused this message: {describe(exc)}"
        log.warning("storage rejected a message; quarantined", extra={"error": detail})
        rejected = batch.rejected_by_storage(detail)
        started = time.perf_counter()
        try:
            written = await self._retrying(lambda: self._store.write(rejected), "quarantine write")
        except Exception as again:
            if not is_data_error(again):
                raise
            # Even its quarantine row is refused: acknowledged, logged and counted as dropped.
            log.error("message dropped: not storable", extra={"error": describe(again)})
            self._metrics.dropped(len(batch.envelopes))
            return []
        return [(rejected, written, (time.perf_counter() - started) * 1000)]

    async def _acknowledge(self, batch: Batch) -> None:
        by_source: dict[Hashable, list[Any]] = {}
        for envelope in batch.envelopes:
            by_source.setdefault(envelope.source, []).append(envelope.token)
        for source, tokens in by_source.items():
            await self._ackers[source](tokens)

    async def _retrying(self, attempt: Callable[[], Awaitable[Any]], what: str) -> Any:
        backoff = Backoff(initial=0.1, maximum=5.0)
        while True:
            try:
                return await attempt()
            except DATABASE_ERRORS as exc:
                self._metrics.write_failed()
                if is_data_error(exc):
                    raise  # these rows will never be stored: the caller isolates them
                delay = backoff.next()
                # not transient and not the data's fault (undefined table, permission denied):
                # the deployment must be fixed; nothing is acknowledged or dropped meanwhile
                level = logging.WARNING if is_transient(exc) else logging.ERROR
                log.log(
                    level,
                    f"{what} failed; retrying",
                    extra={"error": describe(exc), "delay_s": delay},
                )
                await asyncio.sleep(delay)
