"""What the dispatcher reads and writes in PostgreSQL, all inside the caller's transaction."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from fleetpulse.common import matchers
from fleetpulse.common.eventstore import (
    NO_STREAM,
    ConcurrencyError,
    NewEvent,
    PostgresEventStore,
    UnitsOfWork,
)
from fleetpulse.common.eventstore.model import stream_id
from fleetpulse.common.projections.deliveries import (
    DeliveriesProjection,
    DeliveryAlreadyScheduledError,
)
from fleetpulse.common.windows import Window, parse_windows
from fleetpulse.dispatcher.domain import GroupState, InhibitRule, Route

_DELIVERIES = DeliveriesProjection()
_ALERT_COLUMNS = ("alert_id", "rule_id", "device_id", "severity")
MAX_INHIBIT_SOURCES = 10_000


class PostgresDispatchStore:
    def __init__(self, events: PostgresEventStore) -> None:
        self._events = events
        self._units = UnitsOfWork(events, [_DELIVERIES])

    @property
    def pool(self) -> asyncpg.Pool:
        return self._events.pool

    async def lock_alert(self, conn: asyncpg.Connection, tenant_id: str, alert_id: str) -> None:
        """Serialise the handling of one alert's events (opened vs resolved race)."""
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 7))",
            f"dispatch:{tenant_id}:{alert_id}",
        )

    async def alert(
        self, conn: asyncpg.Connection, tenant_id: str, alert_id: str
    ) -> dict[str, Any] | None:
        row = await conn.fetchrow(
            "SELECT alert_id, fingerprint, rule_id, device_id, severity, status, opened_at,"
            " silenced_until, details FROM alerts WHERE tenant_id = $1 AND alert_id = $2",
            tenant_id,
            alert_id,
        )
        return dict(row) if row else None

    async def alert_states(
        self, conn: asyncpg.Connection, tenant_id: str, alert_ids: Sequence[str]
    ) -> dict[str, dict[str, Any]]:
        rows = await conn.fetch(
            "SELECT alert_id, status, silenced_until FROM alerts"
            " WHERE tenant_id = $1 AND alert_id = ANY($2::text[])",
            tenant_id,
            list(alert_ids),
        )
        return {row["alert_id"]: dict(row) for row in rows}

    async def device_tags(
        self, conn: asyncpg.Connection, tenant_id: str, device_id: str
    ) -> dict[str, str]:
        tags = await conn.fetchval(
            "SELECT tags FROM devices WHERE tenant_id = $1 AND device_id = $2", tenant_id, device_id
        )
        return {str(k): str(v) for k, v in (tags or {}).items()}

    async def devices(
        self, conn: asyncpg.Connection, tenant_id: str, device_ids: Sequence[str]
    ) -> dict[str, tuple[dict[str, str], dict[str, Any]]]:
        """Tags and attributes (when devices have them) of the tenant's ``device_ids``."""
        rows = await conn.fetch(
            "SELECT device_id, tags, to_jsonb(d) -> 'attributes' AS attributes FROM devices d"
            " WHERE tenant_id = $1 AND device_id = ANY($2::text[])",
            tenant_id,
            list(device_ids),
        )
        return {
            row["device_id"]: (
                {str(k): str(v) for k, v in (row["tags"] or {}).items()},
                row["attributes"] if isinstance(row["attributes"], dict) else {},
            )
            for row in rows
        }

    async def active_silences(
        self, conn: asyncpg.Connection, tenant_id: str, now: datetime
    ) -> list[tuple[matchers.Matcher, ...]]:
        """The matchers of the tenant's silences active at ``now`` (starts_at <= now < ends_at);
        a stored silence whose matchers no longer compile is left out."""
        rows = await conn.fetch(
            "SELECT matchers FROM silences WHERE tenant_id = $1 AND starts_at <= $2"
            " AND ends_at > $2",
            tenant_id,
            now,
        )
        parsed = (matchers.parse_stored(row["matchers"]) for row in rows)
        return [m for m in parsed if m]

    async def hold(
        self,
        conn: asyncpg.Connection,
        tenant_id: str,
        member: dict[str, Any],
        now: datetime,
        check_at: datetime,
    ) -> None:
        """Keep a held alert's firing notification until ``check_at`` (then re-checked)."""
        await conn.execute(
            "INSERT INTO dispatch_held (tenant_id, alert_id, member, held_at, check_at)"
            " VALUES ($1, $2, $3, $4, $5)"
            " ON CONFLICT (tenant_id, alert_id) DO UPDATE SET check_at = EXCLUDED.check_at",
            tenant_id,
            str(member["alert_id"]),
            member,
            now,
            check_at,
        )

    async def unhold(self, conn: asyncpg.Connection, tenant_id: str, alert_id: str) -> None:
        await conn.execute(
            "DELETE FROM dispatch_held WHERE tenant_id = $1 AND alert_id = $2",
            tenant_id,
            alert_id,
        )

    async def due_held(
        self, conn: asyncpg.Connection, now: datetime, limit: int
    ) -> list[tuple[str, str]]:
        rows = await conn.fetch(
            "SELECT tenant_id, alert_id FROM dispatch_held WHERE check_at <= $1"
            " ORDER BY check_at LIMIT $2",
            now,
            limit,
        )
        return [(row["tenant_id"], row["alert_id"]) for row in rows]

    async def held(
        self, conn: asyncpg.Connection, tenant_id: str, alert_id: str
    ) -> dict[str, Any] | None:
        """The held alert's row, locked (None if gone or another dispatcher has it)."""
        row = await conn.fetchrow(
            "SELECT member, check_at FROM dispatch_held WHERE tenant_id = $1 AND alert_id = $2"
            " FOR UPDATE SKIP LOCKED",
            tenant_id,
            alert_id,
        )
        return dict(row) if row else None

    async def inhibit_rules(self, conn: asyncpg.Connection, tenant_id: str) -> list[InhibitRule]:
        """The tenant's inhibit rules; one whose matchers no longer compile is left out."""
        rows = await conn.fetch(
            "SELECT source_matchers, target_matchers, equal FROM inhibit_rules"
            " WHERE tenant_id = $1 AND deleted_at IS NULL",
            tenant_id,
        )
        rules = []
        for row in rows:
            source = matchers.parse_stored(row["source_matchers"])
            target = matchers.parse_stored(row["target_matchers"])
            if source and target:
                rules.append(InhibitRule(source, target, tuple(map(str, row["equal"] or ()))))
        return rules

    async def open_alert_labels(
        self, conn: asyncpg.Connection, tenant_id: str
    ) -> list[tuple[str, dict[str, str]]]:
        """Each open (or acknowledged) alert of the tenant with its labels: the candidate
        sources of inhibition (at most ``MAX_INHIBIT_SOURCES``, newest first)."""
        rows = await conn.fetch(
            "SELECT a.alert_id, a.rule_id, a.device_id, a.severity, a.details, d.tags,"
            " to_jsonb(d) -> 'attributes' AS attributes FROM alerts a LEFT JOIN devices d"
            " ON d.tenant_id = a.tenant_id AND d.device_id = a.device_id"
            " WHERE a.tenant_id = $1 AND a.status IN ('open', 'acknowledged')"
            " ORDER BY a.opened_at DESC LIMIT $2",
            tenant_id,
            MAX_INHIBIT_SOURCES,
        )
        result = []
        for row in rows:
            alert = {**(row["details"] or {}), **{k: row[k] for k in _ALERT_COLUMNS}}
            attributes = row["attributes"] if isinstance(row["attributes"], dict) else {}
            labels = matchers.alert_labels(alert, row["tags"] or {}, attributes)
            result.append((str(row["alert_id"]), labels))
        return result

    async def routes(self, conn: asyncpg.Connection, tenant_id: str) -> list[Route]:
        rows = await conn.fetch("SELECT * FROM routes WHERE tenant_id = $1", tenant_id)
        return [Route.from_row(dict(row)) for row in rows]

    async def route(self, conn: asyncpg.Connection, tenant_id: str, route_id: str) -> Route | None:
        row = await conn.fetchrow(
            "SELECT * FROM routes WHERE tenant_id = $1 AND route_id = $2", tenant_id, route_id
        )
        return Route.from_row(dict(row)) if row else None

    async def enabled_integrations(
        self, conn: asyncpg.Connection, tenant_id: str
    ) -> dict[str, tuple[Window, ...]]:
        """Enabled integrations of the tenant with their maintenance windows."""
        rows = await conn.fetch(
            "SELECT integration_id, config FROM integrations"
            " WHERE tenant_id = $1 AND status = 'enabled'",
            tenant_id,
        )
        return {
            row["integration_id"]: parse_windows((row["config"] or {}).get("maintenance_windows"))
            for row in rows
        }

    async def lock_group(
        self,
        conn: asyncpg.Connection,
        tenant_id: str,
        route: Route,
        key: str,
        labels: dict[str, Any],
    ) -> GroupState:
        await conn.execute(
            "INSERT INTO dispatch_groups (tenant_id, route_id, group_key, integration_id, labels)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            tenant_id,
            route.route_id,
            key,
            route.integration_id,
            labels,
        )
        row = await conn.fetchrow(
            "SELECT pending, flush_at, last_notified_at, firing FROM dispatch_groups"
            " WHERE tenant_id = $1 AND route_id = $2 AND group_key = $3 FOR UPDATE",
            tenant_id,
            route.route_id,
            key,
        )
        return GroupState(
            tuple(row["pending"]), row["flush_at"], row["last_notified_at"], tuple(row["firing"])
        )

    async def save_group(
        self, conn: asyncpg.Connection, tenant_id: str, route_id: str, key: str, state: GroupState
    ) -> None:
        await conn.execute(
            "UPDATE dispatch_groups SET pending = $4, flush_at = $5, last_notified_at = $6,"
            " firing = $7 WHERE tenant_id = $1 AND route_id = $2 AND group_key = $3",
            tenant_id,
            route_id,
            key,
            list(state.pending),
            state.flush_at,
            state.last_notified_at,
            list(state.firing),
        )

    async def due_groups(
        self, conn: asyncpg.Connection, now: datetime, limit: int
    ) -> list[dict[str, Any]]:
        rows = await conn.fetch(
            "SELECT * FROM dispatch_groups WHERE flush_at <= $1 ORDER BY flush_at LIMIT $2"
            " FOR UPDATE SKIP LOCKED",
            now,
            limit,
        )
        return [dict(row) for row in rows]

    async def leave_groups(self, conn: asyncpg.Connection, tenant_id: str, alert_id: str) -> None:
        """Take an ended alert out of every group it waits in or fires in."""
        await conn.execute(
            """
            UPDATE dispatch_groups SET
                pending = (SELECT coalesce(jsonb_agg(m), '[]'::jsonb)
                           FROM jsonb_array_elements(pending) m WHERE m->>'alert_id' <> $2),
                firing = (SELECT coalesce(jsonb_agg(m), '[]'::jsonb)
                          FROM jsonb_array_elements(firing) m WHERE m->>'alert_id' <> $2)
            WHERE tenant_id = $1
              AND (pending @> jsonb_build_array(jsonb_build_object('alert_id', $2::text))
                OR firing @> jsonb_build_array(jsonb_build_object('alert_id', $2::text)))
            """,
            tenant_id,
            alert_id,
        )

    async def unresolved_notifications(
        self, conn: asyncpg.Connection, tenant_id: str, alert_id: str
    ) -> list[dict[str, Any]]:
        rows = await conn.fetch(
            "SELECT integration_id, route_id, firing_delivery_id FROM dispatch_notifications"
            " WHERE tenant_id = $1 AND alert_id = $2 AND resolved_delivery_id IS NULL"
            " ORDER BY integration_id FOR UPDATE",
            tenant_id,
            alert_id,
        )
        return [dict(row) for row in rows]

    async def record_firing(
        self,
        conn: asyncpg.Connection,
        tenant_id: str,
        alert_ids: Sequence[str],
        integration_id: str,
        route_id: str,
        delivery_id: str,
        at: datetime,
    ) -> None:
        await conn.executemany(
            "INSERT INTO dispatch_notifications (tenant_id, alert_id, integration_id, route_id,"
            " firing_delivery_id, notified_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
            [
                (tenant_id, alert_id, integration_id, route_id, delivery_id, at)
                for alert_id in alert_ids
            ],
        )

    async def record_resolved(
        self,
        conn: asyncpg.Connection,
        tenant_id: str,
        alert_id: str,
        integration_id: str,
        delivery_id: str,
    ) -> None:
        await conn.execute(
            "UPDATE dispatch_notifications SET resolved_delivery_id = $4"
            " WHERE tenant_id = $1 AND alert_id = $2 AND integration_id = $3",
            tenant_id,
            alert_id,
            integration_id,
            delivery_id,
        )

    async def schedule(
        self, conn: asyncpg.Connection, tenant_id: str, delivery_id: str, event: NewEvent
    ) -> bool:
        """Append ``DeliveryScheduled`` and project it; False if that delivery exists already."""
        try:
            async with self._units.begin(conn=conn) as unit:  # a savepoint of the caller's
                await unit.append(
                    stream_id("delivery", tenant_id, delivery_id),
                    [event],
                    tenant_id=tenant_id,
                    expected_version=NO_STREAM,
                )
        except (ConcurrencyError, DeliveryAlreadyScheduledError):
            return False
        return True
