"""Ingest throughput: fleetpulse-ingest vs a naive one-INSERT-per-message bridge vs mosquitto_sub.

Everything is local and private: a Mosquitto with dynamic security, a fresh migrated database,
``--publishers`` publisher processes (QoS 1) and the consumer under test as its own process.
Prints sustained messages/s and readings/s (single and batched payloads), p50/p99
publish-to-commit latency (probe readings polled in the table every 10 ms), peak RSS of ingest,
and the ratios against the naive bridge and the raw C subscriber.

Two regimes: *overloaded* (publishers as fast as the broker takes it: throughput, and latency
including queueing) and *below capacity* (``--rate-fraction`` of the overloaded throughput,
paced: latency without queueing). Publishers are raw-socket QoS 1 (``ingest_load.py``), so the
load generator is not the limit.

    uv run python benchmarks/ingest.py [--single 60000] [--batched 3000] [--publishers 3]
                                       [--rate-fraction 0.7]

The shipped single ingest (one plain persistent subscription) instead of the four shared
connections, one overloaded run only (before/after comparisons, issue 17)::

    uv run python benchmarks/ingest.py --only batched --connections 1 --share-group ""
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import asyncpg
import psutil

sys.path.insert(0, str(Path(__file__).parent))
from _common import parser, percentile, process_tree, report, rss_mib
from ingest_load import publish_share

from fleetpulse.testing.mosquitto import start_mosquitto
from fleetpulse.testing.ports import free_port
from fleetpulse.testing.postgres import create_migrated_database, drop_database, unique_name

TENANT = "bench"
DEVICES = 2000
# One client-id prefix for every ingest run: its sessions are persistent members of the shared
# group, and Mosquitto keeps handing an offline member its share of the messages. A second
# ingest with a new prefix therefore saw only half of the batched stream (the cause of the
# "stall"); reusing the prefix resumes the sessions, and forget_sessions() removes them after.
INGEST_CLIENT_ID = "bench-ingest"
INGEST_CONNECTIONS = 4
INGEST_SHARE_GROUP = "ingest"


def single_messages(n: int, base_ms: int) -> list[tuple[str, bytes]]:
    return [
        (
            f"tenant/{TENANT}/device/d{i % DEVICES}/telemetry",
            b'{"ts":%d,"seq":%d,"metrics":{"temp_c":21.5,"rpm":%d,"ok":true}}'
            % (base_ms - i // DEVICES, i, i),
        )
        for i in range(n)
    ]


def batched_messages(n: int, base_ms: int, per: int = 100) -> list[tuple[str, bytes]]:
    out = []
    for i in range(n):
        ts0 = base_ms - (i // DEVICES) * per
        readings = b",".join(
            b'{"ts":%d,"metrics":{"temp_c":21.5,"rpm":%d}}' % (ts0 - j, j) for j in range(per)
        )
        out.append(
            (f"tenant/{TENANT}/device/d{i % DEVICES}/telemetry", b'{"readings":[%s]}' % readings)
        )
    return out


class Peak:
    """Samples the RSS of a process tree every 100 ms, and its CPU since the sampling started
    (not the start-up's imports and connects, which used to count as per-reading work)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_mib = 0.0
        self.cpu_s = 0.0
        self._cpu0 = self._cpu(process_tree(pid))
        self._task = asyncio.create_task(self._sample())

    @staticmethod
    def _cpu(procs: list[psutil.Process]) -> float:
        with contextlib.suppress(psutil.Error):
            return sum(sum(p.cpu_times()[:2]) for p in procs)
        return 0.0

    async def _sample(self) -> None:
        while True:
            procs = process_tree(self.pid)
            self.peak_mib = max(self.peak_mib, rss_mib(procs))
            if procs:
                self.cpu_s = max(self.cpu_s, self._cpu(procs) - self._cpu0)
            await asyncio.sleep(0.1)

    def stop(self) -> float:
        self._task.cancel()
        return self.peak_mib


class CpuMeter:
    """CPU seconds (user + system) spent by other processes while a scenario runs: the
    PostgreSQL backends of ``application_name`` in the benchmark's database and the broker.
    Backends come and go (pool growth, reconnects): each pid's last sample counts."""

    def __init__(self, pool: asyncpg.Pool, application_name: str, broker_pid: int | None) -> None:
        self._pool, self._app, self._broker_pid = pool, application_name, broker_pid
        self._start: dict[int, float] = {}
        self._last: dict[int, float] = {}
        self._procs: dict[int, psutil.Process] = {}
        self._task: asyncio.Task[None] | None = None

    def _cpu(self, pid: int) -> float | None:
        try:
            process = self._procs.get(pid) or self._procs.setdefault(pid, psutil.Process(pid))
            times = process.cpu_times()
        except psutil.Error:
            return None
        return times.user + times.system

    async def _pids(self) -> list[int]:
        rows = await self._pool.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND application_name = $1",
            self._app,
        )
        return [r["pid"] for r in rows]

    async def _sample(self) -> None:
        while True:
            for pid in await self._pids():
                cpu = self._cpu(pid)
                if cpu is not None:
                    self._start.setdefault(pid, cpu)
                    self._last[pid] = cpu
            await asyncio.sleep(0.1)

    async def start(self) -> None:
        for pid in await self._pids():
            if (cpu := self._cpu(pid)) is not None:
                self._start[pid] = self._last[pid] = cpu
        self._broker0 = self._cpu(self._broker_pid) if self._broker_pid else None
        self._task = asyncio.create_task(self._sample())

    async def stop(self) -> tuple[float, float]:
        """(database backends' CPU s, broker CPU s) since :meth:`start`."""
        if self._task is not None:
            self._task.cancel()
        for pid in await self._pids():
            if (cpu := self._cpu(pid)) is not None:
                self._start.setdefault(pid, cpu)
                self._last[pid] = cpu
        db = sum(self._last[pid] - self._start[pid] for pid in self._last)
        broker = 0.0
        if self._broker_pid and self._broker0 is not None:
            broker = (self._cpu(self._broker_pid) or self._broker0) - self._broker0
        return db, broker


