"""Devices: register (credentials once), list with tag filters, get, rotate, decommission."""

from __future__ import annotations

import httpx

from fleetpulse.provision_api.credentials import InMemoryCredentialIssuer

from .conftest import TestIssuer


async def _register(
    api: httpx.AsyncClient,
    oidc: TestIssuer,
    device_id: str,
    tags: dict[str, str] | None = None,
    tenant: str = "acme",
) -> httpx.Response:
    return await api.post(
        "/api/v1/devices",
        json={"device_id": device_id, "tags": tags or {}},
        headers=oidc.headers(tenant),
    )


async def test_register_returns_credentials_once(
    api: httpx.AsyncClient,
    oidc: TestIssuer,
    tenants: list[str],
    credentials: InMemoryCredentialIssuer,
) -> None:
    response = await _register(api, oidc, "truck-1", {"site": "berlin"})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["mqtt"]["username"] == "acme.truck-1"
    assert body["mqtt"]["topic_prefix"] == "tenant/acme/device/truck-1/"
    assert body["mqtt"]["password"] == credentials.passwords["acme.truck-1"]
    assert (body["mqtt"]["host"], body["mqtt"]["port"]) == ("mqtt.test", 1883)
    assert response.headers["etag"] == '"2"'
    fetched = await api.get("/api/v1/devices/truck-1", headers=oidc.headers(roles=("viewer",)))
    assert fetched.status_code == 200
    assert "mqtt" not in fetched.json() and "password" not in fetched.text
    events = await api.get("/api/v1/devices/truck-1/events", headers=oidc.headers())
    assert [e["type"] for e in events.json()["items"]] == [
        "DeviceRegistered",
        "DeviceCredentialsIssued",
    ]
    assert body["mqtt"]["password"] not in events.text


async def test_duplicate_device_is_a_conflict(
    api: httpx.AsyncClient, oidc: TestIssuer, tenants: list[str]
) -> None:
    assert (await _register(api, oidc, "d1")).status_code == 201
    again = await _register(api, oidc, "d1")
    assert again.status_code == 409
    assert again.headers["content-type"] == "application/problem+json"


async def test_list_filters_by_tags_and_paginates(
    api: httpx.AsyncClient, oidc: TestIssuer, tenants: list[str]
) -> None:
    for i in range(5):
        await _register(
            api, oidc, f"d{i}", {"site": "berlin" if i % 2 else "paris", "kind": "reefer"}
        )
    await _register(api, oidc, "other", {"site": "berlin"}, tenant="globex")
    headers = oidc.headers(roles=("viewer",))
    berlin = await api.get(
        "/api/v1/devices", params=[("tag", "site:berlin"), ("tag", "kind:reefer")], headers=headers
    )
    assert [d["device_id"] for d in berlin.json()["items"]] == ["d1", "d3"]
    first = (await api.get("/api/v1/devices", params={"limit": 2}, headers=headers)).json()
    second = (
        await api.get(
            "/api/v1/devices", params={"limit": 2, "cursor": first["next_cursor"]}, headers=headers
        )
    ).json()
    third = (
        await api.get(
            "/api/v1/devices", params={"limit": 2, "cursor": second["next_cursor"]}, headers=headers
        )
    ).json()
    ids = [d["device_id"] for page in (first, second, third) for d in page["items"]]
    assert ids == ["d0", "d1", "d2", "d3", "d4"]
    assert third["next_cursor"] is None
    too_many = await api.get("/api/v1/devices", params={"limit": 501}, headers=headers)
    assert too_many.status_code == 422
    assert too_many.json()["errors"][0]["field"] == "query.limit"


async def test_rotate_and_decommission_with_if_match(
    api: httpx.AsyncClient,
    oidc: TestIssuer,
    tenants: list[str],
    credentials: InMemoryCredentialIssuer,
) -> None:
    first = (await _register(api, oidc, "d1")).json()["mqtt"]["password"]
    stale = await api.post(
        "/api/v1/devices/d1/rotate-credentials", headers={**oidc.headers(), "If-Match": '"1"'}
    )
    assert stale.status_code == 412
    rotated = await api.post(
        "/api/v1/devices/d1/rotate-credentials", headers={**oidc.headers(), "If-Match": '"2"'}
    )
    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["credentials_version"] == 2
    assert rotated.json()["mqtt"]["password"] not in (None, first)
    gone = await api.delete("/api/v1/devices/d1", headers={**oidc.headers(), "If-Match": '"3"'})
    assert gone.status_code == 200
    assert gone.json()["status"] == "decommissioned"
    assert "acme.d1" in credentials.disabled
    again = await api.delete("/api/v1/devices/d1", headers=oidc.headers())
    assert again.status_code == 409


async def test_validation_errors_name_the_field(
    api: httpx.AsyncClient, oidc: TestIssuer, tenants: list[str]
) -> None:
    response = await api.post(
        "/api/v1/devices", json={"device_id": "bad id!"}, headers=oidc.headers()
    )
    assert response.status_code == 422
    problem = response.json()
    assert problem["status"] == 422 and problem["type"].endswith("/validation")
    assert problem["errors"][0]["field"] == "body.device_id"
    assert response.headers["content-type"] == "application/problem+json"
