"""No loss with the shipped single ingest (one plain persistent subscription, QoS 1, ack after
commit) and its pipelined completion (``committed_batches``: a committed batch is forwarded and
acknowledged while the next ones are written): the broker restarts (SIGTERM, sessions saved)
mid-stream while batches are committed but not yet acknowledged. Every published message is
stored exactly once and reaches the evaluator queue; the redelivered ones count as duplicates."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from fleetpulse.ingest.bootstrap import App, bootstrap
from fleetpulse.ingest.settings import Settings
from fleetpulse.testing.mosquitto import MosquittoBroker

from .conftest import count, ingest_settings, publish, register_devices, wait_until

DEVICES = 20
BEFORE, AFTER = 6000, 1000


class GatedForwarder:
    """Stands in for the evaluator queue; accepts nothing until ``gate`` opens, so committed
    batches wait to be acknowledged (and new ones wait for a free slot) meanwhile."""

    enabled = True

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.forwarded: list[tuple[str, int]] = []

    async def forward(self, records: list[dict[str, Any]]) -> None:
        await self.gate.wait()
        self.forwarded += [(r["device_id"], r["seq"]) for r in records]


@asynccontextmanager
async def ingest_with(settings: Settings, forwarder: GatedForwarder) -> AsyncIterator[App]:
    stop = asyncio.Event()
    async with bootstrap(settings) as ingest:
        ingest.pipeline._forwarder = forwarder
        await ingest.store.ensure_partitions()
        task = asyncio.create_task(ingest.run(stop))
        try:
            yield ingest
        finally:
            forwarder.gate.set()  # a failed test must not leave batches blocked
            stop.set()
            await asyncio.wait_for(task, 30)


def _messages(tenant: str, first: int, n: int, base_ms: int) -> list[tuple[str, bytes]]:
    return [
        (
            f"tenant/{tenant}/device/d{i % DEVICES}/telemetry",
            b'{"ts": %d, "seq": %d, "metrics": {"v": %d}}' % (base_ms - i, i, i),
        )
        for i in range(first, first + n)
    ]


async def test_broker_restart_mid_stream_stores_every_message_once(
    database_url: str, db_pool: asyncpg.Pool, mosquitto_broker: MosquittoBroker, tenant: str
) -> None:
    mosquitto_broker.add_service_client("ingest-restart", "pw")
    url = mosquitto_broker.url_for("ingest-restart", "pw")
    await register_devices(db_pool, tenant, [f"d{i}" for i in range(DEVICES)])
    shipped = Settings.model_fields  # the defaults of writers / committed_batches are shipped
    settings = ingest_settings(
        database_url,
        url,
        mqtt_client_id=f"restart-{uuid.uuid4().hex[:8]}",
        mqtt_share_group="",
        mqtt_connections=1,
        batch_max_rows=200,
        batch_max_ms=5000,  # batches close full, not on time
        rate_limit_per_s=100_000,
        rate_limit_burst=100_000,
    )
    assert settings.writers == shipped["writers"].default
    assert settings.committed_batches == shipped["committed_batches"].default >= 2
    forwarder = GatedForwarder()
    in_flight_batches = settings.writers + settings.committed_batches
    base_ms = int(time.time() * 1000)
    stored = "SELECT count(*) FROM telemetry WHERE tenant_id = $1"
    async with ingest_with(settings, forwarder) as ingest:
        assert ingest.mqtt is not None
        await wait_until(lambda: _true(ingest.mqtt is not None and ingest.mqtt.ready), 10)
        await publish(url, _messages(tenant, 0, BEFORE, base_ms))
        # every batch slot holds a committed batch waiting to be forwarded and acknowledged
        await wait_until(lambda: _at_least(db_pool, tenant, 1), timeout=30)
        at_restart = await _settled(db_pool, tenant)
        mosquitto_broker.restart()  # graceful: the session and its queue are saved
        await wait_until(lambda: _true(ingest.mqtt is not None and ingest.mqtt.ready), 20)
        forwarded_at_restart = len(forwarder.forwarded)
        forwarder.gate.set()
        await publish(url, _messages(tenant, BEFORE, AFTER, base_ms))
        await wait_until(lambda: _at_least(db_pool, tenant, BEFORE + AFTER), timeout=60)
        await asyncio.sleep(1.0)  # anything more would be a bug
        duplicates = ingest.metrics.stats.duplicates
    total = BEFORE + AFTER
    print(f"stored at restart {at_restart}, forwarded {forwarded_at_restart}, dups {duplicates}")
    assert 0 < at_restart <= in_flight_batches * settings.batch_max_rows, "writes unbounded"
    assert at_restart < BEFORE, "the restart was not mid-stream"
    assert forwarded_at_restart == 0
    assert duplicates >= at_restart, "the committed, unacknowledged messages were redelivered"
    assert await count(db_pool, stored, tenant) == total
    distinct = "SELECT count(DISTINCT seq) FROM telemetry WHERE tenant_id = $1"
    assert await count(db_pool, distinct, tenant) == total
    assert await count(db_pool, "SELECT count(*) FROM quarantine") == 0
    # the evaluator gets every reading once: a redelivered, already stored one is a duplicate
    assert sorted(s for _, s in forwarder.forwarded) == list(range(total))


async def _settled(pool: asyncpg.Pool, tenant: str) -> int:
    """The stored count once it stopped growing for a second."""
    sql = "SELECT count(*) FROM telemetry WHERE tenant_id = $1"
    last = -1
    while (now := await count(pool, sql, tenant)) != last:
        last = now
        await asyncio.sleep(1.0)
    return now


async def _true(value: bool) -> bool:
    return value


async def _at_least(pool: asyncpg.Pool, tenant: str, n: int) -> bool:
    return await count(pool, "SELECT count(*) FROM telemetry WHERE tenant_id = $1", tenant) >= n
