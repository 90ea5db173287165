"""Test world: catalog and alert events appended for real, projections applied inline."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from fleetpulse.common.eventstore import NewEvent, PostgresEventStore, RecordedEvent, metadata
from fleetpulse.common.projections.alerts import AlertsProjection
from fleetpulse.common.projections.catalog import CatalogProjection

TENANT = "t1"


class World:
    def __init__(self, store: PostgresEventStore) -> None:
        self.store = store

    async def append(self, stream: str, type_: str, data: dict[str, Any]) -> RecordedEvent:
        async with self.store.pool.acquire() as conn, conn.transaction():
            [event] = await self.store.append(
                stream, [NewEvent(type_, data, metadata(actor="test"))], tenant_id=TENANT, conn=conn
            )
            await CatalogProjection().apply(conn, event)
            await AlertsProjection().apply(conn, event)
            return event

    async def device(self, device_id: str, tags: dict[str, str] | None = None) -> None:
        await self.append(
            f"device-{TENANT}-{device_id}",
            "DeviceRegistered",
            {
                "device_id": device_id,
                "name": device_id,
                "tags": tags or {},
                "registered_at": datetime.now(UTC).isoformat(),
            },
        )

    async def integration(self, integration_id: str, config: dict[str, Any] | None = None) -> None:
        await self.append(
            f"integration-{TENANT}-{integration_id}",
            "IntegrationCreated",
            {
                "integration_id": integration_id,
                "name": integration_id,
                "kind": "webhook",
                "config": config or {"url": "https://example.com/hook"},
            },
        )

    async def route(self, route_id: str, integration_id: str, **fields: Any) -> None:
        await self.append(
            f"route-{TENANT}-{route_id}",
            "RouteCreated",
            {
                "route_id": route_id,
                "name": route_id,
                "integration_id": integration_id,
                "match": fields.get("match", {}),
                "group_by": fields.get("group_by", []),
                "group_wait_s": fields.get("group_wait_s", 0),
                "repeat_interval_s": fields.get("repeat_interval_s"),
                "group_interval_s": fields.get("group_interval_s"),
            },
        )

    async def open_alert(
        self,
        device_id: str = "d1",
        rule_id: str = "r1",
        severity: str = "critical",
        alert_id: str | None = None,
    ) -> RecordedEvent:
        alert_id = alert_id or uuid.uuid4().hex[:12]
        return await self.append(
            f"alert-{TENANT}-{alert_id}",
            "AlertOpened",
            {
                "alert_id": alert_id,
                "fingerprint": f"{TENANT}:{rule_id}:{device_id}",
                "rule_id": rule_id,
                "rule_name": f"rule {rule_id}",
                "device_id": device_id,
                "severity": severity,
                "opened_at": datetime.now(UTC).isoformat(),
                "metric": "temp",
                "value": 99.0,
                "threshold": 80.0,
                "reason": "temp > 80",
            },
        )

    async def resolve(self, alert_id: str) -> RecordedEvent:
        return await self.append(
            f"alert-{TENANT}-{alert_id}",
            "AlertResolved",
            {"alert_id": alert_id, "resolved_at": datetime.now(UTC).isoformat(), "value": 20.0},
        )

    async def silence(self, alert_id: str, until: datetime) -> RecordedEvent:
        return await self.append(
            f"alert-{TENANT}-{alert_id}",
            "AlertSilenced",
            {"alert_id": alert_id, "until": until.isoformat(), "by": "op"},
        )

    async def deliveries(self) -> list[dict[str, Any]]:
        rows = await self.store.pool.fetch(
            "SELECT d.*, e.data AS scheduled FROM deliveries d JOIN events e"
            " ON e.stream_id = 'delivery-' || d.tenant_id || '-' || d.delivery_id AND e.version = 1"
            " ORDER BY d.scheduled_at, d.delivery_id"
        )
        return [dict(r) for r in rows]


@pytest.fixture
def world(event_store: PostgresEventStore) -> World:
    return World(event_store)
