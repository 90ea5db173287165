"""The shipped single ingest (one plain persistent subscription) against a broker's in-flight
window: the broker sends at most ``max_inflight_messages`` unacknowledged messages, and ingest
acknowledges only after commit, so a batch that waited ``batch_max_ms`` for more messages than
the window holds stalled the connection for the whole wait (issue 17 part 4)."""

from __future__ import annotations

import asyncio
import time

import asyncpg

from fleetpulse.testing.mosquitto import MosquittoBroker

from .conftest import count, ingest_settings, publish, register_devices, running_ingest, wait_until

WINDOW = 10
MAX_MS = 20_000  # far longer than the test may take: only a window-full flush writes in time


def _strict_window(broker: MosquittoBroker) -> str:
    config = broker.config_file.read_text()
    broker.config_file.write_text(
        config.replace("max_inflight_messages 1000", f"max_inflight_messages {WINDOW}")
    )
    broker.restart()
    broker.add_service_client("ingest-window", "pw")
    return broker.url_for("ingest-window", "pw")


async def _stored(pool: asyncpg.Pool, tenant: str) -> int:
    return await count(pool, "SELECT count(*) FROM telemetry WHERE tenant_id = $1", tenant)


async def test_full_window_is_written_at_once_not_after_max_ms(
    database_url: str, db_pool: asyncpg.Pool, mosquitto_broker: MosquittoBroker, tenant: str
) -> None:
    url = _strict_window(mosquitto_broker)
    await register_devices(db_pool, tenant, ["d1"])
    now_ms = int(time.time() * 1000)
    messages = [
        (f"tenant/{tenant}/device/d1/telemetry", b'{"ts": %d, "metrics": {"v": %d}}' % (t, t))
        for t in range(now_ms - 3 * WINDOW, now_ms)
    ]
    shipped = {"mqtt_share_group": "", "mqtt_connections": 1, "batch_max_ms": MAX_MS}
    windowed = ingest_settings(database_url, url, mqtt_max_inflight=WINDOW, **shipped)
    async with running_ingest(windowed):
        started = time.monotonic()
        await publish(url, messages)  # three windows: each needs the acks of the one before
        await wait_until(lambda: _has(db_pool, tenant, len(messages)), timeout=10)
        assert time.monotonic() - started < MAX_MS / 1000 / 2


async def test_without_the_window_a_full_window_waits_for_max_ms(
    database_url: str, db_pool: asyncpg.Pool, mosquitto_broker: MosquittoBroker, tenant: str
) -> None:
    """Control (how it was): with the window unknown (0) a full window is written only when
    ``batch_max_ms`` ends, so the test above measures the window flush, not a fast path."""
    url = _strict_window(mosquitto_broker)
    await register_devices(db_pool, tenant, ["d1"])
    now_ms = int(time.time() * 1000)
    messages = [
        (f"tenant/{tenant}/device/d1/telemetry", b'{"ts": %d, "metrics": {"v": 1}}' % t)
        for t in range(now_ms - WINDOW, now_ms)
    ]
    shipped = {"mqtt_share_group": "", "mqtt_connections": 1, "batch_max_ms": 3000}
    unwindowed = ingest_settings(database_url, url, mqtt_max_inflight=0, **shipped)
    async with running_ingest(unwindowed):
        await publish(url, messages)
        await _pause(1.0)
        assert await _stored(db_pool, tenant) == 0  # the batch still waits for max_ms
        await wait_until(lambda: _has(db_pool, tenant, len(messages)), timeout=10)


async def _has(pool: asyncpg.Pool, tenant: str, expected: int) -> bool:
    return await _stored(pool, tenant) >= expected


async def _pause(seconds: float) -> None:
    await asyncio.sleep(seconds)
