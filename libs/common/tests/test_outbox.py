"""Outbox relay against real PostgreSQL and moto: every committed event reaches SNS -> SQS."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import pytest

from fleetpulse.common.eventstore import NewEvent, PostgresEventStore, metadata, read_checkpoint
from fleetpulse.common.messaging import (
    OutboxRelay,
    PlatformResources,
    SnsPublisher,
    declare_platform,
    message_to_event,
)
from fleetpulse.testing.moto import QueueDrain, receive_all

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
RELAY = "outbox-relay"

# Runs one relay until killed: python -c RUNNER <dsn> <moto url> <topic arn> <lease s>
RUNNER = """
import asyncio, sys
from fleetpulse.common.aws import AwsConfig, aws_client
from fleetpulse.common.db import create_pool
from fleetpulse.common.messaging import OutboxRelay, SnsPublisher

async def main() -> None:
    dsn, endpoint, topic, lease_s = sys.argv[1:5]
    pool = await create_pool(dsn, max_size=2)
    async with aws_client("sns", AwsConfig(endpoint_url=endpoint)) as sns:
        relay = OutboxRelay(pool, SnsPublisher(sns, topic), dsn=dsn, batch_size=20,
                            lock_retry_s=0.2, lease_s=float(lease_s))
        await relay.run(asyncio.Event())

