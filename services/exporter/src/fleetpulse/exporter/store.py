"""PostgreSQL adapter: export checkpoints and the rows of one export range."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg

from fleetpulse.common.eventstore import PostgresEventStore
from fleetpulse.exporter.files import Coalescing, Dataset, ExportRange, Partition
from fleetpulse.exporter.schema import partition_date, telemetry_from, telemetry_select_list

# The telemetry watermark: an ingest_xid below it belongs to a transaction that has ended, so
# every row with a smaller ingest_xid is visible now and no further one can appear. It is the
# oldest transaction still running in this database (xids are cluster-wide; transactions of other
# databases cannot write our telemetry, so they must not hold the export back), else the next xid.
# When the exporter's role cannot see another session's xid (no pg_read_all_stats), it falls back
# to the cluster-wide xmin: later, never unsafe. Run first, before this transaction takes an xid.
WATERMARK = """
WITH snap AS (SELECT pg_current_snapshot() AS s),
ours AS (
    SELECT backend_xid::text::bigint AS xid FROM pg_stat_activity
    WHERE datname = current_database() AND backend_xid IS NOT NULL
    UNION ALL
    SELECT transaction::text::bigint FROM pg_prepared_xacts WHERE database = current_database()
),
hidden AS (
    SELECT count(*) > 0 AS seen FROM pg_stat_activity
    WHERE datname = current_database() AND query = '<insufficient privilege>'
)
SELECT CASE WHEN (SELECT seen FROM hidden) THEN pg_snapshot_xmin(s)::text::bigint
    ELSE least(
        pg_snapshot_xmax(s)::text::bigint,
        (SELECT min(x::text::bigint) FROM pg_snapshot_xip(s) AS x
         WHERE x::text::bigint % 4294967296 IN (SELECT xid FROM ours)))
    END
