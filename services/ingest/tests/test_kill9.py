"""At least once, proven: SIGKILL the ingest process mid-stream; after a restart nothing is missing."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator

import asyncpg
import httpx
import pytest

from fleetpulse.testing.ports import free_port

from .conftest import count, publish, register_devices, wait_until

TOTAL = 10_000
DEVICES = 100


def start_ingest(env: dict[str, str]) -> subprocess.Popen[bytes]:
    log = open(f"/tmp/ingest-kill9-{os.getpid()}.log", "ab")  # noqa: SIM115
    return subprocess.Popen(["fleetpulse-ingest"], env=env, stdout=log, stderr=subprocess.STDOUT)


async def wait_ready(port: int) -> None:
    async def ready() -> bool:
        try:
            async with httpx.AsyncClient(trust_env=False) as client:
                return (await client.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200
        except httpx.HTTPError:
            return False

    await wait_until(ready, timeout=20, every=0.2)


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.slow
async def test_sigkill_mid_stream_loses_nothing(
    database_url: str,
    db_pool: asyncpg.Pool,
    mqtt_url: str,
    tenant: str,
    processes: list[subprocess.Popen[bytes]],
) -> None:
    devices = [f"d{i}" for i in range(DEVICES)]
    await register_devices(db_pool, tenant, devices)
    port = free_port()
    env = {
        **os.environ,
        "FLEETPULSE_DATABASE_URL": database_url,
        "FLEETPULSE_MQTT_URL": mqtt_url,
        "FLEETPULSE_MQTT_CLIENT_ID": f"kill-{uuid.uuid4().hex[:8]}",
        "FLEETPULSE_MQTT_SHARE_GROUP": f"g{uuid.uuid4().hex[:8]}",
        "FLEETPULSE_HEALTH_PORT": str(port),
        "FLEETPULSE_FORWARD_TO_EVALUATOR": "false",
        "FLEETPULSE_RATE_LIMIT_PER_S": "100000",
        "FLEETPULSE_RATE_LIMIT_BURST": "100000",
        "FLEETPULSE_BATCH_MAX_ROWS": "500",
        "FLEETPULSE_LOG_LEVEL": "WARNING",
    }
    processes.append(start_ingest(env))
    await wait_ready(port)
    base_ms = int(time.time() * 1000)
    messages = [
        (
            f"tenant/{tenant}/device/{devices[i % DEVICES]}/telemetry",
            b'{"ts": %d, "seq": %d, "metrics": {"v": %d}}' % (base_ms - i // DEVICES, i, i),
        )
        for i in range(TOTAL)
    ]
    publisher = asyncio.create_task(_publish_in_chunks(mqtt_url, messages))
    await wait_until(lambda: _at_least(db_pool, 2000), timeout=30, every=0.02)
    processes[0].send_signal(signal.SIGKILL)
    processes[0].wait()
    killed_at = await count(db_pool, "SELECT count(*) FROM telemetry")
    print(f"rows committed at SIGKILL: {killed_at} of {TOTAL}")
    await publisher
    processes.append(start_ingest(env))
    await wait_ready(port)
    await wait_until(lambda: _at_least(db_pool, TOTAL), timeout=40)
    await asyncio.sleep(1.0)  # anything more would be a bug
    assert killed_at < TOTAL
    assert await count(db_pool, "SELECT count(*) FROM telemetry") == TOTAL
    assert await count(db_pool, "SELECT count(DISTINCT seq) FROM telemetry") == TOTAL
    assert await count(db_pool, "SELECT count(*) FROM quarantine") == 0


async def _publish_in_chunks(url: str, messages: list[tuple[str, bytes]]) -> None:
    chunks = [messages[i::4] for i in range(4)]
    await asyncio.gather(*(publish(url, chunk) for chunk in chunks))


async def _at_least(pool: asyncpg.Pool, n: int) -> bool:
    return await count(pool, "SELECT count(*) FROM telemetry") >= n
