"""Telemetry layouts side by side: database CPU per stored reading, bytes per reading at rest, readings/s.

One run, one throwaway database on the machine's PostgreSQL (migrated with the real
migrations), the same batched readings (``--devices`` devices, 100-reading messages of
``--metrics`` metrics, validated by ingest's own ``Validator`` into ``Batch`` es of
``--batch`` readings, as ingest would cut them) written into:

- ``before 0700``: the layout before migration 0700 (``telemetry`` with text ids and ``jsonb``
  metrics, recreated here as ``telemetry_jsonb``: same columns, key, partitions and BRIN
  indexes) written by the statement ingest used then (``INSERT ... SELECT FROM unnest(...) ON
  CONFLICT DO NOTHING``, moved here from store.py): as the store wrote it (in one transaction: a
  savepoint around the statement, then the latest device state) and the statement alone. (On a
  conflict the store then rolled back to the savepoint and ran the statement again with
  ``RETURNING``: not done here, so the store row's redelivery figure is a lower bound);
- ``shipped (0700)``: the real ``PostgresTelemetryStore.write`` (``telemetry_readings`` by binary
  COPY + device state), and its binary COPY alone (the store's COPY data, encoded before the
  clock; its device keys and metric ids are learned before the clock too, as a running ingest
  has them);
- candidate layouts, each a daily-partitioned table with the same partitions, ``received_at``,
  ``seq``, the exporter's ``ingest_xid`` (default + BRIN index) and a unique key for
  exactly-once on redelivery: a device surrogate key (``int``, assigned at registration)
  instead of ``tenant_id`` + ``device_id``; metric names interned to ``smallint`` ids with
  typed value arrays (``float8[]`` or ``real[]``) instead of ``jsonb``; one narrow row per
  metric; and binary COPY into a staging table with the conflict handled set-wise by
  ``INSERT ... SELECT ... ON CONFLICT DO NOTHING``.

Database CPU is user+system CPU of the connection's backend process (``pg_backend_pid()``,
read with psutil before and after), so parsing, index maintenance and conflict checks count,
and the client's encoding does not; readings/s is wall time of the writes (parameters are
encoded before the clock starts, except what the two store writes encode inside: the shipped
store's COPY data, both stores' device state columns). Bytes at rest: ``pg_total_relation_size`` summed over the
partition tree (heap, TOAST, indexes) after ``VACUUM ANALYZE``, less the same sum for the empty
table (the empty partitions' index metapages), per stored reading. A second
pass writes the first ``--redeliver`` batches again (all conflicts: the redelivery path).

CPU ratios are relative to both pre-0700 rows (store write, statement only). Backend CPU is
read in clock ticks (10 ms): small runs (``--readings 20000``) move by ~0.5 us/reading.

``--timescale`` also loads the pre-0700 layout, the shipped one and two candidates into
TimescaleDB through the PGlite harness (``fleetpulse.testing.timescale``; one connection),
compresses every chunk and reports bytes per reading before and after compression.

    uv run python benchmarks/telemetry_layout.py [--readings 200000] [--metrics 4]
        [--batch 5000] [--devices 2000] [--timescale] [--save FILE]
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import psutil

sys.path.insert(0, str(Path(__file__).parent))
from _common import parser, report

from fleetpulse.ingest.batch import Batch, Envelope, QuarantineThrottle
from fleetpulse.ingest.domain import RateLimiter, TimeWindow, Validator
from fleetpulse.ingest.store import UPSERT_DEVICE_STATE, PostgresTelemetryStore, _copy
from fleetpulse.testing.postgres import create_migrated_database, drop_database, unique_name

TENANT = "acme-logistics"  # ids of a realistic length: the text key is in every row and index


def device_id(i: int) -> str:
    return f"truck-{i:06d}"


PER_MESSAGE = 100
WIDE = 8  # typed columns m1..m8 in the wide candidate
METRIC_NAMES = ["temp_c", "rpm", "battery_v", "ok", "lat", "lon", "speed_kmh", "rssi_dbm"]


# --------------------------------------------------------------------------- the readings
def payload(ts0: int, metrics: int, i: int, j: int) -> bytes:
    """Reading ``j`` of message ``i``: sensor-like values (2 decimals, pseudo-random noise), so
    compression meets realistic entropy rather than repeated constants."""
    noise = ((i * 7919 + j * 104_729) % 100_003) / 100_003
    values: dict[str, float | bool] = {
        "temp_c": round(21.5 + 3 * noise, 2),
        "rpm": 1200 + int(800 * noise),
        "battery_v": round(3.7 - 0.2 * noise, 3),
        "ok": noise > 0.05,
        "lat": round(52.52 + j * 1e-4 + noise * 1e-4, 6),
        "lon": round(13.405 + j * 1e-4 - noise * 1e-4, 6),
        "speed_kmh": round(40 + 30 * noise, 1),
        "rssi_dbm": -70 - int(20 * noise),
    }
    chosen = METRIC_NAMES[:metrics]
    body = ",".join(
        f'"{k}":{str(values[k]).lower() if isinstance(values[k], bool) else values[k]}'
        for k in chosen
    )
    return b'{"ts":%d,"metrics":{%s}}' % (ts0 - j * 1000, body.encode())


def batches(readings: int, metrics: int, devices: int, per_batch: int) -> list[Batch]:
    """Validated batches of ``per_batch`` readings, 100 per message, devices round robin."""
    validator = Validator(
        lambda tenant, device: "active",
        RateLimiter(1e9, 10**9),
        TimeWindow(300 * 1_000_000, 30 * 86_400_000_000),
    )
    now_us = time.time_ns() // 1000
    # every reading falls on today (UTC) after midnight: one daily partition for every layout
    midnight_ms = now_us // 86_400_000_000 * 86_400_000
    base_ms = max(now_us // 1000 - 60_000, midnight_ms + readings // devices * 1000 + 60_000)
    out: list[Batch] = []
    batch = Batch(QuarantineThrottle(50), forward=False)
    for i in range(readings // PER_MESSAGE):
        device = i % devices
        ts0 = base_ms - (i // devices) * PER_MESSAGE * 1000
        body = b'{"readings":[%s]}' % b",".join(
            payload(ts0, metrics, i, j) for j in range(PER_MESSAGE)
        )
        topic = f"tenant/{TENANT}/device/{device_id(device)}/telemetry"
        batch.add(Envelope("bench", topic, body, now_us), validator.validate(topic, body, now_us))
        if len(batch.times) >= per_batch:
            out.append(batch)
            batch = Batch(QuarantineThrottle(50), forward=False)
    if batch.times:
        out.append(batch)
    rejected = sum(len(b.quarantine) for b in out) + sum(b.quarantined.total() for b in out)
    if rejected:
        raise SystemExit(f"{rejected} generated messages were quarantined: fix the generator")
    return out


# --------------------------------------------------------------------------- before 0700
# The layout and ingest statement before migration 0700 (store.py at e29ff91), kept here so the
# shipped layout is measured against it: ``telemetry`` as it was (0002 + 0500's BRIN on time and
# received_at + 0600's ingest_xid with its BRIN), under another name, since ``telemetry`` is now
# a view over ``telemetry_readings``.
BEFORE = "telemetry_jsonb"
BEFORE_SCHEMA = [
    """
