"""Rules, integrations (secret once, sealed at rest), routes, alerts, deliveries, quarantine,
telemetry: every write is an event, updates honour If-Match, reads come from projections."""

from __future__ import annotations

import base64
import logging
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest

from fleetpulse.common.crypto import SecretBox, open_values
from fleetpulse.common.eventstore import NO_STREAM, NewEvent, PostgresEventStore
from fleetpulse.common.projections.alerts import AlertsProjection
from fleetpulse.common.webhooks import headers_owner
from fleetpulse.provision_api.settings import Settings

from .conftest import TestIssuer

THRESHOLD = {
    "name": "hot",
    "kind": "threshold",
    "metric": "temp_c",
    "operator": "gt",
    "threshold": 8,
    "severity": "major",
    "device_selector": {"tags": {"kind": "reefer"}},
}


async def test_rule_lifecycle_with_if_match(
    api: httpx.AsyncClient, oidc: TestIssuer, tenants: list[str], event_store: PostgresEventStore
) -> None:
    admin = oidc.headers()
    created = await api.post("/api/v1/rules", json=THRESHOLD, headers=admin)
    assert created.status_code == 201, created.text
    rule = created.json()
    assert (rule["metric"], rule["threshold"], rule["version"]) == ("temp_c", 8, 1)
    path = f"/api/v1/rules/{rule['rule_id']}"
    updated = await api.put(
        path, json={**THRESHOLD, "threshold": 9}, headers={**admin, "If-Match": '"1"'}
    )
    assert updated.status_code == 200 and updated.json()["threshold"] == 9
    stale = await api.put(path, json=THRESHOLD, headers={**admin, "If-Match": '"1"'})
    assert stale.status_code == 412
    assert stale.headers["content-type"] == "application/problem+json"
    assert (await api.delete(path, headers={**admin, "If-Match": '"2"'})).status_code == 204
    assert (await api.get(path, headers=admin)).status_code == 404
    stream = await event_store.read_stream(f"rule-acme-{rule['rule_id']}")
    assert [e.type for e in stream] == ["RuleCreated", "RuleUpdated", "RuleDeleted"]
    assert stream[0].data["device_selector"] == {"tags": {"kind": "reefer"}}
    assert stream[0].metadata["actor"] == "user:user-1"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**THRESHOLD, "operator": "approx"}, "body.threshold.operator"),
        ({**THRESHOLD, "metric": "Temp"}, "body.threshold.metric"),
        ({"name": "x", "kind": "no_data", "severity": "info"}, "body.no_data.timeout_s"),
        ({"name": "x", "kind": "sometimes", "severity": "info"}, "body"),
    ],
)
async def test_rule_validation_names_the_field(
    body: dict[str, object],
    field: str,
    api: httpx.AsyncClient,
    oidc: TestIssuer,
    tenants: list[str],
) -> None:
    response = await api.post("/api/v1/rules", json=body, headers=oidc.headers())
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == field


async def test_webhook_secret_is_returned_once_and_sealed(
    api: httpx.AsyncClient,
    oidc: TestIssuer,
    tenants: list[str],
    settings: Settings,
    event_store: PostgresEventStore,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    admin = oidc.headers()
    created = await api.post(
        "/api/v1/integrations",
        headers=admin,
        json={"name": "hook", "kind": "webhook", "url": "https://hooks.example.com/x"},
    )
    assert created.status_code == 201, created.text
    secret = created.json()["secret"]
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) == 32
    integration_id = created.json()["integration_id"]
    fetched = await api.get(f"/api/v1/integrations/{integration_id}", headers=admin)
    listed = await api.get("/api/v1/integrations", headers=admin)
    updated = await api.put(
        f"/api/v1/integrations/{integration_id}",
        headers=admin,
        json={"name": "hook2", "kind": "webhook", "url": "https://hooks.example.com/y"},
    )
    for response in (fetched, listed, updated):
        assert response.status_code == 200
        assert secret not in response.text and "secret" not in response.json()
    events = await event_store.read_all(limit=100)
    assert all(secret not in str(e.data) for e in events)
    sealed = await event_store.pool.fetchval(
        "SELECT secret_sealed FROM integrations WHERE integration_id = $1", integration_id
    )
    box = SecretBox(settings.webhook_encryption_key.get_secret_value())
    assert box.open(sealed, f"acme:{integration_id}") == secret
    assert secret not in caplog.text
    kind_change = await api.put(
        f"/api/v1/integrations/{integration_id}",
        headers=admin,
        json={"name": "x", "kind": "email", "to": ["ops@example.com"]},
    )
    assert kind_change.status_code == 422
    disabled = await api.delete(f"/api/v1/integrations/{integration_id}", headers=admin)
    assert disabled.json()["status"] == "disabled"


