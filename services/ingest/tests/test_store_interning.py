"""The store's learned device keys and metric ids are bounded maps: one writer clearing them
while another is suspended learning a key must not make that other batch fail."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg

from fleetpulse.ingest.batch import Batch, Envelope, QuarantineThrottle
from fleetpulse.ingest.domain import Accepted, Record
from fleetpulse.ingest.store import PostgresTelemetryStore


def _batch(devices: list[str]) -> Batch:
    batch = Batch(QuarantineThrottle(50), forward=False)
    now = datetime.now(UTC)
    received = int(now.timestamp() * 1_000_000)
    for i, device in enumerate(devices):
        at = int((now - timedelta(seconds=i)).timestamp() * 1_000_000)
        record = Record("reading", "acme", device, at, None, {"t": float(i), "ok": True})
        batch.add(Envelope(None, "t", b"", received), Accepted([record]))
    return batch


async def test_a_writer_clearing_the_maps_does_not_fail_a_writer_still_learning(
    db_pool: asyncpg.Pool,
) -> None:
    store = PostgresTelemetryStore(db_pool)
    known = [f"known-{i}" for i in range(5)]
    await store.write(_batch(known))  # these devices' keys are now learned
    learning, resume = asyncio.Event(), asyncio.Event()
    learn = store._learn_devices

    async def slow_learn(conn: asyncpg.Connection, devices: list[tuple[str, str]]) -> None:
        if ("acme", "new-a") in devices:  # writer A: suspended while it learns its new device
            learning.set()
            await resume.wait()
        await learn(conn, devices)

    store._learn_devices = slow_learn  # type: ignore[method-assign]
    a = asyncio.create_task(store.write(_batch([*known, "new-a"])))
    await learning.wait()
    store._interned.MAX_DEVICES = 0  # writer B's bound check clears the map
    b = asyncio.create_task(store.write(_batch(["new-b1", "new-b2"])))
    await asyncio.sleep(0.3)  # B gets every chance to run now
    resume.set()
    written = await asyncio.gather(a, b)
    assert [w.duplicates for w in written] == [0, 0]
    assert await db_pool.fetchval("SELECT count(*) FROM telemetry_readings") == 5 + 6 + 2
