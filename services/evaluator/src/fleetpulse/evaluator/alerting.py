"""``PostgresAlertLog``: alert decisions become events on ``alert-{tenant}-{id}`` streams.

Each event is appended and applied to the alerts projection in a savepoint of the caller's
transaction, so the partial unique index refuses a second open alert for a fingerprint at append
time (the savepoint rolls back; the caller adopts the alert already open) and a resolve that
raced with a close is dropped rather than failing the whole batch.
"""

from __future__ import annotations

from datetime import datetime
from functools import partial
from typing import Any, cast

import asyncpg
from msgspec.structs import replace

from fleetpulse.common.contracts import UNSET, AlertOpened, AlertResolved, SeverityName
from fleetpulse.common.errors import ConcurrencyError
from fleetpulse.common.eventstore import (
    NO_STREAM,
    NewEvent,
    PostgresEventStore,
    RecordedEvent,
    UnitsOfWork,
    metadata,
    stream_id,
)
from fleetpulse.common.projections.alerts import (
    OPEN_STATUSES,
    AlertAlreadyOpenError,
    AlertsProjection,
)
from fleetpulse.common.retry import RetryPolicy
from fleetpulse.common.rules.domain import OpenAlert, ResolveAlert

ACTOR = "evaluator"
#: A resolve that raced with another writer reads the alert again, up to 3 tries in all.
_RESOLVE_RETRY = RetryPolicy(on=(ConcurrencyError,), attempts=3)


def _iso(at: datetime) -> str:
    return at.isoformat()


def opened_event(decision: OpenAlert) -> AlertOpened:
    rule = decision.rule
    common = AlertOpened(
        alert_id=decision.alert_id,
        fingerprint=rule.fingerprint(decision.device_id),
        rule_id=rule.rule_id,
        rule_name=rule.name,
        device_id=decision.device_id,
        severity=cast(SeverityName, rule.severity),
        opened_at=_iso(decision.opened_at),
        reason=decision.reason,
        kind=rule.kind,
    )
    if rule.kind == "threshold":
        return replace(
            common,
            metric=rule.metric,
            value=decision.value,
            threshold=rule.threshold,
            operator=rule.operator,
        )
    if rule.kind == "condition":
        # {condition label: measured}; ``value`` stays a scalar (the webhook contract)
        return replace(common, values=decision.value)
    return common


def resolved_event(decision: ResolveAlert) -> AlertResolved:
    rule, value = decision.rule, decision.value
    return AlertResolved(
        alert_id=decision.alert_id,
        resolved_at=_iso(decision.resolved_at),
        fingerprint=rule.fingerprint(decision.device_id),
        rule_id=rule.rule_id,
        device_id=decision.device_id,
        severity=cast(SeverityName, rule.severity),
        values=value if isinstance(value, dict) else UNSET,  # a condition rule's values
        value=UNSET if value is None or isinstance(value, dict) else value,
        reason=UNSET if decision.reason is None else decision.reason,
    )


def _metadata(traceparent: str | None) -> dict[str, Any]:
    result = metadata(actor=ACTOR)
    if traceparent:
        result["traceparent"] = traceparent
    return result


class PostgresAlertLog:
    """Appends :class:`AlertOpened` / :class:`AlertResolved` with the alerts projection applied inline."""

    def __init__(
        self, store: PostgresEventStore, projection: AlertsProjection | None = None
    ) -> None:
        self._units = UnitsOfWork(store, [projection or AlertsProjection()])

    async def open(self, conn: asyncpg.Connection, decision: OpenAlert) -> bool:
        """Append :class:`AlertOpened`; False when an alert is already open for the fingerprint."""
        event = NewEvent.of(opened_event(decision), _metadata(decision.traceparent))
        stream = stream_id("alert", decision.rule.tenant_id, decision.alert_id)
        try:
            await self._append(conn, stream, event, decision.rule.tenant_id, NO_STREAM)
        except AlertAlreadyOpenError:
            return False
        return True

    async def resolve(self, conn: asyncpg.Connection, decision: ResolveAlert) -> bool:
        """Append :class:`AlertResolved` unless the alert is no longer open (closed meanwhile)."""
        tenant = decision.rule.tenant_id
        stream = stream_id("alert", tenant, decision.alert_id)
        event = NewEvent.of(resolved_event(decision), _metadata(decision.traceparent))
        try:
            return await _RESOLVE_RETRY.call(
                partial(self._resolve_once, conn, stream, event, tenant, decision.alert_id)
            )
        except ConcurrencyError:
            return False

    async def _resolve_once(
        self, conn: asyncpg.Connection, stream: str, event: NewEvent, tenant: str, alert_id: str
    ) -> bool:
        row = await conn.fetchrow(
            "SELECT status, version FROM alerts WHERE tenant_id = $1 AND alert_id = $2",
            tenant,
            alert_id,
        )
        if row is None or row["status"] not in OPEN_STATUSES:
            return False
        # the row's version is the stream's: every writer applies the projection inline
        await self._append(conn, stream, event, tenant, row["version"])
        return True

    async def _append(
        self, conn: asyncpg.Connection, stream: str, event: NewEvent, tenant: str, expected: int
    ) -> RecordedEvent:
        async with self._units.begin(conn=conn) as unit:  # a savepoint: a refusal leaves the batch
            (recorded,) = await unit.append(
                stream, [event], tenant_id=tenant, expected_version=expected
            )
        return recorded