CREATE TABLE telemetry_jsonb (
    time         timestamptz NOT NULL,
    tenant_id    text        NOT NULL,
    device_id    text        NOT NULL,
    seq          bigint,
    metrics      jsonb       NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    ingest_xid   bigint      DEFAULT (pg_current_xact_id()::text::bigint),
    CONSTRAINT telemetry_jsonb_key UNIQUE (tenant_id, device_id, time)
) PARTITION BY RANGE (time)""",
    "CREATE INDEX telemetry_jsonb_time_brin ON telemetry_jsonb USING brin (time)",
    "CREATE INDEX telemetry_jsonb_received_brin ON telemetry_jsonb USING brin (received_at)",
]

# The key and number columns travel as PostgreSQL array literals in one text parameter each
# (what ingest did before 0700: cheaper for the client than asyncpg's array encoder).
INSERT_TELEMETRY_JSONB = """
INSERT INTO telemetry_jsonb (time, tenant_id, device_id, seq, metrics, received_at)
SELECT fleetpulse_ts_us(u.t), u.tn, u.d, u.s, u.m::jsonb, fleetpulse_ts_us(u.r)
FROM unnest($1::text::bigint[], $2::text::text[], $3::text::text[], $4::text::bigint[],
            $5::text[], $6::text::bigint[])
     AS u(t, tn, d, s, m, r)
