"""Helpers for ingest tests: devices in the registry table, a service MQTT user, ingest in-process."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import pytest

from fleetpulse.common.mqtt import MqttEndpoint, aiomqtt_client
from fleetpulse.ingest.bootstrap import App, bootstrap
from fleetpulse.ingest.settings import Settings
from fleetpulse.testing.mosquitto import MosquittoBroker, unique_username


async def register_devices(
    pool: asyncpg.Pool, tenant: str, devices: list[str], status: str = "active"
) -> None:
    """Stand-in for the catalog projection: rows in ``devices``."""
    await pool.executemany(
        """INSERT INTO devices (tenant_id, device_id, status, registered_at, updated_at, version)
           VALUES ($1, $2, $3, now(), now(), 1)
           ON CONFLICT (tenant_id, device_id) DO UPDATE SET status = EXCLUDED.status,
               updated_at = now(), version = devices.version + 1""",
        [(tenant, d, status) for d in devices],
    )


async def count(pool: asyncpg.Pool, sql: str, *args: Any) -> int:
    return int(await pool.fetchval(sql, *args))


async def wait_until(
    predicate: Callable[[], Any], timeout: float = 15.0, every: float = 0.1
) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        if await predicate():
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(every)


@pytest.fixture
def mqtt_url(mosquitto: MosquittoBroker) -> str:
    user = unique_username("ingest")
    mosquitto.add_service_client(user, "pw")
    return mosquitto.url_for(user, "pw")


@pytest.fixture
def tenant() -> str:
    return f"t{uuid.uuid4().hex[:8]}"


def ingest_settings(database_url: str, mqtt_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "mqtt_url": mqtt_url,
        "mqtt_client_id": f"ingest-{uuid.uuid4().hex[:8]}",
        "mqtt_share_group": f"g{uuid.uuid4().hex[:8]}",
        "mqtt_connections": 2,
        "forward_to_evaluator": False,
        "health_port": 0,
        "batch_max_ms": 50,
        "registry_poll_ms": 500,
    }
    values.update(overrides)
    return Settings.model_validate(values)


@asynccontextmanager
async def running_ingest(settings: Settings) -> AsyncIterator[App]:
    stop = asyncio.Event()
    async with bootstrap(settings) as ingest:
        await ingest.store.ensure_partitions()
        task = asyncio.create_task(ingest.run(stop))
        assert ingest.mqtt is not None
        await wait_until(lambda: _true(ingest.mqtt is not None and ingest.mqtt.ready), 10)
        try:
            yield ingest
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)


async def _true(value: bool) -> bool:
    return value


async def publish(mqtt_url: str, messages: list[tuple[str, bytes]], qos: int = 1) -> None:
    async with aiomqtt_client(MqttEndpoint.parse(mqtt_url), max_inflight_messages=1000) as client:
        for topic, payload in messages:
            await client.publish(topic, payload, qos=qos)
