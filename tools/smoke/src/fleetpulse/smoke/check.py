"""The end-to-end check itself: API calls, the device's publishes, and what must follow."""

from __future__ import annotations

import json
import ssl
import uuid
from dataclasses import dataclass, field, replace
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
    """One alert end to end. Delivery is proven one of two ways:

    * ``receiver`` given (dev): a webhook integration to the smoke's own receiver; the signed
      ``alert.opened``/``alert.resolved`` webhooks must arrive and verify.
    * ``receiver`` None (AWS): nothing public listens for the smoke, so an MQTT integration (the
      platform's broker, inside the VPC) takes the notifications, and the deliveries API must
      show each of the alert's deliveries ``succeeded``.

    ``mqtt_tls`` (an SSL context) makes the device publish over TLS (MQTT 8883 in AWS).
    """

    api: httpx.AsyncClient
    tokens: Tokens
    tenant_id: str
    receiver: WebhookReceiver | None
    steps: Steps
    mqtt_host: str | None = None  # overrides what the API tells devices (containers, NAT)
    mqtt_port: int | None = None
    mqtt_tls: ssl.SSLContext | None = None
    seq: int = 0
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    @property
    def auth(self) -> dict[str, str]:
        return bearer(self.tokens.tenant_admin)

    async def run(self) -> None:
        s = self.steps
        await s.run("API answers /healthz", self.healthz())
        await s.run("create tenant (platform-admin)", self.create_tenant())
        device = await s.run("register device", self.register_device())
        rule_id = await s.run("create threshold rule", self.create_rule())
        if self.receiver is not None:
            await s.run("start webhook receiver", self.receiver.start())
            integration_id = await s.run("create webhook integration", self.create_integration())
        else:
            integration_id = await s.run("create MQTT integration", self.create_mqtt_integration())
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
        if self.receiver is not None:
            await s.run(
                "signed alert.opened webhook",
                s.poll(lambda: self.webhook("alert.opened", alert_id)),
            )
        else:
            await s.run(
                "alert.opened delivered (deliveries API)",
                s.poll(lambda: self.delivered(alert_id, integration_id, 1)),
            )
        await s.run("publish recovery as the device", self.publish(device, RECOVERED_C))
        await s.run(
            "alert resolved",
            s.poll(
                lambda: self.resolved(alert_id), meanwhile=lambda: self.publish(device, RECOVERED_C)
            ),
        )
        if self.receiver is not None:
            await s.run(
                "signed alert.resolved webhook",
                s.poll(lambda: self.webhook("alert.resolved", alert_id)),
            )
        else:
            await s.run(
                "alert.resolved delivered (deliveries API)",
                s.poll(lambda: self.delivered(alert_id, integration_id, 2)),
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
            device = replace(device, host=self.mqtt_host)
        if self.mqtt_port:
            device = replace(device, port=self.mqtt_port)
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
        assert self.receiver is not None
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

    async def create_mqtt_integration(self) -> str:
        body = {
            "name": f"smoke {self.run_id}",
            "kind": "mqtt",
            "topic": f"fleetpulse/{self.tenant_id}/smoke/{self.run_id}",
        }
        response = check(
            await self.api.post(f"{API}/integrations", json=body, headers=self.auth), 201
        )
        return str(response.json()["integration_id"])

    async def delivered(self, alert_id: str, integration_id: str, count: int) -> None:
        """``count`` deliveries of the alert to the integration succeeded; none abandoned."""
        response = check(
            await self.api.get(
                f"{API}/deliveries", params={"alert_id": alert_id}, headers=self.auth
            ),
            200,
        )
        mine = [
            d for d in response.json().get("items", []) if d.get("integration_id") == integration_id
        ]
        abandoned = [d for d in mine if d.get("status") == "abandoned"]
        if abandoned:
            raise AssertionError(f"delivery abandoned: {abandoned[0].get('last_error')}")
        succeeded = [d for d in mine if d.get("status") == "succeeded"]
        if len(succeeded) < count:
            raise NotYet(f"{len(succeeded)}/{count} deliveries succeeded ({len(mine)} scheduled)")

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
        options: dict[str, Any] = {}
        if self.mqtt_tls is not None:
            options["tls_context"] = self.mqtt_tls
        async with device.mqtt_client(**options) as client:
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
        assert self.receiver is not None
        webhook = self.receiver.find(event_type, alert_id)
        if webhook is None:
            raise NotYet(f"no {event_type} webhook yet ({len(self.receiver.received)} received)")
        if not webhook.verified:
            raise AssertionError(f"{event_type} webhook did not verify: {webhook.error}")
        return webhook


def new_tenant_id() -> str:
    return f"smoke-{uuid.uuid4().hex[:8]}"
