"""The store's learned device keys and metric ids are bounded maps: one writer clearing them
while another is suspended learning a key must not make that other batch fail."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from fleetpulse.ingest.batch import Batch, Envelope, QuarantineThrottle
from fleetpulse.ingest.domain import Accepted, Record
from fleetpulse.ingest.store import DEVICE_KEYS, PostgresTelemetryStore


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
    db_pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = PostgresTelemetryStore(db_pool)
    known = [f"known-{i}" for i in range(5)]
    await store.write(_batch(known))  # these devices' keys are now learned
    # writer A's key lookup (it has a new device) takes 0.5 s in the database
    monkeypatch.setattr(
        "fleetpulse.ingest.store.DEVICE_KEYS",
        DEVICE_KEYS + ", pg_sleep(CASE WHEN 'new-a' = ANY($2) THEN 0.5 ELSE 0 END)",
    )
    a = asyncio.create_task(store.write(_batch([*known, "new-a"])))
    await asyncio.sleep(0.2)  # A has read the cache and waits for its new key
    store._interned.MAX_DEVICES = 0  # so writer B's learning clears the cache
    await store.write(_batch(["new-b1", "new-b2"]))
    assert store._interned.devices.keys() == {("acme", "new-b1"), ("acme", "new-b2")}
    assert (await a).duplicates == 0
    assert await db_pool.fetchval("SELECT count(*) FROM telemetry_readings") == 5 + 6 + 2
