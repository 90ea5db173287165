"""End to end on real parts: PostgreSQL, moto (SNS + SQS), both services, loopback receivers.

alert event appended -> outbox relay -> SNS -> SQS dispatcher -> dispatcher -> DeliveryScheduled
-> outbox relay -> SNS -> SQS deliveries -> delivery worker -> HTTP receiver.

It drives the dispatcher too, so it needs the whole workspace (skipped when the dispatcher
package is not installed, as in the delivery worker's own image).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
import pytest_asyncio
from pydantic import SecretStr

from fleetpulse.common.eventstore import NewEvent, PostgresEventStore, RecordedEvent, metadata
from fleetpulse.common.projections.alerts import AlertsProjection
from fleetpulse.common.projections.catalog import CatalogProjection
from fleetpulse.common.webhooks import verify
from fleetpulse.delivery_worker import bootstrap as worker_main
from fleetpulse.delivery_worker.settings import Settings as WorkerSettings

dispatcher_main = pytest.importorskip("fleetpulse.dispatcher.bootstrap")
DispatcherSettings = pytest.importorskip("fleetpulse.dispatcher.settings").Settings

pytestmark = pytest.mark.slow
TENANT = "t1"


class Platform:
    def __init__(self, seeder: Any) -> None:
        self.seeder = seeder
        self.store: PostgresEventStore = seeder.store

    async def _append(self, stream: str, type_: str, data: dict[str, Any]) -> RecordedEvent:
        async with self.store.pool.acquire() as conn, conn.transaction():
            [event] = await self.store.append(
                stream, [NewEvent(type_, data, metadata(actor="test"))], tenant_id=TENANT, conn=conn
            )
            await CatalogProjection().apply(conn, event)
            await AlertsProjection().apply(conn, event)
            return event

    async def webhook(self, url: str) -> str:
        integration_id = await self.seeder.integration(url=url)
        await self._append(
            f"route-{TENANT}-r{integration_id}",
            "RouteCreated",
            {
                "route_id": f"r{integration_id}",
                "name": "all",
                "integration_id": integration_id,
                "match": {},
                "group_by": [],
                "group_wait_s": 0,
                "repeat_interval_s": None,
            },
        )
        return str(integration_id)

    async def open_alert(self) -> RecordedEvent:
        alert_id = uuid.uuid4().hex[:12]
        device = "d" + alert_id[:4]
        return await self._append(
            f"alert-{TENANT}-{alert_id}",
            "AlertOpened",
            {
                "alert_id": alert_id,
                "fingerprint": f"{TENANT}:r1:{device}",
                "rule_id": "r1",
                "rule_name": "too hot",
                "device_id": device,
                "severity": "critical",
                "opened_at": datetime.now(UTC).isoformat(),
                "metric": "temp",
                "value": 91.0,
                "threshold": 80.0,
                "reason": "temp > 80",
            },
        )

    async def resolve(self, alert_id: str) -> RecordedEvent:
        return await self._append(
            f"alert-{TENANT}-{alert_id}",
            "AlertResolved",
            {"alert_id": alert_id, "resolved_at": datetime.now(UTC).isoformat(), "value": 20.0},
        )


@pytest_asyncio.fixture
async def platform(
    seeder: Any, database_url: str, moto_server: str, queue_prefix: str
) -> AsyncIterator[Platform]:
    common: dict[str, Any] = {
        "database_url": SecretStr(database_url),
        "aws_endpoint_url": moto_server,
        "queue_prefix": queue_prefix,
        "auto_create": True,
        "health_port": 0,
    }
    worker_settings = WorkerSettings(
        **common,
        webhook_encryption_key=SecretStr(seeder.key),
        allow_private_webhooks=True,
        webhook_timeout_s=4.0,
    )
    stop = asyncio.Event()
    async with (
        dispatcher_main.bootstrap(DispatcherSettings(**common)) as dispatcher,
        worker_main.bootstrap(worker_settings) as worker,
    ):
        tasks = [
            asyncio.create_task(c)
            for c in (
                dispatcher.consumer.run(stop),
                dispatcher.relay.run(stop),
                dispatcher_main.flush_groups(dispatcher.dispatcher, stop, 0.5),
                worker.consumer.run(stop),
                worker.relay.run(stop),
            )
        ]
        try:
            yield Platform(seeder)
        finally:
            stop.set()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 30)


async def wait_for(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


async def test_a_receiver_failing_twice_sees_one_webhook_id_three_times(
    platform: Platform, receiver_factory: Callable[..., Any]
) -> None:
    # Retry-After keeps the test short (the schedule alone would wait 5 s, then 5 min).
    receiver = await receiver_factory(
        answers=[(503, {"Retry-After": "1"}), (429, {"Retry-After": "1"})]
    )
    integration = await platform.webhook(receiver.url)
    await platform.open_alert()
    await wait_for(lambda: len(receiver.received) >= 3, timeout=45)
    assert len({r.headers["webhook-id"] for r in receiver.received}) == 1
    for got in receiver.received:
        verify(platform.seeder.secrets[integration], got.headers, got.body)
    await asyncio.sleep(1.0)
    assert len(receiver.received) == 3


async def test_a_410_receiver_gets_its_integration_disabled(
    platform: Platform, receiver_factory: Callable[..., Any]
) -> None:
    receiver = await receiver_factory(default=(410, {}))
    integration = await platform.webhook(receiver.url)
    await platform.open_alert()

    async def disabled() -> bool:
        status = await platform.store.pool.fetchval(
            "SELECT status FROM integrations WHERE integration_id = $1", integration
        )
        return bool(status == "disabled")

    for _ in range(300):
        if await disabled():
            break
        await asyncio.sleep(0.1)
    assert await disabled()
    events = await platform.store.read_stream(f"integration-{TENANT}-{integration}")
    assert events[-1].type == "IntegrationDisabled"


async def test_a_dead_receiver_does_not_delay_a_healthy_one(
    platform: Platform, receiver_factory: Callable[..., Any]
) -> None:
    dead = await receiver_factory(default=60.0)
    healthy = await receiver_factory()
    await platform.webhook(dead.url)
    await platform.webhook(healthy.url)
    for _ in range(3):
        await platform.open_alert()
    started = asyncio.get_running_loop().time()
    await wait_for(lambda: len(healthy.received) >= 3, timeout=30)
    assert asyncio.get_running_loop().time() - started < 4.0  # inside the dead one's timeout
    assert len(dead.received) >= 1


async def test_resolution_produces_the_resolved_notification(
    platform: Platform, receiver_factory: Callable[..., Any]
) -> None:
    receiver = await receiver_factory()
    await platform.webhook(receiver.url)
    opened = await platform.open_alert()
    await wait_for(lambda: len(receiver.received) >= 1)
    await platform.resolve(opened.data["alert_id"])
    await wait_for(lambda: len(receiver.received) >= 2)
    import json

    types = [json.loads(r.body)["type"] for r in receiver.received]
    assert types == ["alert.opened", "alert.resolved"]
    assert json.loads(receiver.received[1].body)["data"]["alert_id"] == opened.data["alert_id"]
