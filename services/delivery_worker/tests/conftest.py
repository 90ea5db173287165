"""Real parts for the delivery worker's tests: HTTP receivers on loopback, seeded catalog rows."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web

from fleetpulse.common.crypto import SecretBox, seal_values
from fleetpulse.common.eventstore import (
    NO_STREAM,
    NewEvent,
    PostgresEventStore,
    RecordedEvent,
    metadata,
)
from fleetpulse.common.projections.catalog import CatalogProjection
from fleetpulse.common.projections.deliveries import DeliveriesProjection
from fleetpulse.common.webhooks import generate_secret, headers_owner
from fleetpulse.testing.ports import free_port

TENANT = "t1"
KEY = SecretBox.generate_key()


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """An HTTP endpoint whose answers a test scripts: ``answers`` are used in order, then
    ``default``; each answer is ``(status, headers)`` or a number of seconds to hang."""

    port: int = 0
    answers: list[tuple[int, dict[str, str]] | float] = field(default_factory=list)
    default: tuple[int, dict[str, str]] | float = (204, {})
    received: list[Received] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.received.append(Received(dict(request.headers), await request.read()))
        self.arrived.set()
        answer = self.answers.pop(0) if self.answers else self.default
        if isinstance(answer, float | int) and not isinstance(answer, tuple):
            await asyncio.sleep(float(answer))
            return web.Response(status=204)
        status, headers = answer
        return web.Response(status=status, headers=headers)


@pytest_asyncio.fixture
async def receiver_factory() -> AsyncIterator[Callable[..., Any]]:
    runners: list[web.AppRunner] = []

    async def start(**kwargs: Any) -> Receiver:
        receiver = Receiver(**kwargs)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", receiver.handle)
        runner = web.AppRunner(app, shutdown_timeout=0.1)
        await runner.setup()
        receiver.port = free_port()
        await web.TCPSite(runner, "127.0.0.1", receiver.port).start()
        runners.append(runner)
        return receiver

    yield start
    for runner in runners:
        await runner.cleanup()


class Seeder:
    """Integrations and scheduled deliveries, appended as events with projections inline."""

    def __init__(self, store: PostgresEventStore) -> None:
        self.store = store
        self.key = KEY
        self.box = SecretBox(KEY)
        self.secrets: dict[str, str] = {}

    async def _append(
        self, stream: str, event: NewEvent, expected: int = NO_STREAM
    ) -> RecordedEvent:
        async with self.store.pool.acquire() as conn, conn.transaction():
            [recorded] = await self.store.append(
                stream, [event], tenant_id=TENANT, expected_version=expected, conn=conn
            )
            await CatalogProjection().apply(conn, recorded)
            await DeliveriesProjection().apply(conn, recorded)
            return recorded

    async def integration(
        self, kind: str = "webhook", custom_headers: dict[str, str] | None = None, **config: Any
    ) -> str:
        """``custom_headers`` are sealed as the API stores them; ``headers=`` goes in as given."""
        integration_id = "i" + uuid.uuid4().hex[:8]
        if custom_headers:
            config["headers"] = seal_values(
                self.box, custom_headers, headers_owner(TENANT, integration_id)
            )
        secret = generate_secret()
        self.secrets[integration_id] = secret
        await self._append(
            f"integration-{TENANT}-{integration_id}",
            NewEvent(
                "IntegrationCreated",
                {
                    "integration_id": integration_id,
                    "name": integration_id,
                    "kind": kind,
                    "config": config,
                    "secret_sealed": self.box.seal(secret, f"{TENANT}:{integration_id}")
                    if kind == "webhook"
                    else None,
                },
                metadata(actor="test"),
            ),
        )
        return integration_id

    async def delivery(
        self, integration_id: str, notification_type: str = "firing"
    ) -> RecordedEvent:
        delivery_id = "dlv_" + uuid.uuid4().hex[:12]
        return await self._append(
            f"delivery-{TENANT}-{delivery_id}",
            NewEvent(
                "DeliveryScheduled",
                {
                    "delivery_id": delivery_id,
                    "alert_id": "a1",
                    "alert_event_id": str(uuid.uuid4()),
                    "alert_event_type": "AlertOpened",
                    "integration_id": integration_id,
                    "route_id": "r1",
                    "notification_type": notification_type,
                    "payload": {
                        "type": "alert.opened",
                        "timestamp": "2030-01-01T00:00:00+00:00",
                        "data": {
                            "alert_id": "a1",
                            "severity": "critical",
                            "rule_id": "r1",
                            "device_id": "d1",
                            "status": "firing",
                        },
                    },
                },
                metadata(actor="test"),
            ),
        )

    async def stream_types(self, delivery_id: str) -> list[str]:
        return [e.type for e in await self.store.read_stream(f"delivery-{TENANT}-{delivery_id}")]


@pytest.fixture
def seeder(event_store: PostgresEventStore) -> Seeder:
    return Seeder(event_store)