async def test_custom_header_values_are_sealed_and_never_shown(
    api: httpx.AsyncClient,
    oidc: TestIssuer,
    tenants: list[str],
    settings: Settings,
    event_store: PostgresEventStore,
) -> None:
    admin, token = oidc.headers(), "Bearer on-call-9f2c"
    body = {
        "name": "hook",
        "kind": "webhook",
        "url": "https://hooks.example.com/x",
        "headers": {"Authorization": token, "X-Team": "ops"},
    }
    created = await api.post("/api/v1/integrations", headers=admin, json=body)
    assert created.status_code == 201, created.text
    integration_id = created.json()["integration_id"]
    path = f"/api/v1/integrations/{integration_id}"
    updated = await api.put(
        path,
        headers={**admin, "If-Match": '"1"'},
        json={**body, "headers": {"Authorization": token + "-v2"}},
    )
    fetched = await api.get(path, headers=admin)
    listed = await api.get("/api/v1/integrations", headers=admin)
    assert created.json()["config"]["headers"] == {
        "Authorization": "<sealed>",
        "X-Team": "<sealed>",
    }
    for response in (updated, fetched, listed):
        assert response.status_code == 200, response.text
        assert token not in response.text and "v1." not in response.text
    assert fetched.json()["config"]["headers"] == {"Authorization": "<sealed>"}
    events = await event_store.read_stream(f"integration-acme-{integration_id}")
    assert all(token not in str(e.data) for e in events)
    box = SecretBox(settings.webhook_encryption_key.get_secret_value())
    stored = events[-1].data["config"]["headers"]
    assert open_values(box, stored, headers_owner("acme", integration_id)) == {
        "Authorization": token + "-v2"
    }


async def test_routes_need_an_integration_of_the_tenant(
    api: httpx.AsyncClient, oidc: TestIssuer, tenants: list[str]
) -> None:
    other = await api.post(
        "/api/v1/integrations",
        headers=oidc.headers("globex"),
        json={"name": "m", "kind": "mqtt", "topic": "fleetpulse/globex/alerts/out"},
    )
    route = {
        "name": "all",
        "integration_id": other.json()["integration_id"],
        "match": {"severity_at_least": "major"},
    }
    refused = await api.post("/api/v1/routes", headers=oidc.headers(), json=route)
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == "body.integration_id"
    own = await api.post(
        "/api/v1/integrations",
        headers=oidc.headers(),
        json={"name": "s", "kind": "sns", "topic_arn": "arn:aws:sns:eu-west-1:123456789012:alerts"},
    )
    created = await api.post(
        "/api/v1/routes",
        headers=oidc.headers(),
        json={**route, "integration_id": own.json()["integration_id"]},
    )
    assert created.status_code == 201, created.text
    assert created.json()["match"] == {"severity_at_least": "major"}


async def _open_alert(store: PostgresEventStore, alert_id: str, tenant: str = "acme") -> None:
    async with store.pool.acquire() as conn, conn.transaction():
        recorded = await store.append(
            f"alert-{tenant}-{alert_id}",
            [
                NewEvent(
                    "AlertOpened",
                    {
                        "alert_id": alert_id,
                        "fingerprint": f"{tenant}:r1:d1",
                        "rule_id": "r1",
                        "rule_name": "hot",
                        "device_id": "d1",
                        "severity": "major",
                        "opened_at": "2026-01-01T00:00:00Z",
                        "reason": "temp_c > 8",
                    },
                )
            ],
            tenant_id=tenant,
            expected_version=NO_STREAM,
            conn=conn,
        )
        await AlertsProjection().apply(conn, recorded[0])


async def test_alert_ack_silence_close(
    api: httpx.AsyncClient, oidc: TestIssuer, tenants: list[str], event_store: PostgresEventStore
) -> None:
    await _open_alert(event_store, "a1")
    operator = oidc.headers(roles=("operator",))
    listed = await api.get("/api/v1/alerts", params={"status": "open"}, headers=operator)
    assert [a["alert_id"] for a in listed.json()["items"]] == ["a1"]
    acked = await api.post("/api/v1/alerts/a1/ack", headers={**operator, "If-Match": '"1"'})
    assert acked.status_code == 200 and acked.json()["status"] == "acknowledged"
    assert (await api.post("/api/v1/alerts/a1/ack", headers=operator)).status_code == 409
    silenced = await api.post(
        "/api/v1/alerts/a1/silence", json={"duration_s": 3600}, headers=operator
    )
    until = datetime.fromisoformat(silenced.json()["silenced_until"])
    assert timedelta(minutes=59) < until - datetime.now(UTC) <= timedelta(hours=1)
    closed = await api.post("/api/v1/alerts/a1/close", headers={**operator, "If-Match": '"3"'})
    assert closed.json()["status"] == "closed"
    detail = await api.get("/api/v1/alerts/a1", headers=oidc.headers(roles=("viewer",)))
    assert [e["type"] for e in detail.json()["events"]] == [
        "AlertOpened",
        "AlertAcknowledged",
        "AlertSilenced",
        "AlertClosed",
    ]
    assert (await api.get("/api/v1/alerts/a1", headers=oidc.headers("globex"))).status_code == 404


