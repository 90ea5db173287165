"""Telemetry layouts side by side: database CPU per stored reading, bytes per reading at rest, readings/s.

One run, one throwaway database on the machine's PostgreSQL (migrated with the real
migrations), the same batched readings (``--devices`` devices, 100-reading messages of
``--metrics`` metrics, validated by ingest's own ``Validator`` into ``Batch`` es of
``--batch`` readings, as ingest would cut them) written into:

- ``today``: the real ``PostgresTelemetryStore.write`` (telemetry + latest device state in one
  transaction), and ``today (telemetry only)``: its telemetry statement alone, the figure the
  candidates compare with (they write no device state);
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
encoded before the clock starts). Bytes at rest: ``pg_total_relation_size`` summed over the
partition tree (heap, TOAST, indexes) after ``VACUUM ANALYZE``, less the same sum for the empty
table (the empty partitions' index metapages), per stored reading. A second
pass writes the first ``--redeliver`` batches again (all conflicts: the redelivery path).

``--timescale`` also loads today's layout and the best candidate into TimescaleDB through the
PGlite harness (``fleetpulse.testing.timescale``; one connection), compresses every chunk and
reports bytes per reading before and after compression.

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
from fleetpulse.ingest.store import (
    INSERT_TELEMETRY,
    PostgresTelemetryStore,
    id_array,
    int_array,
    nullable_int_array,
)
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
STAGING_TODAY = """
CREATE TEMP TABLE stage_today (
    time timestamptz, tenant_id text, device_id text, seq bigint, metrics jsonb,
    received_at timestamptz) ON COMMIT DELETE ROWS"""
INSERT_TODAY_FROM_STAGE = """
INSERT INTO telemetry (time, tenant_id, device_id, seq, metrics, received_at)
SELECT time, tenant_id, device_id, seq, metrics, received_at FROM stage_today
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
    today_records: list[tuple[Any, ...]]


def columns(batch: Batch, device_keys: dict[str, int], metric_ids: dict[str, int]) -> Columns:
    keys = [device_keys[d] for d in batch.devices]
    ids: list[str] = []
    values: list[str] = []
    n_t, n_k, n_i, n_v, n_s, n_r = [], [], [], [], [], []
    records = []
    wide: list[list[str]] = [[] for _ in range(WIDE)]
    for time_us, metrics_json, key, seq, received in zip(
        batch.times, batch.metrics, keys, batch.seqs, batch.received, strict=True
    ):
        metrics = msgspec.json.decode(metrics_json, type=dict[str, float | bool])
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
        batch.metrics,
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
                batch.metrics,
                batch.received,
                strict=True,
            )
        ],
    )


def utc(us: int) -> datetime:
    return datetime.fromtimestamp(us / 1e6, UTC)


Write = Callable[[asyncpg.Connection, int], Awaitable[None]]