ON CONFLICT (tenant_id, device_id, time) DO NOTHING
"""


def int_array(values: list[int]) -> str:
    return "{" + ",".join(map(str, values)) + "}"


def nullable_int_array(values: list[int | None]) -> str:
    return "{" + ",".join(["NULL" if v is None else str(v) for v in values]) + "}"


def id_array(values: list[str]) -> str:
    """Only for contract ids (no quote, backslash, comma or brace can occur)."""
    return '{"' + '","'.join(values) + '"}'


_json = msgspec.json.Encoder()  # how ingest encoded a reading's metrics before 0700


def before_parameters(batch: Batch) -> tuple[str, str, str, str, list[str], str]:
    """INSERT_TELEMETRY_JSONB's parameters for a batch, as the store built them before 0700."""
    return (
        int_array(batch.times),
        id_array(batch.tenants),
        id_array(batch.devices),
        nullable_int_array(batch.seqs),
        [_json.encode(m).decode() for m in batch.metrics],
        int_array(batch.received),
    )


# --------------------------------------------------------------------------- the layouts
PARTITIONED = "PARTITION BY RANGE (time)"
COMMON_TAIL = """
    received_at  timestamptz NOT NULL DEFAULT now(),
    ingest_xid   bigint DEFAULT (pg_current_xact_id()::text::bigint)
"""

SCHEMAS = {
    "key_jsonb": f"""
CREATE TABLE key_jsonb (
    device_key int NOT NULL, time timestamptz NOT NULL, seq bigint, metrics jsonb NOT NULL,
    {COMMON_TAIL}, UNIQUE (device_key, time)) {PARTITIONED}""",
    "key_float8": f"""
CREATE TABLE key_float8 (
    device_key int NOT NULL, time timestamptz NOT NULL, seq bigint,
    metric_ids smallint[] NOT NULL, metric_values float8[] NOT NULL,
    {COMMON_TAIL}, UNIQUE (device_key, time)) {PARTITIONED}""",
    "key_real": f"""
CREATE TABLE key_real (
    device_key int NOT NULL, time timestamptz NOT NULL, seq bigint,
    metric_ids smallint[] NOT NULL, metric_values real[] NOT NULL,
    {COMMON_TAIL}, UNIQUE (device_key, time)) {PARTITIONED}""",
    "key_wide": f"""
CREATE TABLE key_wide (
    device_key int NOT NULL, time timestamptz NOT NULL, seq bigint,
    m1 float8, m2 float8, m3 float8, m4 float8, m5 float8, m6 float8, m7 float8, m8 float8,
    {COMMON_TAIL}, UNIQUE (device_key, time)) {PARTITIONED}""",
    "narrow": f"""
CREATE TABLE narrow (
    device_key int NOT NULL, time timestamptz NOT NULL, metric_id smallint NOT NULL,
    value float8 NOT NULL, seq bigint,
    {COMMON_TAIL}, UNIQUE (device_key, time, metric_id)) {PARTITIONED}""",
}
STAGING_BEFORE = """
CREATE TEMP TABLE stage_before (
    time timestamptz, tenant_id text, device_id text, seq bigint, metrics jsonb,
    received_at timestamptz) ON COMMIT DELETE ROWS"""
