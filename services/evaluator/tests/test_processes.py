"""``fleetpulse-evaluator`` as real processes on SQS (moto) and PostgreSQL: a silent device
alerts in time, a duration survives a crash, two replicas produce exactly one replica's alerts."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from fleetpulse.common.messaging import SqsBatchPublisher, declare_platform
from fleetpulse.evaluator.domain import OpenAlert, Record, Rule, evaluate_device
from fleetpulse.testing.ports import free_port, wait_for_port

pytestmark = pytest.mark.slow
T = "acme"
SCRIPT = str(Path(sys.executable).parent / "fleetpulse-evaluator")


class Evaluators:
    """Starts evaluator processes and stops every one of them at the end of the test."""

    def __init__(self, database_url: str, moto: str, prefix: str, tmp: Path) -> None:
        self._env = {
            **os.environ,
            "FLEETPULSE_DATABASE_URL": database_url,
            "FLEETPULSE_AWS_ENDPOINT_URL": moto,
            "FLEETPULSE_QUEUE_PREFIX": prefix,
            "FLEETPULSE_AUTO_CREATE": "true",
            "FLEETPULSE_TICK_INTERVAL_S": "0.5",
            "FLEETPULSE_DURATION_GRACE_S": "0",
            "FLEETPULSE_CATALOG_REFRESH_S": "0.5",
            "FLEETPULSE_VISIBILITY_TIMEOUT_S": "5",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
        }
        self._tmp = tmp
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self) -> subprocess.Popen[bytes]:
        port = free_port()
        log = (self._tmp / f"evaluator-{len(self.processes)}.log").open("wb")
        process = subprocess.Popen(
            [SCRIPT],
            env={**self._env, "FLEETPULSE_HEALTH_PORT": str(port)},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.processes.append(process)
        wait_for_port(port, timeout=30)
        return process

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def evaluators(
    database_url: str, moto_server: str, queue_prefix: str, tmp_path: Path
) -> Iterator[Evaluators]:
    procs = Evaluators(database_url, moto_server, queue_prefix, tmp_path)
    try:
        yield procs
    finally:
        procs.stop_all()


@pytest.fixture
async def publisher(sqs_client: Any, sns_client: Any, queue_prefix: str) -> SqsBatchPublisher:
    resources = await declare_platform(sqs_client, sns_client, queue_prefix, visibility_timeout_s=5)
    return SqsBatchPublisher(sqs_client, resources.evaluator.url)


def record(device: str, ts: datetime, kind: str = "reading", **metrics: Any) -> dict[str, Any]:
    return {
        "type": kind,
        "tenant_id": T,
        "device_id": device,
        "ts": ts.isoformat(),
        "seq": None,
        "metrics": metrics,
    }


async def add_rule(pool: asyncpg.Pool, rule_id: str, kind: str, **definition: Any) -> None:
    now = datetime.now(UTC)
    await pool.execute(
        "INSERT INTO rules (tenant_id, rule_id, name, kind, severity, definition, created_at, "
        "updated_at, version) VALUES ($1, $2, $2, $3, 'major', $4, $5, $5, 1)",
        T,
        rule_id,
        kind,
        definition,
        now,
    )


async def add_devices(pool: asyncpg.Pool, devices: list[str]) -> None:
    now = datetime.now(UTC)
    await pool.executemany(
        "INSERT INTO devices (tenant_id, device_id, tags, registered_at, updated_at, version) "
        "VALUES ($1, $2, '{}', $3, $3, 1)",
        [(T, d, now) for d in devices],
    )


async def wait_for(pool: asyncpg.Pool, query: str, *args: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await pool.fetchval(query, *args)
        if value:
            return value
        await asyncio.sleep(0.1)
    raise TimeoutError(query)


async def test_silent_device_alerts_within_timeout_plus_5s(
    db_pool: asyncpg.Pool,
    evaluators: Evaluators,
    publisher: SqsBatchPublisher,
) -> None:
    await add_devices(db_pool, ["quiet"])
    await add_rule(db_pool, "silent", "no_data", timeout_s=3)
    evaluators.start()
    last = datetime.now(UTC)
    await publisher.publish([record("quiet", last, "heartbeat")])
    await wait_for(db_pool, "SELECT true FROM evaluator_devices WHERE last_seen = $1", last)
    opened_at = await wait_for(db_pool, "SELECT recorded_at FROM events WHERE type = 'AlertOpened'")
    latency = (opened_at - last).total_seconds()
    print(
        f"silent device: AlertOpened committed {latency:.2f}s after the last heartbeat (timeout 3s)"
    )
    assert 3 <= latency <= 3 + 5
    assert await db_pool.fetchval("SELECT opened_at FROM alerts") == last + timedelta(seconds=3)


async def test_duration_begun_before_a_crash_opens_on_time(
    db_pool: asyncpg.Pool,
    evaluators: Evaluators,
    publisher: SqsBatchPublisher,
) -> None:
    await add_devices(db_pool, ["hot"])
    await add_rule(
        db_pool, "slow", "threshold", metric="temp_c", operator="gt", threshold=80, duration_s=6
    )
    first = evaluators.start()
    began = datetime.now(UTC)
    await publisher.publish([record("hot", began, temp_c=90)])
    await wait_for(db_pool, "SELECT true FROM evaluator_rule_state WHERE status = 'pending'")
    first.send_signal(signal.SIGKILL)  # a crash: nothing in memory survives
    first.wait()
    await asyncio.sleep(1.5)
    evaluators.start()
    restarted = datetime.now(UTC)
    await publisher.publish([record("hot", began + timedelta(seconds=2), temp_c=91)])
    committed = await wait_for(db_pool, "SELECT recorded_at FROM events WHERE type = 'AlertOpened'")
    opened_at = await db_pool.fetchval("SELECT opened_at FROM alerts")
    print(
        f"restart: pending since {began.time()}, restarted +{(restarted - began).total_seconds():.1f}s, "
        f"AlertOpened committed +{(committed - began).total_seconds():.2f}s"
    )
    assert opened_at == began + timedelta(seconds=6)
    assert committed < began + timedelta(seconds=6 + 2.5)  # not restart time + 6 s
    assert await db_pool.fetchval("SELECT count(*) FROM alerts") == 1


def _expected(steps: list[list[dict[str, Any]]]) -> list[tuple[str, str]]:
    rules = [
        Rule(T, "hot", "hot", "threshold", "major", metric="temp_c", operator="gt", threshold=80),
        Rule(
            T,
            "band",
            "band",
            "threshold",
            "major",
            metric="temp_c",
            operator="gt",
            threshold=60,
            clear_threshold=40,
        ),
    ]
    states: dict[str, Any] = {}
    seen: dict[str, Any] = {}
    events = []
    for step in steps:
        for raw in step:
            device = raw["device_id"]
            out = evaluate_device(
                rules,
                states.get(device, {}),
                seen.get(device),
                [Record(T, device, datetime.fromisoformat(raw["ts"]), raw["metrics"])],
            )
            states[device], seen[device] = out.states, out.last_seen
            events += [
                (
                    "AlertOpened" if isinstance(d, OpenAlert) else "AlertResolved",
                    f"{d.rule.rule_id}/{device}",
                )
                for d in out.decisions
            ]
    return sorted(events)


async def test_two_replicas_produce_exactly_the_alerts_of_one(
    db_pool: asyncpg.Pool,
    evaluators: Evaluators,
    publisher: SqsBatchPublisher,
) -> None:
    devices = [f"d{i:02d}" for i in range(40)]
    await add_devices(db_pool, devices)
    await add_rule(db_pool, "hot", "threshold", metric="temp_c", operator="gt", threshold=80)
    await add_rule(
        db_pool,
        "band",
        "threshold",
        metric="temp_c",
        operator="gt",
        threshold=60,
        clear_threshold=40,
    )
    evaluators.start()
    evaluators.start()
    values = [30, 90, 70, 50, 35, 85, 99, 20, 65, 10]
    base = datetime.now(UTC) - timedelta(minutes=1)
    steps = [
        [
            record(d, base + timedelta(seconds=s), temp_c=values[(s + i) % len(values)])
            for i, d in enumerate(devices)
        ]
        for s in range(len(values))
    ]
    for s, step in enumerate(steps):
        # every record twice, in messages split differently, so both replicas race on each device
        for chunk in (step[:20], step[20:], step[::2], step[1::2]):
            await publisher.publish(chunk)
        await wait_for(
            db_pool,
            "SELECT count(*) = $1 FROM evaluator_devices WHERE last_seen = $2",
            len(devices),
            base + timedelta(seconds=s),
        )
    await asyncio.sleep(2)  # let the duplicates drain
    rows = await db_pool.fetch(
        "SELECT type, (data->>'rule_id') || '/' || (data->>'device_id') AS key FROM events "
        "WHERE stream_id LIKE 'alert-%'"
    )
    assert sorted((r["type"], r["key"]) for r in rows) == _expected(steps)
    assert (
        await db_pool.fetchval(
            "SELECT count(*) FROM (SELECT fingerprint FROM alerts WHERE status = 'open' "
            "GROUP BY 1 HAVING count(*) > 1) x"
        )
        == 0
    )