FROM snap
"""

_TELEMETRY_COLUMNS = "tenant_id, " + telemetry_select_list()
_TELEMETRY_ORDER = "ORDER BY tenant_id, (time AT TIME ZONE 'UTC')::date, device_id, time"
TELEMETRY_RANGE = (
    f"SELECT {_TELEMETRY_COLUMNS} FROM {telemetry_from()} "  # noqa: S608 - constants only
    f"WHERE ingest_xid >= $1 AND ingest_xid < $2 {_TELEMETRY_ORDER}"
)
TELEMETRY_COUNT = "SELECT count(*) FROM telemetry WHERE ingest_xid >= $1 AND ingest_xid < $2"
TELEMETRY_FIRST_COUNT = (
    "SELECT count(*) FROM telemetry "
    "WHERE (ingest_xid >= $1 AND ingest_xid < $2) OR ingest_xid IS NULL"
)
# The first range also takes the rows written before migration 0600 (no ingest_xid).
TELEMETRY_FIRST_RANGE = (
    f"SELECT {_TELEMETRY_COLUMNS} FROM {telemetry_from()} "  # noqa: S608 - constants only
    f"WHERE (ingest_xid >= $1 AND ingest_xid < $2) OR ingest_xid IS NULL {_TELEMETRY_ORDER}"
)

Grouped = tuple[Partition, list[Any]]


class PostgresExportStore:
    """Checkpoints in ``export_checkpoints`` and range reads of ``events`` and ``telemetry``.

    ``max_events`` caps an events range (it is read into memory); a telemetry range is streamed
    through a cursor, one partition at a time. ``coalescing`` decides when a new range is due.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        max_events: int = 100_000,
        coalescing: Coalescing | None = None,
    ) -> None:
        self._pool = pool
        self._events = PostgresEventStore(pool)
        self._max_events = max_events
        self._coalescing = coalescing or Coalescing()

    async def claim(self, dataset: Dataset, rows_per_file: int) -> ExportRange | None:
        """The pending range (after a crash), else a new one up to the head if it is due.

        None when caught up, or when the new rows are fewer than the coalescing minimum and the
        last commit is recent.
        """
        async with self._pool.acquire() as conn, conn.transaction():
            head = await self._head(conn, dataset)
            await conn.execute(
                "INSERT INTO export_checkpoints (stream) VALUES ($1) ON CONFLICT DO NOTHING",
                dataset,
            )
            row = await conn.fetchrow(
                "SELECT done, pending_until, rows_per_file,"
                " extract(epoch FROM now() - committed_at)::float8 AS age_s"
                " FROM export_checkpoints WHERE stream = $1 FOR UPDATE",
                dataset,
            )
            if row["pending_until"] is not None:
                return ExportRange(dataset, row["done"], row["pending_until"], row["rows_per_file"])
            until = self._bounded(dataset, row["done"], head)
            if until <= row["done"]:
                return None
            rows = await self._rows_in(conn, dataset, row["done"], until)
            if not self._coalescing.due(rows, row["age_s"]):
                return None
            await conn.execute(
                "UPDATE export_checkpoints SET pending_until = $2, rows_per_file = $3, "
                "updated_at = now() WHERE stream = $1",
                dataset,
                until,
                rows_per_file,
            )
            return ExportRange(dataset, row["done"], until, rows_per_file)

    async def _rows_in(
        self, conn: asyncpg.Connection, dataset: Dataset, start: int, until: int
    ) -> int:
        if dataset == "events":
            return until - start
        sql = TELEMETRY_FIRST_COUNT if start == 0 else TELEMETRY_COUNT
        return int(await conn.fetchval(sql, start, until))

    def _bounded(self, dataset: Dataset, done: int, head: int) -> int:
        return min(head, done + self._max_events) if dataset == "events" else head

    async def _head(self, conn: asyncpg.Connection, dataset: Dataset) -> int:
        if dataset == "events":
            return await self._events.head_position(conn=conn)
        return int(await conn.fetchval(WATERMARK))

    async def commit(self, export: ExportRange, files: int, rows: int) -> bool:
        """Mark ``export`` done (once: False if another exporter committed it first)."""
        status = await self._pool.execute(
            """
            UPDATE export_checkpoints SET done = pending_until, pending_until = NULL,
                   files = files + $3, rows = rows + $4, committed_at = now(), updated_at = now()
            WHERE stream = $1 AND pending_until = $2
            """,
            export.dataset,
            export.until,
            files,
            rows,
        )
        return bool(status == "UPDATE 1")

    async def event_partitions(self, export: ExportRange) -> list[Grouped]:
        """The range's events grouped by (tenant, day), positions ascending within each."""
        events = await self._events.read_all(
            after_position=export.start, limit=export.until - export.start
        )
        groups: dict[Partition, list[dict[str, Any]]] = {}
        for event in events:
            if event.position > export.until:
                break
            partition = Partition(event.tenant_id, partition_date(event.recorded_at))
            groups.setdefault(partition, []).append(_event_row(event))
        return sorted(groups.items(), key=lambda item: (item[0].tenant_id, item[0].date))

    async def telemetry_partitions(self, export: ExportRange) -> AsyncIterator[Grouped]:
        """The range's readings in chunks of at most ``rows_per_file``, partition after partition.

        Ordered by (tenant, day, device, time), the table's unique key, so the chunks of a range
        are the same on every run.
        """
        sql = TELEMETRY_FIRST_RANGE if export.start == 0 else TELEMETRY_RANGE
        async with self._pool.acquire() as conn, conn.transaction(readonly=True):
            batch: list[Any] = []
            current: Partition | None = None
            async for record in conn.cursor(sql, export.start, export.until, prefetch=5000):
                partition = Partition(record["tenant_id"], partition_date(record["time"]))
                if current is not None and (
                    partition != current or len(batch) >= export.rows_per_file
                ):
                    yield current, batch
                    batch = []
                current = partition
                batch.append(record)
            if current is not None and batch:
                yield current, batch


def _event_row(event: Any) -> dict[str, Any]:
    return {
        "position": event.position,
        "event_id": event.event_id,
        "stream_id": event.stream_id,
        "version": event.version,
        "type": event.type,
        "data": event.data,
        "metadata": event.metadata,
        "recorded_at": event.recorded_at,
    }
