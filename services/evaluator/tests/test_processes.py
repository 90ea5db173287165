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
from fleetpulse.common.rules.domain import OpenAlert, Record, Rule, evaluate_device
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
    resources = await declare_platform(sqs_client, sns_client, queue_prefix)
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


async def add_rule(
    pool: asyncpg.Pool,
    rule_id: str,
    kind: str,
    selector: dict[str, Any] | None = None,
    **definition: Any,
) -> None:
    now = datetime.now(UTC)
    await pool.execute(
        "INSERT INTO rules (tenant_id, rule_id, name, kind, severity, definition, device_selector,"
        " created_at, updated_at, version) VALUES ($1, $2, $2, $3, 'major', $4, $5, $6, $6, 1)",
        T,
        rule_id,
        kind,
        definition,
        {"tags": selector} if selector else {},
        now,
    )


async def add_devices(
    pool: asyncpg.Pool, devices: list[str], tags: dict[str, Any] | None = None
) -> None:
    now = datetime.now(UTC)
    await pool.executemany(
        "INSERT INTO devices (tenant_id, device_id, tags, registered_at, updated_at, version) "
        "VALUES ($1, $2, $3, $4, $4, 1)",
        [(T, d, tags or {}, now) for d in devices],
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
    evaluators.start()
    await add_devices(db_pool, ["quiet"])
    await add_rule(db_pool, "silent", "no_data", timeout_s=3)
    await publisher.publish([record("quiet", datetime.now(UTC), "heartbeat")])
    last = await wait_for(db_pool, "SELECT last_heartbeat_at FROM evaluator_devices")
    opened_at = await wait_for(db_pool, "SELECT recorded_at FROM events WHERE type = 'AlertOpened'")
    latency = (opened_at - last).total_seconds()
    print(
        f"silent device: AlertOpened committed {latency:.2f}s after the last heartbeat (timeout 3s)"
    )
    assert 3 <= latency <= 3 + 5
    assert await db_pool.fetchval("SELECT opened_at FROM alerts") == last + timedelta(seconds=3)


async def test_device_that_never_reported_alerts_from_its_registration(
    db_pool: asyncpg.Pool,
    evaluators: Evaluators,
) -> None:
    """Fault kind (issue 12 case 8): a no_data deadline only existed for devices that had sent
    something, so a device that never reported never alerted. Its deadline starts at the later
    of registration and rule creation; the device the rule does not select stays quiet."""
    await add_devices(db_pool, ["never"], tags={"site": "here"})
    await add_devices(db_pool, ["other"], tags={"site": "elsewhere"})
    await add_rule(db_pool, "silent", "no_data", selector={"site": "here"}, timeout_s=3)
    armed = await db_pool.fetchval("SELECT updated_at FROM rules")
    evaluators.start()
    opened_at = await wait_for(db_pool, "SELECT recorded_at FROM events WHERE type = 'AlertOpened'")
    assert 3 <= (opened_at - armed).total_seconds() <= 3 + 5
    assert await db_pool.fetchval("SELECT array_agg(device_id) FROM alerts") == ["never"]
    assert await db_pool.fetchval("SELECT opened_at FROM alerts") == armed + timedelta(seconds=3)


async def test_no_data_is_not_starved_by_a_parked_fleet(
    db_pool: asyncpg.Pool,
    evaluators: Evaluators,
    publisher: SqsBatchPublisher,
) -> None:
    """Fault kind (issue 12 case 12): the silence query took the first 1,000 (device, rule)
    pairs of all tenants before applying the selector, so 1,000 silent devices no rule selects
    starved the one device a rule does select. Positive control: that device alerts in time;
    none of the parked ones does."""
    parked = [f"parked-{i:04d}" for i in range(1000)]
    await add_devices(db_pool, parked, tags={"fleet": "parked"})
    evaluators.start()
    long_ago = datetime.now(UTC) - timedelta(hours=1)  # the parked fleet reported once, long ago
    await publisher.publish([record(d, long_ago, "heartbeat") for d in parked])
    await wait_for(db_pool, "SELECT count(*) = 1000 FROM evaluator_devices")
    await add_devices(db_pool, ["watched"], tags={"fleet": "live"})
    await add_rule(db_pool, "silent", "no_data", selector={"fleet": "live"}, timeout_s=3)
    sent = datetime.now(UTC)
    await publisher.publish([record("watched", sent, "heartbeat")])
    await wait_for(db_pool, "SELECT true FROM evaluator_devices WHERE device_id = 'watched'")
    opened_at = await wait_for(db_pool, "SELECT recorded_at FROM events WHERE type = 'AlertOpened'")
    assert 3 <= (opened_at - sent).total_seconds() <= 3 + 5
    await asyncio.sleep(1)
    assert await db_pool.fetch("SELECT rule_id, device_id FROM alerts") == [("silent", "watched")]


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
            states[device], seen[device] = out.states, out.seen
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


async def test_deleting_a_rule_resolves_its_open_alert(
    db_pool: asyncpg.Pool,
    evaluators: Evaluators,
    publisher: SqsBatchPublisher,
) -> None:
    """Fault kind (issue 12 case 11): deleting a rule left its alerts open forever. The open
    alert resolves with reason ``rule_deleted``; the alert of the rule that stays is untouched."""
    await add_devices(db_pool, ["d1"])
    await add_rule(db_pool, "hot", "threshold", metric="temp_c", operator="gt", threshold=50)
    await add_rule(db_pool, "warm", "threshold", metric="temp_c", operator="gt", threshold=40)
    evaluators.start()
    await publisher.publish([record("d1", datetime.now(UTC), temp_c=99)])
    await wait_for(db_pool, "SELECT count(*) = 2 FROM alerts WHERE status = 'open'")
    await db_pool.execute("DELETE FROM rules WHERE rule_id = 'hot'")  # as RuleDeleted projects
    reason = await wait_for(
        db_pool,
        "SELECT details->>'resolved_reason' FROM alerts WHERE rule_id = 'hot' AND status = 'resolved'",
    )
    assert reason == "rule_deleted"
    assert await db_pool.fetchval("SELECT status FROM alerts WHERE rule_id = 'warm'") == "open"