def writers(
    store_batches: list[Batch], cols: list[Columns], store: PostgresTelemetryStore
) -> dict[str, tuple[str, Write]]:
    """Layout name -> (table, write batch i on this connection)."""

    async def today(conn: asyncpg.Connection, i: int) -> None:
        await store.write(store_batches[i])  # the pool holds this one connection

    async def today_telemetry(conn: asyncpg.Connection, i: int) -> None:
        b = store_batches[i]
        await conn.execute(
            INSERT_TELEMETRY,
            int_array(b.times),
            id_array(b.tenants),
            id_array(b.devices),
            nullable_int_array(b.seqs),
            b.metrics,
            int_array(b.received),
        )

    async def key_jsonb(conn: asyncpg.Connection, i: int) -> None:
        c = cols[i]
        await conn.execute(INSERT_KEY_JSONB, c.times, c.keys, c.seqs, c.metrics_json, c.received)

    def arrays(table: str, kind: str) -> Write:
        sql = INSERT_ARRAYS.format(table=table, kind=kind)

        async def write(conn: asyncpg.Connection, i: int) -> None:
            c = cols[i]
            await conn.execute(sql, c.times, c.keys, c.seqs, c.ids, c.values, c.received)

        return write

    async def key_wide(conn: asyncpg.Connection, i: int) -> None:
        c = cols[i]
        await conn.execute(INSERT_WIDE, c.times, c.keys, c.seqs, *c.wide, c.received)

    async def narrow(conn: asyncpg.Connection, i: int) -> None:
        await conn.execute(INSERT_NARROW, *cols[i].narrow)

    async def copy_float8(conn: asyncpg.Connection, i: int) -> None:
        async with conn.transaction():
            await conn.copy_records_to_table("stage_float8", records=cols[i].records)
            await conn.execute(INSERT_FROM_STAGE)

    async def copy_today(conn: asyncpg.Connection, i: int) -> None:
        async with conn.transaction():
            await conn.copy_records_to_table("stage_today", records=cols[i].today_records)
            await conn.execute(INSERT_TODAY_FROM_STAGE)

    return {
        "today: PostgresTelemetryStore.write": ("telemetry", today),
        "today: telemetry statement only": ("telemetry", today_telemetry),
        "today's layout, binary COPY + staging": ("telemetry", copy_today),
        "device key + jsonb": ("key_jsonb", key_jsonb),
        "device key + metric ids + float8[]": ("key_float8", arrays("key_float8", "float8")),
        "device key + metric ids + real[]": ("key_real", arrays("key_real", "real")),
        "device key + typed columns (m1..m8 float8)": ("key_wide", key_wide),
        "narrow (device key, time, metric id, float8)": ("narrow", narrow),
        "device key + float8[], binary COPY + staging": ("key_float8", copy_float8),
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
    return times.user + times.system


async def table_bytes(conn: asyncpg.Connection, table: str) -> tuple[int, int]:
    await conn.execute(f"VACUUM ANALYZE {table}")
    size = await conn.fetchval(
        "SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree($1::regclass)", table
    )
    rows = await conn.fetchval(f"SELECT count(*) FROM {table}")  # noqa: S608 (our table names)
    return int(size), int(rows)


async def reset(conn: asyncpg.Connection, table: str) -> None:
    if table == "telemetry":
        await conn.execute("TRUNCATE telemetry, device_state")
    else:
        await conn.execute(f"TRUNCATE {table}")


async def plain_postgres(args: Any) -> dict[str, Figures]:
    store_batches = batches(args.readings, args.metrics, args.devices, args.batch)
    readings = sum(len(b.times) for b in store_batches)
    device_keys = {device_id(i): i + 1 for i in range(args.devices)}
    metric_ids = {name: i + 1 for i, name in enumerate(METRIC_NAMES)}
    cols = [columns(b, device_keys, metric_ids) for b in store_batches]
    name = unique_name("fp_bench_layout")
    db_url = await create_migrated_database(name)
    results: dict[str, Figures] = {}
    try:
        pool = await asyncpg.create_pool(db_url, min_size=1, max_size=1)
        try:
            async with pool.acquire() as conn:
                day = await conn.fetchval("SELECT date_trunc('day', now() AT TIME ZONE 'UTC')")
                start = f"{day:%Y-%m-%d} 00:00:00+00"
                await conn.execute("SELECT fleetpulse_ensure_telemetry_partitions(1, 1)")
                for table, ddl in SCHEMAS.items():
                    await conn.execute(ddl)
                    for sql in partitions_sql(table, start):
                        await conn.execute(sql)
                await conn.execute(STAGING)
                await conn.execute(STAGING_TODAY)
            store = PostgresTelemetryStore(pool)
            for label, (table, write) in writers(store_batches, cols, store).items():
                for attempt in range(args.repeat):
                    async with pool.acquire() as conn:
                        await reset(conn, table)
                    figures = await measure_on_pool(
                        pool, table, write, len(store_batches), readings, args.redeliver
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
                    await reset(conn, table)
        finally:
            await pool.close()
    finally:
        await drop_database(name)
    return results


async def measure_on_pool(
    pool: asyncpg.Pool, table: str, write: Write, n: int, readings: int, redeliver: int
) -> Figures:
    """Like :func:`measure`, but the store's own write acquires the pool's one connection:
    the backend pid is the same (a pool of size 1 keeps its connection)."""
    async with pool.acquire() as conn:
        pid = await conn.fetchval("SELECT pg_backend_pid()")

    async def each(i: int) -> None:
        if table == "telemetry" and write.__name__ == "today":
            await write(None, i)  # type: ignore[arg-type]
        else:
            async with pool.acquire() as conn:
                await write(conn, i)

    async with pool.acquire() as conn:
        empty, _ = await table_bytes(conn, table)
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
        size, rows = await table_bytes(conn, table)
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
    base = results["today: telemetry statement only"]
    figures: dict[str, float] = {}
    print(
        f"\n{'layout':<48} {'DB CPU us/rdg':>13} {'redeliv us':>10} {'B/rdg':>7} "
        f"{'rdg/s':>9} {'CPU vs today':>12}"
    )
    for label, f in results.items():
        print(
            f"{label:<48} {f.cpu_us:>13.2f} {f.redelivered_cpu_us:>10.2f} "
            f"{f.bytes_per_reading:>7.1f} {f.readings / f.wall_s:>9,.0f} "
            f"{f.cpu_us / base.cpu_us:>12.2f}"
        )
        figures[f"{label}: DB CPU us/reading"] = f.cpu_us
        figures[f"{label}: DB CPU us/redelivered reading"] = f.redelivered_cpu_us
        figures[f"{label}: bytes/reading at rest"] = f.bytes_per_reading
        figures[f"{label}: readings/s"] = f.readings / f.wall_s
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