async def publish_all(
    broker, user: str, messages: list[tuple[str, bytes]], publishers: int, rate: float | None = None
) -> float:
    """``rate``: total messages/s over all publishers (paced), ``None``: as fast as possible."""
    loop = asyncio.get_running_loop()
    shares = [messages[i::publishers] for i in range(publishers)]
    each = rate / publishers if rate else None
    chunk = 10 if rate else 100
    with ProcessPoolExecutor(publishers) as pool:
        started = time.perf_counter()
        await asyncio.gather(
            *(
                loop.run_in_executor(
                    pool,
                    publish_share,
                    broker.host,
                    broker.port,
                    user,
                    "pw",
                    share,
                    2000,
                    chunk,
                    each,
                )
                for share in shares
            )
        )
    return time.perf_counter() - started


async def rows(pool: asyncpg.Pool) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM telemetry_readings"))


async def wait_rows(pool: asyncpg.Pool, expected: int, timeout: float = 300) -> float:
    deadline = time.perf_counter() + timeout
    while (n := await rows(pool)) < expected:
        if time.perf_counter() > deadline:
            raise TimeoutError(f"{n} of {expected} rows")
        if os.environ.get("BENCH_VERBOSE"):
            print(f"  {n}/{expected} rows", file=sys.stderr, flush=True)
        # count(*) scans the table: every 20 ms only near the end, or the benchmark's own
        # polling takes a good part of a core from the database it measures
        await asyncio.sleep(0.02 if n >= expected * 0.95 else 0.25)
    return time.perf_counter()


