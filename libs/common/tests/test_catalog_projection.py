"""Catalog projection: rows follow the log, applying twice or rebuilding changes nothing."""

from __future__ import annotations

from typing import Any

import asyncpg

from fleetpulse.common.eventstore import NO_STREAM, NewEvent, PostgresEventStore, ProjectionRunner
from fleetpulse.common.projections.catalog import CatalogProjection

T = "acme"


Event = tuple[str, dict[str, Any]]


async def _append(store: PostgresEventStore, stream: str, *events: Event) -> None:
    await store.append(stream, [NewEvent(t, d) for t, d in events], tenant_id=T)


async def _seed(store: PostgresEventStore) -> None:
    await store.append(
        "tenant-acme",
        [NewEvent("TenantCreated", {"tenant_id": T, "name": "Acme"})],
        tenant_id=T,
        expected_version=NO_STREAM,
    )
    await _append(
        store,
        "device-acme-d1",
        (
            "DeviceRegistered",
            {
                "device_id": "d1",
                "name": "pump",
                "tags": {"site": "a"},
                "registered_at": "2026-01-01T00:00:00Z",
            },
        ),
        (
            "DeviceCredentialsIssued",
            {
                "device_id": "d1",
                "username": "acme.d1",
                "client_id": "acme.d1",
                "credentials_version": 1,
            },
        ),
        ("DeviceCredentialsRotated", {"device_id": "d1", "credentials_version": 2}),
        ("DeviceUpdated", {"device_id": "d1", "attributes": {"max_temp_c": 8, "site": "b"}}),
        ("DeviceUpdated", {"device_id": "d1", "name": None}),
        ("DeviceDecommissioned", {"device_id": "d1", "decommissioned_at": "2026-01-02T00:00:00Z"}),
    )
    rule = {
        "rule_id": "r1",
        "name": "hot",
        "kind": "threshold",
        "severity": "major",
        "metric": "temp_c",
        "operator": "gt",
        "threshold": 30,
        "device_selector": {"tags": {}},
    }
    await _append(
        store, "rule-acme-r1", ("RuleCreated", rule), ("RuleUpdated", {**rule, "threshold": 35})
    )
    await _append(
        store,
        "rule-acme-r2",
        ("RuleCreated", {**rule, "rule_id": "r2"}),
        ("RuleDeleted", {"rule_id": "r2"}),
    )
    condition = {"metric": "temp_c", "aggregate": "avg", "window_s": 60, "operator": "gt"}
    await _append(
        store,
        "rule-acme-r3",
        ("RuleCreated", {**rule, "rule_id": "r3"}),
        (
            "RuleUpdated",
            {
                "rule_id": "r3",
                "name": "warming",
                "kind": "condition",
                "severity": "minor",
                "all": [{**condition, "threshold_from": "attributes.max_temp_c", "default": 9}],
                "schedule": {"timezone": "UTC", "windows": [{"start": "08:00", "end": "18:00"}]},
                "enabled": False,
            },
        ),
    )
    hook = {"integration_id": "i1", "kind": "webhook"}
    await _append(
        store,
        "integration-acme-i1",
        (
            "IntegrationCreated",
            {**hook, "name": "hook", "config": {"url": "https://x"}, "secret_sealed": "v1.x"},
        ),
        ("IntegrationUpdated", {**hook, "name": "hook2", "config": {"url": "https://y"}}),
        ("IntegrationDisabled", {"integration_id": "i1", "reason": "410 Gone"}),
    )
    await _append(
        store,
        "route-acme-o1",
        (
            "RouteCreated",
            {
                "route_id": "o1",
                "name": "all",
                "integration_id": "i1",
                "match": {},
                "group_by": [],
                "group_wait_s": 0,
                "repeat_interval_s": None,
            },
        ),
    )
    await _append(
        store,
        "profile-acme-p1",
        (
            "ProvisioningProfileCreated",
            {
                "profile_id": "p1",
                "name": "fleet",
                "provision_key": "pk_1",
                "secret_hash": "h",
                "device_limit": 5,
                "expires_at": None,
                "tags": {},
            },
        ),
        ("ProvisioningProfileClaimed", {"profile_id": "p1", "device_id": "d1"}),
    )


async def _snapshot(pool: asyncpg.Pool) -> dict[str, list[dict[str, Any]]]:
    tables = (
        "tenants",
        "devices",
        "provisioning_profiles",
        "rules",
        "integrations",
        "routes",
        "catalog_tombstones",
    )
    return {
        t: [dict(r) for r in await pool.fetch(f"SELECT * FROM {t} ORDER BY 1, 2")]  # noqa: S608
        for t in tables
    }


async def test_rows_reflect_the_latest_events(event_store: PostgresEventStore) -> None:
    await _seed(event_store)
    await ProjectionRunner(event_store, CatalogProjection()).catch_up()
    pool = event_store.pool
    device = await pool.fetchrow("SELECT * FROM devices WHERE device_id = 'd1'")
    assert device["status"] == "decommissioned"
    assert (device["credentials_version"], device["version"]) == (2, 6)
    assert device["tags"] == {"site": "a"}  # DeviceUpdated changes only the fields it carries
    assert device["attributes"] == {"max_temp_c": 8, "site": "b"}
    assert device["name"] is None
    rule = await pool.fetchrow("SELECT * FROM rules WHERE rule_id = 'r1'")
    assert rule["definition"] == {"metric": "temp_c", "operator": "gt", "threshold": 35}
    assert rule["enabled"] is True  # events from before ``enabled`` existed: enabled
    condition = await pool.fetchrow("SELECT * FROM rules WHERE rule_id = 'r3'")
    assert (condition["kind"], condition["enabled"]) == ("condition", False)
    assert condition["definition"]["all"][0]["threshold_from"] == "attributes.max_temp_c"
    assert condition["definition"]["schedule"]["timezone"] == "UTC"
    assert await pool.fetchval("SELECT count(*) FROM rules WHERE rule_id = 'r2'") == 0
    integration = await pool.fetchrow("SELECT * FROM integrations")
    assert (integration["name"], integration["secret_sealed"], integration["status"]) == (
        "hook2",
        "v1.x",
        "disabled",
    )
    profile = await pool.fetchrow("SELECT * FROM provisioning_profiles")
    assert (profile["devices_claimed"], profile["version"]) == (1, 2)


async def test_applying_every_event_twice_changes_nothing(event_store: PostgresEventStore) -> None:
    await _seed(event_store)
    runner = ProjectionRunner(event_store, CatalogProjection())
    await runner.catch_up()
    before = await _snapshot(event_store.pool)
    projection = CatalogProjection()
    async with event_store.pool.acquire() as conn:
        for event in await event_store.read_all(limit=1000):
            await projection.apply(conn, event)
    assert await _snapshot(event_store.pool) == before


async def test_rebuild_yields_identical_rows(event_store: PostgresEventStore) -> None:
    await _seed(event_store)
    runner = ProjectionRunner(event_store, CatalogProjection())
    await runner.catch_up()
    before = await _snapshot(event_store.pool)
    await runner.rebuild()
    assert await _snapshot(event_store.pool) == before
