"""PostgreSQL adapter: one transaction per batch; binary COPY of the readings, idempotent on the
telemetry key (device key, time)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg

from fleetpulse.common.db import TRANSIENT_ERRORS
from fleetpulse.ingest.batch import MINUTE_US, Batch, Stored
from fleetpulse.ingest.domain import epoch_us
from fleetpulse.ingest.rows import (
    COLUMNS,
    HEADER,
    TRAILER,
    MetricKey,
    Shape,
    ShapeKey,
    group_readings,
    metric_keys,
)

log = logging.getLogger(__name__)
K = TypeVar("K")
V = TypeVar("V")

# Errors after which the same write may succeed later (lost connection, server restarting, ...):
# the one classification of fleetpulse.common.db.errors. Anything else is permanent.
RETRYABLE: tuple[type[BaseException], ...] = TRANSIENT_ERRORS

# A batch's readings go into telemetry_readings by binary COPY (fleetpulse.ingest.rows): no
# conflict check per row. A unique violation (a redelivery, or a device resending a time)
# undoes the COPY to a savepoint, and the batch goes through a temporary staging table into
# ``INSERT ... ON CONFLICT DO NOTHING RETURNING``: set-wise, learning which readings were stored.
STAGING = "fleetpulse_telemetry_staging"
CREATE_STAGING = """
CREATE TEMP TABLE IF NOT EXISTS fleetpulse_telemetry_staging
    (LIKE telemetry_readings INCLUDING DEFAULTS) ON COMMIT DELETE ROWS
"""
INSERT_FROM_STAGING = """
INSERT INTO telemetry_readings (time, received_at, ingest_xid, seq, device_key, metric_ids, metric_values)
SELECT time, received_at, ingest_xid, seq, device_key, metric_ids, metric_values FROM fleetpulse_telemetry_staging
ON CONFLICT (device_key, time) DO NOTHING
RETURNING device_key, time
"""

# Run when INSERT_FROM_STAGING met conflicts: inserts what is still missing, without a conflict.
# TimescaleDB has had bugs where ON CONFLICT DO NOTHING into a compressed chunk stopped at the
# first conflict and the statement's later rows were lost while reported as not inserted
# (counted as duplicates here); this second pass stores them. Normally it inserts 0 rows.
INSERT_MISSING_FROM_STAGING = """
INSERT INTO telemetry_readings (time, received_at, ingest_xid, seq, device_key, metric_ids, metric_values)
SELECT time, received_at, ingest_xid, seq, device_key, metric_ids, metric_values FROM fleetpulse_telemetry_staging s
WHERE NOT EXISTS (SELECT FROM telemetry_readings r
                  WHERE r.device_key = s.device_key AND r.time = s.time)
ON CONFLICT (device_key, time) DO NOTHING
RETURNING device_key, time
"""

# Keys and ids are assigned once, in their own short transaction before the batch's (a device
# registered through the API already has one): see migration 0700.
DEVICE_KEYS = "SELECT tenant_id, device_id, device_key FROM fleetpulse_device_keys($1, $2)"
METRIC_IDS = "SELECT name, is_bool, metric_id FROM fleetpulse_metric_ids($1, $2)"

UPSERT_DEVICE_STATE = """
INSERT INTO device_state AS s (tenant_id, device_id, last_seen, last_reading_at, last_heartbeat,
                               metrics, updated_at)
SELECT u.tn, u.d, fleetpulse_ts_us(u.ls), fleetpulse_ts_us(u.lr), fleetpulse_ts_us(u.lh), u.m::jsonb, now()
FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[], $6::text[])
     AS u(tn, d, ls, lr, lh, m)
ON CONFLICT (tenant_id, device_id) DO UPDATE SET
    last_seen = GREATEST(s.last_seen, EXCLUDED.last_seen),
    last_reading_at = GREATEST(s.last_reading_at, EXCLUDED.last_reading_at),
    last_heartbeat = GREATEST(s.last_heartbeat, EXCLUDED.last_heartbeat),
    metrics = CASE
        WHEN EXCLUDED.last_reading_at IS NULL THEN s.metrics
        WHEN s.last_reading_at IS NULL OR EXCLUDED.last_reading_at > s.last_reading_at
            THEN s.metrics || EXCLUDED.metrics
        ELSE EXCLUDED.metrics || s.metrics END,
    updated_at = now()
"""

INSERT_QUARANTINE = """
INSERT INTO quarantine (received_at, tenant_id, device_id, topic, reason, detail, payload)
SELECT fleetpulse_ts_us(u.r), u.tn, u.d, u.tp, u.rs, u.dt, u.p
FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bytea[])
     AS u(r, tn, d, tp, rs, dt, p)