async def test_deliveries_quarantine_and_telemetry(
    api: httpx.AsyncClient, oidc: TestIssuer, tenants: list[str], event_store: PostgresEventStore
) -> None:
    pool = event_store.pool
    await api.post("/api/v1/devices", json={"device_id": "d1"}, headers=oidc.headers())
    await pool.execute("""
        INSERT INTO deliveries (tenant_id, delivery_id, alert_id, alert_event_id, integration_id,
            status, attempts, scheduled_at, version)
        VALUES ('acme', 'dlv_1', 'a1', gen_random_uuid(), 'int_1', 'succeeded', 2, now(), 3)""")
    await pool.execute("""
        INSERT INTO delivery_attempts (tenant_id, delivery_id, attempt, attempted_at, status_code)
        VALUES ('acme', 'dlv_1', 1, now(), 503), ('acme', 'dlv_1', 2, now(), 200)""")
    await pool.execute("""
        INSERT INTO quarantine (tenant_id, device_id, topic, reason, detail, payload)
        VALUES ('acme', 'd1', 'tenant/acme/device/d1/telemetry', 'BAD_JSON', 'x', '\\x7b'::bytea)""")
    base = datetime(2026, 1, 1, tzinfo=UTC)
    await pool.executemany(
        "INSERT INTO telemetry (time, tenant_id, device_id, metrics) VALUES ($1, 'acme', 'd1', $2)",
        [
            (base + timedelta(minutes=i), {"temp_c": float(i), "door_open": i % 2 == 0})
            for i in range(10)
        ],
    )
    viewer = oidc.headers(roles=("viewer",))
    deliveries = (
        await api.get("/api/v1/deliveries", params={"alert_id": "a1"}, headers=viewer)
    ).json()
    assert [a["status_code"] for a in deliveries["items"][0]["attempts"]] == [503, 200]
    assert deliveries["items"][0]["attempt_count"] == 2
    quarantined = (await api.get("/api/v1/quarantine", headers=viewer)).json()["items"]
    assert quarantined[0]["reason"] == "BAD_JSON" and quarantined[0]["payload_base64"] == "ew=="
    window = {"from": base.isoformat(), "to": (base + timedelta(hours=1)).isoformat()}
    raw = (
        await api.get(
            "/api/v1/devices/d1/telemetry",
            params={**window, "metric": "temp_c", "limit": 4},
            headers=viewer,
        )
    ).json()
    assert [r["metrics"] for r in raw["readings"]] == [{"temp_c": float(i)} for i in range(4)]
    assert raw["next_cursor"]
    rest = (
        await api.get(
            "/api/v1/devices/d1/telemetry",
            params={**window, "metric": "temp_c", "cursor": raw["next_cursor"]},
            headers=viewer,
        )
    ).json()
    assert [r["metrics"] for r in rest["readings"]] == [{"temp_c": float(i)} for i in range(4, 10)]
    everything = (
        await api.get("/api/v1/devices/d1/telemetry", params=window, headers=viewer)
    ).json()["readings"]
    assert everything[:2] == [  # booleans come back as booleans, numbers as floats
        {
            "time": base.isoformat().replace("+00:00", "Z"),
            "seq": None,
            "metrics": {"temp_c": 0.0, "door_open": True},
        },
        {
            "time": (base + timedelta(minutes=1)).isoformat().replace("+00:00", "Z"),
            "seq": None,
            "metrics": {"temp_c": 1.0, "door_open": False},
        },
    ]
    door = (
        await api.get(
            "/api/v1/devices/d1/telemetry", params={**window, "metric": "door_open"}, headers=viewer
        )
    ).json()["readings"]
    assert [r["metrics"] for r in door[:2]] == [{"door_open": True}, {"door_open": False}]
    bucketed = await api.get(
        "/api/v1/devices/d1/telemetry",
        params={**window, "metric": "temp_c", "bucket": "5m"},
        headers=viewer,
    )
    assert bucketed.status_code == 200, bucketed.text
    assert [(b["min"], b["max"], b["avg"], b["count"]) for b in bucketed.json()["buckets"]] == [
        (0.0, 4.0, 2.0, 5),
        (5.0, 9.0, 7.0, 5),
    ]
    doors = (
        await api.get(
            "/api/v1/devices/d1/telemetry",
            params={**window, "metric": "door_open", "bucket": "1h"},
            headers=viewer,
        )
    ).json()
    assert doors["buckets"][0]["avg"] == 0.5
    no_metric = await api.get(
        "/api/v1/devices/d1/telemetry", params={"bucket": "5m"}, headers=viewer
    )
    assert no_metric.status_code == 422 and no_metric.json()["errors"][0]["field"] == "query.metric"


