"""One pipeline behind every source: collect -> validate -> write -> forward -> acknowledge.

Sources ``await pipeline.submit(envelope)`` into a bounded queue, so when writes slow down the
sources stop pulling (and the broker's in-flight window stops sending). A batch flushes at
``max_rows`` readings or ``max_ms`` after its first message; ``writers`` batches are written
concurrently. A failed write is retried with backoff until it commits; only then are the
readings forwarded and the messages acknowledged to their source.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any, Protocol

from fleetpulse.common.mqtt import Backoff
from fleetpulse.common.observability import tracer
from fleetpulse.ingest.batch import Batch, Envelope, QuarantineThrottle
from fleetpulse.ingest.domain import Reason, Rejected, Validator, parse_topic
from fleetpulse.ingest.forwarder import ReadingsForwarder
from fleetpulse.ingest.metrics import IngestMetrics
from fleetpulse.ingest.registry import DeviceRegistry
from fleetpulse.ingest.store import RETRYABLE

log = logging.getLogger(__name__)
Acknowledge = Callable[[list[Any]], Awaitable[None]]


class TelemetryStore(Protocol):
    async def write(self, batch: Batch) -> int: ...


@dataclass(frozen=True, slots=True)
class PipelineConfig:
    max_rows: int = 5000
    max_ms: int = 100
    writers: int = 2
    max_pending: int = 20_000


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
        self._queue: asyncio.Queue[Envelope] = asyncio.Queue(config.max_pending)
        self._batches: asyncio.Queue[Batch | None] = asyncio.Queue(config.writers)
        self._ackers: dict[Hashable, Acknowledge] = {}
        self._tracer = tracer("fleetpulse.ingest")

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    def register_source(self, source: Hashable, acknowledge: Acknowledge) -> None:
        self._ackers[source] = acknowledge

    async def submit(self, envelope: Envelope) -> None:
        await self._queue.put(envelope)

    async def run(self, stop: asyncio.Event) -> None:
        """Batch until ``stop`` is set and nothing is pending, then let the writers finish."""
        writers = [asyncio.create_task(self._writer()) for _ in range(self._config.writers)]
        try:
            while not (stop.is_set() and self._queue.empty()):
                batch = await self._collect(stop)
                if batch is not None:
                    await self._batches.put(batch)
        finally:
            for _ in writers:
                await self._batches.put(None)
            await asyncio.gather(*writers)

    async def _collect(self, stop: asyncio.Event) -> Batch | None:
        first = await self._first(stop)
        if first is None:
            return None
        batch = Batch(self._throttle)
        await self._add(batch, first)
        deadline = time.monotonic() + self._config.max_ms / 1000
        while batch.rows < self._config.max_rows:
            envelope = await self._next(deadline)
            if envelope is None:
                break
            await self._add(batch, envelope)
        return batch

    async def _first(self, stop: asyncio.Event) -> Envelope | None:
        while True:
            try:
                return await asyncio.wait_for(self._queue.get(), 0.2)
            except TimeoutError:
                if stop.is_set():
                    return None

    async def _next(self, deadline: float) -> Envelope | None:
        try:
            return self._queue.get_nowait()
        except asyncio.QueueEmpty:
            timeout = deadline - time.monotonic()
            if timeout <= 0:
                return None
        try:
            return await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError:
            return None

    async def _add(self, batch: Batch, envelope: Envelope) -> None:
        if envelope.defect is not None:
            batch.add(envelope, Rejected(Reason.BAD_JSON, envelope.defect))
            return
        where = parse_topic(envelope.topic)
        if where is not None:
            key = (where.tenant_id, where.device_id)
            if self._registry.needs_lookup(key):
                await self._retrying(lambda: self._registry.lookup([key]), "registry lookup")
        batch.add(
            envelope,
            self._validator.validate(envelope.topic, envelope.payload, envelope.received_us),
        )

    async def _writer(self) -> None:
        while (batch := await self._batches.get()) is not None:
            with self._tracer.start_as_current_span("ingest.batch") as span:
                span.set_attribute("messages", len(batch.envelopes))
                span.set_attribute("readings", len(batch.times))
                await self._complete(batch)

    async def _complete(self, batch: Batch) -> None:
        started = time.perf_counter()
        duplicates = await self._retrying(lambda: self._store.write(batch), "batch write")
        commit_ms = (time.perf_counter() - started) * 1000
        if batch.evaluator_records:
            await self._forwarder.forward(batch.evaluator_records)
        await self._acknowledge(batch)
        self._metrics.batch_done(
            messages=len(batch.envelopes),
            accepted=batch.accepted_messages,
            readings=len(batch.times),
            duplicates=duplicates,
            quarantined=batch.quarantined,
            commit_ms=commit_ms,
            lag_ms=(now_us() - batch.first_received_us) / 1000,
        )

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
            except RETRYABLE as exc:
                self._metrics.write_failed()
                delay = backoff.next()
                log.warning(
                    f"{what} failed; retrying", extra={"error": repr(exc), "delay_s": delay}
                )
                await asyncio.sleep(delay)