INSERT_BEFORE_FROM_STAGE = """
INSERT INTO telemetry_jsonb (time, tenant_id, device_id, seq, metrics, received_at)
SELECT time, tenant_id, device_id, seq, metrics, received_at FROM stage_before
ON CONFLICT (tenant_id, device_id, time) DO NOTHING"""
STAGING = """
CREATE TEMP TABLE stage_float8 (
    device_key int, time timestamptz, seq bigint, metric_ids smallint[], metric_values float8[],
    received_at timestamptz) ON COMMIT DELETE ROWS"""


def partitions_sql(table: str, day_start: str) -> list[str]:
    return [
        f"CREATE TABLE {table}_today PARTITION OF {table} FOR VALUES FROM "
        f"('{day_start}') TO ('{day_start}'::timestamptz + interval '1 day')",
        f"CREATE TABLE {table}_default PARTITION OF {table} DEFAULT",
        f"CREATE INDEX {table}_xid ON {table} USING brin (ingest_xid)",
    ]


INSERT_KEY_JSONB = """
INSERT INTO key_jsonb (time, device_key, seq, metrics, received_at)
SELECT fleetpulse_ts_us(u.t), u.k, u.s, u.m::jsonb, fleetpulse_ts_us(u.r)
FROM unnest($1::text::bigint[], $2::text::int[], $3::text::bigint[], $4::text[],
            $5::text::bigint[]) AS u(t, k, s, m, r)
ON CONFLICT (device_key, time) DO NOTHING"""

# per reading one small array literal of metric ids and one of values (readings carry different
# metrics, so no rectangular 2-D array; one flat array sliced per row re-parses it per row)
INSERT_ARRAYS = """
INSERT INTO {table} (time, device_key, seq, metric_ids, metric_values, received_at)
SELECT fleetpulse_ts_us(u.t), u.k, u.s, u.i::smallint[], u.v::{kind}[], fleetpulse_ts_us(u.r)
FROM unnest($1::text::bigint[], $2::text::int[], $3::text::bigint[], $4::text[], $5::text[],
            $6::text::bigint[]) AS u(t, k, s, i, v, r)
ON CONFLICT (device_key, time) DO NOTHING"""

# typed columns: metric id k (interned per tenant) is column m{k}; NULL where a reading lacks it
INSERT_WIDE = """
INSERT INTO key_wide (time, device_key, seq, m1, m2, m3, m4, m5, m6, m7, m8, received_at)
SELECT fleetpulse_ts_us(u.t), u.k, u.s, u.m1, u.m2, u.m3, u.m4, u.m5, u.m6, u.m7, u.m8, fleetpulse_ts_us(u.r)
FROM unnest($1::text::bigint[], $2::text::int[], $3::text::bigint[], $4::text::float8[], $5::text::float8[], $6::text::float8[], $7::text::float8[], $8::text::float8[], $9::text::float8[], $10::text::float8[], $11::text::float8[],
            $12::text::bigint[]) AS u(t, k, s, m1, m2, m3, m4, m5, m6, m7, m8, r)
ON CONFLICT (device_key, time) DO NOTHING"""

INSERT_NARROW = """
INSERT INTO narrow (time, device_key, metric_id, value, seq, received_at)
SELECT fleetpulse_ts_us(u.t), u.k, u.i, u.v, u.s, fleetpulse_ts_us(u.r)
FROM unnest($1::text::bigint[], $2::text::int[], $3::text::smallint[], $4::text::float8[],
            $5::text::bigint[], $6::text::bigint[]) AS u(t, k, i, v, s, r)
ON CONFLICT (device_key, time, metric_id) DO NOTHING"""

INSERT_FROM_STAGE = """
INSERT INTO key_float8 (time, device_key, seq, metric_ids, metric_values, received_at)
SELECT time, device_key, seq, metric_ids, metric_values, received_at FROM stage_float8
ON CONFLICT (device_key, time) DO NOTHING"""


@dataclass
class Columns:
    """A batch's readings as the candidates store them (interned ids, like a registry cache)."""

    times: str
    keys: str
    seqs: str
    metrics_json: list[str]
    ids: list[str]
    values: list[str]
    received: str
    narrow: tuple[str, ...]
    records: list[tuple[Any, ...]]
    wide: tuple[str, ...]
    before_records: list[tuple[Any, ...]]


