"""Bytes per reading after compression on TimescaleDB (the PGlite harness), for the layout before
migration 0700 (``telemetry_jsonb``: text ids + ``jsonb``, segmented by ``tenant_id, device_id``,
written with the pre-0700 statement), the shipped one (``telemetry_readings``, written by the real
``PostgresTelemetryStore``) and two candidates: device key + metric ids + float8[] (the arrays' runner-up on plain
PostgreSQL) and device key + typed columns (one float8 column per interned metric: what
TimescaleDB's per-column compression, Gorilla for floats, is built for).

Used by ``telemetry_layout.py --timescale``. The harness (``fleetpulse.testing.timescale``)
serves one in-memory database to one client at a time, so everything runs on one connection:
``fleetpulse-migrate`` first, then the pre-0700 statement, the store's writes and the
candidates' inserts, then ``compress_chunk`` on every chunk of each. Sizes are
``hypertable_size`` (heap, TOAST and indexes of all chunks, compressed ones included) per
stored reading, before and after. PGlite is a single-process WebAssembly PostgreSQL: its CPU
and speed say nothing about a server, only its bytes are reported.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any

import asyncpg

from fleetpulse.ingest.store import PostgresTelemetryStore
from fleetpulse.testing.timescale import start_timescale

TIMESCALE_BATCH = 200
MIGRATE = [sys.executable, "-c", "from fleetpulse.common.db.migrate import main; main()"]
# The pre-0700 layout as a hypertable (0002 + 0600's column), as the TimescaleDB variant had it.
BEFORE_DDL = [
    """CREATE TABLE telemetry_jsonb (
        time timestamptz NOT NULL, tenant_id text NOT NULL, device_id text NOT NULL, seq bigint,
        metrics jsonb NOT NULL, received_at timestamptz NOT NULL DEFAULT now(),
        ingest_xid bigint DEFAULT (pg_current_xact_id()::text::bigint),
        UNIQUE (tenant_id, device_id, time))""",
    "SELECT create_hypertable('telemetry_jsonb', 'time', chunk_time_interval => interval '1 day')",
    """ALTER TABLE telemetry_jsonb SET (timescaledb.compress,
        timescaledb.compress_segmentby = 'tenant_id, device_id',
        timescaledb.compress_orderby = 'time DESC')""",
]

CANDIDATE_DDL = [
    """CREATE TABLE key_float8 (
        device_key int NOT NULL, time timestamptz NOT NULL, seq bigint,
        metric_ids smallint[] NOT NULL, metric_values float8[] NOT NULL,
        received_at timestamptz NOT NULL DEFAULT now(),
        ingest_xid bigint DEFAULT (pg_current_xact_id()::text::bigint),
        UNIQUE (device_key, time))""",
    "SELECT create_hypertable('key_float8', 'time', chunk_time_interval => interval '1 day')",
    """ALTER TABLE key_float8 SET (timescaledb.compress,
        timescaledb.compress_segmentby = 'device_key', timescaledb.compress_orderby = 'time DESC')""",
    f"""CREATE TABLE key_wide (
        device_key int NOT NULL, time timestamptz NOT NULL, seq bigint,
        {", ".join(f"m{k} float8" for k in range(1, 9))},
        received_at timestamptz NOT NULL DEFAULT now(),
        ingest_xid bigint DEFAULT (pg_current_xact_id()::text::bigint),
        UNIQUE (device_key, time))""",
    "SELECT create_hypertable('key_wide', 'time', chunk_time_interval => interval '1 day')",
    """ALTER TABLE key_wide SET (timescaledb.compress,
        timescaledb.compress_segmentby = 'device_key', timescaledb.compress_orderby = 'time DESC')""",
]


async def _size(conn: asyncpg.Connection, table: str) -> int:
    return int(await conn.fetchval("SELECT hypertable_size($1::regclass)", table))


async def _compress(conn: asyncpg.Connection, table: str) -> None:
    for (chunk,) in await conn.fetch("SELECT show_chunks($1::regclass)", table):
        await conn.execute("SELECT compress_chunk($1::regclass, if_not_compressed => true)", chunk)


async def _create_tables(conn: asyncpg.Connection) -> None:
    for ddl in (*BEFORE_DDL, *CANDIDATE_DDL):
        await conn.execute(ddl)


def _migrate(url: str) -> None:
    done = subprocess.run(
        [*MIGRATE, "--database-url", url],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode:
        raise SystemExit(f"fleetpulse-migrate on TimescaleDB failed: {done.stdout}{done.stderr}")


async def compressed_bytes(args: Any) -> dict[str, float]:
    """``{"<layout>: bytes/reading on TimescaleDB before|after compression": B}``."""
    from telemetry_layout import (
        INSERT_ARRAYS,
        INSERT_TELEMETRY_JSONB,
        INSERT_WIDE,
        METRIC_NAMES,
        batches,
        before_parameters,
        columns,
        device_id,
    )

    devices = args.timescale_devices
    # PGlite (WebAssembly) aborts on 5000-reading statements ("unreachable"): smaller batches;
    # the bytes at rest do not depend on how the rows were batched
    store_batches = batches(args.timescale_readings, args.metrics, devices, TIMESCALE_BATCH)
    stored = sum(len(b.times) for b in store_batches)
    device_keys = {device_id(i): i + 1 for i in range(devices)}
    metric_ids = {name: i + 1 for i, name in enumerate(METRIC_NAMES)}
    cols = [columns(b, device_keys, metric_ids) for b in store_batches]
    server = await asyncio.to_thread(start_timescale)
    out: dict[str, float] = {}
    try:
        await asyncio.to_thread(_migrate, server.url)
        pool = await asyncpg.create_pool(server.url, min_size=1, max_size=1)
        try:
            async with pool.acquire() as conn:
                await _create_tables(conn)
            store = PostgresTelemetryStore(pool)
            for batch in store_batches:
                await store.write(batch)
            sql = INSERT_ARRAYS.format(table="key_float8", kind="float8")
            async with pool.acquire() as conn:
                for batch in store_batches:
                    await conn.execute(INSERT_TELEMETRY_JSONB, *before_parameters(batch))
                for c in cols:
                    await conn.execute(sql, c.times, c.keys, c.seqs, c.ids, c.values, c.received)
                    await conn.execute(INSERT_WIDE, c.times, c.keys, c.seqs, *c.wide, c.received)
                for label, table in (
                    ("before 0700 (telemetry_jsonb)", "telemetry_jsonb"),
                    ("shipped (0700) telemetry_readings", "telemetry_readings"),
                    ("device key + metric ids + float8[]", "key_float8"),
                    ("device key + typed columns (m1..m8 float8)", "key_wide"),
                ):
                    rows = await conn.fetchval(f"SELECT count(*) FROM {table}")  # noqa: S608
                    if rows != stored:
                        raise SystemExit(f"TimescaleDB {table}: {rows} rows for {stored} readings")
                    before = await _size(conn, table)
                    await _compress(conn, table)
                    after = await _size(conn, table)
                    out[f"TimescaleDB {label}: bytes/reading uncompressed"] = before / stored
                    out[f"TimescaleDB {label}: bytes/reading compressed"] = after / stored
                    print(
                        f"  TimescaleDB {label}: {before / stored:.2f} B/reading, "
                        f"compressed {after / stored:.2f} B/reading ({stored} readings, "
                        f"{before} -> {after} bytes)",
                        file=sys.stderr,
                        flush=True,
                    )
        finally:
            await pool.close()
    finally:
        await asyncio.to_thread(server.stop)
    return out
