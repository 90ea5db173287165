"""Issue 13 attacks on the API (in process, real PostgreSQL): SSRF spellings and unusable URLs
at integration create/update (and issue 12 item 14), control characters in names, MQTT topics
outside the tenant's namespace, platform SNS topics, times that overflow, writes for a tenant
that does not exist, and non-numeric token dates."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest

from fleetpulse.provision_api.app import create_app
from fleetpulse.provision_api.bootstrap import bootstrap
from fleetpulse.provision_api.credentials import InMemoryCredentialIssuer
from fleetpulse.provision_api.settings import Settings

from .conftest import TestIssuer, make_settings

pytestmark = pytest.mark.security

INTERNAL_URLS = [
    "http://\uff11\uff12\uff17.\uff10.\uff10.\uff11:8080/hook",  # fullwidth digits
    "http://127\u30020\u30020\u30021/hook",  # ideographic full stops
    "http://127\uff0e0\uff0e0\uff0e1/hook",
    "http://127\uff610\uff610\uff611/hook",
    "http://127.1/hook",
    "http://2130706433/hook",
    "http://0x7f.1/hook",
    "http://0177.0.0.1/hook",
    "http://0x7f.0x0.0x0.0x1/hook",
    "http://\U0001d7cf\U0001d7d0\U0001d7d5.0.0.1/hook",
    "http://\u24db\u24de\u24d2\u24d0\u24db\u24d7\u24de\u24e2\u24e3/hook",
    "http://[::127.0.0.1]/hook",
    "http://127.0.0.1./hook",
    "http://[::1]/hook",
    "http://[::ffff:127.0.0.1]/hook",
    "http://[0:0:0:0:0:ffff:7f00:1]/hook",
    "http://169.254.169.254/latest/meta-data",
    "http://0xa9fea9fe/latest",
    "http://[::ffff:a9fe:a9fe]/",
    "http://100.64.0.1/",
    "http://10.0.0.1/",
    "http://0.0.0.0/",
    "http://0/",
    "http://localhost/hook",
    "http://LOCALHOST./hook",
    "http://hooks.localhost/hook",
]
UNUSABLE_URLS = [
    "http://evil@127.0.0.1/hook",
    "http://user:pass@hooks.example.com/hook",
    "http://[fe80::1%25eth0]/hook",
    "http://1.2.3.4.5/hook",
    "http://256.256.256.256/hook",
    "http://0x1ffffffff/hook",
    "http://127.0.0.1:80@hooks.example.com/hook",
    "http://127.0.0.1%09/hook",
    "http://localhost%00.example.com/hook",
]
PUBLIC = "http://93.184.215.14/hook"


def webhook(url: str) -> dict[str, Any]:
    return {"name": "w", "kind": "webhook", "url": url}


async def test_webhook_urls_that_reach_inside_or_cannot_be_sent_are_refused(
    api: httpx.AsyncClient, oidc: TestIssuer, tenants: list[str]
) -> None:
    """Every spelling in one database (a table, not one test each, to keep the suite fast)."""
    good = await api.post("/api/v1/integrations", headers=oidc.headers(), json=webhook(PUBLIC))
    assert good.status_code == 201, good.text  # positive control
    integration_id = good.json()["integration_id"]
    accepted: list[tuple[str, str, int]] = []
    for url in INTERNAL_URLS + UNUSABLE_URLS:
        created = await api.post("/api/v1/integrations", headers=oidc.headers(), json=webhook(url))
        updated = await api.put(
            f"/api/v1/integrations/{integration_id}", headers=oidc.headers(), json=webhook(url)
        )
        for action, answer in (("create", created), ("update", updated)):
            if answer.status_code != 422 or answer.json()["errors"][0]["field"] != "body.url":
                accepted.append((action, url, answer.status_code))
    assert accepted == []
    stored = await api.get(f"/api/v1/integrations/{integration_id}", headers=oidc.headers())
    assert stored.json()["config"]["url"] == PUBLIC


async def test_urls_are_stored_as_the_client_will_read_them(
    api: httpx.AsyncClient, oidc: TestIssuer, tenants: list[str]
) -> None:
    created = await api.post(
        "/api/v1/integrations",
        headers=oidc.headers(),
        json=webhook("https://\uff28\uff2f\uff2f\uff2b\uff33.example.com./fleet?x=1"),
    )
    assert created.status_code == 201, created.text
    assert created.json()["config"]["url"] == "https://hooks.example.com/fleet?x=1"


async def test_private_webhooks_when_allowed(database_url: str, oidc: TestIssuer) -> None:
    settings = make_settings(database_url, oidc, allow_private_webhooks=True)
    async with client_for(settings) as api:
        await api.post(
            "/api/v1/tenants",
            json={"tenant_id": "acme", "name": "Acme"},
            headers=oidc.headers(None, ("platform-admin",)),
        )
        created = await api.post(
            "/api/v1/integrations", headers=oidc.headers(), json=webhook("http://127.1:9/hook")
        )
        assert created.status_code == 201, created.text
        assert created.json()["config"]["url"] == "http://127.0.0.1:9/hook"
        unusable = await api.post(
            "/api/v1/integrations", headers=oidc.headers(), json=webhook("http://1.2.3.4.5/")
        )
        assert unusable.status_code == 422  # can never be sent, private or not


class client_for:  # noqa: N801 - used as a context manager like a function
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def __aenter__(self) -> httpx.AsyncClient:
        self._boot = bootstrap(self.settings, issuer=InMemoryCredentialIssuer())
        booted = await self._boot.__aenter__()
        transport = httpx.ASGITransport(app=create_app(booted.services), client=("10.0.0.7", 40000))
        self._client = httpx.AsyncClient(transport=transport, base_url="http://api.test")
        return self._client

    async def __aexit__(self, *exc: object) -> None:
        await self._client.aclose()
        await self._boot.__aexit__(None, None, None)


BAD_NAMES = [
    "hot\r\nBcc: attacker@evil.example",
    "a\nb",
    "tab\there",
    "nul\x00",
    "\x1b[31m",
    "ls\u2028x",
]


@pytest.mark.parametrize("name", BAD_NAMES)
async def test_control_characters_in_names_are_refused(
    api: httpx.AsyncClient, oidc: TestIssuer, tenants: list[str], name: str
) -> None:
    rule = {"name": name, "kind": "no_data", "timeout_s": 60, "severity": "major"}
    bodies = {
        "/api/v1/rules": rule,
        "/api/v1/integrations": {"name": name, "kind": "email", "to": ["ops@example.com"]},
        "/api/v1/devices": {"device_id": "d1", "name": name},
        "/api/v1/provisioning-profiles": {"name": name},
    }
    for path, body in bodies.items():
        refused = await api.post(path, headers=oidc.headers(), json=body)
        assert refused.status_code == 422, (path, refused.text)
    tag = await api.post(
        "/api/v1/devices", headers=oidc.headers(), json={"device_id": "d2", "tags": {"k": name}}
    )
    assert tag.status_code == 422
    tenant = await api.post(
        "/api/v1/tenants",
        json={"tenant_id": "t9", "name": name},
        headers=oidc.headers(None, ("platform-admin",)),
    )
    assert tenant.status_code == 422
    fine = await api.post("/api/v1/rules", headers=oidc.headers(), json={**rule, "name": "hot"})
    assert fine.status_code == 201  # positive control


@pytest.mark.parametrize(
    "topic",
    [
        "fleet/b-alerts",
        "tenant/globex/alerts",
        "fleetpulse/globex/alerts",
        "fleetpulse/acme",
        "fleetpulse/acme/",
        "fleetpulse/acme/+",
        "fleetpulse/acme/#",
        "$SYS/x",
        "fleetpulse/acme/a\x01b",
        "fleetpulse/acme/a\rb",
    ],
)
async def test_mqtt_integrations_stay_in_the_tenant_namespace(
    api: httpx.AsyncClient, oidc: TestIssuer, tenants: list[str], topic: str
) -> None:
    body = {"name": "m", "kind": "mqtt", "topic": topic}
    refused = await api.post("/api/v1/integrations", headers=oidc.headers(), json=body)
    assert refused.status_code == 422, refused.text
    good = await api.post(
        "/api/v1/integrations", headers=oidc.headers(), json={**body, "topic": "fleetpulse/acme/x"}
    )
    assert good.status_code == 201, good.text
    assert good.json()["secret"].startswith("whsec_")  # MQTT notifications are signed too


@pytest.mark.parametrize(
    "arn",
    [
        "arn:aws:sns:us-east-1:123456789012:fleetpulse-domain-events",
        "arn:aws:sns:eu-west-1:000000000000:fleetpulse-anything",
        "arn:aws:sns:eu-west-1:000000000000:FLEETPULSE-domain-events",
    ],
)
async def test_sns_integrations_cannot_use_platform_topics(
    api: httpx.AsyncClient, oidc: TestIssuer, tenants: list[str], arn: str
) -> None:
    body = {"name": "s", "kind": "sns", "topic_arn": arn}
    refused = await api.post("/api/v1/integrations", headers=oidc.headers(), json=body)
    assert refused.status_code == 422, refused.text
    good = await api.post(
        "/api/v1/integrations",
        headers=oidc.headers(),
        json={**body, "topic_arn": "arn:aws:sns:us-east-1:123456789012:acme-alerts"},
    )
    assert good.status_code == 201, good.text


def _cursor(*values: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(values)).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "query",
    [
        "from=9999-12-31T20:00:00-12:00&to=9999-12-31T21:00:00-12:00",
        "to=0001-01-01T00:00:00%2B00:00",
        "from=0001-01-01T01:00:00%2B12:00",
        "to=9999-12-31T23:59:59",
        f"cursor={_cursor('9999-12-31T23:00:00-12:00')}",
        f"cursor={_cursor('0001-01-01T00:00:00+14:00')}",
    ],
)
async def test_times_that_overflow_are_422_not_500(
    api: httpx.AsyncClient, oidc: TestIssuer, tenants: list[str], query: str
) -> None:
    created = await api.post("/api/v1/devices", headers=oidc.headers(), json={"device_id": "d1"})
    assert created.status_code == 201
    answer = await api.get(f"/api/v1/devices/d1/telemetry?{query}", headers=oidc.headers())
    assert answer.status_code == 422, answer.text
    fine = await api.get("/api/v1/devices/d1/telemetry", headers=oidc.headers())
    assert fine.status_code == 200  # positive control


async def test_profile_expiry_that_overflows_is_422(
    api: httpx.AsyncClient, oidc: TestIssuer, tenants: list[str]
) -> None:
    for moment in ("9999-12-31T23:00:00-12:00", "0001-01-01T00:00:00+14:00"):
        answer = await api.post(
            "/api/v1/provisioning-profiles",
            headers=oidc.headers(),
            json={"name": "p", "expires_at": moment},
        )
        assert answer.status_code == 422, answer.text


async def test_writes_for_a_tenant_that_does_not_exist_are_refused(
    api: httpx.AsyncClient, oidc: TestIssuer, tenants: list[str]
) -> None:
    rule = {"name": "r", "kind": "no_data", "timeout_s": 60, "severity": "major"}
    writes = {
        "/api/v1/rules": rule,
        "/api/v1/integrations": webhook(PUBLIC),
        "/api/v1/devices": {"device_id": "d1"},
        "/api/v1/provisioning-profiles": {"name": "p"},
    }
    for path, body in writes.items():
        ghost = await api.post(path, headers=oidc.headers("ghost"), json=body)
        assert ghost.status_code == 403, (path, ghost.text)
        real = await api.post(path, headers=oidc.headers("acme"), json=body)
        assert real.status_code == 201, (path, real.text)  # positive control
    integration = await api.post(
        "/api/v1/integrations", headers=oidc.headers("acme"), json=webhook(PUBLIC)
    )
    route = {"name": "r", "integration_id": integration.json()["integration_id"]}
    assert (
        await api.post("/api/v1/routes", headers=oidc.headers("ghost"), json=route)
    ).status_code in (403, 422)
    listed = await api.get("/api/v1/rules", headers=oidc.headers("ghost", ("viewer",)))
    assert listed.json()["items"] == []


@pytest.mark.parametrize("claim", ["exp", "nbf", "iat"])
async def test_token_dates_must_be_numbers(
    api: httpx.AsyncClient, oidc: TestIssuer, tenants: list[str], claim: str
) -> None:
    numeric = oidc.claims()[claim]
    as_string = await api.get("/api/v1/rules", headers=oidc.headers(**{claim: str(numeric)}))
    assert as_string.status_code == 401, as_string.text
    as_bool = await api.get("/api/v1/rules", headers=oidc.headers(**{claim: True}))
    assert as_bool.status_code == 401
    fine = await api.get("/api/v1/rules", headers=oidc.headers(**{claim: numeric}))
    assert fine.status_code == 200  # positive control