def columns(batch: Batch, device_keys: dict[str, int], metric_ids: dict[str, int]) -> Columns:
    keys = [device_keys[d] for d in batch.devices]
    metrics_json = [_json.encode(m).decode() for m in batch.metrics]
    ids: list[str] = []
    values: list[str] = []
    n_t, n_k, n_i, n_v, n_s, n_r = [], [], [], [], [], []
    records = []
    wide: list[list[str]] = [[] for _ in range(WIDE)]
    for time_us, metrics, key, seq, received in zip(
        batch.times, batch.metrics, keys, batch.seqs, batch.received, strict=True
    ):
        r_ids = [metric_ids[name] for name in metrics]
        r_vals = [float(v) for v in metrics.values()]
        ids.append(int_array(r_ids))
        values.append("{" + ",".join(map(repr, r_vals)) + "}")
        for i, v in zip(r_ids, r_vals, strict=True):
            n_t.append(time_us)
            n_k.append(key)
            n_i.append(i)
            n_v.append(v)
            n_s.append(seq)
            n_r.append(received)
        records.append((key, utc(time_us), seq, r_ids, r_vals, utc(received)))
        by_id = dict(zip(r_ids, r_vals, strict=True))
        for k in range(WIDE):
            wide[k].append(repr(by_id[k + 1]) if k + 1 in by_id else "NULL")
    return Columns(
        int_array(batch.times),
        int_array(keys),
        nullable_int_array(batch.seqs),
        metrics_json,
        ids,
        values,
        int_array(batch.received),
        (
            int_array(n_t),
            int_array(n_k),
            int_array(n_i),
            "{" + ",".join(map(repr, n_v)) + "}",
            nullable_int_array(n_s),
            int_array(n_r),
        ),
        records,
        tuple("{" + ",".join(column) + "}" for column in wide),
        [
            (utc(t), tenant, device, seq, metrics, utc(r))
            for t, tenant, device, seq, metrics, r in zip(
                batch.times,
                batch.tenants,
                batch.devices,
                batch.seqs,
                metrics_json,
                batch.received,
                strict=True,
            )
        ],
    )


def utc(us: int) -> datetime:
    return datetime.fromtimestamp(us / 1e6, UTC)


Write = Callable[[asyncpg.Connection, int], Awaitable[None]]
StoreWrite = Callable[[int], Awaitable[None]]


@dataclass(frozen=True)
class Layout:
    """What a row of the table writes: ``table`` (measured at rest), ``truncate`` (emptied
    between runs), and either ``write`` on the pool's one connection or ``store_write`` (the
    real store, which acquires that connection itself)."""

    table: str
    truncate: tuple[str, ...]
    write: Write | None = None
    store_write: StoreWrite | None = None


BEFORE_STORE = "before 0700: store write (telemetry + device state)"
BEFORE_STATEMENT = "before 0700: telemetry statement only"
SHIPPED_STORE = "shipped (0700): PostgresTelemetryStore.write"
SHIPPED_COPY = "shipped (0700): binary COPY only"


@dataclass
class Prepared:
    """Everything encoded before the clock: per batch, the pre-0700 statement's parameters, the
    candidates' columns and the shipped store's binary COPY data."""

    batches: list[Batch]
    before: list[tuple[str, str, str, str, list[str], str]]
    cols: list[Columns]
    copy_data: list[bytes]


