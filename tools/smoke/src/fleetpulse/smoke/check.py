"""The end-to-end check itself: API calls, the device's publishes, and what must follow."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import httpx

from fleetpulse.simulator.fleet import (
    API,
    DeviceCredentials,
    bearer,
    check,
    ensure_tenant,
    register,
)
from fleetpulse.simulator.telemetry import iso_timestamp
from fleetpulse.smoke.receiver import ReceivedWebhook, WebhookReceiver
from fleetpulse.smoke.steps import NotYet, Steps

BREACH_C = 80.0
RECOVERED_C = 20.0
THRESHOLD_C = 50.0


@dataclass(frozen=True, slots=True)
class Tokens:
    platform_admin: str
    tenant_admin: str


@dataclass
class SmokeCheck:
    api: httpx.AsyncClient
    tokens: Tokens
    tenant_id: str
    receiver: WebhookReceiver
    steps: Steps
    mqtt_host: str | None = None  # overrides what the API tells devices (containers, NAT)
    seq: int = 0

    @property
    def auth(self) -> dict[str, str]:
        return bearer(self.tokens.tenant_admin)

    async def run(self) -> None:
        s = self.steps
        await s.run("API answers /healthz", self.healthz())
        await s.run("create tenant (platform-admin)", self.create_tenant())
        device = await s.run("register device", self.register_device())
        rule_id = await s.run("create threshold rule", self.create_rule())
        await s.run("start webhook receiver", self.receiver.start())
        integration_id = await s.run("create webhook integration", self.create_integration())
        await s.run("create route", self.create_route(integration_id))
        await s.run("publish breach as the device", self.publish(device, BREACH_C))
        await s.run("telemetry stored", s.poll(lambda: self.stored(device, BREACH_C)))
        alert = await s.run(
            "alert opened",
            s.poll(
                lambda: self.open_alert(device, rule_id),
                meanwhile=lambda: self.publish(device, BREACH_C),
            ),
        )
        alert_id = str(alert["alert_id"])
        await s.run(
            "signed alert.opened webhook", s.poll(lambda: self.webhook("alert.opened", alert_id))
        )
        await s.run("publish recovery as the device", self.publish(device, RECOVERED_C))
        await s.run(
            "alert resolved",
            s.poll(
                lambda: self.resolved(alert_id), meanwhile=lambda: self.publish(device, RECOVERED_C)
            ),
        )
        await s.run(
            "signed alert.resolved webhook",
            s.poll(lambda: self.webhook("alert.resolved", alert_id)),
        )

    # steps ---------------------------------------------------------------------------------

    async def healthz(self) -> None:
        check(await self.api.get("/healthz"), 200)

    async def create_tenant(self) -> None:
        await ensure_tenant(self.api, self.tokens.platform_admin, self.tenant_id)

    async def register_device(self) -> DeviceCredentials:
        device = await register(
            self.api, self.tokens.tenant_admin, self.tenant_id, "smoke-1", {"smoke": "true"}
        )
        if self.mqtt_host:
            device = _with_host(device, self.mqtt_host)
        return device

    async def create_rule(self) -> str:
        body = {
            "name": "smoke: too hot",
            "kind": "threshold",
            "metric": "temperature_c",
            "operator": "gt",
            "threshold": THRESHOLD_C,
            "duration_s": 0,
            "severity": "critical",
        }
        response = check(await self.api.post(f"{API}/rules", json=body, headers=self.auth), 201)
        return str(response.json()["rule_id"])

    async def create_integration(self) -> str:
        body = {"name": "smoke receiver", "kind": "webhook", "url": self.receiver.url}
        response = check(
            await self.api.post(f"{API}/integrations", json=body, headers=self.auth), 201
        )
        created = response.json()
        secret = created.get("secret")
        if not secret:
            raise AssertionError("the created webhook integration returned no secret")
        self.receiver.secret = secret
        return str(created["integration_id"])

    async def create_route(self, integration_id: str) -> None:
        body = {"name": "smoke: everything", "integration_id": integration_id, "match": {}}
        check(await self.api.post(f"{API}/routes", json=body, headers=self.auth), 201)

    async def publish(self, device: DeviceCredentials, temperature_c: float) -> None:
        self.seq += 1
        reading = {
            "ts": iso_timestamp(datetime.now(UTC)),
            "seq": self.seq,
            "metrics": {"temperature_c": temperature_c},
        }
        async with device.mqtt_client() as client:
            await client.publish(device.topic("telemetry"), json.dumps(reading), qos=1)

    async def stored(self, device: DeviceCredentials, temperature_c: float) -> None:
        response = check(
            await self.api.get(
                f"{API}/devices/{device.device_id}/telemetry",
                params={"metric": "temperature_c"},
                headers=self.auth,
            ),
            200,
        )
        readings = response.json().get("readings") or []
        if not any(r.get("metrics", {}).get("temperature_c") == temperature_c for r in readings):
            raise NotYet(f"{len(readings)} readings, none with temperature_c={temperature_c}")

    async def open_alert(self, device: DeviceCredentials, rule_id: str) -> dict[str, Any]:
        response = check(
            await self.api.get(f"{API}/alerts", params={"status": "open"}, headers=self.auth), 200
        )
        for alert in response.json().get("items", []):
            if alert.get("device_id") == device.device_id and alert.get("rule_id") == rule_id:
                return dict(alert)
        raise NotYet("no open alert for the device and rule")

    async def resolved(self, alert_id: str) -> None:
        response = check(await self.api.get(f"{API}/alerts/{alert_id}", headers=self.auth), 200)
        status = response.json().get("status")
        if status != "resolved":
            raise NotYet(f"alert is {status}")

    async def webhook(self, event_type: str, alert_id: str) -> ReceivedWebhook:
        webhook = self.receiver.find(event_type, alert_id)
        if webhook is None:
            raise NotYet(f"no {event_type} webhook yet ({len(self.receiver.received)} received)")
        if not webhook.verified:
            raise AssertionError(f"{event_type} webhook did not verify: {webhook.error}")
        return webhook


def _with_host(device: DeviceCredentials, host: str) -> DeviceCredentials:
    return replace(device, host=host)


def new_tenant_id() -> str:
    return f"smoke-{uuid.uuid4().hex[:8]}"
