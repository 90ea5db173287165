"""Inhibit rules through the API, muting through the real dispatcher: a site's gateway
no_data alert mutes the alerts of the site's other devices (labels from device tags)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from fleetpulse.common.eventstore import PostgresEventStore, stream_id
from fleetpulse.dispatcher.service import Dispatcher
from fleetpulse.dispatcher.store import PostgresDispatchStore

from .conftest import TestIssuer
from .test_silences import _notifications, _open, _resolve

GATEWAY_RULE = {
    "name": "gateway down mutes its site",
    "source_matchers": [
        {"name": "tags.role", "type": "=", "value": "gateway"},
        {"name": "rule_id", "type": "=", "value": "r-nodata"},
    ],
    "target_matchers": [{"name": "tags.role", "type": "!=", "value": "gateway"}],
    "equal": ["tags.site"],
}
DEVICES = {
    "gw-north": {"role": "gateway", "site": "north"},
    "s-north": {"role": "sensor", "site": "north"},
    "s-south": {"role": "sensor", "site": "south"},
}


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


async def _wire(
    api: httpx.AsyncClient, oidc: TestIssuer, tenant: str, route: dict[str, Any]
) -> None:
    admin = oidc.headers(tenant)
    for device_id, tags in DEVICES.items():
        created = await api.post(
            "/api/v1/devices",
            headers=admin,
            json={"device_id": device_id, "name": device_id, "tags": tags},
        )
        assert created.status_code == 201, created.text
    hook = await api.post(
        "/api/v1/integrations",
        headers=admin,
        json={"name": "hook", "kind": "webhook", "url": "https://hooks.example.com/x"},
    )
    created = await api.post(
        "/api/v1/routes",
        headers=admin,
        json={"name": "all", "integration_id": hook.json()["integration_id"], **route},
    )
    assert created.status_code == 201, created.text


async def test_a_gateway_alert_mutes_its_sites_devices_only_while_open(
    api: httpx.AsyncClient, oidc: TestIssuer, tenants: list[str], event_store: PostgresEventStore
) -> None:
    for tenant in tenants:
        await _wire(api, oidc, tenant, {})
    created = await api.post("/api/v1/inhibit_rules", headers=oidc.headers(), json=GATEWAY_RULE)
    assert created.status_code == 201, created.text
    rule = created.json()
    assert rule["equal"] == ["tags.site"] and rule["created_by"].startswith("user:")
    dispatcher = Dispatcher(PostgresDispatchStore(event_store))

    # globex's gateway is down: it inhibits nothing in acme (tenant isolation)
    await _open(event_store, dispatcher, "gw-north", tenant="globex", rule_id="r-nodata")
    before = await _open(event_store, dispatcher, "s-north")
    assert await _notifications(event_store, before) == ["firing"]

    gateway = await _open(event_store, dispatcher, "gw-north", rule_id="r-nodata")
    assert await _notifications(event_store, gateway) == ["firing"]  # a source is not muted
    north = await _open(event_store, dispatcher, "s-north", rule_id="r-hot")
    south = await _open(event_store, dispatcher, "s-south", rule_id="r-hot")
    other_gateway_rule = await _open(event_store, dispatcher, "gw-north", rule_id="r-hot")
    assert await _notifications(event_store, north) == []  # muted
    assert await _notifications(event_store, south) == ["firing"]  # another site
    assert await _notifications(event_store, other_gateway_rule) == ["firing"]  # not a target

    # the muted alert still resolves, silently; once the gateway is back, the site is heard
    await _resolve(event_store, dispatcher, north)
    assert await _notifications(event_store, north) == []
    await _resolve(event_store, dispatcher, gateway)
    after = await _open(event_store, dispatcher, "s-north", rule_id="r-cold")
    assert await _notifications(event_store, after) == ["firing"]

    # read, tenant-scoped, deleted as an audited event
    rule_id = rule["inhibit_rule_id"]
    assert (await api.get(f"/api/v1/inhibit_rules/{rule_id}", headers=oidc.headers())).is_success
    globex = oidc.headers("globex")
    assert (await api.get(f"/api/v1/inhibit_rules/{rule_id}", headers=globex)).status_code == 404
    assert (await api.delete(f"/api/v1/inhibit_rules/{rule_id}", headers=globex)).status_code == 404
    assert (await api.get("/api/v1/inhibit_rules", headers=globex)).json()["items"] == []
    deleted = await api.delete(f"/api/v1/inhibit_rules/{rule_id}", headers=oidc.headers())
    assert deleted.status_code == 204
    assert (await api.get("/api/v1/inhibit_rules", headers=oidc.headers())).json()["items"] == []
    types = await event_store.pool.fetch(
        "SELECT type FROM events WHERE stream_id = $1 ORDER BY version",
        stream_id("inhibit", "acme", rule_id),
    )
    assert [t["type"] for t in types] == ["InhibitRuleCreated", "InhibitRuleDeleted"]


async def test_group_wait_lets_a_source_that_opens_just_after_mute_its_targets(
    api: httpx.AsyncClient, oidc: TestIssuer, tenants: list[str], event_store: PostgresEventStore
) -> None:
    await _wire(api, oidc, "acme", {"group_by": ["tags.site"], "group_wait_s": 30})
    await api.post("/api/v1/inhibit_rules", headers=oidc.headers(), json=GATEWAY_RULE)
    clock = Clock()
    dispatcher = Dispatcher(PostgresDispatchStore(event_store), clock)
    north = await _open(event_store, dispatcher, "s-north", rule_id="r-nodata")
    south = await _open(event_store, dispatcher, "s-south", rule_id="r-nodata")
    gateway = await _open(event_store, dispatcher, "gw-north", rule_id="r-nodata")
    clock.now += timedelta(seconds=31)
    await dispatcher.flush_due_groups()
    assert await _notifications(event_store, north) == []
    assert await _notifications(event_store, south) == ["firing"]
    assert await _notifications(event_store, gateway) == ["firing"]


async def test_bad_inhibit_rules_are_422(
    api: httpx.AsyncClient, oidc: TestIssuer, tenants: list[str], event_store: PostgresEventStore
) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"target_matchers": [{"name": "rule_id", "type": "=~", "value": "(x"}]}, "target"),
        ({"source_matchers": []}, "source_matchers"),
        ({"equal": ["Not A Label"]}, "equal[0]"),
        ({"equal": ["nope"]}, "equal[0]"),  # a label no alert has
        ({"source_matchers": [{"name": "", "value": "x"}]}, "source_matchers[0].name"),
    ]
    for override, field in cases:
        response = await api.post(
            "/api/v1/inhibit_rules", headers=oidc.headers(), json={**GATEWAY_RULE, **override}
        )
        assert response.status_code == 422 and field in response.text, (override, response.text)
    viewer = oidc.headers(roles=("operator",))
    assert (
        await api.post("/api/v1/inhibit_rules", headers=viewer, json=GATEWAY_RULE)
    ).status_code == 403
    assert (await api.get("/api/v1/inhibit_rules", headers=oidc.headers())).json()["items"] == []
    ok = await api.post("/api/v1/inhibit_rules", headers=oidc.headers(), json=GATEWAY_RULE)
    assert ok.status_code == 201


async def test_a_muted_target_still_firing_is_notified_once_its_source_resolves(
    api: httpx.AsyncClient, oidc: TestIssuer, tenants: list[str], event_store: PostgresEventStore
) -> None:
    await _wire(api, oidc, "acme", {})
    await api.post("/api/v1/inhibit_rules", headers=oidc.headers(), json=GATEWAY_RULE)
    clock = Clock()
    dispatcher = Dispatcher(PostgresDispatchStore(event_store), clock)
    gateway = await _open(event_store, dispatcher, "gw-north", rule_id="r-nodata")
    north = await _open(event_store, dispatcher, "s-north", rule_id="r-nodata")
    clock.now += timedelta(seconds=31)
    await dispatcher.release_held()
    assert await _notifications(event_store, north) == []  # the gateway is still down
    await _resolve(event_store, dispatcher, gateway)
    clock.now += timedelta(seconds=31)
    assert await dispatcher.release_held() == 1
    assert await _notifications(event_store, north) == ["firing"]