def writers(p: Prepared, store: PostgresTelemetryStore) -> dict[str, Layout]:
    """Row label -> what it writes and how."""

    async def before_store(conn: asyncpg.Connection, i: int) -> None:
        async with conn.transaction():
            attempt = conn.transaction()  # a savepoint, as the store before 0700 took
            await attempt.start()
            await conn.execute(INSERT_TELEMETRY_JSONB, *p.before[i])
            await attempt.commit()
            await conn.execute(UPSERT_DEVICE_STATE, *p.batches[i].device_state_columns())

    async def before_statement(conn: asyncpg.Connection, i: int) -> None:
        await conn.execute(INSERT_TELEMETRY_JSONB, *p.before[i])

    async def shipped_store(i: int) -> None:
        await store.write(p.batches[i])  # the pool holds this one connection

    async def shipped_copy(conn: asyncpg.Connection, i: int) -> None:
        # a redelivery fails on its first conflict: the COPY's cost until then, rolled back (the
        # store then goes through its staging table: see the store's row)
        async with conn.transaction():
            attempt = conn.transaction()
            await attempt.start()
            try:
                await _copy(conn, "telemetry_readings", p.copy_data[i])
            except asyncpg.UniqueViolationError:
                await attempt.rollback()
            else:
                await attempt.commit()

    async def copy_before(conn: asyncpg.Connection, i: int) -> None:
        async with conn.transaction():
            await conn.copy_records_to_table("stage_before", records=p.cols[i].before_records)
            await conn.execute(INSERT_BEFORE_FROM_STAGE)

    async def key_jsonb(conn: asyncpg.Connection, i: int) -> None:
        c = p.cols[i]
        await conn.execute(INSERT_KEY_JSONB, c.times, c.keys, c.seqs, c.metrics_json, c.received)

    def arrays(table: str, kind: str) -> Write:
        sql = INSERT_ARRAYS.format(table=table, kind=kind)

        async def write(conn: asyncpg.Connection, i: int) -> None:
            c = p.cols[i]
            await conn.execute(sql, c.times, c.keys, c.seqs, c.ids, c.values, c.received)

        return write

    async def key_wide(conn: asyncpg.Connection, i: int) -> None:
        c = p.cols[i]
        await conn.execute(INSERT_WIDE, c.times, c.keys, c.seqs, *c.wide, c.received)

    async def narrow(conn: asyncpg.Connection, i: int) -> None:
        await conn.execute(INSERT_NARROW, *p.cols[i].narrow)

    async def copy_float8(conn: asyncpg.Connection, i: int) -> None:
        async with conn.transaction():
            await conn.copy_records_to_table("stage_float8", records=p.cols[i].records)
            await conn.execute(INSERT_FROM_STAGE)

    def candidate(table: str, write: Write) -> Layout:
        return Layout(table, (table,), write)

    readings = "telemetry_readings"
    return {
        BEFORE_STORE: Layout(BEFORE, (BEFORE, "device_state"), before_store),
        BEFORE_STATEMENT: candidate(BEFORE, before_statement),
        SHIPPED_STORE: Layout(readings, (readings, "device_state"), store_write=shipped_store),
        SHIPPED_COPY: candidate(readings, shipped_copy),
        "pre-0700 layout, binary COPY + staging": candidate(BEFORE, copy_before),
        "device key + jsonb": candidate("key_jsonb", key_jsonb),
        "device key + metric ids + float8[]": candidate(
            "key_float8", arrays("key_float8", "float8")
        ),
        "device key + metric ids + real[]": candidate("key_real", arrays("key_real", "real")),
        "device key + typed columns (m1..m8 float8)": candidate("key_wide", key_wide),
        "narrow (device key, time, metric id, float8)": candidate("narrow", narrow),
        "device key + float8[], binary COPY + staging": candidate("key_float8", copy_float8),
    }


# --------------------------------------------------------------------------- measuring
@dataclass
class Figures:
    readings: int
    cpu_us: float
    wall_s: float
    redelivered_cpu_us: float
    bytes_per_reading: float
    rows: int


