"""Bytes per reading after compression on TimescaleDB (the PGlite harness), for today's layout
and two candidates: device key + metric ids + float8[] (the arrays' runner-up on plain
PostgreSQL) and device key + typed columns (one float8 column per interned metric: what
TimescaleDB's per-column compression, Gorilla for floats, is built for).

Used by ``telemetry_layout.py --timescale``. The harness (``fleetpulse.testing.timescale``)
serves one in-memory database to one client at a time, so everything runs on one connection:
``fleetpulse-migrate`` first (today's real ``telemetry`` hypertable, segmented by
``tenant_id, device_id``, ordered by ``time DESC``), then today's ``PostgresTelemetryStore``
writes and the candidate's inserts, then ``compress_chunk`` on every chunk of both. Sizes are
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

# The harness refuses 0600's enable_chunk_skipping unless timescaledb.enable_chunk_skipping is on,
# and with it on PGlite crashes ("RuntimeError: unreachable") on the first telemetry insert; the
# migration is the exporter's (ingest_xid): the byte figures are taken without it, on both layouts.
SKIPPED_MIGRATION_ERROR = (
    "chunk skipping functionality disabled, enable it by first setting "
    "timescaledb.enable_chunk_skipping to on"
)
TIMESCALE_BATCH = 200
MIGRATE = [sys.executable, "-c", "from fleetpulse.common.db.migrate import main; main()"]
CANDIDATE_DDL = [
    """CREATE TABLE key_float8 (
        device_key int NOT NULL, time timestamptz NOT NULL, seq bigint,
        metric_ids smallint[] NOT NULL, metric_values float8[] NOT NULL,
        received_at timestamptz NOT NULL DEFAULT now(),
        UNIQUE (device_key, time))""",
    "SELECT create_hypertable('key_float8', 'time', chunk_time_interval => interval '1 day')",
    """ALTER TABLE key_float8 SET (timescaledb.compress,
        timescaledb.compress_segmentby = 'device_key', timescaledb.compress_orderby = 'time DESC')""",
    f"""CREATE TABLE key_wide (
        device_key int NOT NULL, time timestamptz NOT NULL, seq bigint,
        {", ".join(f"m{k} float8" for k in range(1, 9))},
        received_at timestamptz NOT NULL DEFAULT now(),
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


def _migrate(url: str) -> None:
    done = subprocess.run(
        [*MIGRATE, "--database-url", url],
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = done.stdout + done.stderr
    if done.returncode and not output.rstrip().endswith(SKIPPED_MIGRATION_ERROR):
        raise SystemExit(f"fleetpulse-migrate on TimescaleDB failed: {output}")
    if done.returncode:
        print(
            f"  TimescaleDB: {output.strip().splitlines()[-1]}; measured without it "
            "(no ingest_xid column on either layout)",
            file=sys.stderr,
            flush=True,
        )


async def compressed_bytes(args: Any) -> dict[str, float]:
    """``{"<layout>: bytes/reading on TimescaleDB before|after compression": B}``."""
    from telemetry_layout import (
        INSERT_ARRAYS,
        INSERT_WIDE,
        METRIC_NAMES,
        batches,
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
            store = PostgresTelemetryStore(pool)
            for batch in store_batches:
                await store.write(batch)
            sql = INSERT_ARRAYS.format(table="key_float8", kind="float8")
            async with pool.acquire() as conn:
                for ddl in CANDIDATE_DDL:
                    await conn.execute(ddl)
                for c in cols:
                    await conn.execute(sql, c.times, c.keys, c.seqs, c.ids, c.values, c.received)
                    await conn.execute(INSERT_WIDE, c.times, c.keys, c.seqs, *c.wide, c.received)
                for label, table in (
                    ("today", "telemetry"),
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
