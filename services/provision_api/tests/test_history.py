"""Time travel: GET devices/rules/alerts ?as_of=T rebuild the entity from its events up to T,
checked against the live projection."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest

from fleetpulse.common.eventstore import NewEvent, PostgresEventStore, metadata
from fleetpulse.common.projections.alerts import AlertsProjection
from fleetpulse.provision_api import history

from .conftest import TestIssuer
from .test_resources import THRESHOLD


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def just_before(moment: datetime) -> str:
    return iso(moment - timedelta(microseconds=1))


async def test_rule_as_of_gives_each_intermediate_state(
    api: httpx.AsyncClient, oidc: TestIssuer, tenants: list[str], event_store: PostgresEventStore
) -> None:
    admin = oidc.headers()
    rule = (await api.post("/api/v1/rules", json=THRESHOLD, headers=admin)).json()
    path = f"/api/v1/rules/{rule['rule_id']}"
    for version, threshold in ((1, 9), (2, 10)):
        response = await api.put(
            path,
            json={**THRESHOLD, "threshold": threshold},
            headers={**admin, "If-Match": f'"{version}"'},
        )
        assert response.status_code == 200, response.text
    created, first_update, second_update = await event_store.read_stream(
        f"rule-acme-{rule['rule_id']}"
    )
    current = (await api.get(path, headers=admin)).json()

    now = await api.get(path, params={"as_of": iso(datetime.now(UTC))}, headers=admin)
    assert now.status_code == 200 and now.json() == current
    assert now.headers["etag"] == '"3"'
    between = await api.get(
        path, params={"as_of": just_before(second_update.recorded_at)}, headers=admin
    )
    assert (between.json()["threshold"], between.json()["version"]) == (9, 2)
    at_creation = await api.get(path, params={"as_of": iso(created.recorded_at)}, headers=admin)
    assert (at_creation.json()["threshold"], at_creation.json()["version"]) == (8, 1)
    before = await api.get(path, params={"as_of": just_before(created.recorded_at)}, headers=admin)
    assert before.status_code == 404
    assert before.headers["content-type"] == "application/problem+json"
    assert first_update.recorded_at < second_update.recorded_at
    # live state untouched by the rebuilds
    assert (await api.get(path, headers=admin)).json() == current


async def test_deleted_rule_is_gone_now_but_visible_before_its_deletion(
    api: httpx.AsyncClient, oidc: TestIssuer, tenants: list[str], event_store: PostgresEventStore
) -> None:
    admin = oidc.headers()
    rule = (await api.post("/api/v1/rules", json=THRESHOLD, headers=admin)).json()
    path = f"/api/v1/rules/{rule['rule_id']}"
    assert (await api.delete(path, headers={**admin, "If-Match": '"1"'})).status_code == 204
    _, deleted = await event_store.read_stream(f"rule-acme-{rule['rule_id']}")

    gone = await api.get(path, params={"as_of": iso(datetime.now(UTC))}, headers=admin)
    alive = await api.get(path, params={"as_of": just_before(deleted.recorded_at)}, headers=admin)

    assert gone.status_code == 404
    assert alive.status_code == 200 and alive.json()["threshold"] == 8


async def test_device_as_of_before_rotation_and_decommission(
    api: httpx.AsyncClient, oidc: TestIssuer, tenants: list[str], event_store: PostgresEventStore
) -> None:
    headers = oidc.headers()
    response = await api.post("/api/v1/devices", json={"device_id": "d1"}, headers=headers)
    assert response.status_code == 201, response.text
    rotate = await api.post(
        "/api/v1/devices/d1/rotate-credentials", headers={**headers, "If-Match": '"2"'}
    )
    assert rotate.status_code == 200
    assert (
        await api.delete("/api/v1/devices/d1", headers={**headers, "If-Match": '"3"'})
    ).status_code == 200
    events = await event_store.read_stream("device-acme-d1")
    path = "/api/v1/devices/d1"
    current = (await api.get(path, headers=headers)).json()

    now = (await api.get(path, params={"as_of": iso(datetime.now(UTC))}, headers=headers)).json()
    issued = await api.get(path, params={"as_of": iso(events[1].recorded_at)}, headers=headers)
    before = await api.get(
        path, params={"as_of": just_before(events[0].recorded_at)}, headers=headers
    )

    assert now == current and current["status"] == "decommissioned"
    assert issued.json()["status"] == "active"
    assert (issued.json()["credentials_version"], issued.json()["version"]) == (1, 2)
    assert before.status_code == 404
    other_tenant = await api.get(
        path, params={"as_of": iso(datetime.now(UTC))}, headers=oidc.headers("globex")
    )
    assert other_tenant.status_code == 404


async def test_alert_as_of_shows_the_status_and_history_of_then(
    api: httpx.AsyncClient, oidc: TestIssuer, tenants: list[str], event_store: PostgresEventStore
) -> None:
    stream = "alert-acme-a1"
    opened = {
        "alert_id": "a1",
        "fingerprint": "acme:r1:d1",
        "rule_id": "r1",
        "rule_name": "hot",
        "device_id": "d1",
        "severity": "major",
        "opened_at": datetime.now(UTC).isoformat(),
        "metric": "temp_c",
        "value": 99.0,
        "threshold": 80.0,
        "reason": "temp_c > 80",
    }
    for type_, data in (
        ("AlertOpened", opened),
        ("AlertAcknowledged", {"alert_id": "a1", "by": "op"}),
    ):
        async with event_store.pool.acquire() as conn, conn.transaction():
            [event] = await event_store.append(
                stream, [NewEvent(type_, data, metadata(actor="test"))], tenant_id="acme", conn=conn
            )
            await AlertsProjection().apply(conn, event)
    first, _ = await event_store.read_stream(stream)
    path, headers = "/api/v1/alerts/a1", oidc.headers(roles=("viewer",))
    current = (await api.get(path, headers=headers)).json()

    now = (await api.get(path, params={"as_of": iso(datetime.now(UTC))}, headers=headers)).json()
    then = (await api.get(path, params={"as_of": iso(first.recorded_at)}, headers=headers)).json()

    assert now == current and current["status"] == "acknowledged"
    assert then["status"] == "open" and [e["type"] for e in then["events"]] == ["AlertOpened"]
    assert len(current["events"]) == 2


@pytest.mark.parametrize(
    "as_of",
    ["yesterday", "2026-13-01T00:00:00Z", "9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00"],
)
async def test_bad_or_overflowing_as_of_is_a_422_problem(
    api: httpx.AsyncClient, oidc: TestIssuer, tenants: list[str], as_of: str
) -> None:
    rule = (await api.post("/api/v1/rules", json=THRESHOLD, headers=oidc.headers())).json()
    for path in (f"/api/v1/rules/{rule['rule_id']}", "/api/v1/devices/d1", "/api/v1/alerts/a1"):
        response = await api.get(path, params={"as_of": as_of}, headers=oidc.headers())
        assert response.status_code == 422, (path, response.text)
        assert response.headers["content-type"] == "application/problem+json"


async def test_a_fold_that_would_write_a_live_table_fails_instead(
    api: httpx.AsyncClient,
    oidc: TestIssuer,
    tenants: list[str],
    event_store: PostgresEventStore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The scratch transaction is read-only but for its temporary tables: a replay missing a table
    its handlers write (here the tombstones RuleDeleted writes) cannot touch live rows."""
    admin = oidc.headers()
    rule = (await api.post("/api/v1/rules", json=THRESHOLD, headers=admin)).json()
    path = f"/api/v1/rules/{rule['rule_id']}"
    assert (await api.delete(path, headers={**admin, "If-Match": '"1"'})).status_code == 204
    now = iso(datetime.now(UTC))
    assert (await api.get(path, params={"as_of": now}, headers=admin)).status_code == 404

    replay = history.REPLAYS["rule"]
    monkeypatch.setitem(history.REPLAYS, "rule", history.Replay(replay.projection, ("rules",)))
    with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
        await history.read_as_of(
            event_store.pool,
            "rule",
            "acme",
            rule["rule_id"],
            datetime.now(UTC),
            lambda q: q.rule("acme", rule["rule_id"]),
        )
    tombstones = await event_store.pool.fetchval("SELECT count(*) FROM catalog_tombstones")
    assert tombstones == 1  # the live table holds only the real tombstone
