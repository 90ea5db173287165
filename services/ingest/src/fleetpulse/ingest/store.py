"""PostgreSQL adapter: one transaction per batch, array inserts idempotent on the telemetry key."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import asyncpg

from fleetpulse.common.db import TRANSIENT_ERRORS
from fleetpulse.ingest.batch import MINUTE_US, Batch, Stored
from fleetpulse.ingest.domain import epoch_us

log = logging.getLogger(__name__)

# Errors after which the same write may succeed later (lost connection, server restarting, ...):
# the one classification of fleetpulse.common.db.errors. Anything else is permanent.
RETRYABLE: tuple[type[BaseException], ...] = TRANSIENT_ERRORS

# The key and number columns travel as PostgreSQL array literals in one text parameter each:
# asyncpg's array encoder runs two ``isinstance(x, collections.abc.*)`` checks per element
# (~13% of ingest CPU on 100-reading batches); the literal costs one ``str.join``. Safe because
# tenant and device ids match ``^[A-Za-z0-9_-]{1,64}$`` (quoted, so an id "NULL" stays text).
INSERT_TELEMETRY = """
INSERT INTO telemetry (time, tenant_id, device_id, seq, metrics, received_at)
SELECT fleetpulse_ts_us(u.t), u.tn, u.d, u.s, u.m::jsonb, fleetpulse_ts_us(u.r)
FROM unnest($1::text::bigint[], $2::text::text[], $3::text::text[], $4::text::bigint[],
            $5::text[], $6::text::bigint[])
     AS u(t, tn, d, s, m, r)
ON CONFLICT (tenant_id, device_id, time) DO NOTHING
"""

# Run when INSERT_TELEMETRY met conflicts: inserts what is still missing, set-wise and without a
# conflict (the first of equal keys in the batch wins, as with ON CONFLICT). TimescaleDB has had
# bugs where ON CONFLICT DO NOTHING into a compressed chunk stopped at the first conflict and
# the statement's later rows were lost while reported as not inserted (counted as duplicates
# here); this second pass stores them. Nothing is missing normally: it inserts 0 rows.
INSERT_MISSING_TELEMETRY = """
INSERT INTO telemetry (time, tenant_id, device_id, seq, metrics, received_at)
SELECT DISTINCT ON (u.tn, u.d, u.t)
       fleetpulse_ts_us(u.t), u.tn, u.d, u.s, u.m::jsonb, fleetpulse_ts_us(u.r)
FROM unnest($1::text::bigint[], $2::text::text[], $3::text::text[], $4::text::bigint[],
            $5::text[], $6::text::bigint[]) WITH ORDINALITY AS u(t, tn, d, s, m, r, n)
LEFT JOIN LATERAL (  -- LIMIT keeps this a per-row key lookup, never a scan of the table
    SELECT true AS stored FROM telemetry x
    WHERE x.tenant_id = u.tn AND x.device_id = u.d AND x.time = fleetpulse_ts_us(u.t) LIMIT 1
) AS x ON true
WHERE x.stored IS NULL
ORDER BY u.tn, u.d, u.t, u.n
ON CONFLICT (tenant_id, device_id, time) DO NOTHING
"""


def int_array(values: list[int]) -> str:
    return "{" + ",".join(map(str, values)) + "}"


def nullable_int_array(values: list[int | None]) -> str:
    return "{" + ",".join(["NULL" if v is None else str(v) for v in values]) + "}"


def id_array(values: list[str]) -> str:
    """Only for contract ids (no quote, backslash, comma or brace can occur)."""
    return '{"' + '","'.join(values) + '"}'


# Only on the rare write that met duplicates: which of the batch's readings were inserted (first
# stored wins, so the others are not history and must not reach the latest state or the
# evaluator)? The write is redone with RETURNING after rolling back to a savepoint. (A lookup by
# ``xmin`` would be cheaper but fails on TimescaleDB's compressed chunks: "transparent
# decompression only supports tableoid system column".)
RETURNING_KEYS = "RETURNING tenant_id, device_id, time\n"

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


class PostgresTelemetryStore:
    """Writes a :class:`Batch` atomically (first stored wins on the telemetry key)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def write(self, batch: Batch) -> Written:
        async with self._pool.acquire() as conn, conn.transaction():
            written = await self._telemetry(conn, batch)
            duplicates = written.duplicates + batch.duplicates_in_batch
            if batch.seen:
                await conn.execute(UPSERT_DEVICE_STATE, *batch.device_state_columns(written.stored))
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

    async def _telemetry(self, conn: asyncpg.Connection, batch: Batch) -> Written:
        if not batch.times:
            return Written(0)
        columns = (
            int_array(batch.times),
            id_array(batch.tenants),
            id_array(batch.devices),
            nullable_int_array(batch.seqs),
            batch.metrics,
            int_array(batch.received),
        )
        attempt = conn.transaction()  # a savepoint, undone when the batch met a same-time clash
        await attempt.start()
        if _row_count(await conn.execute(INSERT_TELEMETRY, *columns)) == len(batch.times):
            await attempt.commit()
            return Written(0)
        await attempt.rollback()
        return await self._telemetry_returning(conn, columns, len(batch.times))

    async def _telemetry_returning(
        self, conn: asyncpg.Connection, columns: tuple[object, ...], size: int
    ) -> Written:
        """The batch met duplicates: insert again, learning which keys this write stored."""
        rows = await conn.fetch(INSERT_TELEMETRY + RETURNING_KEYS, *columns)
        if len(rows) < size:
            rows += await self._store_missed(conn, columns)
        stored = {(r["tenant_id"], r["device_id"], epoch_us(r["time"])) for r in rows}
        return Written(size - len(stored), stored)

    async def _store_missed(
        self, conn: asyncpg.Connection, columns: tuple[object, ...]
    ) -> list[asyncpg.Record]:
        """Second, conflict-free pass for rows an ``ON CONFLICT DO NOTHING`` lost after a conflict
        (a TimescaleDB compressed-chunk bug class); returns the keys it stored."""
        missed: list[asyncpg.Record] = await conn.fetch(
            INSERT_MISSING_TELEMETRY + RETURNING_KEYS, *columns
        )
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


def _row_count(status: str) -> int:
    """Rows an INSERT wrote, from its command tag (``INSERT 0 n``)."""
    return int(status.rsplit(" ", 1)[1])
