"""Event store against a real PostgreSQL: versions, concurrency, gap-free tailing."""

from __future__ import annotations

import asyncio

import pytest

from fleetpulse.common.eventstore import (
    NO_STREAM,
    ConcurrencyError,
    NewEvent,
    PostgresEventStore,
)


async def test_append_assigns_consecutive_versions(event_store: PostgresEventStore) -> None:
    first = await event_store.append(
        "device-t1-d1",
        [NewEvent("DeviceRegistered", {"a": 1})],
        tenant_id="t1",
        expected_version=NO_STREAM,
    )
    more = await event_store.append(
        "device-t1-d1", [NewEvent("X", {}), NewEvent("Y", {})], tenant_id="t1", expected_version=1
    )
    assert [e.version for e in first + more] == [1, 2, 3]
    stream = await event_store.read_stream("device-t1-d1")
    assert [e.type for e in stream] == ["DeviceRegistered", "X", "Y"]
    assert stream[0].data == {"a": 1}


async def test_stale_expected_version_raises(event_store: PostgresEventStore) -> None:
    await event_store.append("s-1", [NewEvent("A", {})], tenant_id="t", expected_version=NO_STREAM)
    with pytest.raises(ConcurrencyError) as info:
        await event_store.append(
            "s-1", [NewEvent("B", {})], tenant_id="t", expected_version=NO_STREAM
        )
    assert info.value.actual == 1
    assert await event_store.stream_version("s-1") == 1


async def test_fifty_concurrent_appenders_lose_nothing(event_store: PostgresEventStore) -> None:
    async def append_with_retry(i: int) -> None:
        while True:
            version = await event_store.stream_version("hot")
            try:
                await event_store.append(
                    "hot", [NewEvent("Bumped", {"i": i})], tenant_id="t", expected_version=version
                )
                return
            except ConcurrencyError:
                await asyncio.sleep(0)

    await asyncio.gather(*(append_with_retry(i) for i in range(60)))
    stream = await event_store.read_stream("hot")
    assert [e.version for e in stream] == list(range(1, 61))
    assert sorted(e.data["i"] for e in stream) == list(range(60))
