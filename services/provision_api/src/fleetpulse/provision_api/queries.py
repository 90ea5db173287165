"""Reads from the projections. Every query is scoped by tenant (``WHERE tenant_id = $1``)."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from fleetpulse.common.eventstore import RecordedEvent
from fleetpulse.common.projections.catalog import RULE_DEFINITION_FIELDS
from fleetpulse.provision_api.domain import NotFoundError
from fleetpulse.provision_api.pagination import decode_cursor, page

Row = dict[str, Any]
PageResult = tuple[list[Row], str | None]
QUARANTINE_PREVIEW_BYTES = 4096
HOUR = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class Connectivity:
    """Seen within ``online_s`` seconds: online; within ``stale_s``: stale; else (or never) offline."""

    online_s: int = 300
    stale_s: int = 3600

    @property
    def seconds(self) -> tuple[float, float]:
        return float(self.online_s), float(self.stale_s)


DEFAULT_CONNECTIVITY = Connectivity()
# $2 and $3: the online and stale windows in seconds (every device query passes them).
CONNECTIVITY_SQL = """CASE
    WHEN s.last_seen >= now() - make_interval(secs => $2) THEN 'online'
    WHEN s.last_seen >= now() - make_interval(secs => $3) THEN 'stale'
    ELSE 'offline' END"""
DEVICE_READ = f"""
    SELECT d.*, s.last_seen, s.last_reading_at, s.last_heartbeat,
           coalesce(s.metrics, '{{}}'::jsonb) AS last_values, {CONNECTIVITY_SQL} AS connectivity
    FROM devices d LEFT JOIN device_state s USING (tenant_id, device_id)
    """  # noqa: S608 - constants only


class Queries:
    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        timescale: bool = False,
        connectivity: Connectivity = DEFAULT_CONNECTIVITY,
    ) -> None:
        self._pool = pool
        self._timescale = timescale
        self._connectivity = connectivity

    @property
    def pool(self) -> asyncpg.Pool:
        return self._pool

    async def _one(self, what: str, sql: str, *args: Any) -> Row:
        row = await self._pool.fetchrow(sql, *args)
        if row is None:
            raise NotFoundError(what)
        return dict(row)

    # --- tenants -------------------------------------------------------------------------
    async def tenants(self, limit: int, cursor: str | None) -> PageResult:
        after = decode_cursor(cursor, str)
        rows = await self._pool.fetch(
            "SELECT * FROM tenants WHERE ($1::text IS NULL OR tenant_id > $1) "
            "ORDER BY tenant_id LIMIT $2",
            after[0] if after else None,
            limit + 1,
        )
        return page([dict(r) for r in rows], limit, lambda r: (r["tenant_id"],))

    async def tenant(self, tenant_id: str) -> Row:
        return await self._one(
            f"tenant {tenant_id}", "SELECT * FROM tenants WHERE tenant_id = $1", tenant_id
        )

    # --- devices -------------------------------------------------------------------------
    async def device(self, tenant_id: str, device_id: str) -> Row:
        row = await self._one(
            f"device {device_id}",
            DEVICE_READ + "WHERE d.tenant_id = $1 AND d.device_id = $4",
            tenant_id,
            *self._connectivity.seconds,
            device_id,
        )
        return row

    async def devices(
        self,
        tenant_id: str,
        tags: dict[str, str],
        status: str | None,
        limit: int,
        cursor: str | None,
        *,
        connectivity: str | None = None,
        search: str | None = None,
    ) -> PageResult:
        """A page of devices by id; filters: every tag, status, connectivity, id/name contains."""
        after = decode_cursor(cursor, str)
        rows = await self._pool.fetch(
            DEVICE_READ
            + """
            WHERE d.tenant_id = $1 AND ($5::jsonb = '{}'::jsonb OR d.tags @> $5::jsonb)
              AND ($6::text IS NULL OR d.status = $6) AND ($7::text IS NULL OR d.device_id > $7)
              AND ($8::text IS NULL OR d.device_id ILIKE $8 ESCAPE '\\' OR d.name ILIKE $8 ESCAPE '\\')
              AND ($9::text IS NULL OR """
            + CONNECTIVITY_SQL
            + """ = $9)
            ORDER BY d.device_id LIMIT $4
            """,
            tenant_id,
            *self._connectivity.seconds,
            limit + 1,
            tags,
            status,
            after[0] if after else None,
            contains_pattern(search),
            connectivity,
        )
        return page([dict(r) for r in rows], limit, lambda r: (r["device_id"],))

    async def count_devices(self, tenant_id: str, tags: dict[str, str]) -> int:
        """Active devices carrying every tag in ``tags`` (what a rule's selector matches)."""
        count = await self._pool.fetchval(
            "SELECT count(*) FROM devices WHERE tenant_id = $1 AND status = 'active' "
            "AND ($2::jsonb = '{}'::jsonb OR tags @> $2::jsonb)",
            tenant_id,
            tags,
        )
        return int(count)

    # --- the tenant's event log ------------------------------------------------------------
    async def events_after(self, tenant_id: str, position: int, limit: int) -> list[RecordedEvent]:
        """The tenant's events after ``position``, in log order (index events_tenant_position)."""
        rows = await self._pool.fetch(
            "SELECT * FROM events WHERE tenant_id = $1 AND position > $2 ORDER BY position LIMIT $3",
            tenant_id,
            position,
            limit,
        )
        return [RecordedEvent.from_row(r) for r in rows]

    async def head_position(self, tenant_id: str) -> int:
        """The position of the tenant's latest event (0 if none)."""
        value = await self._pool.fetchval(
            "SELECT coalesce(max(position), 0) FROM events WHERE tenant_id = $1", tenant_id
        )
        return int(value)

    async def stream(
        self, stream_id: str, tenant_id: str, limit: int, cursor: str | None
    ) -> tuple[list[RecordedEvent], str | None]:
        after = decode_cursor(cursor, int)
        rows = await self._pool.fetch(
            "SELECT * FROM events WHERE stream_id = $1 AND tenant_id = $2 AND version > $3 "
            "ORDER BY version LIMIT $4",
            stream_id,
            tenant_id,
            after[0] if after else 0,
            limit + 1,
        )
        events = [RecordedEvent.from_row(r) for r in rows]
        return page(events, limit, lambda e: (e.version,))

    # --- rules, integrations, routes, profiles -------------------------------------------
    async def rule(self, tenant_id: str, rule_id: str) -> Row:
        return rule_view(
            await self._one(
                f"rule {rule_id}",
                "SELECT * FROM rules WHERE tenant_id = $1 AND rule_id = $2",
                tenant_id,
                rule_id,
            )
        )

    async def rules(self, tenant_id: str, limit: int, cursor: str | None) -> PageResult:
        rows, next_cursor = await self._by_id("rules", "rule_id", tenant_id, limit, cursor)
        return [rule_view(r) for r in rows], next_cursor

    async def integration(self, tenant_id: str, integration_id: str) -> Row:
        return await self._one(
            f"integration {integration_id}",
            "SELECT * FROM integrations WHERE tenant_id = $1 AND integration_id = $2",
            tenant_id,
            integration_id,
        )

    async def integrations(self, tenant_id: str, limit: int, cursor: str | None) -> PageResult:
        return await self._by_id("integrations", "integration_id", tenant_id, limit, cursor)

    async def route(self, tenant_id: str, route_id: str) -> Row:
        return await self._one(
            f"route {route_id}",
            "SELECT * FROM routes WHERE tenant_id = $1 AND route_id = $2",
            tenant_id,
            route_id,
        )

    async def routes(self, tenant_id: str, limit: int, cursor: str | None) -> PageResult:
        return await self._by_id("routes", "route_id", tenant_id, limit, cursor)

    async def profile(self, tenant_id: str, profile_id: str) -> Row:
        return await self._one(
            f"provisioning profile {profile_id}",
            "SELECT * FROM provisioning_profiles WHERE tenant_id = $1 AND profile_id = $2",
            tenant_id,
            profile_id,
        )

    async def profiles(self, tenant_id: str, limit: int, cursor: str | None) -> PageResult:
        return await self._by_id("provisioning_profiles", "profile_id", tenant_id, limit, cursor)

    async def profile_by_key(self, provision_key: str) -> Row | None:
        row = await self._pool.fetchrow(
            "SELECT * FROM provisioning_profiles WHERE provision_key = $1", provision_key
        )
        return dict(row) if row is not None else None

    async def _by_id(
        self, table: str, key: str, tenant_id: str, limit: int, cursor: str | None
    ) -> PageResult:
        after = decode_cursor(cursor, str)
        rows = await self._pool.fetch(
            f"SELECT * FROM {table} WHERE tenant_id = $1 AND ($2::text IS NULL OR {key} > $2) "  # noqa: S608
            f"ORDER BY {key} LIMIT $3",
            tenant_id,
            after[0] if after else None,
            limit + 1,
        )
        return page([dict(r) for r in rows], limit, lambda r: (r[key],))

    # --- alerts --------------------------------------------------------------------------
    async def alert(self, tenant_id: str, alert_id: str) -> Row:
        return await self._one(
            f"alert {alert_id}",
            "SELECT * FROM alerts WHERE tenant_id = $1 AND alert_id = $2",
            tenant_id,
            alert_id,
        )

    async def alerts(
        self, tenant_id: str, status: str | None, limit: int, cursor: str | None
    ) -> PageResult:
        after = decode_cursor(cursor, datetime, str)
        rows = await self._pool.fetch(
            """
            SELECT * FROM alerts
            WHERE tenant_id = $1 AND ($2::text IS NULL OR status = $2)
              AND ($3::timestamptz IS NULL OR (opened_at, alert_id) < ($3, $4::text))
            ORDER BY opened_at DESC, alert_id DESC LIMIT $5
            """,
            tenant_id,
            status,
            after[0] if after else None,
            after[1] if after else None,
            limit + 1,
        )
        return page([dict(r) for r in rows], limit, lambda r: (r["opened_at"], r["alert_id"]))

    # --- deliveries, quarantine ----------------------------------------------------------
    async def deliveries(
        self, tenant_id: str, alert_id: str | None, limit: int, cursor: str | None
    ) -> PageResult:
        after = decode_cursor(cursor, str)
        rows = await self._pool.fetch(
            """
            SELECT * FROM deliveries
            WHERE tenant_id = $1 AND ($2::text IS NULL OR alert_id = $2)
              AND ($3::text IS NULL OR delivery_id > $3)
            ORDER BY delivery_id LIMIT $4
            """,
            tenant_id,
            alert_id,
            after[0] if after else None,
            limit + 1,
        )
        deliveries, next_cursor = page(
            [dict(r) for r in rows], limit, lambda r: (r["delivery_id"],)
        )
        await self._attach_attempts(tenant_id, deliveries)
        return deliveries, next_cursor

    async def delivery(self, tenant_id: str, delivery_id: str) -> Row:
        row = await self._one(
            f"delivery {delivery_id}",
            "SELECT * FROM deliveries WHERE tenant_id = $1 AND delivery_id = $2",
            tenant_id,
            delivery_id,
        )
        await self._attach_attempts(tenant_id, [row])
        return row

    async def _attach_attempts(self, tenant_id: str, deliveries: list[Row]) -> None:
        ids = [d["delivery_id"] for d in deliveries]
        rows = (
            await self._pool.fetch(
                "SELECT * FROM delivery_attempts WHERE tenant_id = $1 AND delivery_id = ANY($2::text[]) "
                "ORDER BY delivery_id, attempt",
                tenant_id,
                ids,
            )
            if ids
            else []
        )
        by_delivery: dict[str, list[Row]] = {i: [] for i in ids}
        for row in rows:
            by_delivery[row["delivery_id"]].append(dict(row))
        for delivery in deliveries:
            delivery["attempt_count"] = delivery["attempts"]
            delivery["alert_event_id"] = str(delivery["alert_event_id"])
            delivery["attempts"] = by_delivery[delivery["delivery_id"]]

    async def quarantine(
        self,
        tenant_id: str,
        device_id: str | None,
        limit: int,
        cursor: str | None,
        reason: str | None = None,
    ) -> PageResult:
        after = decode_cursor(cursor, int)
        rows = await self._pool.fetch(
            """
            SELECT id, received_at, device_id, topic, reason, detail, octet_length(payload) AS size,
                   substring(payload FROM 1 FOR $5) AS preview
            FROM quarantine
            WHERE tenant_id = $1 AND ($2::text IS NULL OR device_id = $2)
              AND ($3::bigint IS NULL OR id < $3) AND ($6::text IS NULL OR reason = $6)
            ORDER BY id DESC LIMIT $4
            """,
            tenant_id,
            device_id,
            after[0] if after else None,
            limit + 1,
            QUARANTINE_PREVIEW_BYTES,
            reason,
        )
        items = [_quarantined(r) for r in rows]
        return page(items, limit, lambda r: (r["id"],))

    async def quarantine_counts(
        self, tenant_id: str, start: datetime, end: datetime, reason: str | None
    ) -> list[Row]:
        """Per-minute quarantine counts of the tenant (ingest's ledger), oldest first."""
        rows = await self._pool.fetch(
            """
            SELECT minute, reason, stored, suppressed FROM quarantine_counts
            WHERE tenant_id = $1 AND minute >= $2 AND minute < $3
              AND ($4::text IS NULL OR reason = $4)
            ORDER BY minute, reason
            """,
            tenant_id,
            start,
            end,
            reason,
        )
        return [dict(r) for r in rows]

    # --- telemetry -----------------------------------------------------------------------
    # Readings live in ``telemetry_readings`` under the device's key (looked up by tenant and
    # device: tenant isolation), metrics as parallel arrays of ``metric_names`` ids and float8
    # values; a name can exist twice (number and boolean), a boolean is stored as 1.0/0.0.
    async def readings(
        self,
        tenant_id: str,
        device_id: str,
        metric: str | None,
        start: datetime,
        end: datetime,
        limit: int,
        cursor: str | None,
    ) -> PageResult:
        after = decode_cursor(cursor, datetime)
        rows = await self._pool.fetch(
            READINGS if metric is None else METRIC_READINGS,
            tenant_id,
            device_id,
            start,
            end,
            after[0] if after else None,
            limit + 1,
            *(() if metric is None else (metric,)),
        )
        return page([dict(r) for r in rows], limit, lambda r: (r["time"],))

    async def buckets(
        self,
        tenant_id: str,
        device_id: str,
        metric: str,
        start: datetime,
        end: datetime,
        width: timedelta,
    ) -> list[Row]:
        """min/max/avg/count of ``metric`` per bucket: whole rolled-up hours from
        ``telemetry_metrics_hourly``, the rest (edges, the not yet rolled-up tail, widths that
        are not whole hours) from the raw readings. Sums are numeric, so no overflow."""
        lo, hi = rollup_span(start, end, width)
        binning = (
            "time_bucket($6::interval, {t})"
            if self._timescale
            else "date_bin($6::interval, {t}, TIMESTAMPTZ '2000-01-01 00:00:00+00')"
        )
        rows = await self._pool.fetch(
            f"""
            WITH span AS (
                SELECT $7::timestamptz AS lo,
                       LEAST($8::timestamptz, fleetpulse_telemetry_rollup_complete_before()) AS hi
            ), parts AS (
                SELECT {binning.format(t="h.bucket")} AS bucket, min(h.min) AS min,
                       max(h.max) AS max, sum(h.sum) AS sum, sum(h.count) AS count
                FROM telemetry_metrics_hourly h, span
                WHERE h.tenant_id = $1 AND h.device_id = $2 AND h.metric = $3
                  AND h.bucket >= span.lo AND h.bucket < span.hi
                GROUP BY 1
                UNION ALL
                SELECT {binning.format(t="r.time")}, min(u.v), max(u.v), sum(u.v::numeric),
                       count(u.v)
                FROM telemetry_readings r
                CROSS JOIN LATERAL unnest(r.metric_ids, r.metric_values) AS u(id, v)
                JOIN metric_names m ON m.metric_id = u.id, span
                WHERE r.device_key = (SELECT device_key FROM device_keys
                                      WHERE tenant_id = $1 AND device_id = $2)
                  AND r.time >= $4 AND r.time < $5 AND m.name = $3
                  AND NOT (r.time >= span.lo AND r.time < span.hi)
                GROUP BY 1
            )
            SELECT bucket, min(min) AS min, max(max) AS max,
                   (sum(sum) / NULLIF(sum(count), 0))::double precision AS avg,
                   sum(count)::bigint AS count
            FROM parts GROUP BY 1 ORDER BY 1
            """,  # noqa: S608 - binning is one of two constants
            tenant_id,
            device_id,
            metric,
            start,
            end,
            width,
            lo,
            hi,
        )
        return [dict(r) for r in rows]

    async def timescale(self) -> bool:
        return bool(
            await self._pool.fetchval(
                "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')"
            )
        )


# A device's readings in [$3, $4) after the keyset cursor $5, oldest first (the key's order).
_READINGS = """
    SELECT r.time, r.seq, {metrics} AS metrics
    FROM telemetry_readings r{lateral}
    WHERE r.device_key = (SELECT device_key FROM device_keys WHERE tenant_id = $1 AND device_id = $2)
      AND r.time >= $3 AND r.time < $4 AND ($5::timestamptz IS NULL OR r.time > $5)
    ORDER BY r.time LIMIT $6
"""
READINGS = _READINGS.format(
    metrics="fleetpulse_metrics_json(r.metric_ids, r.metric_values)", lateral=""
)
# Only readings carrying metric $7 (as a number or a boolean), as {"$7": value}.
METRIC_READINGS = _READINGS.format(
    metrics="jsonb_build_object($7::text, CASE WHEN x.is_bool THEN to_jsonb(x.v <> 0)"
    " ELSE fleetpulse_float8_json(x.v) END)",
    lateral="""
    CROSS JOIN LATERAL (
        SELECT m.is_bool, u.v FROM unnest(r.metric_ids, r.metric_values) AS u(id, v)
        JOIN metric_names m ON m.metric_id = u.id WHERE m.name = $7::text LIMIT 1) AS x""",
)


def rollup_span(start: datetime, end: datetime, width: timedelta) -> tuple[datetime, datetime]:
    """The whole hours of ``[start, end)`` an hourly rollup can answer for buckets of ``width``
    (a multiple of one hour, so each bucket is made of whole UTC hours); empty otherwise."""
    if width % HOUR:
        return start, start
    lo = _ceil_hour(start.astimezone(UTC))
    hi = end.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return (lo, hi) if lo < hi else (start, start)


def _ceil_hour(at: datetime) -> datetime:
    floor = at.replace(minute=0, second=0, microsecond=0)
    return floor if floor == at else floor + HOUR


def rule_view(row: Row) -> Row:
    definition = row.pop("definition") or {}
    return {**row, **{k: definition.get(k) for k in RULE_DEFINITION_FIELDS}}


def _quarantined(row: asyncpg.Record) -> Row:
    preview = bytes(row["preview"] or b"")
    return {
        "id": row["id"],
        "received_at": row["received_at"],
        "device_id": row["device_id"],
        "topic": row["topic"],
        "reason": row["reason"],
        "detail": row["detail"],
        "payload_base64": base64.b64encode(preview).decode(),
        "payload_size": row["size"],
    }


def contains_pattern(search: str | None) -> str | None:
    """An ILIKE pattern matching ``search`` anywhere, its wildcards escaped; None for no search."""
    if not search:
        return None
    escaped = search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"
