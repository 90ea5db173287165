"""Recurring maintenance windows set through the API hold firing notifications in the real
dispatcher (its clock set inside and outside the window); bad windows are 422."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx

from fleetpulse.common.eventstore import PostgresEventStore
from fleetpulse.dispatcher.service import Dispatcher
from fleetpulse.dispatcher.store import PostgresDispatchStore

from .conftest import TestIssuer
from .test_silences import _notifications, _open, _resolve

# Saturdays 02:00-03:00 Berlin time: 01:00-02:00 UTC in winter, 00:00-01:00 UTC in summer
WEEKLY = {
    "rrule": "FREQ=WEEKLY;BYDAY=SA;BYHOUR=2",
    "time_zone": "Europe/Berlin",
    "duration_s": 3600,
}
CRON = {"cron": "0 2 * * 6", "time_zone": "Europe/Berlin", "duration_s": 3600}


class Clock:
    def __init__(self, at: str) -> None:
        self.now = datetime.fromisoformat(at)

    def __call__(self) -> datetime:
        return self.now


async def _hook(api: httpx.AsyncClient, oidc: TestIssuer, **extra: Any) -> httpx.Response:
    return await api.post(
        "/api/v1/integrations",
        headers=oidc.headers(),
        json={"name": "hook", "kind": "webhook", "url": "https://hooks.example.com/x", **extra},
    )


async def _route(
    api: httpx.AsyncClient, oidc: TestIssuer, integration_id: str, match: dict[str, Any]
) -> httpx.Response:
    return await api.post(
        "/api/v1/routes",
        headers=oidc.headers(),
        json={"name": "all", "integration_id": integration_id, "match": match},
    )


async def _alerts_at(
    event_store: PostgresEventStore, at: str, devices: list[str]
) -> dict[str, list[str]]:
    dispatcher = Dispatcher(PostgresDispatchStore(event_store), Clock(at))
    opened = {d: await _open(event_store, dispatcher, d) for d in devices}
    return {d: await _notifications(event_store, a) for d, a in opened.items()}


async def test_a_route_window_holds_firing_notifications_at_local_time(
    api: httpx.AsyncClient, oidc: TestIssuer, tenants: list[str], event_store: PostgresEventStore
) -> None:
    hook = await _hook(api, oidc)
    route = await _route(
        api, oidc, hook.json()["integration_id"], {"maintenance_windows": [WEEKLY]}
    )
    assert route.status_code == 201, route.text
    assert route.json()["match"]["maintenance_windows"] == [WEEKLY]
    # winter Saturday 02:30 Berlin = 01:30 UTC: held
    assert await _alerts_at(event_store, "2026-01-10T01:30:00+00:00", ["d1"]) == {"d1": []}
    # summer Saturday 02:30 Berlin = 00:30 UTC: held (DST-correct)
    assert await _alerts_at(event_store, "2026-07-11T00:30:00+00:00", ["d2"]) == {"d2": []}
    # positive controls: 01:30 UTC in summer is 03:30 Berlin, after the window; a Friday
    assert await _alerts_at(event_store, "2026-07-11T01:30:00+00:00", ["d3"]) == {"d3": ["firing"]}
    assert await _alerts_at(event_store, "2026-07-10T00:30:00+00:00", ["d4"]) == {"d4": ["firing"]}


async def test_an_integration_cron_window_holds_firing_but_never_resolved(
    api: httpx.AsyncClient, oidc: TestIssuer, tenants: list[str], event_store: PostgresEventStore
) -> None:
    hook = await _hook(api, oidc, maintenance_windows=[CRON])
    assert hook.status_code == 201, hook.text
    assert hook.json()["config"]["maintenance_windows"] == [CRON]
    await _route(api, oidc, hook.json()["integration_id"], {})
    outside = Dispatcher(PostgresDispatchStore(event_store), Clock("2026-01-10T00:30:00+00:00"))
    notified = await _open(event_store, outside, "d1")
    assert await _notifications(event_store, notified) == ["firing"]
    inside = Dispatcher(PostgresDispatchStore(event_store), Clock("2026-01-10T01:15:00+00:00"))
    held = await _open(event_store, inside, "d2")
    await _resolve(event_store, inside, notified)  # resolved notifications are never held
    await _resolve(event_store, inside, held)
    assert await _notifications(event_store, held) == []
    assert await _notifications(event_store, notified) == ["firing", "resolved"]


async def test_bad_windows_are_422_and_nothing_is_written(
    api: httpx.AsyncClient, oidc: TestIssuer, tenants: list[str], event_store: PostgresEventStore
) -> None:
    hook = await _hook(api, oidc)
    integration_id = hook.json()["integration_id"]
    bad: list[tuple[dict[str, Any], str]] = [
        ({**WEEKLY, "rrule": "FREQ=SECONDLY"}, "FREQ must be"),
        ({**WEEKLY, "rrule": "FREQ=WEEKLY;BYDAY=XX"}, "rrule"),
        ({**WEEKLY, "time_zone": "Mars/Olympus"}, "time_zone"),
        ({**CRON, "cron": "0 2 * * 8"}, "cron"),
        ({**CRON, "cron": "0 0 31 4 *"}, "no occurrence"),  # valid syntax, never fires
        ({**CRON, "cron": "0 0 30 2 *"}, "no occurrence"),
        ({"cron": "0 2 * * 6", "duration_s": 60}, "time_zone"),
        ({**CRON, "duration_s": 0}, "duration_s"),
        ({**CRON, "rrule": "FREQ=DAILY"}, "exactly one"),
        ({**CRON, "surprise": 1}, "surprise"),
    ]
    for window, detail in bad:
        route = await _route(api, oidc, integration_id, {"maintenance_windows": [window]})
        assert route.status_code == 422 and detail in route.text, (window, route.text)
        integration = await _hook(api, oidc, maintenance_windows=[window])
        assert integration.status_code == 422 and detail in integration.text, window
    routes = await api.get("/api/v1/routes", headers=oidc.headers())
    integrations = await api.get("/api/v1/integrations", headers=oidc.headers())
    assert routes.json()["items"] == [] and len(integrations.json()["items"]) == 1
    # the positive control: a valid window is accepted
    assert (await _route(api, oidc, integration_id, {"maintenance_windows": [CRON]})).is_success
