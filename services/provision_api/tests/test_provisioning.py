"""Fleet provisioning by claim: profile key + secret register a device, within limits."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from .conftest import TestIssuer

PROVISION = "/api/v1/provision"


async def _profile(api: httpx.AsyncClient, oidc: TestIssuer, **extra: Any) -> dict[str, Any]:
    response = await api.post(
        "/api/v1/provisioning-profiles",
        headers=oidc.headers(),
        json={"name": "fleet", "tags": {"site": "berlin"}, **extra},
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def _claim(profile: dict[str, Any], device_id: str, secret: str | None = None) -> dict[str, str]:
    return {
        "provision_key": profile["provision_key"],
        "provision_secret": secret or profile["provision_secret"],
        "device_id": device_id,
    }


async def test_claim_registers_the_device(
    api: httpx.AsyncClient, oidc: TestIssuer, tenants: list[str]
) -> None:
    profile = await _profile(api, oidc)
    response = await api.post(PROVISION, json=_claim(profile, "field-1"))
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["mqtt"]["password"] and body["tags"] == {"site": "berlin"}
    assert body["mqtt"]["topic_prefix"] == "tenant/acme/device/field-1/"
    device = await api.get("/api/v1/devices/field-1", headers=oidc.headers())
    assert device.status_code == 200
    listed = await api.get(
        f"/api/v1/provisioning-profiles/{profile['profile_id']}", headers=oidc.headers()
    )
    assert listed.json()["devices_claimed"] == 1
    assert "provision_secret" not in listed.json()
    assert (await api.post(PROVISION, json=_claim(profile, "field-1"))).status_code == 409


async def test_wrong_secret_is_refused_and_not_logged(
    api: httpx.AsyncClient, oidc: TestIssuer, tenants: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    profile = await _profile(api, oidc)
    wrong = "ps_wrong-secret-do-not-log"
    response = await api.post(PROVISION, json=_claim(profile, "x1", wrong))
    assert response.status_code == 401
    unknown = await api.post(PROVISION, json={**_claim(profile, "x1"), "provision_key": "pk_nope"})
    assert unknown.status_code == 401 and unknown.json()["detail"] == response.json()["detail"]
    refused = [r for r in caplog.records if r.getMessage() == "provisioning claim refused"]
    assert len(refused) == 2 and refused[0].provision_key == profile["provision_key"]  # type: ignore[attr-defined]
    assert wrong not in caplog.text and profile["provision_secret"] not in caplog.text


async def test_device_limit_expiry_and_revocation(
    api: httpx.AsyncClient, oidc: TestIssuer, tenants: list[str]
) -> None:
    limited = await _profile(api, oidc, device_limit=1)
    assert (await api.post(PROVISION, json=_claim(limited, "l1"))).status_code == 201
    full = await api.post(PROVISION, json=_claim(limited, "l2"))
    assert full.status_code == 403 and "limit" in full.json()["detail"]
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    refused = await api.post(
        "/api/v1/provisioning-profiles",
        headers=oidc.headers(),
        json={"name": "old", "expires_at": past},
    )
    assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "body.expires_at"
    revocable = await _profile(api, oidc)
    revoked = await api.delete(
        f"/api/v1/provisioning-profiles/{revocable['profile_id']}", headers=oidc.headers()
    )
    assert revoked.json()["status"] == "revoked"
    assert (await api.post(PROVISION, json=_claim(revocable, "r1"))).status_code == 403


async def test_claims_are_rate_limited_per_source(
    api: httpx.AsyncClient, oidc: TestIssuer, tenants: list[str]
) -> None:
    profile = await _profile(api, oidc)
    statuses = [
        (await api.post(PROVISION, json=_claim(profile, f"r{i}", "ps_bad"))).status_code
        for i in range(31)
    ]
    assert statuses[:30] == [401] * 30
    assert statuses[30] == 429
    limited = await api.post(PROVISION, json=_claim(profile, "ok"))
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
