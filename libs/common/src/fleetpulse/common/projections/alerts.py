"""The alerts projection: one ``alerts`` row per ``alert-{tenant}-{id}`` stream.

Owned by the evaluator, which appends ``AlertOpened``/``AlertResolved`` and applies this
projection inline, in the same transaction, so the partial unique index
``alerts_one_open_per_fingerprint`` rejects a second open alert for a fingerprint at append time
(:class:`AlertAlreadyOpenError`). provision_api appends ``AlertAcknowledged``, ``AlertSilenced``
and ``AlertClosed`` and applies it inline too. Every handler applies an event only when it is
newer than the row (``version``), so applying twice or replaying the log yields the same rows.
Timestamps come from the event data (or ``recorded_at``), never from the clock.

Status moves ``open -> acknowledged``, ``open|acknowledged -> resolved``, ``* -> closed``; an
event that does not fit the current status (a late ``AlertResolved`` after ``AlertClosed``) still
advances ``version`` and records its timestamp, but leaves ``status`` alone.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import asyncpg

from fleetpulse.common.contracts.constants import OPEN_STATUSES as OPEN_STATUSES
from fleetpulse.common.contracts.constants import fingerprint as fingerprint
from fleetpulse.common.contracts.events import (
    UNSET,
    AlertAcknowledged,
    AlertClosed,
    AlertOpened,
    AlertResolved,
    AlertSilenced,
    UnsetType,
    or_none,
)
from fleetpulse.common.errors import FleetPulseError
from fleetpulse.common.eventstore.model import RecordedEvent
from fleetpulse.common.eventstore.projection import HandlerProjection

Handler = Callable[[asyncpg.Connection, RecordedEvent], Awaitable[None]]

ONE_OPEN_INDEX = "alerts_one_open_per_fingerprint"


class AlertAlreadyOpenError(FleetPulseError):
    """An ``AlertOpened`` for a fingerprint that already has an open or acknowledged alert.

    Raised from inside the caller's transaction: apply in a savepoint to carry on after it.
    """

    def __init__(self, fingerprint: str) -> None:
        super().__init__(f"an alert is already open for {fingerprint!r}")
        self.fingerprint = fingerprint


def _at(event: RecordedEvent, value: str | UnsetType) -> datetime:
    """The event's timestamp, or when it was recorded."""
    if isinstance(value, str):
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    return event.recorded_at


def _details(opened: AlertOpened) -> dict[str, Any]:
    present = {
        "rule_name": opened.rule_name,
        "metric": opened.metric,
        "value": opened.value,
        "threshold": opened.threshold,
        "reason": opened.reason,
    }
    return {key: value for key, value in present.items() if value is not UNSET}


async def _opened(conn: asyncpg.Connection, event: RecordedEvent) -> None:
    data = AlertOpened.from_data(event.data)
    try:
        await conn.execute(
            """
            INSERT INTO alerts (tenant_id, alert_id, fingerprint, rule_id, device_id, severity,
                status, opened_at, details, version)
            VALUES ($1, $2, $3, $4, $5, $6, 'open', $7, $8, $9)
            ON CONFLICT (tenant_id, alert_id) DO NOTHING
            """,
            event.tenant_id,
            data.alert_id,
            data.fingerprint,
            data.rule_id,
            data.device_id,
            data.severity,
            _at(event, data.opened_at),
            _details(data),
            event.version,
        )
    except asyncpg.UniqueViolationError as exc:
        if getattr(exc, "constraint_name", None) == ONE_OPEN_INDEX:
            raise AlertAlreadyOpenError(data.fingerprint) from exc
        raise


async def _acknowledged(conn: asyncpg.Connection, event: RecordedEvent) -> None:
    data = AlertAcknowledged.from_data(event.data)
    await conn.execute(
        """
        UPDATE alerts SET
            status = CASE WHEN status = 'open' THEN 'acknowledged' ELSE status END,
            acknowledged_at = $3,
            details = details || jsonb_build_object('acknowledged_by', $4::text),
            version = $5
        WHERE tenant_id = $1 AND alert_id = $2 AND version < $5
        """,
        event.tenant_id,
        data.alert_id,
        _at(event, data.acknowledged_at),
        or_none(data.by),
        event.version,
    )


async def _silenced(conn: asyncpg.Connection, event: RecordedEvent) -> None:
    data = AlertSilenced.from_data(event.data)
    await conn.execute(
        """
        UPDATE alerts SET
            silenced_until = $3,
            details = details || jsonb_build_object('silenced_by', $4::text),
            version = $5
        WHERE tenant_id = $1 AND alert_id = $2 AND version < $5
        """,
        event.tenant_id,
        data.alert_id,
        _at(event, data.until),
        or_none(data.by),
        event.version,
    )


async def _resolved(conn: asyncpg.Connection, event: RecordedEvent) -> None:
    data = AlertResolved.from_data(event.data)
    await conn.execute(
        """
        UPDATE alerts SET
            status = CASE WHEN status IN ('open', 'acknowledged') THEN 'resolved' ELSE status END,
            resolved_at = $3,
            details = details || jsonb_build_object('resolved_value', $4::jsonb)
                || CASE WHEN $6::text IS NULL THEN '{}'::jsonb
                        ELSE jsonb_build_object('resolved_reason', $6::text) END,
            version = $5
        WHERE tenant_id = $1 AND alert_id = $2 AND version < $5
        """,
        event.tenant_id,
        data.alert_id,
        _at(event, data.resolved_at),
        or_none(data.value),
        event.version,
        or_none(data.reason),
    )


async def _closed(conn: asyncpg.Connection, event: RecordedEvent) -> None:
    data = AlertClosed.from_data(event.data)
    await conn.execute(
        """
        UPDATE alerts SET
            status = 'closed',
            closed_at = $3,
            details = details || jsonb_build_object('closed_by', $4::text),
            version = $5
        WHERE tenant_id = $1 AND alert_id = $2 AND version < $5
        """,
        event.tenant_id,
        data.alert_id,
        _at(event, data.closed_at),
        or_none(data.by),
        event.version,
    )


HANDLERS: dict[str, Handler] = {
    AlertOpened.TYPE: _opened,
    AlertAcknowledged.TYPE: _acknowledged,
    AlertSilenced.TYPE: _silenced,
    AlertResolved.TYPE: _resolved,
    AlertClosed.TYPE: _closed,
}


class AlertsProjection(HandlerProjection):
    """The alert streams' projection; applying a second open alert for a fingerprint raises
    :class:`AlertAlreadyOpenError`."""

    name = "alerts"
    tables: tuple[str, ...] = ("alerts",)
    handlers = HANDLERS


__all__ = [
    "HANDLERS",
    "ONE_OPEN_INDEX",
    "OPEN_STATUSES",
    "AlertAlreadyOpenError",
    "AlertsProjection",
]