async def test_bucketed_telemetry_never_overflows_into_a_500(
    api: httpx.AsyncClient, oidc: TestIssuer, tenants: list[str], event_store: PostgresEventStore
) -> None:
    """Issue 12 item 6, kind: VALUE OVERFLOWS STORAGE OR QUERIES. Readings stored before ingest
    bounded values (two ``{"big": 1e308}`` in one hour) made ``avg`` overflow float8 -> 500 and
    a dropped connection. The aggregate is computed without overflow, up to the largest float8;
    a value beyond float8 (jsonb held ``1e400`` before 0700) is refused at insert since 0700,
    so no stored value can make the query fail."""
    pool = event_store.pool
    await api.post("/api/v1/devices", json={"device_id": "d1"}, headers=oidc.headers())
    base = datetime(2026, 1, 1, tzinfo=UTC)
    rows = [(0, 1e308), (1, 1e308), (61, -1.7e308), (62, -1.7e308), (63, 1.7e308), (121, 5.0)]
    await pool.executemany(
        "INSERT INTO telemetry (time, tenant_id, device_id, metrics) VALUES ($1, 'acme', 'd1', $2)",
        [(base + timedelta(minutes=m), {"big": v}) for m, v in rows],
    )
    viewer = oidc.headers(roles=("viewer",))
    window = {"from": base.isoformat(), "to": (base + timedelta(hours=3)).isoformat()}
    params = {**window, "metric": "big", "bucket": "1h"}
    answer = await api.get("/api/v1/devices/d1/telemetry", params=params, headers=viewer)
    assert answer.status_code == 200, answer.text
    buckets = [(b["min"], b["max"], b["avg"], b["count"]) for b in answer.json()["buckets"]]
    assert buckets == [
        (1e308, 1e308, 1e308, 2),
        (-1.7e308, 1.7e308, pytest.approx(-1.7e308 / 3), 3),
        (5.0, 5.0, 5.0, 1),
    ]
    # the largest float8s are stored and read back, raw and bucketed (numeric sums): no 500
    insert = (
        "INSERT INTO telemetry (time, tenant_id, device_id, metrics) VALUES ($1, 'acme', 'd1', $2)"
    )
    top = 1.7976931348623157e308
    await pool.executemany(
        insert, [(base + timedelta(minutes=m), {"big": top}) for m in (150, 151)]
    )
    extreme = await api.get("/api/v1/devices/d1/telemetry", params=params, headers=viewer)
    assert extreme.status_code == 200, extreme.text
    assert [(b["min"], b["max"], b["avg"], b["count"]) for b in extreme.json()["buckets"]][-1] == (
        5.0,
        top,
        pytest.approx(5.0 / 3 + top / 3 * 2),
        3,
    )
    raw = await api.get(
        "/api/v1/devices/d1/telemetry", params={**window, "metric": "big"}, headers=viewer
    )
    assert raw.status_code == 200, raw.text
    assert [r["metrics"]["big"] for r in raw.json()["readings"]][-2:] == [top, top]
    # beyond float8 (jsonb holds 1e400) the telemetry view's trigger refuses it at insert
    with pytest.raises(asyncpg.InvalidParameterValueError, match='"big"') as refused:
        await pool.execute(
            "INSERT INTO telemetry (time, tenant_id, device_id, metrics) "
            "VALUES ($1, 'acme', 'd1', '{\"big\": 1e400}'::jsonb)",
            base + timedelta(minutes=170),
        )
    assert refused.value.sqlstate == "22023"
    accepted = await pool.execute(  # positive control: the same insert with a float8 value
        "INSERT INTO telemetry (time, tenant_id, device_id, metrics) "
        "VALUES ($1, 'acme', 'd1', '{\"big\": 1e300}'::jsonb)",
        base + timedelta(minutes=170),
    )
    assert accepted == "INSERT 0 1"
