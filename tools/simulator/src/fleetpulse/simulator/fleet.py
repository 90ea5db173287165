"""Get devices and their broker credentials from the API: register with a token, or claim."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aiomqtt
import httpx

API = "/api/v1"


class ApiError(RuntimeError):
    """The API refused a request; the message has the method, path, status and problem body."""


@dataclass(frozen=True, slots=True)
class DeviceCredentials:
    tenant_id: str
    device_id: str
    host: str
    port: int
    client_id: str
    username: str
    password: str
    topic_prefix: str

    @classmethod
    def from_response(cls, tenant_id: str, body: dict[str, Any]) -> DeviceCredentials:
        mqtt = body["mqtt"]
        return cls(
            tenant_id=tenant_id,
            device_id=body["device_id"],
            host=mqtt["host"],
            port=int(mqtt["port"]),
            client_id=mqtt["client_id"],
            username=mqtt["username"],
            password=mqtt["password"],
            topic_prefix=mqtt["topic_prefix"],
        )

    def topic(self, kind: str = "telemetry") -> str:
        return f"{self.topic_prefix.rstrip('/')}/{kind}"

    def mqtt_client(self, **options: Any) -> aiomqtt.Client:
        """A client connecting as this device (its own id and credentials); ``options`` as aiomqtt's."""
        return aiomqtt.Client(
            self.host,
            self.port,
            identifier=self.client_id,
            username=self.username,
            password=self.password,
            **options,
        )


def check(response: httpx.Response, *allowed: int) -> httpx.Response:
    if response.status_code not in (allowed or (200, 201)):
        request = response.request
        raise ApiError(
            f"{request.method} {request.url.path} -> {response.status_code}: {response.text[:500]}"
        )
    return response


async def ensure_tenant(api: httpx.AsyncClient, platform_token: str, tenant_id: str) -> None:
    """Create the tenant; one that already exists (409) is fine."""
    response = await api.post(
        f"{API}/tenants",
        json={"tenant_id": tenant_id, "name": f"Simulated {tenant_id}"},
        headers=bearer(platform_token),
    )
    check(response, 201, 409)


async def register(
    api: httpx.AsyncClient, token: str, tenant_id: str, device_id: str, tags: dict[str, str]
) -> DeviceCredentials:
    """Register ``device_id``; if it exists already, rotate its credentials to learn new ones."""
    response = await api.post(
        f"{API}/devices",
        json={"device_id": device_id, "name": f"Simulated {device_id}", "tags": tags},
        headers=bearer(token),
    )
    if response.status_code == 409:
        response = await api.post(
            f"{API}/devices/{device_id}/rotate-credentials", headers=bearer(token)
        )
    return DeviceCredentials.from_response(tenant_id, check(response, 200, 201).json())


async def claim(
    api: httpx.AsyncClient, tenant_id: str, key: str, secret: str, device_id: str
) -> DeviceCredentials:
    """Claim ``device_id`` with a provisioning profile (no bearer token)."""
    response = await api.post(
        f"{API}/provision",
        json={"provision_key": key, "provision_secret": secret, "device_id": device_id},
    )
    return DeviceCredentials.from_response(tenant_id, check(response, 201).json())


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
