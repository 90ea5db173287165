"""Silences with matchers through the API, held notifications through the real dispatcher:
devices, integrations, routes and silences are created with API requests, alert events are
appended as the evaluator appends them, and the dispatcher decides the deliveries."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from fleetpulse.common.eventstore import NewEvent, PostgresEventStore, metadata, stream_id
from fleetpulse.common.projections.alerts import AlertsProjection
from fleetpulse.dispatcher.service import Dispatcher
from fleetpulse.dispatcher.store import PostgresDispatchStore

from .conftest import TestIssuer


def _later(**delta: float) -> str:
    return (datetime.now(UTC) + timedelta(**delta)).isoformat()


async def _alert_event(
    store: PostgresEventStore, tenant: str, alert_id: str, type_: str, data: dict[str, Any]
) -> Any:
    async with store.pool.acquire() as conn, conn.transaction():
        [event] = await store.append(
            stream_id("alert", tenant, alert_id),
            [NewEvent(type_, {"alert_id": alert_id, **data}, metadata(actor="evaluator"))],
            tenant_id=tenant,
            conn=conn,
        )
        await AlertsProjection().apply(conn, event)
        return event


async def _open(
    store: PostgresEventStore,
    dispatcher: Dispatcher,
    device_id: str,
    *,
    tenant: str = "acme",
    rule_id: str = "r1",
    severity: str = "major",
) -> str:
    alert_id = "a" + uuid.uuid4().hex[:10]
    event = await _alert_event(
        store,
        tenant,
        alert_id,
        "AlertOpened",
        {
            "fingerprint": f"{tenant}:{rule_id}:{device_id}:{alert_id}",
            "rule_id": rule_id,
            "rule_name": "hot",
            "device_id": device_id,
            "severity": severity,
            "opened_at": datetime.now(UTC).isoformat(),
            "metric": "temp_c",
            "value": 12.0,
            "threshold": 8.0,
            "reason": "temp_c > 8",
        },
    )
    await dispatcher.handle(event)
    return alert_id


async def _resolve(
    store: PostgresEventStore, dispatcher: Dispatcher, alert_id: str, tenant: str = "acme"
) -> None:
    event = await _alert_event(
        store,
        tenant,
        alert_id,
        "AlertResolved",
        {"resolved_at": datetime.now(UTC).isoformat(), "value": 3.0},
    )
    await dispatcher.handle(event)


async def _notifications(store: PostgresEventStore, alert_id: str) -> list[str]:
    rows = await store.pool.fetch(
        "SELECT notification_type FROM deliveries WHERE alert_id = $1 ORDER BY scheduled_at",
        alert_id,
    )
    return [r["notification_type"] for r in rows]


async def _wire(api: httpx.AsyncClient, oidc: TestIssuer, tenant: str = "acme") -> None:
    """Two devices (sites north and south), a webhook and a route taking every alert."""
    admin = oidc.headers(tenant)
    for device_id, site in (("d-north", "north"), ("d-south", "south")):
        created = await api.post(
            "/api/v1/devices",
            headers=admin,
            json={"device_id": device_id, "name": device_id, "tags": {"site": site}},
        )
        assert created.status_code == 201, created.text
    hook = await api.post(
        "/api/v1/integrations",
        headers=admin,
        json={"name": "hook", "kind": "webhook", "url": "https://hooks.example.com/x"},
    )
    assert hook.status_code == 201, hook.text
    route = await api.post(
        "/api/v1/routes",
        headers=admin,
        json={"name": "all", "integration_id": hook.json()["integration_id"], "match": {}},
    )
    assert route.status_code == 201, route.text


async def test_silence_lifecycle_is_audited_and_tenant_scoped(
    api: httpx.AsyncClient, oidc: TestIssuer, tenants: list[str], event_store: PostgresEventStore
) -> None:
    operator = oidc.headers(roles=("operator",), sub="alice")
    body = {
        "matchers": [{"name": "tags.site", "type": "=", "value": "north"}],
        "ends_at": _later(hours=2),
        "comment": "north site maintenance",
    }
    viewer = await api.post("/api/v1/silences", json=body, headers=oidc.headers(roles=("viewer",)))
    assert viewer.status_code == 403
    created = await api.post("/api/v1/silences", json=body, headers=operator)
    assert created.status_code == 201, created.text
    silence = created.json()
    silence_id = silence["silence_id"]
    assert silence["state"] == "active" and silence["created_by"] == "user:alice"
    assert silence["matchers"] == body["matchers"]
    assert created.headers["Location"] == f"/api/v1/silences/{silence_id}"
    pending = await api.post(
        "/api/v1/silences",
        json={**body, "starts_at": _later(hours=1), "comment": "later"},
        headers=operator,
    )
    assert pending.json()["state"] == "pending"

    listed = await api.get("/api/v1/silences", params={"state": "active"}, headers=operator)
    assert [s["silence_id"] for s in listed.json()["items"]] == [silence_id]
    everything = await api.get("/api/v1/silences", headers=operator)
    assert len(everything.json()["items"]) == 2
    # another tenant neither sees nor expires it
    globex = oidc.headers("globex", roles=("operator",))
    assert (await api.get(f"/api/v1/silences/{silence_id}", headers=globex)).status_code == 404
    assert (await api.delete(f"/api/v1/silences/{silence_id}", headers=globex)).status_code == 404
    assert (await api.get("/api/v1/silences", headers=globex)).json()["items"] == []

    expired = await api.delete(f"/api/v1/silences/{silence_id}", headers=operator)
    assert expired.status_code == 200 and expired.json()["state"] == "expired"
    assert expired.json()["expired_by"] == "user:alice"
    again = await api.delete(f"/api/v1/silences/{silence_id}", headers=operator)
    assert again.status_code == 409
    fetched = await api.get(f"/api/v1/silences/{silence_id}", headers=operator)
    assert fetched.json()["state"] == "expired"

    events = await event_store.pool.fetch(
        "SELECT type, tenant_id, data, metadata FROM events WHERE stream_id = $1 ORDER BY version",
        stream_id("silence", "acme", silence_id),
    )
    assert [e["type"] for e in events] == ["SilenceCreated", "SilenceExpired"]
    assert {e["tenant_id"] for e in events} == {"acme"}
    assert events[0]["data"]["comment"] == "north site maintenance"
    assert events[1]["metadata"]["actor"] == "user:alice"


async def test_bad_silences_are_422_naming_the_field(
    api: httpx.AsyncClient, oidc: TestIssuer, tenants: list[str], event_store: PostgresEventStore
) -> None:
    operator = oidc.headers(roles=("operator",))
    good = {"name": "rule_id", "type": "=", "value": "r1"}
    cases: list[tuple[dict[str, Any], str]] = [
        ({"matchers": [{"name": "rule_id", "type": "=~", "value": "(r1"}]}, "matchers[0].value"),
        ({"matchers": [{"name": "rule_id", "type": "=~", "value": "(?=x)"}]}, "matchers[0].value"),
        ({"matchers": [{"name": "rule_id", "type": "=~", "value": ".*"}]}, "body.matchers"),
        ({"matchers": [{"name": "rule_id", "type": "!=", "value": "r1"}]}, "body.matchers"),
        ({"matchers": [good, {"name": "Rule Id", "value": "x"}]}, "matchers[1].name"),
        # a label no alert has: such a silence would silently match nothing
        ({"matchers": [good, {"name": "bogus", "value": "a"}]}, "matchers[1].name"),
        ({"matchers": [good, {"name": "tags.", "value": "a"}]}, "matchers[1].name"),
        ({"matchers": [{"name": "rule_id", "type": "~", "value": "x"}]}, "type"),
        ({"matchers": []}, "matchers"),
        ({"ends_at": _later(hours=-1)}, "ends_at"),
        ({"starts_at": _later(hours=3), "ends_at": _later(hours=2)}, "ends_at"),
        ({"ends_at": _later(days=400)}, "ends_at"),
        ({"comment": ""}, "comment"),
        ({"comment": "two\nlines"}, "comment"),
    ]
    for override, field in cases:
        body = {"matchers": [good], "ends_at": _later(hours=1), "comment": "c", **override}
        response = await api.post("/api/v1/silences", json=body, headers=operator)
        assert response.status_code == 422, (override, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        assert field in response.text, (override, response.text)
    count = await event_store.pool.fetchval(
        "SELECT count(*) FROM events WHERE type = 'SilenceCreated'"
    )
    assert count == 0
    # the positive control: the same body without the fault is accepted
    ok = await api.post(
        "/api/v1/silences",
        json={"matchers": [good], "ends_at": _later(hours=1), "comment": "c"},
        headers=operator,
    )
    assert ok.status_code == 201, ok.text


async def test_a_silenced_alert_opens_and_resolves_without_notifications(
    api: httpx.AsyncClient, oidc: TestIssuer, tenants: list[str], event_store: PostgresEventStore
) -> None:
    await _wire(api, oidc)
    operator = oidc.headers(roles=("operator",))
    silence = await api.post(
        "/api/v1/silences",
        headers=operator,
        json={
            "matchers": [
                {"name": "tags.site", "type": "=", "value": "north"},
                {"name": "severity", "type": "=~", "value": "major|critical"},
                {"name": "rule_id", "type": "!~", "value": "r-test.*"},
            ],
            "ends_at": _later(hours=1),
            "comment": "north maintenance",
        },
    )
    assert silence.status_code == 201, silence.text
    dispatcher = Dispatcher(PostgresDispatchStore(event_store))

    held = await _open(event_store, dispatcher, "d-north")
    south = await _open(event_store, dispatcher, "d-south")  # positive control: other site
    minor = await _open(event_store, dispatcher, "d-north", severity="minor")  # severity !~
    probe = await _open(event_store, dispatcher, "d-north", rule_id="r-test-7")  # rule_id !~
    assert await _notifications(event_store, held) == []
    assert await _notifications(event_store, south) == ["firing"]
    assert await _notifications(event_store, minor) == ["firing"]
    assert await _notifications(event_store, probe) == ["firing"]

    for alert_id in (held, south):
        await _resolve(event_store, dispatcher, alert_id)
    statuses = {
        a["alert_id"]: a["status"]
        for a in (await api.get("/api/v1/alerts", headers=operator)).json()["items"]
    }
    assert statuses[held] == "resolved" and statuses[south] == "resolved"
    # no resolved notification for a firing one that was never sent; the control gets its own
    assert await _notifications(event_store, held) == []
    assert await _notifications(event_store, south) == ["firing", "resolved"]

    # expired early: the next alert on the north site is notified again
    await api.delete(f"/api/v1/silences/{silence.json()['silence_id']}", headers=operator)
    after = await _open(event_store, dispatcher, "d-north")
    assert await _notifications(event_store, after) == ["firing"]


async def test_pending_silences_and_other_tenants_silences_hold_nothing(
    api: httpx.AsyncClient, oidc: TestIssuer, tenants: list[str], event_store: PostgresEventStore
) -> None:
    await _wire(api, oidc)
    everything = [{"name": "severity", "type": "=~", "value": ".+"}]
    globex = await api.post(
        "/api/v1/silences",
        headers=oidc.headers("globex", roles=("operator",)),
        json={"matchers": everything, "ends_at": _later(hours=1), "comment": "globex only"},
    )
    assert globex.status_code == 201, globex.text
    pending = await api.post(
        "/api/v1/silences",
        headers=oidc.headers(roles=("operator",)),
        json={
            "matchers": everything,
            "starts_at": _later(minutes=30),
            "ends_at": _later(hours=1),
            "comment": "not yet",
        },
    )
    assert pending.json()["state"] == "pending"
    dispatcher = Dispatcher(PostgresDispatchStore(event_store))
    notified = await _open(event_store, dispatcher, "d-north")
    assert await _notifications(event_store, notified) == ["firing"]
    # the positive control: the same matchers active in acme hold the next alert
    await api.post(
        "/api/v1/silences",
        headers=oidc.headers(roles=("operator",)),
        json={"matchers": everything, "ends_at": _later(hours=1), "comment": "now"},
    )
    held = await _open(event_store, dispatcher, "d-north")
    assert await _notifications(event_store, held) == []


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


async def test_a_held_alert_still_firing_is_notified_once_its_silence_ends(
    api: httpx.AsyncClient, oidc: TestIssuer, tenants: list[str], event_store: PostgresEventStore
) -> None:
    """As in Alertmanager: a silence holds the firing notification; when it expires and the
    alert still fires, the notification goes out. One that resolved meanwhile never does."""
    await _wire(api, oidc)
    operator = oidc.headers(roles=("operator",))
    silence = await api.post(
        "/api/v1/silences",
        headers=operator,
        json={
            "matchers": [{"name": "tags.site", "type": "=", "value": "north"}],
            "ends_at": _later(hours=1),
            "comment": "north maintenance",
        },
    )
    clock = Clock()
    dispatcher = Dispatcher(PostgresDispatchStore(event_store), clock)
    still_firing = await _open(event_store, dispatcher, "d-north")
    resolved = await _open(event_store, dispatcher, "d-north", rule_id="r2")
    await _resolve(event_store, dispatcher, resolved)
    clock.now += timedelta(seconds=31)
    assert await dispatcher.release_held() == 1  # re-checked: still silenced, held again
    assert await _notifications(event_store, still_firing) == []

    await api.delete(f"/api/v1/silences/{silence.json()['silence_id']}", headers=operator)
    assert await dispatcher.release_held() == 0  # not due again yet
    clock.now += timedelta(seconds=31)
    assert await dispatcher.release_held() == 1
    assert await _notifications(event_store, still_firing) == ["firing"]
    assert await _notifications(event_store, resolved) == []
    clock.now += timedelta(seconds=31)
    assert await dispatcher.release_held() == 0  # released once
    await _resolve(event_store, dispatcher, still_firing)
    assert await _notifications(event_store, still_firing) == ["firing", "resolved"]
