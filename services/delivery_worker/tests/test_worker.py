"""DeliveryWorker against PostgreSQL and real receivers: retries, 410, exhaustion, isolation."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest_asyncio

from fleetpulse.common.crypto import SecretBox
from fleetpulse.common.webhooks import verify
from fleetpulse.delivery_worker.breaker import CircuitBreakers
from fleetpulse.delivery_worker.channels.webhook import WebhookChannel
from fleetpulse.delivery_worker.retry import MAX_ATTEMPTS
from fleetpulse.delivery_worker.service import DeadLetter, DeliveryWorker, Done, Requeue
from fleetpulse.delivery_worker.store import PostgresDeliveryStore


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest_asyncio.fixture
async def webhook() -> AsyncIterator[WebhookChannel]:
    channel = WebhookChannel(allow_private=True, timeout_s=2.0)
    yield channel
    await channel.close()


def make_worker(
    seeder: Any,
    webhook: WebhookChannel,
    clock: Clock | None = None,
    breakers: CircuitBreakers | None = None,
) -> DeliveryWorker:
    return DeliveryWorker(
        PostgresDeliveryStore(seeder.store),
        {"webhook": webhook},
        SecretBox(seeder.key),
        breakers or CircuitBreakers(),
        clock=clock or Clock(),
        rng=random.Random(1),
    )


async def test_fails_twice_then_succeeds_with_the_same_webhook_id(
    seeder: Any, webhook: WebhookChannel, receiver_factory: Callable[..., Any]
) -> None:
    receiver = await receiver_factory(answers=[(500, {}), (503, {"Retry-After": "120"})])
    integration = await seeder.integration(url=receiver.url)
    scheduled = await seeder.delivery(integration)
    clock = Clock()
    worker = make_worker(seeder, webhook, clock)
    first = await worker.handle(scheduled)
    assert isinstance(first, Requeue)
    assert 4 <= first.delay_s <= 6
    early = await worker.handle(scheduled)  # a redelivered copy before it is due: no attempt
    assert isinstance(early, Requeue)
    assert len(receiver.received) == 1
    clock.now += timedelta(seconds=first.delay_s)
    second = await worker.handle(scheduled)
    assert second == Requeue(120)
    clock.now += timedelta(seconds=120)
    assert await worker.handle(scheduled) == Done()
    assert await worker.handle(scheduled) == Done()  # finished: a late copy changes nothing
    ids = {r.headers["webhook-id"] for r in receiver.received}
    assert ids == {scheduled.data["delivery_id"]}
    for got in receiver.received:
        verify(seeder.secrets[integration], got.headers, got.body)
    assert await seeder.stream_types(scheduled.data["delivery_id"]) == [
        "DeliveryScheduled",
        "DeliveryAttempted",
        "DeliveryAttempted",
        "DeliveryAttempted",
        "DeliverySucceeded",
    ]
    attempts = await seeder.store.pool.fetch(
        "SELECT attempt, status_code, error FROM delivery_attempts ORDER BY attempt"
    )
    assert [(a["attempt"], a["status_code"]) for a in attempts] == [(1, 500), (2, 503), (3, 204)]


async def test_sealed_custom_headers_are_sent_in_the_clear_only_to_the_endpoint(
    seeder: Any, webhook: WebhookChannel, receiver_factory: Callable[..., Any]
) -> None:
    receiver = await receiver_factory()
    headers = {"Authorization": "Bearer on-call-token", "X-Team": "ops"}
    integration = await seeder.integration(url=receiver.url, custom_headers=headers)
    stored = await seeder.store.pool.fetchval(
        "SELECT config FROM integrations WHERE integration_id = $1", integration
    )
    assert "on-call-token" not in str(stored)
    assert await make_worker(seeder, webhook).handle(await seeder.delivery(integration)) == Done()
    [got] = receiver.received
    assert (got.headers["Authorization"], got.headers["X-Team"]) == ("Bearer on-call-token", "ops")
    verify(seeder.secrets[integration], got.headers, got.body)


async def test_a_header_that_does_not_open_abandons_without_sending(
    seeder: Any, webhook: WebhookChannel, receiver_factory: Callable[..., Any]
) -> None:
    receiver = await receiver_factory()
    integration = await seeder.integration(url=receiver.url, headers={"X-Team": "never sealed"})
    scheduled = await seeder.delivery(integration)
    await make_worker(seeder, webhook).handle(scheduled)
    assert receiver.received == []
    assert (await seeder.stream_types(scheduled.data["delivery_id"]))[-1] == "DeliveryAbandoned"
    error = await seeder.store.pool.fetchval("SELECT error FROM delivery_attempts")
    assert error.startswith("cannot open a custom header: X-Team: ")
    # positive control: the same receiver gets a delivery whose header is sealed
    sealed = await seeder.integration(url=receiver.url, custom_headers={"X-Team": "ops"})
    assert await make_worker(seeder, webhook).handle(await seeder.delivery(sealed)) == Done()
    assert len(receiver.received) == 1


async def test_410_disables_the_integration(
    seeder: Any, webhook: WebhookChannel, receiver_factory: Callable[..., Any]
) -> None:
    receiver = await receiver_factory(default=(410, {}))
    integration = await seeder.integration(url=receiver.url)
    first, second = await seeder.delivery(integration), await seeder.delivery(integration)
    worker = make_worker(seeder, webhook)
    assert await worker.handle(first) == Done()
    row = await seeder.store.pool.fetchrow(
        "SELECT status, disabled_reason FROM integrations WHERE integration_id = $1", integration
    )
    assert row["status"] == "disabled"
    assert "410" in row["disabled_reason"]
    stream = await seeder.store.read_stream(f"integration-t1-{integration}")
    assert [e.type for e in stream] == ["IntegrationCreated", "IntegrationDisabled"]
    assert await worker.handle(second) == Done()
    assert len(receiver.received) == 1
    assert (await seeder.stream_types(second.data["delivery_id"]))[-1] == "DeliveryAbandoned"


async def test_an_exhausted_delivery_is_abandoned_and_dead_lettered(
    seeder: Any, webhook: WebhookChannel, receiver_factory: Callable[..., Any]
) -> None:
    receiver = await receiver_factory(default=(500, {}))
    integration = await seeder.integration(url=receiver.url)
    scheduled = await seeder.delivery(integration)
    clock = Clock()
    worker = make_worker(seeder, webhook, clock, CircuitBreakers(failures=100))
    outcomes = []
    for _ in range(MAX_ATTEMPTS):
        outcome = await worker.handle(scheduled)
        outcomes.append(outcome)
        if isinstance(outcome, Requeue):
            clock.now += timedelta(seconds=outcome.delay_s)
    assert all(isinstance(o, Requeue) for o in outcomes[:-1])
    assert isinstance(outcomes[-1], DeadLetter)
    types = await seeder.stream_types(scheduled.data["delivery_id"])
    assert types.count("DeliveryAttempted") == MAX_ATTEMPTS
    assert types[-1] == "DeliveryAbandoned"
    waited = sum(o.delay_s for o in outcomes if isinstance(o, Requeue))
    assert 20 * 3600 < waited < 34 * 3600
    assert len(receiver.received) == MAX_ATTEMPTS


async def test_a_dead_endpoint_does_not_delay_a_healthy_one(
    seeder: Any, receiver_factory: Callable[..., Any]
) -> None:
    hanging = await receiver_factory(default=30.0)
    healthy = await receiver_factory()
    dead_id = await seeder.integration(url=hanging.url)
    good_id = await seeder.integration(url=healthy.url)
    dead = [await seeder.delivery(dead_id) for _ in range(20)]
    good = [await seeder.delivery(good_id) for _ in range(20)]
    channel = WebhookChannel(allow_private=True, timeout_s=3.0)
    worker = make_worker(seeder, channel, breakers=CircuitBreakers(max_in_flight=4))
    try:
        dead_tasks = [asyncio.create_task(worker.handle(e)) for e in dead]
        await asyncio.sleep(0.05)
        started = time.perf_counter()
        results = await asyncio.gather(*(worker.handle(e) for e in good))
        elapsed = time.perf_counter() - started
        deferred = [r for r in await asyncio.gather(*dead_tasks) if isinstance(r, Requeue)]
    finally:
        await channel.close()
    assert results == [Done()] * 20
    assert elapsed < 2.5  # well inside the dead endpoint's 3 s timeout
    assert len(healthy.received) == 20
    assert len(hanging.received) == 4  # the bulkhead: the rest were deferred without an attempt
    assert len(deferred) == 20