asyncio.run(main())
"""


async def _append_alerts(
    store: PostgresEventStore, count: int, *, tenant: str = "t1", per_stream: int = 10
) -> set[str]:
    ids: set[str] = set()
    for start in range(0, count, per_stream):
        events = [
            NewEvent(
                "AlertOpened",
                {"alert_id": f"a{start}", "n": start + i},
                metadata(actor="test", traceparent=TRACEPARENT),
            )
            for i in range(min(per_stream, count - start))
        ]
        await store.append(f"alert-{tenant}-a{start}", events, tenant_id=tenant)
        ids.update(str(e.event_id) for e in events)
    return ids


@asynccontextmanager
async def relaying(relay: OutboxRelay) -> AsyncIterator[asyncio.Event]:
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    try:
        yield stop
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


async def until(predicate: Callable[[], Any], timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


@pytest.fixture
async def platform(sqs_client: Any, sns_client: Any, queue_prefix: str) -> PlatformResources:
    return await declare_platform(sqs_client, sns_client, queue_prefix)


def _relay(
    event_store: PostgresEventStore, sns: Any, platform: PlatformResources, dsn: str, **options: Any
) -> OutboxRelay:
    defaults: dict[str, Any] = {"batch_size": 25, "lock_retry_s": 0.2}
    return OutboxRelay(
        event_store,
        SnsPublisher(sns, platform.domain_events_arn),
        dsn=dsn,
        **{**defaults, **options},
    )


async def _received_ids(sqs: Any, url: str, expected: int, timeout_s: float = 20) -> list[str]:
    messages = await receive_all(sqs, url, expected=expected, timeout_s=timeout_s)
    return [str(message_to_event(m["Body"]).event_id) for m in messages]


async def test_relay_publishes_every_event_with_routing_attributes(
    event_store: PostgresEventStore,
    database_url: str,
    sqs_client: Any,
    sns_client: Any,
    platform: PlatformResources,
) -> None:
    alert_ids = await _append_alerts(event_store, 60, tenant="acme")
    await event_store.append(
        "rule-acme-r1", [NewEvent("RuleCreated", {"rule_id": "r1"})], tenant_id="acme"
    )
    async with relaying(_relay(event_store, sns_client, platform, database_url)):
        messages = await receive_all(sqs_client, platform.dispatcher.url, expected=60, timeout_s=20)
        late = await _append_alerts(event_store, 5, tenant="acme")  # woken by NOTIFY
        messages += await receive_all(sqs_client, platform.dispatcher.url, expected=5, timeout_s=10)
    events = [message_to_event(m["Body"]) for m in messages]
    assert {str(e.event_id) for e in events} == alert_ids | late
    assert len(events) == 65  # the RuleCreated event was filtered out; no duplicates
    for message in messages:
        attributes = {k: v["StringValue"] for k, v in message["MessageAttributes"].items()}
        assert attributes == {
            "type": "AlertOpened",
            "tenant_id": "acme",
            "traceparent": TRACEPARENT,
        }
    assert await read_checkpoint(event_store.pool, RELAY) == await event_store.head_position()
    assert await receive_all(sqs_client, platform.deliveries.url, quiet_s=0.3) == []


async def test_one_leader_at_a_time_and_a_follower_takes_over(
    event_store: PostgresEventStore,
    database_url: str,
    sqs_client: Any,
    sns_client: Any,
    platform: PlatformResources,
) -> None:
    first = _relay(event_store, sns_client, platform, database_url)
    second = _relay(event_store, sns_client, platform, database_url)
    ids = await _append_alerts(event_store, 40)
    async with relaying(second):
        async with relaying(first):
            received = await _received_ids(sqs_client, platform.dispatcher.url, 40)
            assert sorted([first.is_leader, second.is_leader]) == [False, True]
        leader_left = first.is_leader is False
        more = await _append_alerts(event_store, 20)
        received += await _received_ids(sqs_client, platform.dispatcher.url, 20)
        assert second.is_leader
    assert leader_left
    assert sorted(received) == sorted(ids | more)  # every event exactly once


async def test_relay_survives_a_lost_database_connection_and_sns_errors(
    event_store: PostgresEventStore,
    database_url: str,
    sqs_client: Any,
    sns_client: Any,
    platform: PlatformResources,
) -> None:
    missing_topic = platform.domain_events_arn + "-not-yet"
    relay = OutboxRelay(
        event_store,
        SnsPublisher(sns_client, missing_topic, max_attempts=1),
        dsn=database_url,
        lock_retry_s=0.2,
    )
    ids = await _append_alerts(event_store, 10)
    async with relaying(relay):
        await asyncio.sleep(1.0)
        assert await read_checkpoint(event_store.pool, RELAY) == 0  # nothing acknowledged
    relay = _relay(event_store, sns_client, platform, database_url)
    async with relaying(relay):
        received = await _received_ids(sqs_client, platform.dispatcher.url, 10)
        await event_store.pool.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = $1 AND pid <> pg_backend_pid()",
            RELAY,
        )
        more = await _append_alerts(event_store, 10)
        received += await _received_ids(sqs_client, platform.dispatcher.url, 10)
    assert set(received) == ids | more


def _start_runner(
    dsn: str, moto_url: str, topic: str, lease_s: float = 30.0
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", RUNNER, dsn, moto_url, topic, str(lease_s)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=dict(os.environ),
    )


async def _checkpoint(pool: asyncpg.Pool) -> int:
    return await read_checkpoint(pool, RELAY)


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_kill_9_mid_run_loses_nothing(
    event_store: PostgresEventStore,
    database_url: str,
    moto_server: str,
    sqs_client: Any,
    platform: PlatformResources,
) -> None:
    ids = await _append_alerts(event_store, 300, per_stream=30)
    head = await event_store.head_position()
    async with QueueDrain(sqs_client, platform.dispatcher.url) as drain:
        runner = _start_runner(database_url, moto_server, platform.domain_events_arn)
        try:
            await until(lambda: _reached(event_store.pool, 60), timeout_s=30)
            runner.send_signal(signal.SIGKILL)
            runner.wait(10)
            killed_at = await _checkpoint(event_store.pool)
            assert 0 < killed_at < head, "the kill should land mid-run"
            ids |= await _append_alerts(event_store, 40)
            runner = _start_runner(database_url, moto_server, platform.domain_events_arn)
            await drain.wait_until(lambda messages: _event_ids(messages) >= ids, timeout_s=60)
            await asyncio.sleep(0.5)  # let stray duplicates arrive before counting them
        finally:
            runner.kill()
            runner.wait(10)
    received = [str(message_to_event(m["Body"]).event_id) for m in drain.messages]
    assert set(received) == ids  # none missing; duplicates only from the batch the kill cut short
    assert len(received) - len(ids) <= 20


def _event_ids(messages: list[dict[str, Any]]) -> set[str]:
    return {str(message_to_event(m["Body"]).event_id) for m in messages}


async def _reached(pool: asyncpg.Pool, position: int) -> bool:
    return await _checkpoint(pool) >= position


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_a_frozen_leader_loses_its_lease_and_a_follower_takes_over(
    event_store: PostgresEventStore,
    database_url: str,
    moto_server: str,
    sqs_client: Any,
    sns_client: Any,
    platform: PlatformResources,
) -> None:
    """SIGSTOP keeps the leader's socket open (the kernel still answers), so only the idle-session
    lease frees the lock; once thawed, the old leader publishes nothing the new one has not."""
    ids = await _append_alerts(event_store, 20)
    async with QueueDrain(sqs_client, platform.dispatcher.url) as drain:
        frozen = _start_runner(database_url, moto_server, platform.domain_events_arn, lease_s=2.0)
        try:
            await until(lambda: _reached(event_store.pool, 20), timeout_s=30)
            frozen.send_signal(signal.SIGSTOP)
            follower = _relay(event_store, sns_client, platform, database_url, lease_s=2.0)
            async with relaying(follower):
                ids |= await _append_alerts(event_store, 20)
                started = time.monotonic()
                await drain.wait_until(lambda messages: _event_ids(messages) >= ids, timeout_s=30)
                took_over_s = time.monotonic() - started
                assert follower.is_leader
                frozen.send_signal(signal.SIGCONT)
                ids |= await _append_alerts(event_store, 20)
                await drain.wait_until(lambda messages: _event_ids(messages) >= ids, timeout_s=30)
                await asyncio.sleep(1.0)
                assert follower.is_leader, "the thawed process took the lock back"
        finally:
            frozen.kill()
            frozen.wait(10)
    received = [str(message_to_event(m["Body"]).event_id) for m in drain.messages]
    assert set(received) == ids
    assert len(received) == len(ids)  # the frozen leader had nothing in flight: no duplicates
    assert took_over_s < 10
