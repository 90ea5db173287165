"""Rules through the API, evaluated by the real evaluator on the same database: enable/disable,
device attributes, the rule language (issue 19)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from fleetpulse.common.eventstore import PostgresEventStore
from fleetpulse.common.rules.domain import Record
from fleetpulse.evaluator.alerting import PostgresAlertLog
from fleetpulse.evaluator.catalog import Catalog, PostgresCatalogSource
from fleetpulse.evaluator.service import Evaluator

from .conftest import TestIssuer

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
HOT = {
    "name": "Too hot",
    "kind": "threshold",
    "metric": "temp_c",
    "operator": "gt",
    "threshold": 80,
    "severity": "major",
}


class Live:
    """The evaluator with its catalog refresher, driven by hand (as its loops would)."""

    def __init__(self, pool: asyncpg.Pool, grace_s: float = 0) -> None:
        self.catalog = Catalog()
        self.source = PostgresCatalogSource(pool, self.catalog)
        self.now = datetime.now(UTC)
        self.evaluator = Evaluator(
            pool,
            self.catalog,
            PostgresAlertLog(PostgresEventStore(pool)),
            duration_grace_s=grace_s,
            clock=lambda: self.now,
        )

    async def refresh(self) -> None:
        if await self.source.refresh():
            await self.evaluator.catalog_changed()

    async def readings(self, device: str, *values: tuple[float, dict[str, Any]]) -> None:
        await self.refresh()
        await self.evaluator.handle(
            [Record("acme", device, T0 + timedelta(seconds=s), m) for s, m in values]
        )


async def alert_rows(pool: asyncpg.Pool) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        "SELECT e.type, e.data FROM events e WHERE e.type LIKE 'Alert%' ORDER BY e.position"
    )
    return [{"type": r["type"], **r["data"]} for r in rows]


async def register(api: httpx.AsyncClient, headers: dict[str, str], device: str) -> None:
    response = await api.post("/api/v1/devices", json={"device_id": device}, headers=headers)
    assert response.status_code == 201, response.text


@pytest.mark.usefixtures("tenants")
async def test_disabled_rule_resolves_its_alert_and_is_not_evaluated_until_enabled(
    api: httpx.AsyncClient, oidc: TestIssuer, db_pool: asyncpg.Pool
) -> None:
    admin = oidc.headers("acme")
    await register(api, admin, "d1")
    created = await api.post("/api/v1/rules", json=HOT, headers=admin)
    assert created.status_code == 201 and created.json()["enabled"] is True
    rule_id = created.json()["rule_id"]
    live = Live(db_pool)
    await live.readings("d1", (0, {"temp_c": 85}))
    assert [a["type"] for a in await alert_rows(db_pool)] == ["AlertOpened"]

    path = f"/api/v1/rules/{rule_id}"
    disabled = await api.put(
        path, json={**HOT, "enabled": False}, headers={**admin, "If-Match": '"1"'}
    )
    assert disabled.status_code == 200 and disabled.json()["enabled"] is False
    assert (await api.get(path, headers=admin)).json()["enabled"] is False
    await live.refresh()
    events = await alert_rows(db_pool)
    assert [a["type"] for a in events] == ["AlertOpened", "AlertResolved"]
    assert events[1]["reason"] == "rule_disabled"
    await live.readings("d1", (10, {"temp_c": 95}))
    assert len(await alert_rows(db_pool)) == 2  # a disabled rule opens nothing

    enabled = await api.put(path, json=HOT, headers={**admin, "If-Match": '"2"'})
    assert enabled.json()["enabled"] is True
    await live.readings("d1", (20, {"temp_c": 96}))
    assert [a["type"] for a in await alert_rows(db_pool)][-1] == "AlertOpened"  # control


@pytest.mark.usefixtures("tenants")
async def test_device_attributes_are_patched_as_events_and_reach_the_evaluator_catalog(
    api: httpx.AsyncClient, oidc: TestIssuer, db_pool: asyncpg.Pool
) -> None:
    admin = oidc.headers("acme")
    await register(api, admin, "d1")
    live = Live(db_pool)
    await live.refresh()
    assert live.catalog.device(("acme", "d1")).attributes == {}  # type: ignore[union-attr]

    attributes = {"max_temp_c": 7.5, "site": "berlin", "reefer": True}
    patched = await api.patch(
        "/api/v1/devices/d1", json={"attributes": attributes}, headers={**admin, "If-Match": '"2"'}
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["attributes"] == attributes
    assert patched.json()["tags"] == {}  # fields left out keep their value
    event = await db_pool.fetchrow(
        "SELECT data FROM events WHERE type = 'DeviceUpdated' AND tenant_id = 'acme'"
    )
    assert event["data"] == {"device_id": "d1", "attributes": attributes}
    await live.refresh()
    assert live.catalog.device(("acme", "d1")).attributes == attributes  # type: ignore[union-attr]

    for bad in ({"attributes": {"bad key": 1}}, {"attributes": {"x": [1]}}, {"colour": "red"}):
        refused = await api.patch("/api/v1/devices/d1", json=bad, headers=admin)
        assert refused.status_code == 422, (bad, refused.text)
    other = await api.patch(
        "/api/v1/devices/d1", json={"attributes": {}}, headers=oidc.headers("globex")
    )
    assert other.status_code == 404  # tenant-scoped
    assert (await api.get("/api/v1/devices/d1", headers=admin)).json()["attributes"] == attributes


async def create(api: httpx.AsyncClient, headers: dict[str, str], body: dict[str, Any]) -> str:
    response = await api.post("/api/v1/rules", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return str(response.json()["rule_id"])


@pytest.mark.usefixtures("tenants")
async def test_threshold_from_a_device_attribute_with_a_default(
    api: httpx.AsyncClient, oidc: TestIssuer, db_pool: asyncpg.Pool
) -> None:
    admin = oidc.headers("acme")
    for device in ("cold", "plain"):
        await register(api, admin, device)
    patched = await api.patch(
        "/api/v1/devices/cold", json={"attributes": {"max_temp_c": 4}}, headers=admin
    )
    assert patched.status_code == 200, patched.text
    body = {
        "name": "Warmer than allowed",
        "kind": "condition",
        "all": [
            {
                "metric": "temp_c",
                "operator": "gt",
                "threshold_from": "attributes.max_temp_c",
                "default": 8,
            }
        ],
        "severity": "major",
    }
    rule_id = await create(api, admin, body)
    shown = (await api.get(f"/api/v1/rules/{rule_id}", headers=admin)).json()
    assert (
        shown["kind"] == "condition"
        and shown["all"][0]["threshold_from"] == body["all"][0]["threshold_from"]
    )
    live = Live(db_pool)
    # 6 degrees: above the cold device's own 4, below the default 8 of the plain one
    await live.readings("cold", (0, {"temp_c": 6}))
    await live.readings("plain", (0, {"temp_c": 6}))
    opened = [a for a in await alert_rows(db_pool) if a["type"] == "AlertOpened"]
    assert [a["device_id"] for a in opened] == ["cold"]
    assert opened[0]["values"] == {"temp_c": 6.0} and "value" not in opened[0]
    await live.readings("plain", (1, {"temp_c": 9}))  # positive control: the default applies
    opened = [a for a in await alert_rows(db_pool) if a["type"] == "AlertOpened"]
    assert [a["device_id"] for a in opened] == ["cold", "plain"]


@pytest.mark.usefixtures("tenants")
async def test_window_average_and_rate_of_change_under_any(
    api: httpx.AsyncClient, oidc: TestIssuer, db_pool: asyncpg.Pool
) -> None:
    admin = oidc.headers("acme")
    await register(api, admin, "d1")
    body = {
        "name": "Pressure trouble",
        "kind": "condition",
        "any": [
            {"metric": "p", "aggregate": "avg", "window_s": 10, "operator": "gt", "threshold": 50},
            {"metric": "p", "aggregate": "rate", "operator": "lt", "threshold": -5},
        ],
        "severity": "critical",
    }
    await create(api, admin, body)
    live = Live(db_pool)
    # avg over 10 s: 40, 45, then 70 -> avg 51.7 > 50 opens at t=2
    await live.readings("d1", (0, {"p": 40}), (1, {"p": 45}))
    assert await alert_rows(db_pool) == []  # nothing holds yet (avg 42.5, rate +5/s)
    await live.readings("d1", (2, {"p": 70}))
    rows = await alert_rows(db_pool)
    assert [a["type"] for a in rows] == ["AlertOpened"]
    # the window survives a restart: a new evaluator reads the memory from the database
    live = Live(db_pool)
    await live.readings("d1", (20, {"p": 49}))  # window now holds only 49; rate -1.1/s: resolves
    assert [a["type"] for a in await alert_rows(db_pool)] == ["AlertOpened", "AlertResolved"]
    await live.readings("d1", (21, {"p": 40}))  # rate -9/s < -5 opens again
    rows = await alert_rows(db_pool)
    assert [a["type"] for a in rows][-1] == "AlertOpened"
    assert rows[-1]["values"]["rate(p)/s"] == -9.0
    memory = "SELECT count(*) FROM evaluator_condition_memory"
    assert await db_pool.fetchval(memory) == 1
    rule_id = rows[-1]["rule_id"]
    deleted = await api.delete(f"/api/v1/rules/{rule_id}", headers={**admin, "If-Match": '"1"'})
    assert deleted.status_code == 204
    await live.refresh()
    assert await db_pool.fetchval(memory) == 0  # a deleted rule's windows are forgotten


@pytest.mark.usefixtures("tenants")
async def test_impossible_rule_bodies_are_refused_with_a_422_naming_the_problem(
    api: httpx.AsyncClient, oidc: TestIssuer
) -> None:
    admin = oidc.headers("acme")
    base = {"name": "x", "kind": "condition", "severity": "minor"}
    cases = {
        "aggregate avg needs window_s": {
            "all": [{"metric": "m", "operator": "gt", "threshold": 1, "aggregate": "avg"}]
        },
        "exactly one of threshold and threshold_from": {"all": [{"metric": "m", "operator": "gt"}]},
        "exactly one of all and any": {},
        "window_s needs an aggregate": {
            "all": [{"metric": "m", "operator": "gt", "threshold": 1, "window_s": 5}]
        },
        "rate per window needs window_s": {
            "any": [
                {
                    "metric": "m",
                    "operator": "gt",
                    "threshold": 1,
                    "aggregate": "rate",
                    "rate_per": "window",
                }
            ]
        },
        "default applies only with threshold_from": {
            "all": [{"metric": "m", "operator": "gt", "threshold": 1, "default": 2}]
        },
        "unknown time zone": {
            "all": [{"metric": "m", "operator": "gt", "threshold": 1}],
            "schedule": {
                "timezone": "Mars/Olympus",
                "windows": [{"start": "08:00", "end": "18:00"}],
            },
        },
    }
    for expected, extra in cases.items():
        response = await api.post("/api/v1/rules", json={**base, **extra}, headers=admin)
        assert response.status_code == 422, (expected, response.text)
        assert expected in response.text, (expected, response.text)
    # positive control: an unknown metric name is fine, and the old threshold body still works
    ok = {"all": [{"metric": "not_seen_yet", "operator": "gt", "threshold": 1}]}
    assert (await api.post("/api/v1/rules", json={**base, **ok}, headers=admin)).status_code == 201
    assert (await api.post("/api/v1/rules", json=HOT, headers=admin)).status_code == 201


def recorded_stream() -> list[tuple[str, int, dict[str, float]]]:
    """Three devices, two metrics, every shape the rules below care about (a deterministic
    pseudo-random walk with spikes, drops and gaps)."""
    stream = []
    state = 12345
    level = {"d1": 20.0, "d2": 30.0, "d3": 25.0}
    for second in range(0, 900, 3):
        for device in ("d1", "d2", "d3"):
            state = (state * 1103515245 + 12345) % 2**31
            if state % 7 == 0:
                continue  # a gap
            level[device] += (state % 11) - 5 + (15 if state % 53 == 0 else 0)
            level[device] = max(0.0, min(60.0, level[device]))
            metrics = {"temp_c": level[device]}
            if state % 3:
                metrics["door"] = float(state % 2)
            stream.append((device, second + (state % 3), metrics))
    return sorted(stream, key=lambda r: (r[1], r[0]))


REPLAY_RULES = [
    {**HOT, "threshold": 35, "clear_threshold": 30, "duration_s": 6},
    {
        "name": "Warming or door",
        "kind": "condition",
        "any": [
            {
                "metric": "temp_c",
                "aggregate": "avg",
                "window_s": 30,
                "operator": "gt",
                "threshold_from": "attributes.max_temp_c",
                "default": 33,
            },
            {"metric": "temp_c", "aggregate": "rate", "operator": "gt", "threshold": 2.5},
        ],
        "duration_s": 4,
        "severity": "critical",
    },
    {
        "name": "Door open while warm",
        "kind": "condition",
        "all": [
            {"metric": "door", "operator": "eq", "threshold": 1},
            {
                "metric": "temp_c",
                "aggregate": "max",
                "window_s": 12,
                "operator": "gte",
                "threshold": 28,
            },
        ],
        "severity": "minor",
    },
]


@pytest.mark.usefixtures("tenants")
async def test_backtest_agrees_with_the_live_evaluator_on_a_recorded_stream(
    api: httpx.AsyncClient, oidc: TestIssuer, db_pool: asyncpg.Pool
) -> None:
    admin = oidc.headers("acme")
    for device in ("d1", "d2", "d3"):
        await register(api, admin, device)
    await api.patch("/api/v1/devices/d2", json={"attributes": {"max_temp_c": 26}}, headers=admin)
    rule_ids = [await create(api, admin, body) for body in REPLAY_RULES]
    stream = recorded_stream()
    await db_pool.executemany(
        "INSERT INTO telemetry (time, tenant_id, device_id, metrics) VALUES ($1, 'acme', $2, $3)",
        [(T0 + timedelta(seconds=s), d, m) for d, s, m in stream],
    )
    live = Live(db_pool, grace_s=1)
    await live.refresh()
    for device, second, metrics in stream:  # as it arrived: the clock ticks before each reading
        live.now = T0 + timedelta(seconds=second)
        await live.evaluator.tick()
        await live.evaluator.handle([Record("acme", device, live.now, metrics)])
    end = T0 + timedelta(seconds=1000)
    live.now = end
    await live.evaluator.tick()
    rows = await db_pool.fetch(
        "SELECT rule_id, device_id, opened_at, resolved_at FROM alerts ORDER BY opened_at, device_id"
    )
    window = {"from": T0.isoformat(), "to": end.isoformat()}
    for rule_id, body in zip(rule_ids, REPLAY_RULES, strict=True):
        expected = [
            (r["device_id"], r["opened_at"], r["resolved_at"])
            for r in rows
            if r["rule_id"] == rule_id
        ]
        assert expected, f"the stream must exercise {body['name']}"  # positive control
        for request in ({"rule": body}, {"rule_id": rule_id}):
            response = await api.post(
                "/api/v1/rules/preview", json={**request, **window}, headers=admin
            )
            assert response.status_code == 200, response.text
            result = response.json()
            got = [
                (
                    a["device_id"],
                    datetime.fromisoformat(a["opened_at"]),
                    None if a["resolved_at"] is None else datetime.fromisoformat(a["resolved_at"]),
                )
                for a in result["alerts"]
            ]
            assert got == expected, body["name"]
            assert result["counts"]["readings"] == len(stream)
            assert result["counts"]["opened"] == len(expected)
            assert result["counts"]["still_open"] == sum(e[2] is None for e in expected)


@pytest.mark.usefixtures("tenants")
async def test_preview_is_tenant_scoped_bounded_and_refuses_what_it_cannot_replay(
    api: httpx.AsyncClient, oidc: TestIssuer, db_pool: asyncpg.Pool
) -> None:
    admin = oidc.headers("acme")
    await register(api, admin, "d1")
    await db_pool.execute(
        "INSERT INTO telemetry (time, tenant_id, device_id, metrics) VALUES ($1, 'acme', 'd1', $2)",
        T0,
        {"temp_c": 99},
    )
    window = {
        "from": (T0 - timedelta(hours=1)).isoformat(),
        "to": (T0 + timedelta(hours=1)).isoformat(),
    }
    mine = await api.post("/api/v1/rules/preview", json={"rule": HOT, **window}, headers=admin)
    assert mine.status_code == 200 and mine.json()["counts"]["opened"] == 1  # control
    assert mine.json()["alerts"][0]["opened_value"] == 99
    theirs = await api.post(
        "/api/v1/rules/preview", json={"rule": HOT, **window}, headers=oidc.headers("globex")
    )
    assert theirs.status_code == 200 and theirs.json()["counts"] == {
        "opened": 0,
        "resolved": 0,
        "still_open": 0,
        "readings": 0,
        "devices": 0,
    }
    await register(api, oidc.headers("globex"), "d1")  # the same device id, another tenant
    same_id = await api.post(
        "/api/v1/rules/preview", json={"rule": HOT, **window}, headers=oidc.headers("globex")
    )
    assert same_id.json()["counts"]["devices"] == 1
    assert same_id.json()["counts"]["readings"] == 0
    narrowed = await api.post(
        "/api/v1/rules/preview",
        json={"rule": HOT, **window, "device_selector": {"device_ids": ["other"]}},
        headers=admin,
    )
    assert narrowed.json()["counts"]["readings"] == 0
    far = {"from": T0.isoformat(), "to": (T0 + timedelta(days=32)).isoformat()}
    no_data = {"name": "s", "kind": "no_data", "timeout_s": 60, "severity": "info"}
    refused = {
        "at most 31 days": {"rule": HOT, **far},
        "exactly one of rule and rule_id": {"rule": HOT, "rule_id": "r1", **window},
        "threshold and condition rules only": {"rule": no_data, **window},
        "to must be after from": {"rule": HOT, "from": window["to"], "to": window["from"]},
    }
    for problem, body in refused.items():
        response = await api.post("/api/v1/rules/preview", json=body, headers=admin)
        assert response.status_code == 422 and problem in response.text, (problem, response.text)
    missing = await api.post(
        "/api/v1/rules/preview", json={"rule_id": "nope", **window}, headers=admin
    )
    assert missing.status_code == 404


@pytest.mark.usefixtures("tenants")
async def test_scheduled_rule_opens_only_inside_its_window_across_a_dst_change(
    api: httpx.AsyncClient, oidc: TestIssuer, db_pool: asyncpg.Pool
) -> None:
    admin = oidc.headers("acme")
    await register(api, admin, "d1")
    schedule = {
        "timezone": "Europe/Berlin",
        "windows": [
            {"days": ["mon", "tue", "wed", "thu", "fri"], "start": "08:00", "end": "18:00"}
        ],
    }
    await create(api, admin, {**HOT, "schedule": schedule})
    live = Live(db_pool)

    async def reading(at: datetime, value: float) -> list[str]:
        await live.refresh()
        await live.evaluator.handle([Record("acme", "d1", at, {"temp_c": value})])
        return [a["type"] for a in await alert_rows(db_pool)]

    # Monday 30 March 2026 is the first workday of summer time (CEST, UTC+2)
    assert await reading(datetime(2026, 3, 30, 5, 30, tzinfo=UTC), 90) == []  # 07:30 local
    assert await reading(datetime(2026, 3, 30, 6, 30, tzinfo=UTC), 90) == ["AlertOpened"]
    # 16:30 UTC is 18:30 CEST, outside (a fixed CET offset would say 17:30, inside): resolves
    assert await reading(datetime(2026, 3, 30, 16, 30, tzinfo=UTC), 90) == [
        "AlertOpened",
        "AlertResolved",
    ]
