"""The deliveries projection: ``deliveries`` and ``delivery_attempts`` from ``delivery-{t}-{id}``.

Owned by the dispatcher (which appends ``DeliveryScheduled`` and applies this inline, so the
unique ``(alert_event_id, integration_id)`` makes a second delivery for the same alert event and
integration impossible: :class:`DeliveryAlreadyScheduledError`) and the delivery worker (which
appends ``DeliveryAttempted``/``DeliverySucceeded``/``DeliveryAbandoned`` and applies it inline).
Every handler applies an event only when it is newer than the row (``version``); attempts are
keyed by number. Applying twice or replaying the log yields the same rows. Timestamps come from
the event (data or ``recorded_at``), never from the clock.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime

import asyncpg

from fleetpulse.common.contracts.events import (
    DeliveryAbandoned,
    DeliveryAttempted,
    DeliveryScheduled,
    DeliverySucceeded,
    or_none,
)
from fleetpulse.common.errors import FleetPulseError
from fleetpulse.common.eventstore.model import RecordedEvent
from fleetpulse.common.eventstore.projection import HandlerProjection

__all__ = ["HANDLERS", "DeliveriesProjection", "DeliveryAlreadyScheduledError"]

Handler = Callable[[asyncpg.Connection, RecordedEvent], Awaitable[None]]
ONCE_PER_EVENT = "deliveries_once_per_event"


class DeliveryAlreadyScheduledError(FleetPulseError):
    """A delivery for this (alert event, integration) exists already.

    Raised inside the caller's transaction, which must then roll back (or use a savepoint).
    """

    def __init__(self, alert_event_id: str, integration_id: str) -> None:
        super().__init__(f"a delivery of alert event {alert_event_id} to {integration_id} exists")
        self.alert_event_id = alert_event_id
        self.integration_id = integration_id


def _time(value: object) -> datetime | None:
    """An ISO-8601 timestamp; None for none (``UNSET``, null or empty)."""
    if isinstance(value, str) and value:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    return None


async def _scheduled(conn: asyncpg.Connection, event: RecordedEvent) -> None:
    data = DeliveryScheduled.from_data(event.data)
    try:
        await conn.execute(
            """
            INSERT INTO deliveries (tenant_id, delivery_id, alert_id, alert_event_id, integration_id,
                route_id, notification_type, status, scheduled_at, next_attempt_at, version)
            VALUES ($1, $2, $3, $4, $5, $6, $7, 'scheduled', $8, $8, $9)
            ON CONFLICT (tenant_id, delivery_id) DO NOTHING
            """,
            event.tenant_id,
            data.delivery_id,
            data.alert_id,
            data.alert_event_id,
            data.integration_id,
            or_none(data.route_id),
            or_none(data.notification_type),
            _time(data.not_before) or event.recorded_at,
            event.version,
        )
    except asyncpg.UniqueViolationError as exc:
        if exc.constraint_name != ONCE_PER_EVENT:
            raise
        raise DeliveryAlreadyScheduledError(data.alert_event_id, data.integration_id) from None


_INSERT_ATTEMPT = """
    INSERT INTO delivery_attempts (tenant_id, delivery_id, attempt, attempted_at, status_code,
        latency_ms, error)
    VALUES ($1, $2, $3, $4, $5, $6, $7)
    ON CONFLICT (tenant_id, delivery_id, attempt) DO NOTHING
"""
_UPDATE_ATTEMPTED = """
    UPDATE deliveries SET attempts = greatest(attempts, $3), last_status_code = $4,
        last_error = $5, next_attempt_at = $6, version = $7
    WHERE tenant_id = $1 AND delivery_id = $2 AND version < $7
"""
_UPDATE_COMPLETED = """
    UPDATE deliveries SET status = $3, completed_at = $4, next_attempt_at = NULL, version = $5
    WHERE tenant_id = $1 AND delivery_id = $2 AND version < $5
"""
_COMPLETED_STATUS = {DeliverySucceeded.TYPE: "succeeded", DeliveryAbandoned.TYPE: "abandoned"}


def _attempt_row(event: RecordedEvent) -> tuple[object, ...]:
    data = DeliveryAttempted.from_data(event.data)
    return (
        event.tenant_id,
        data.delivery_id,
        data.attempt,
        _time(data.attempted_at) or event.recorded_at,
        or_none(data.status_code),
        or_none(data.latency_ms),
        or_none(data.error),
    )


def _attempted_row(event: RecordedEvent) -> tuple[object, ...]:
    data = DeliveryAttempted.from_data(event.data)
    return (
        event.tenant_id,
        data.delivery_id,
        data.attempt,
        or_none(data.status_code),
        or_none(data.error),
        _time(data.next_attempt_at),
        event.version,
    )


def _completed_row(event: RecordedEvent) -> tuple[object, ...]:
    match event.decoded():
        case DeliverySucceeded(delivery_id=delivery_id, completed_at=completed_at):
            status = "succeeded"
        case DeliveryAbandoned(delivery_id=delivery_id, completed_at=completed_at):
            status = "abandoned"
        case other:
            raise TypeError(f"not a completion: {type(other).__name__}")
    return (
        event.tenant_id,
        delivery_id,
        status,
        _time(completed_at) or event.recorded_at,
        event.version,
    )


async def _attempted(conn: asyncpg.Connection, event: RecordedEvent) -> None:
    await conn.execute(_INSERT_ATTEMPT, *_attempt_row(event))
    await conn.execute(_UPDATE_ATTEMPTED, *_attempted_row(event))


async def _completed(conn: asyncpg.Connection, event: RecordedEvent) -> None:
    await conn.execute(_UPDATE_COMPLETED, *_completed_row(event))


HANDLERS: dict[str, Handler] = {
    DeliveryScheduled.TYPE: _scheduled,
    DeliveryAttempted.TYPE: _attempted,
    DeliverySucceeded.TYPE: _completed,
    DeliveryAbandoned.TYPE: _completed,
}


class DeliveriesProjection(HandlerProjection):
    """The :class:`~fleetpulse.common.eventstore.Projection` of the delivery streams."""

    name = "deliveries"
    tables: tuple[str, ...] = ("deliveries", "delivery_attempts")
    handlers = HANDLERS

    async def apply_batch(self, conn: asyncpg.Connection, events: Sequence[RecordedEvent]) -> None:
        """Apply many attempt events in a few round trips (``executemany``), same rows as
        :meth:`apply` one by one, provided each stream's events come in version order and the
        batch holds no ``DeliveryScheduled`` after a later event of its stream."""
        for event in events:
            if event.type == DeliveryScheduled.TYPE:
                await _scheduled(conn, event)
        attempted = [e for e in events if e.type == DeliveryAttempted.TYPE]
        completed = [e for e in events if e.type in _COMPLETED_STATUS]
        if attempted:
            await conn.executemany(_INSERT_ATTEMPT, [_attempt_row(e) for e in attempted])
            await conn.executemany(_UPDATE_ATTEMPTED, [_attempted_row(e) for e in attempted])
        if completed:
            await conn.executemany(_UPDATE_COMPLETED, [_completed_row(e) for e in completed])