"""

UPSERT_QUARANTINE_COUNTS = """
INSERT INTO quarantine_counts AS q (minute, tenant_id, reason, stored, suppressed)
SELECT fleetpulse_ts_us(u.m), u.tn, u.rs, u.st, u.sp
FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::bigint[]) AS u(m, tn, rs, st, sp)
ON CONFLICT (minute, tenant_id, reason) DO UPDATE SET
    stored = q.stored + EXCLUDED.stored, suppressed = q.suppressed + EXCLUDED.suppressed
"""

UPSERT_DUPLICATES = """
INSERT INTO ingest_duplicate_counts AS c (minute, duplicates) VALUES (fleetpulse_ts_us($1::bigint), $2)
ON CONFLICT (minute) DO UPDATE SET duplicates = c.duplicates + EXCLUDED.duplicates
"""


#: One key for every ingest replica: the replica holding it runs housekeeping, the others skip.
HOUSEKEEPING_LOCK = 0x466C5054_484B5045  # "FlPTHKPE"


@dataclass(frozen=True, slots=True)
class Written:
    """A committed batch: ``duplicates`` readings not stored (same time already stored, in the
    table or earlier in the batch), ``stored`` the keys of those stored (``None``: all)."""

    duplicates: int
    stored: Stored = None


class Interned:
    """Device keys and metric ids this process has learned (assigned once, never changed), and
    how each metric shape packs: caches only. Each write resolves what it needs into maps of
    its own, so a cache dropped (bounded: a full map is cleared and learned again) while another
    write is waiting for a key never fails that write."""

    MAX_DEVICES = 1_000_000
    MAX_METRICS = 100_000
    MAX_SHAPES = 10_000

    def __init__(self) -> None:
        self.devices: dict[tuple[str, str], int] = {}
        self.metrics: dict[MetricKey, int] = {}
        self.shapes: dict[ShapeKey, Shape] = {}

    def remember_devices(self, learned: dict[tuple[str, str], int]) -> None:
        _remember(self.devices, learned, self.MAX_DEVICES)

    def remember_metrics(self, learned: dict[MetricKey, int]) -> None:
        _remember(self.metrics, learned, self.MAX_METRICS)

    def remember_shapes(self, built: dict[ShapeKey, Shape]) -> None:
        _remember(self.shapes, built, self.MAX_SHAPES)


def _split(cache: Mapping[K, V], wanted: Iterable[K]) -> tuple[dict[K, V], list[K]]:
    """What ``cache`` holds of ``wanted`` (a map of this write's own), and what it lacks."""
    found: dict[K, V] = {}
    missing: list[K] = []
    for item in wanted:
        value = cache.get(item)
        if value is None:
            missing.append(item)
        else:
            found[item] = value
    return found, missing


async def _learn(
    conn: asyncpg.Connection, query: str, missing: list[tuple[str, Any]]
) -> dict[tuple[str, Any], int]:
    """Assigns (or reads) the ids of ``missing`` pairs: ``query`` takes the pairs' two columns as
    arrays and returns rows ``(first, second, id)`` (DEVICE_KEYS, METRIC_IDS)."""
    rows = await conn.fetch(query, [m[0] for m in missing], [m[1] for m in missing])
    return {(r[0], r[1]): r[2] for r in rows}


def _remember(cache: dict[Any, Any], learned: dict[Any, Any], limit: int) -> None:
    if len(cache) + len(learned) > limit:
        cache.clear()
    cache.update(learned)


@dataclass(frozen=True, slots=True)
class Packed:
    """A batch's readings as binary COPY data, and the device keys they were packed with."""

    data: bytes
    keys: dict[tuple[str, str], int]


class PostgresTelemetryStore:
    """Writes a :class:`Batch` atomically (first stored wins on the telemetry key)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._interned = Interned()

    async def write(self, batch: Batch) -> Written:
        async with self._pool.acquire() as conn:
            packed = await self._pack(conn, batch)
            async with conn.transaction():
                written = await self._telemetry(conn, batch, packed)
                duplicates = written.duplicates + batch.duplicates_in_batch
                if batch.seen:
                    await conn.execute(
                        UPSERT_DEVICE_STATE, *batch.device_state_columns(written.stored)
                    )
                if batch.quarantine:
                    await conn.execute(
                        INSERT_QUARANTINE, *map(list, zip(*batch.quarantine, strict=True))
                    )
                if batch.quarantine_counts:
                    await conn.execute(UPSERT_QUARANTINE_COUNTS, *batch.quarantine_count_columns())
                if duplicates or batch.retained:  # a retained re-send is counted as a duplicate
                    minute = batch.first_received_us // MINUTE_US * MINUTE_US
                    await conn.execute(UPSERT_DUPLICATES, minute, duplicates + batch.retained)
        return Written(duplicates, written.stored)

    async def _pack(self, conn: asyncpg.Connection, batch: Batch) -> Packed | None:
        """The batch's readings as binary COPY data (``None``: no readings), after learning the
        keys and metric ids it needs (committed on their own, before the batch's transaction)."""
        if not batch.times:
            return None
        keys = await self._device_keys(conn, batch)
        columns = zip(
            batch.times, batch.received, batch.seqs, batch.tenants, batch.devices, batch.metrics,
            strict=True,
        )  # fmt: skip
        groups = group_readings(columns, keys)
        shapes = await self._shapes(conn, list(groups))
        packed = [shapes[key].pack(group) for key, group in groups.items()]
        return Packed(b"".join([HEADER, *packed, TRAILER]), keys)

    async def _device_keys(
        self, conn: asyncpg.Connection, batch: Batch
    ) -> dict[tuple[str, str], int]:
        keys, missing = _split(self._interned.devices, batch.device_times)
        if missing:
            learned = await _learn(conn, DEVICE_KEYS, missing)
            self._interned.remember_devices(learned)
            keys.update(learned)
        return keys

    async def _shapes(
        self, conn: asyncpg.Connection, wanted: list[ShapeKey]
    ) -> dict[ShapeKey, Shape]:
        shapes, new = _split(self._interned.shapes, wanted)
        if new:
            ids, missing = _split(self._interned.metrics, {m for k in new for m in metric_keys(k)})
            if missing:
                learned = await _learn(conn, METRIC_IDS, missing)
                self._interned.remember_metrics(learned)
                ids.update(learned)
            built = {k: Shape.of([ids[m] for m in metric_keys(k)], with_seq=not k[-1]) for k in new}
            self._interned.remember_shapes(built)
            shapes.update(built)
        return shapes

    async def _telemetry(
        self, conn: asyncpg.Connection, batch: Batch, packed: Packed | None
    ) -> Written:
        if packed is None:
            return Written(0)
        attempt = conn.transaction()  # a savepoint, undone when the batch met a same-time clash
        await attempt.start()
        try:
            await _copy(conn, "telemetry_readings", packed.data)
        except asyncpg.UniqueViolationError:
            await attempt.rollback()
            return await self._through_staging(conn, batch, packed)
        await attempt.commit()
        return Written(0)

    async def _through_staging(
        self, conn: asyncpg.Connection, batch: Batch, packed: Packed
    ) -> Written:
        """The batch met stored readings: insert what is new, learning which keys it stored."""
        await conn.execute(CREATE_STAGING)
        await _copy(conn, STAGING, packed.data)
        size = len(batch.times)
        rows = await conn.fetch(INSERT_FROM_STAGING)
        if len(rows) < size:
            rows += await self._store_missed(conn)
        owners = {key: device for device, key in packed.keys.items()}
        stored = {(*owners[r["device_key"]], epoch_us(r["time"])) for r in rows}
        return Written(size - len(stored), stored)

    async def _store_missed(self, conn: asyncpg.Connection) -> list[asyncpg.Record]:
        """Second, conflict-free pass for rows an ``ON CONFLICT DO NOTHING`` lost after a conflict
        (a TimescaleDB compressed-chunk bug class); returns the keys it stored."""
        missed: list[asyncpg.Record] = await conn.fetch(INSERT_MISSING_FROM_STAGING)
        if missed:
            log.warning(
                "telemetry rows lost by ON CONFLICT DO NOTHING were stored by a second pass",
                extra={"rows": len(missed)},
            )
        return missed

    async def ensure_partitions(self, days_back: int = 1, days_ahead: int = 7) -> int:
        async with self._pool.acquire() as conn:
            return int(
                await conn.fetchval(
                    "SELECT fleetpulse_ensure_telemetry_partitions($1, $2)", days_back, days_ahead
                )
            )

    async def housekeeping(self, keep_days: int) -> dict[str, int] | None:
        """Retention and hourly rollups where the database does not schedule them itself
        (plain PostgreSQL; a no-op returning ``{}`` on TimescaleDB, whose jobs do it). Runs on
        one replica at a time: returns ``None`` when another one holds the lock, otherwise
        ``{"dropped_partitions": n, "rolled_up_device_hours": n}``."""
        async with self._pool.acquire() as conn, conn.transaction():
            if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", HOUSEKEEPING_LOCK):
                return None
            done = await conn.fetchval("SELECT fleetpulse_telemetry_housekeeping($1)", keep_days)
            return {str(k): int(v) for k, v in done.items()}


async def _copy(conn: asyncpg.Connection, table: str, data: bytes) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield data

    await conn.copy_to_table(table, source=chunks(), columns=list(COLUMNS), format="binary")