async def probe(pool: asyncpg.Pool, broker, user: str, stop: asyncio.Event) -> list[float]:
    """Publish a probe reading every 20 ms; latency = first seen in the table - publish time."""
    from fleetpulse.common.mqtt import MqttEndpoint, aiomqtt_client

    sent: dict[int, float] = {}
    latencies: list[float] = []
    seq = 0
    async with aiomqtt_client(MqttEndpoint.parse(broker.url_for(user, "pw"))) as client:
        while not stop.is_set():
            seq += 1
            sent[seq] = time.perf_counter()
            ts = int(time.time() * 1000)
            await client.publish(
                f"tenant/{TENANT}/device/probe/telemetry",
                b'{"ts":%d,"seq":%d,"metrics":{"p":1}}' % (ts, seq),
                qos=1,
            )
            found = await pool.fetch(
                "SELECT seq FROM telemetry WHERE tenant_id=$1 AND device_id='probe' "
                "AND seq = ANY($2::bigint[])",
                TENANT,
                list(sent),
            )
            now = time.perf_counter()
            for row in found:
                latencies.append((now - sent.pop(row["seq"])) * 1000)
            await asyncio.sleep(0.01)
    return latencies


def stop_process(process: subprocess.Popen) -> None:
    """Terminate (then kill) a process this script started; safe to call twice."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def forget_sessions(broker, user: str) -> None:
    """Drop ingest's persistent sessions (clean-session connect), so they stop collecting."""
    from paho.mqtt import client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    for i in range(INGEST_CONNECTIONS):
        client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=f"{INGEST_CLIENT_ID}-{i}", clean_session=True
        )
        client.username_pw_set(user, "pw")
        client.connect(broker.host, broker.port)
        client.loop_start()
        time.sleep(0.1)
        client.disconnect()
        client.loop_stop()


async def run_ingest_scenario(
    db_url: str,
    broker,
    user: str,
    pool: asyncpg.Pool,
    messages: list[tuple[str, bytes]],
    readings: int,
    publishers: int,
    processes: list[subprocess.Popen],
    rate: float | None = None,
):
    await pool.execute("TRUNCATE telemetry_readings, device_state")
    port = free_port()
    env = {
        **os.environ,
        "FLEETPULSE_DATABASE_URL": db_url,
        "FLEETPULSE_MQTT_URL": broker.url_for(user, "pw"),
        "FLEETPULSE_MQTT_CLIENT_ID": INGEST_CLIENT_ID,
        "FLEETPULSE_MQTT_CONNECTIONS": str(INGEST_CONNECTIONS),
        "FLEETPULSE_MQTT_SHARE_GROUP": INGEST_SHARE_GROUP,
        # the probe device publishes ~50 messages/s: above the default 20/s device limit
        "FLEETPULSE_RATE_LIMIT_PER_S": "200",
        "FLEETPULSE_RATE_LIMIT_BURST": "500",
        "FLEETPULSE_HEALTH_PORT": str(port),
        "FLEETPULSE_FORWARD_TO_EVALUATOR": "false",
        "FLEETPULSE_LOG_LEVEL": os.environ.get("BENCH_INGEST_LOG_LEVEL", "WARNING"),
    }
    process = subprocess.Popen(["fleetpulse-ingest"], env=env)  # noqa: ASYNC220
    processes.append(process)
    try:
        await wait_ready(port)
        peak = Peak(process.pid)
        meter = CpuMeter(pool, "fleetpulse-ingest", broker.pid)
        await meter.start()
        stop = asyncio.Event()
        prober = asyncio.create_task(probe(pool, broker, user, stop))
        try:
            started = time.perf_counter()
            published_s = await publish_all(broker, user, messages, publishers, rate)
            print(
                f"  published {len(messages)} in {published_s:.1f}s"
                f"{f' (paced at {rate:.0f} msg/s)' if rate else ''}",
                file=sys.stderr,
                flush=True,
            )
            ended = await wait_rows(pool, readings)
        finally:
            stop.set()
            latencies = await prober
            rss = peak.stop()
            db_cpu, broker_cpu = await meter.stop()
    finally:
        stop_process(process)
    seconds = ended - started
    print(
        f"  ingest CPU {peak.cpu_s:.1f}s for {seconds:.1f}s wall "
        f"({peak.cpu_s / len(messages) * 1e6:.0f} us/message, "
        f"{peak.cpu_s / readings * 1e6:.1f} us/reading); database backends "
        f"{db_cpu:.1f}s ({db_cpu / readings * 1e6:.1f} us/reading), broker {broker_cpu:.1f}s "
        f"({broker_cpu / len(messages) * 1e6:.0f} us/message); {len(latencies)} probes "
        f"p50 {percentile(latencies, 0.5):.0f} ms p99 {percentile(latencies, 0.99):.0f} ms; "
        f"load average {os.getloadavg()[0]:.2f}",
        file=sys.stderr,
        flush=True,
    )
    return len(messages) / seconds, readings / seconds, latencies, rss