def backend_cpu(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


async def table_bytes(conn: asyncpg.Connection, table: str) -> tuple[int, int]:
    await conn.execute(f"VACUUM ANALYZE {table}")
    size = await conn.fetchval(
        "SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree($1::regclass)", table
    )
    rows = await conn.fetchval(f"SELECT count(*) FROM {table}")  # noqa: S608 (our table names)
    return int(size), int(rows)


async def reset(conn: asyncpg.Connection, layout: Layout) -> None:
    # device_keys and metric_names stay: the store learned them once, as a running ingest has
    await conn.execute(f"TRUNCATE {', '.join(layout.truncate)}")


async def create_layouts(conn: asyncpg.Connection) -> None:
    day = await conn.fetchval("SELECT date_trunc('day', now() AT TIME ZONE 'UTC')")
    start = f"{day:%Y-%m-%d} 00:00:00+00"
    await conn.execute("SELECT fleetpulse_ensure_telemetry_partitions(1, 1)")
    for ddl in BEFORE_SCHEMA:
        await conn.execute(ddl)
    for sql in partitions_sql(BEFORE, start):
        await conn.execute(sql)
    for table, ddl in SCHEMAS.items():
        await conn.execute(ddl)
        for sql in partitions_sql(table, start):
            await conn.execute(sql)
    await conn.execute(STAGING)
    await conn.execute(STAGING_BEFORE)


async def prepare(args: Any, store: PostgresTelemetryStore, pool: asyncpg.Pool) -> Prepared:
    """Encode every batch for every row; the shipped store learns its device keys and metric
    ids here (once per process in ingest), so neither is on the clock."""
    store_batches = batches(args.readings, args.metrics, args.devices, args.batch)
    device_keys = {device_id(i): i + 1 for i in range(args.devices)}
    metric_ids = {name: i + 1 for i, name in enumerate(METRIC_NAMES)}
    copy_data: list[bytes] = []
    async with pool.acquire() as conn:
        for b in store_batches:
            packed = await store._pack(conn, b)  # the store's own encoding
            assert packed is not None
            copy_data.append(packed.data)
    return Prepared(
        store_batches,
        [before_parameters(b) for b in store_batches],
        [columns(b, device_keys, metric_ids) for b in store_batches],
        copy_data,
    )


async def plain_postgres(args: Any) -> dict[str, Figures]:
    name = unique_name("fp_bench_layout")
    db_url = await create_migrated_database(name)
    results: dict[str, Figures] = {}
    try:
        pool = await asyncpg.create_pool(db_url, min_size=1, max_size=1)
        try:
            async with pool.acquire() as conn:
                await create_layouts(conn)
            store = PostgresTelemetryStore(pool)
            prepared = await prepare(args, store, pool)
            readings = sum(len(b.times) for b in prepared.batches)
            for label, layout in writers(prepared, store).items():
                for attempt in range(args.repeat):
                    async with pool.acquire() as conn:
                        await reset(conn, layout)
                    figures = await measure_on_pool(
                        pool, layout, len(prepared.batches), readings, args.redeliver
                    )
                    if figures.rows not in (readings, readings * args.metrics):
                        raise SystemExit(f"{label}: {figures.rows} rows for {readings} readings")
                    best = results.get(label)
                    if best is None or figures.cpu_us < best.cpu_us:
                        results[label] = figures
                    print(
                        f"  {label} (run {attempt + 1}): {figures.cpu_us:.2f} us DB CPU/reading, "
                        f"{readings / figures.wall_s:,.0f} readings/s, "
                        f"{figures.bytes_per_reading:.1f} B/reading; "
                        f"load average {os.getloadavg()[0]:.2f}",
                        file=sys.stderr,
                        flush=True,
                    )
                async with pool.acquire() as conn:
                    await reset(conn, layout)
        finally:
            await pool.close()
    finally:
        await drop_database(name)
    return results


async def measure_on_pool(
    pool: asyncpg.Pool, layout: Layout, n: int, readings: int, redeliver: int
) -> Figures:
    """Write the ``n`` batches, then the first ``redeliver`` again, on the pool's one
    connection: the backend pid is the same throughout (a pool of size 1 keeps its
    connection), also when the real store acquires it itself."""
    async with pool.acquire() as conn:
        pid = await conn.fetchval("SELECT pg_backend_pid()")

    async def each(i: int) -> None:
        if layout.store_write is not None:
            await layout.store_write(i)
        else:
            assert layout.write is not None
            async with pool.acquire() as conn:
                await layout.write(conn, i)

    async with pool.acquire() as conn:
        empty, _ = await table_bytes(conn, layout.table)
    cpu0, wall0 = backend_cpu(pid), time.perf_counter()
    for i in range(n):
        await each(i)
    wall, cpu = time.perf_counter() - wall0, backend_cpu(pid) - cpu0
    cpu1 = backend_cpu(pid)
    for i in range(redeliver):
        await each(i)
    re_cpu = backend_cpu(pid) - cpu1
    async with pool.acquire() as conn:
        if await conn.fetchval("SELECT pg_backend_pid()") != pid:
            raise SystemExit("the pool replaced its connection: CPU figures would be wrong")
        size, rows = await table_bytes(conn, layout.table)
    size -= empty  # the empty partitions' own pages (index metapages, BRIN) are not per reading
    redelivered_readings = readings * min(redeliver, n) / n
    return Figures(
        readings,
        cpu / readings * 1e6,
        wall,
        re_cpu / redelivered_readings * 1e6 if redeliver else float("nan"),
        size / readings,
        rows,
    )


def print_table(results: dict[str, Figures]) -> dict[str, float]:
    """The side-by-side table (CPU ratios against both pre-0700 rows); the figures to report."""
    store, statement = results[BEFORE_STORE], results[BEFORE_STATEMENT]
    figures: dict[str, float] = {}
    print(
        f"\n{'layout':<52} {'DB CPU us/rdg':>13} {'redeliv us':>10} {'B/rdg':>7} "
        f"{'rdg/s':>9} {'CPU vs before':>13} {'vs stmt':>7}"
    )
    for label, f in results.items():
        print(
            f"{label:<52} {f.cpu_us:>13.2f} {f.redelivered_cpu_us:>10.2f} "
            f"{f.bytes_per_reading:>7.1f} {f.readings / f.wall_s:>9,.0f} "
            f"{f.cpu_us / store.cpu_us:>13.2f} {f.cpu_us / statement.cpu_us:>7.2f}"
        )
        figures[f"{label}: DB CPU us/reading"] = f.cpu_us
        figures[f"{label}: DB CPU us/redelivered reading"] = f.redelivered_cpu_us
        figures[f"{label}: bytes/reading at rest"] = f.bytes_per_reading
        figures[f"{label}: readings/s"] = f.readings / f.wall_s
    print(
        f"CPU vs before: relative to {BEFORE_STORE!r}; vs stmt: relative to {BEFORE_STATEMENT!r}.\n"
        f"{SHIPPED_COPY!r} redelivered: the COPY failing at its first conflict, rolled back "
        "(the store then stages the batch: its own row)."
    )
    return figures


async def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--readings", type=int, default=200_000)
    p.add_argument("--metrics", type=int, default=4, choices=range(1, len(METRIC_NAMES) + 1))
    p.add_argument("--batch", type=int, default=5000, help="readings per batch (ingest's max)")
    p.add_argument("--devices", type=int, default=2000)
    p.add_argument("--redeliver", type=int, default=5, help="batches written a second time")
    p.add_argument("--repeat", type=int, default=2, help="runs per layout; the best is kept")
    p.add_argument("--timescale", action="store_true", help="also compress on TimescaleDB")
    p.add_argument("--timescale-readings", type=int, default=20_000)
    p.add_argument(
        "--timescale-devices",
        type=int,
        default=50,
        help="fewer devices than on PostgreSQL: a compressed segment holds one device's readings",
    )
    args = p.parse_args()
    print(f"load average before: {os.getloadavg()}", file=sys.stderr, flush=True)
    results = await plain_postgres(args)
    print(f"load average after: {os.getloadavg()}", file=sys.stderr, flush=True)
    figures = print_table(results)
    if args.timescale:
        from telemetry_layout_timescale import compressed_bytes

        figures.update(await compressed_bytes(args))
    report(
        f"telemetry layouts ({args.readings} readings, {args.metrics} metrics, "
        f"batches of {args.batch}, plain PostgreSQL)",
        figures,
        args.baseline,
        args.save,
    )


if __name__ == "__main__":
    asyncio.run(main())
