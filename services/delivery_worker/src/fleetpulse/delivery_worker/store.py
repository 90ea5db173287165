"""What the delivery worker reads and writes in PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

import asyncpg

from fleetpulse.common.eventstore import (
    Append,
    ConcurrencyError,
    NewEvent,
    PostgresEventStore,
    RecordedEvent,
    UnitOfWork,
    UnitsOfWork,
    stream_id,
)
from fleetpulse.common.projections.catalog import CatalogProjection
from fleetpulse.common.projections.deliveries import DeliveriesProjection
from fleetpulse.common.retry import RetryPolicy

_DELIVERIES = DeliveriesProjection()
_CATALOG = CatalogProjection()
#: ``IntegrationDisabled`` reads the integration's version again after a conflict, 5 tries.
_DISABLE_RETRY = RetryPolicy(on=(ConcurrencyError,), attempts=5)


@dataclass(frozen=True, slots=True)
class Claim:
    """A delivery this worker may attempt now (its lease is held until :meth:`record`)."""

    attempts: int
    version: int
    next_attempt_at: datetime | None


@dataclass(frozen=True, slots=True)
class Busy:
    """The delivery is finished, unknown, or being attempted elsewhere."""

    finished: bool
    retry_in_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Integration:
    integration_id: str
    kind: str
    config: dict[str, Any]
    enabled: bool
    secret_sealed: str | None


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """The events of one attempt, to append to one delivery stream at ``expected_version``.

    ``release`` frees the lease (a retry is coming); ``disable`` is an ``IntegrationDisabled``.
    """

    tenant_id: str
    delivery_id: str
    expected_version: int
    events: Sequence[NewEvent]
    release: bool = False
    disable: NewEvent | None = None
    integration_id: str | None = None
    done: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class PostgresDeliveryStore:
    """Reads and claims deliveries; records attempts in batches.

    Appends are serialised by the event store until commit, so one transaction per attempt
    would cap throughput at one commit at a time. :meth:`record` instead queues the attempt and
    the first caller to get the writer lock commits everything queued so far in one transaction
    (falling back to one transaction each if that fails, so one bad record cannot sink others).
    """

    def __init__(self, events: PostgresEventStore, *, max_batch: int = 100) -> None:
        self._events = events
        self._deliveries = UnitsOfWork(events, [_DELIVERIES])
        self._integrations = UnitsOfWork(events, [_CATALOG])
        self._max_batch = max_batch
        self._queue: list[AttemptRecord] = []
        self._writer = asyncio.Lock()

    @property
    def pool(self) -> asyncpg.Pool:
        return self._events.pool

    async def claim(self, tenant_id: str, delivery_id: str, lease_s: float) -> Claim | Busy:
        row = await self.pool.fetchrow(
            """
            WITH target AS (
                SELECT tenant_id, delivery_id, status, lease_until FROM deliveries
                WHERE tenant_id = $1 AND delivery_id = $2),
            claimed AS (
                UPDATE deliveries d SET lease_until = now() + make_interval(secs => $3)
                FROM target t
                WHERE d.tenant_id = t.tenant_id AND d.delivery_id = t.delivery_id
                  AND t.status = 'scheduled' AND (t.lease_until IS NULL OR t.lease_until < now())
                RETURNING d.attempts, d.version, d.next_attempt_at)
            SELECT t.status, extract(epoch FROM t.lease_until - now()) AS leased_for,
                   c.attempts, c.version, c.next_attempt_at
            FROM target t LEFT JOIN claimed c ON true
            """,
            tenant_id,
            delivery_id,
            lease_s,
        )
        if row is None or row["status"] != "scheduled":
            return Busy(finished=True)
        if row["version"] is None:
            return Busy(finished=False, retry_in_s=max(1.0, float(row["leased_for"] or 1)))
        return Claim(row["attempts"], row["version"], row["next_attempt_at"])

    async def release(self, tenant_id: str, delivery_id: str) -> None:
        await self.pool.execute(
            "UPDATE deliveries SET lease_until = NULL WHERE tenant_id = $1 AND delivery_id = $2",
            tenant_id,
            delivery_id,
        )

    async def integration(self, tenant_id: str, integration_id: str) -> Integration | None:
        row = await self.pool.fetchrow(
            "SELECT integration_id, kind, config, status, secret_sealed FROM integrations"
            " WHERE tenant_id = $1 AND integration_id = $2",
            tenant_id,
            integration_id,
        )
        if row is None:
            return None
        return Integration(
            row["integration_id"],
            row["kind"],
            dict(row["config"] or {}),
            row["status"] == "enabled",
            row["secret_sealed"],
        )

    async def record(self, record: AttemptRecord) -> None:
        """Append the attempt's events (and ``IntegrationDisabled``) with the projection.

        Raises ``ConcurrencyError`` if the delivery moved on meanwhile (then nothing is written).
        """
        self._queue.append(record)
        async with self._writer:
            if not record.done.done():
                batch, self._queue = self._queue[: self._max_batch], self._queue[self._max_batch :]
                try:
                    await self._write_batch(batch)
                finally:
                    for waiting in batch:  # only when the writer was cancelled mid-batch
                        if not waiting.done.done():
                            waiting.done.set_exception(ConnectionError("attempt batch interrupted"))
        await record.done

    async def _write_batch(self, batch: list[AttemptRecord]) -> None:
        try:
            async with self._deliveries.begin() as unit:
                await unit.append_batch([_append_of(r) for r in batch])
                await _DELIVERIES.apply_batch(
                    unit.conn, [e for r in batch for e in _as_recorded(r)]
                )
                await self._finish(unit, batch)
        except Exception:
            await self._write_each(batch)
            return
        for record in batch:
            record.done.set_result(None)

    async def _write_each(self, batch: list[AttemptRecord]) -> None:
        for record in batch:
            try:
                async with self._deliveries.begin() as unit:
                    await self._write(unit, record)
            except Exception as exc:
                record.done.set_exception(exc)
            else:
                record.done.set_result(None)

    async def _write(self, unit: UnitOfWork, record: AttemptRecord) -> None:
        append = _append_of(record)
        await unit.append(
            append.stream,
            append.events,
            tenant_id=append.tenant_id,
            expected_version=append.expected_version,
        )
        await self._finish(unit, [record])

    async def _finish(self, unit: UnitOfWork, batch: Sequence[AttemptRecord]) -> None:
        """Free the leases of retried deliveries; disable integrations that answered 410."""
        released = [(r.tenant_id, r.delivery_id) for r in batch if r.release]
        if released:
            await unit.conn.executemany(
                "UPDATE deliveries SET lease_until = NULL WHERE tenant_id = $1 AND delivery_id = $2",
                released,
            )
        for record in batch:
            if record.disable is not None and record.integration_id is not None:
                await self._disable(unit, record.tenant_id, record.integration_id, record.disable)

    async def _disable(
        self, unit: UnitOfWork, tenant_id: str, integration_id: str, event: NewEvent
    ) -> None:
        status = await unit.conn.fetchval(
            "SELECT status FROM integrations WHERE tenant_id = $1 AND integration_id = $2 FOR UPDATE",
            tenant_id,
            integration_id,
        )
        if status != "enabled":
            return
        stream = stream_id("integration", tenant_id, integration_id)
        try:
            await self._integrations.run(
                partial(_append_current, stream, event, tenant_id),
                conn=unit.conn,
                retry=_DISABLE_RETRY,
            )
        except ConcurrencyError as exc:
            raise ConcurrencyError(stream, -1, -1) from exc


async def _append_current(stream: str, event: NewEvent, tenant_id: str, unit: UnitOfWork) -> None:
    """Append ``event`` at the stream's current version (in a savepoint of the caller's)."""
    version = await unit.stream_version(stream)
    await unit.append(stream, [event], tenant_id=tenant_id, expected_version=version)


def _append_of(record: AttemptRecord) -> Append:
    return Append(
        stream_id("delivery", record.tenant_id, record.delivery_id),
        record.events,
        record.tenant_id,
        record.expected_version,
    )


def _as_recorded(record: AttemptRecord) -> list[RecordedEvent]:
    """The record's events as appended, for the projection (which reads neither ``position`` nor
    ``recorded_at`` of attempt events: their times travel in the data)."""
    stream = stream_id("delivery", record.tenant_id, record.delivery_id)
    now = datetime.now(UTC)
    return [
        RecordedEvent(
            0,
            e.event_id,
            stream,
            record.expected_version + i,
            e.type,
            record.tenant_id,
            e.data,
            e.metadata,
            now,
        )
        for i, e in enumerate(record.events, start=1)
    ]