async def wait_ready(port: int, timeout: float = 30.0) -> None:
    """Until ingest's /readyz answers 200 (database and every MQTT connection subscribed)."""
    import httpx

    deadline = time.perf_counter() + timeout
    async with httpx.AsyncClient() as client:
        while time.perf_counter() < deadline:
            try:
                if (await client.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    raise TimeoutError("ingest did not become ready")


# What a naive bridge on the 0700 layout does: one INSERT per message into telemetry_readings,
# the device key and the metric ids looked up in the same statement (devices and metric names
# are registered beforehand, outside the hot path; a reading with an unknown name is not stored,
# so the run would time out rather than count it). Not through the telemetry view: its row
# trigger assigns keys and ids per row, which no bridge written for this schema would do.
NAIVE = r"""
import asyncio, sys, orjson, asyncpg, aiomqtt
INSERT = '''
    INSERT INTO telemetry_readings (time, seq, device_key, metric_ids, metric_values)
    SELECT to_timestamp($1/1000.0), $4, k.device_key, m.ids, $7::float8[]
    FROM device_keys k, LATERAL (
        SELECT array_agg(n.metric_id ORDER BY u.ord) AS ids
        FROM unnest($5::text[], $6::boolean[]) WITH ORDINALITY AS u(name, is_bool, ord)
        JOIN metric_names n ON n.name = u.name AND n.is_bool = u.is_bool) AS m
    WHERE k.tenant_id = $2 AND k.device_id = $3 AND cardinality(m.ids) = cardinality($7::float8[])
    ON CONFLICT DO NOTHING'''
async def main(db, host, port, user, n):
    conn = await asyncpg.connect(db)
    async with aiomqtt.Client(host, int(port), username=user, password="pw", identifier="naive",
                              clean_session=True, max_inflight_messages=1000) as client:
        await client.subscribe("tenant/+/device/+/+", qos=1)
        print("ready", flush=True)
        async for m in client.messages:
            p = orjson.loads(m.payload)
            _, t, _, d, _ = m.topic.value.split("/")
            metrics = p["metrics"]
            await conn.execute(INSERT, p["ts"], t, d, p.get("seq"), list(metrics),
                               [isinstance(v, bool) for v in metrics.values()],
                               [float(v) for v in metrics.values()])
asyncio.run(main(*sys.argv[1:]))
"""


async def run_naive(
    db_url: str,
    broker,
    user: str,
    pool: asyncpg.Pool,
    messages: list[tuple[str, bytes]],
    publishers: int,
    processes: list[subprocess.Popen],
) -> float:
    await pool.execute("TRUNCATE telemetry_readings")
    process = subprocess.Popen(  # noqa: ASYNC220
        [
            sys.executable,
            "-c",
            NAIVE,
            db_url,
            broker.host,
            str(broker.port),
            user,
            str(len(messages)),
        ],
        stdout=subprocess.PIPE,
    )
    processes.append(process)
    try:
        assert process.stdout is not None
        await asyncio.to_thread(process.stdout.readline)
        started = time.perf_counter()
        await publish_all(broker, user, messages, publishers)
        ended = await wait_rows(pool, len(messages), timeout=600)
    finally:
        process.kill()
        process.wait()
    return len(messages) / (ended - started)


async def run_mosquitto_sub(
    broker,
    user: str,
    messages: list[tuple[str, bytes]],
    publishers: int,
    processes: list[subprocess.Popen],
) -> float:
    process = subprocess.Popen(  # noqa: ASYNC220
        [
            "mosquitto_sub",
            "-h",
            broker.host,
            "-p",
            str(broker.port),
            "-u",
            user,
            "-P",
            "pw",
            "-t",
            "tenant/+/device/+/+",
            "-q",
            "1",
            "-C",
            str(len(messages)),
        ],
        stdout=subprocess.DEVNULL,
    )
    processes.append(process)
    try:
        await asyncio.sleep(0.5)
        started = time.perf_counter()
        await publish_all(broker, user, messages, publishers)
        await asyncio.to_thread(process.wait, 300)
    finally:
        stop_process(process)
    return len(messages) / (time.perf_counter() - started)


async def main() -> None:
    global INGEST_CONNECTIONS, INGEST_SHARE_GROUP  # read by the scenario helpers
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--single", type=int, default=60_000, help="single-reading messages")
    p.add_argument("--batched", type=int, default=3_000, help="100-reading messages")
    p.add_argument("--naive", type=int, default=10_000, help="messages through the naive bridge")
    p.add_argument("--publishers", type=int, default=3)
    p.add_argument(
        "--rate-fraction",
        type=float,
        default=0.7,
        help="below-capacity runs offer this fraction of the overloaded throughput (0: skip them)",
    )
    p.add_argument(
        "--connections",
        type=int,
        default=INGEST_CONNECTIONS,
        help="FLEETPULSE_MQTT_CONNECTIONS of the ingest under test",
    )
    p.add_argument(
        "--share-group",
        default=INGEST_SHARE_GROUP,
        help="FLEETPULSE_MQTT_SHARE_GROUP ('' with --connections 1: the shipped single ingest)",
    )
    p.add_argument(
        "--only",
        choices=["single", "batched"],
        help="only this overloaded run (no paced, naive or mosquitto_sub runs)",
    )
    args = p.parse_args()
    INGEST_CONNECTIONS, INGEST_SHARE_GROUP = args.connections, args.share_group
    print(
        f"ingest: {INGEST_CONNECTIONS} connection(s), share group {INGEST_SHARE_GROUP!r}",
        file=sys.stderr,
        flush=True,
    )
    print(f"load average before: {os.getloadavg()}", file=sys.stderr, flush=True)
    broker = start_mosquitto(Path(tempfile.mkdtemp(prefix="fp-bench-")))
    user = "bench"
    broker.add_service_client(user, "pw")
    name = unique_name("fp_bench_ingest")
    db_url = await create_migrated_database(name)
    pool = await asyncpg.create_pool(db_url, min_size=1, max_size=4)
    processes: list[subprocess.Popen] = []
    try:
        await pool.executemany(
            "INSERT INTO devices (tenant_id, device_id, status, registered_at, updated_at, version) "
            "VALUES ($1, $2, 'active', now(), now(), 1)",
            [(TENANT, f"d{i}") for i in range(DEVICES)] + [(TENANT, "probe")],
        )
        await pool.execute("SELECT fleetpulse_ensure_telemetry_partitions(2, 2)")
        # the streams' metric names, as registration assigns device keys (the naive bridge looks
        # both up; ingest learns them itself)
        await pool.execute(
            "SELECT count(*) FROM fleetpulse_metric_ids($1::text[], $2::boolean[])",
            ["temp_c", "rpm", "ok"],
            [False, False, True],
        )
        base_ms = int(time.time() * 1000)
        if args.only:
            count = args.batched if args.only == "batched" else args.single
            per = 100 if args.only == "batched" else 1
            stream = (
                batched_messages(count, base_ms - 3_600_000)
                if per == 100
                else single_messages(count, base_ms)
            )
            o_msgs, o_reads, o_lat, o_rss = await run_ingest_scenario(
                db_url, broker, user, pool, stream, count * per, args.publishers, processes
            )
            forget_sessions(broker, user)
            print(f"load average after: {os.getloadavg()}", file=sys.stderr, flush=True)
            label = "batched(100)" if per == 100 else "single"
            report(
                f"ingest, {label} only ({INGEST_CONNECTIONS} conn, group {INGEST_SHARE_GROUP!r})",
                {
                    f"{label}: messages/s": o_msgs,
                    f"{label}: readings/s": o_reads,
                    f"overloaded {label}: latency p99 ms": percentile(o_lat, 0.99),
                    f"peak RSS MiB ({label})": o_rss,
                },
                args.baseline,
                args.save,
            )
            return
        single = single_messages(args.single, base_ms)
        s_msgs, _, s_lat, s_rss = await run_ingest_scenario(
            db_url, broker, user, pool, single, args.single, args.publishers, processes
        )
        batched = batched_messages(args.batched, base_ms - 3_600_000)
        b_msgs, b_reads, b_lat, b_rss = await run_ingest_scenario(
            db_url, broker, user, pool, batched, args.batched * 100, args.publishers, processes
        )
        paced: dict[str, float] = {}
        if args.rate_fraction > 0:
            s_rate, b_rate = s_msgs * args.rate_fraction, b_msgs * args.rate_fraction
            ps_msgs, _, ps_lat, _ = await run_ingest_scenario(
                db_url,
                broker,
                user,
                pool,
                single,
                args.single,
                args.publishers,
                processes,
                rate=s_rate,
            )
            pb_msgs, pb_reads, pb_lat, _ = await run_ingest_scenario(
                db_url,
                broker,
                user,
                pool,
                batched,
                args.batched * 100,
                args.publishers,
                processes,
                rate=b_rate,
            )
            paced = {
                "below capacity single: messages/s achieved": ps_msgs,
                "below capacity batched: readings/s achieved": pb_reads,
                "below capacity batched: messages/s achieved": pb_msgs,
                f"below capacity single @ {s_rate:.0f} msg/s offered: latency p50 ms": percentile(
                    ps_lat, 0.5
                ),
                f"below capacity single @ {s_rate:.0f} msg/s offered: latency p99 ms": percentile(
                    ps_lat, 0.99
                ),
                f"below capacity batched @ {b_rate * 100:.0f} readings/s offered: latency p50 ms": percentile(
                    pb_lat, 0.5
                ),
                f"below capacity batched @ {b_rate * 100:.0f} readings/s offered: latency p99 ms": percentile(
                    pb_lat, 0.99
                ),
                "below capacity: latency p99 ms (both)": percentile(ps_lat + pb_lat, 0.99),
            }
        forget_sessions(broker, user)
        naive = await run_naive(
            db_url, broker, user, pool, single[: args.naive], args.publishers, processes
        )
        raw = await run_mosquitto_sub(broker, user, single, args.publishers, processes)
    finally:
        for process in processes:  # whatever failed above, nothing we started survives
            stop_process(process)
        await pool.close()
        await drop_database(name)
        broker.kill()
    latencies = s_lat + b_lat
    print(f"load average after: {os.getloadavg()}", file=sys.stderr, flush=True)
    report(
        "ingest (one process, 2 cores, local broker and PostgreSQL)",
        {
            "single: messages/s": s_msgs,
            "batched(100): messages/s": b_msgs,
            "batched(100): readings/s": b_reads,
            "naive bridge: messages/s": naive,
            "mosquitto_sub -> /dev/null: messages/s": raw,
            "ingest / naive (single)": s_msgs / naive,
            "ingest / mosquitto_sub (single)": s_msgs / raw,
            "overloaded: latency p50 ms (publish->commit)": percentile(latencies, 0.5),
            "overloaded: latency p99 ms (publish->commit)": percentile(latencies, 0.99),
            "overloaded single: latency p99 ms": percentile(s_lat, 0.99),
            "overloaded batched: latency p99 ms": percentile(b_lat, 0.99),
            **paced,
            "peak RSS MiB (single)": s_rss,
            "peak RSS MiB (batched)": b_rss,
        },
        args.baseline,
        args.save,
    )


if __name__ == "__main__":
    asyncio.run(main())
