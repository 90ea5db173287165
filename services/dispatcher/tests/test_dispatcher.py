"""The dispatcher against a real PostgreSQL: routing, idempotency, grouping, silences, resolution."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

from fleetpulse.dispatcher.service import Dispatcher
from fleetpulse.dispatcher.store import PostgresDispatchStore

World = Any  # the ``world`` fixture (conftest.World)


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def dispatcher(world: World, clock: Clock | None = None) -> Dispatcher:
    return Dispatcher(PostgresDispatchStore(world.store), clock or Clock())


async def test_an_alert_goes_to_every_matching_integration_once(world: World) -> None:
    await world.device("d1", {"site": "north"})
    for name in ("hook", "pager", "other"):
        await world.integration(name)
    await world.route("all", "hook")
    await world.route(
        "critical-north",
        "pager",
        match={"severity_at_least": "critical", "device_tags": {"site": "north"}},
    )
    await world.route("also-hook", "hook", match={"rule_ids": ["r1"]})
    await world.route("south", "other", match={"device_tags": {"site": "south"}})
    opened = await world.open_alert("d1")
    d = dispatcher(world)
    await asyncio.gather(d.handle(opened), d.handle(opened))
    await d.handle(opened)
    deliveries = await world.deliveries()
    assert sorted(row["integration_id"] for row in deliveries) == ["hook", "pager"]
    scheduled = deliveries[0]["scheduled"]
    assert scheduled["alert_event_id"] == str(opened.event_id)
    assert scheduled["notification_type"] == "firing"
    assert scheduled["payload"]["type"] == "alert.opened"
    assert scheduled["payload"]["data"]["alert_id"] == opened.data["alert_id"]


async def test_resolution_follows_a_firing_notification(world: World) -> None:
    await world.integration("hook")
    await world.route("all", "hook")
    opened = await world.open_alert()
    d = dispatcher(world)
    await d.handle(opened)
    resolved = await world.resolve(opened.data["alert_id"])
    await d.handle(resolved)
    await d.handle(resolved)
    deliveries = await world.deliveries()
    assert [r["notification_type"] for r in deliveries] == ["firing", "resolved"]
    assert deliveries[1]["scheduled"]["payload"]["type"] == "alert.resolved"
    assert deliveries[1]["scheduled"]["payload"]["data"]["rule_id"] == "r1"


async def test_resolution_follows_even_when_silenced_in_between(world: World) -> None:
    await world.integration("hook")
    await world.route("all", "hook")
    opened = await world.open_alert()
    d = dispatcher(world)
    await d.handle(opened)
    alert_id = opened.data["alert_id"]
    await d.handle(await world.silence(alert_id, datetime.now(UTC) + timedelta(hours=1)))
    await d.handle(await world.resolve(alert_id))
    assert [r["notification_type"] for r in await world.deliveries()] == ["firing", "resolved"]


async def test_a_silenced_alert_does_not_fire_and_so_does_not_resolve(world: World) -> None:
    await world.integration("hook")
    await world.route("all", "hook")
    opened = await world.open_alert()
    await world.silence(opened.data["alert_id"], datetime.now(UTC) + timedelta(hours=1))
    d = dispatcher(world)
    await d.handle(opened)
    await d.handle(await world.resolve(opened.data["alert_id"]))
    assert await world.deliveries() == []
    # positive control: the same route sends an alert that is not silenced, and its resolution
    heard = await world.open_alert("d2")
    await d.handle(heard)
    await d.handle(await world.resolve(heard.data["alert_id"]))
    rows = await world.deliveries()
    assert [(r["alert_id"], r["notification_type"]) for r in rows] == [
        (heard.data["alert_id"], "firing"),
        (heard.data["alert_id"], "resolved"),
    ]


async def test_resolution_seen_before_the_opening_sends_nothing(world: World) -> None:
    await world.integration("hook")
    await world.route("all", "hook")
    opened = await world.open_alert()
    resolved = await world.resolve(opened.data["alert_id"])
    d = dispatcher(world)
    await d.handle(resolved)
    await d.handle(opened)
    assert await world.deliveries() == []
    # positive control: an opening seen first is sent by the same route
    fresh = await world.open_alert("d2")
    await d.handle(fresh)
    assert [r["alert_id"] for r in await world.deliveries()] == [fresh.data["alert_id"]]


async def test_maintenance_window_suppresses_firing(world: World) -> None:
    now = datetime.now(UTC)
    window = {
        "start": (now - timedelta(minutes=5)).isoformat(),
        "end": (now + timedelta(hours=1)).isoformat(),
    }
    await world.integration("hook", {"url": "https://x.example/h", "maintenance_windows": [window]})
    await world.integration("route-window")
    await world.route("all", "hook")
    await world.route("r2", "route-window", match={"maintenance_windows": [window]})
    d = dispatcher(world)
    await d.handle(await world.open_alert())
    assert await world.deliveries() == []
    # positive control: an integration and route without a window get the next alert, the
    # windowed ones still do not
    await world.integration("plain")
    await world.route("r3", "plain")
    await d.handle(await world.open_alert("d2"))
    assert [r["integration_id"] for r in await world.deliveries()] == ["plain"]


async def test_group_wait_collects_alerts_into_one_notification(world: World) -> None:
    await world.integration("hook")
    await world.route("grouped", "hook", group_by=["rule_id"], group_wait_s=30)
    clock = Clock()
    d = dispatcher(world, clock)
    first, second = await world.open_alert("d1"), await world.open_alert("d2")
    other_rule = await world.open_alert("d3", rule_id="r2")
    for event in (first, second, other_rule):
        await d.handle(event)
    assert await d.flush_due_groups() == 0
    assert await world.deliveries() == []
    clock.advance(31)
    assert await d.flush_due_groups() == 2
    deliveries = await world.deliveries()
    assert len(deliveries) == 2
    by_lead = {r["alert_id"]: r["scheduled"]["payload"]["data"]["alerts"] for r in deliveries}
    assert [a["device_id"] for a in by_lead[first.data["alert_id"]]] == ["d1", "d2"]
    # Both members fired, so both resolutions follow.
    await d.handle(await world.resolve(second.data["alert_id"]))
    assert [r["notification_type"] for r in await world.deliveries()].count("resolved") == 1


async def test_group_interval_holds_new_alerts_of_a_notified_group(world: World) -> None:
    """Alertmanager's group_interval: a notified group that gains alerts notifies again, listing
    every alert still firing (the new ones first), group_interval_s after its last notification."""
    await world.integration("hook")
    await world.route("grouped", "hook", group_by=["rule_id"], group_interval_s=600)
    clock = Clock()
    d = dispatcher(world, clock)
    await d.handle(await world.open_alert("d1"))
    assert len(await world.deliveries()) == 1  # no wait: the first alert goes out at once
    clock.advance(60)
    await d.handle(await world.open_alert("d2"))
    await d.handle(await world.open_alert("d3"))
    assert await d.flush_due_groups() == 0
    clock.advance(541)
    assert await d.flush_due_groups() == 1
    deliveries = await world.deliveries()
    assert len(deliveries) == 2
    assert [a["device_id"] for a in deliveries[1]["scheduled"]["payload"]["data"]["alerts"]] == [
        "d2",
        "d3",
        "d1",
    ]
    assert deliveries[1]["notification_type"] == "firing"


async def test_repeat_interval_resends_while_still_firing(world: World) -> None:
    """Fault kind (issue 12 case 13): repeat_interval_s did not repeat. With group_by rule_id
    and repeat_interval_s 60, an alert open for 130 s is notified at 0, 60 and 120 s: two
    repeats (new deliveries, notification_type ``repeat``, payload data.repeat true, new
    delivery ids, the same lead alert event). Once it resolves, the repeats stop and its
    resolved notification follows (positive control for the "nothing more" check)."""
    await world.integration("hook")
    await world.route("grouped", "hook", group_by=["rule_id"], repeat_interval_s=60)
    clock = Clock()
    d = dispatcher(world, clock)
    opened = await world.open_alert("d1")
    await d.handle(opened)
    for _ in range(13):  # the dispatcher's flush loop, every 10 s for 130 s
        clock.advance(10)
        await d.flush_due_groups()
    deliveries = await world.deliveries()
    assert [r["notification_type"] for r in deliveries] == ["firing", "repeat", "repeat"]
    assert len({r["delivery_id"] for r in deliveries}) == 3
    assert {str(r["alert_event_id"]) for r in deliveries} == {str(opened.event_id)}
    payloads = [r["scheduled"]["payload"] for r in deliveries]
    assert [p["data"]["repeat"] for p in payloads] == [False, True, True]
    assert all(p["type"] == "alert.opened" and p["data"]["status"] == "firing" for p in payloads)
    sent = [datetime.fromisoformat(p["timestamp"]) for p in payloads]  # the dispatcher's clock
    assert [(b - a).total_seconds() for a, b in pairwise(sent)] == [60, 60]
    await d.handle(await world.resolve(opened.data["alert_id"]))
    for _ in range(13):
        clock.advance(10)
        await d.flush_due_groups()
    types = [r["notification_type"] for r in await world.deliveries()]
    assert types == ["firing", "repeat", "repeat", "resolved"]


async def test_repeat_lists_only_alerts_still_firing(world: World) -> None:
    await world.integration("hook")
    await world.route("grouped", "hook", group_by=["rule_id"], group_wait_s=5, repeat_interval_s=60)
    clock = Clock()
    d = dispatcher(world, clock)
    first, second = await world.open_alert("d1"), await world.open_alert("d2")
    await d.handle(first)
    await d.handle(second)
    clock.advance(6)
    assert await d.flush_due_groups() == 1
    await d.handle(await world.resolve(first.data["alert_id"]))
    clock.advance(60)
    assert await d.flush_due_groups() == 1
    repeat = (await world.deliveries())[-1]
    assert repeat["notification_type"] == "repeat"
    assert [a["device_id"] for a in repeat["scheduled"]["payload"]["data"]["alerts"]] == ["d2"]


async def test_an_alert_resolved_while_waiting_in_its_group_is_not_notified(world: World) -> None:
    await world.integration("hook")
    await world.route("grouped", "hook", group_by=["rule_id"], group_wait_s=30)
    clock = Clock()
    d = dispatcher(world, clock)
    opened = await world.open_alert("d1")
    await d.handle(opened)
    await d.handle(await world.resolve(opened.data["alert_id"]))
    clock.advance(31)
    await d.flush_due_groups()
    assert await world.deliveries() == []
    # positive control: an alert of the same group still firing when the wait ends is notified
    firing = await world.open_alert("d2")
    await d.handle(firing)
    clock.advance(31)
    assert await d.flush_due_groups() == 1
    assert [r["alert_id"] for r in await world.deliveries()] == [firing.data["alert_id"]]


async def test_concurrent_open_and_resolve_always_end_with_a_resolution(world: World) -> None:
    await world.integration("hook")
    await world.route("all", "hook")
    d = dispatcher(world)
    for _ in range(10):
        opened = await world.open_alert()
        resolved = await world.resolve(opened.data["alert_id"])
        await asyncio.gather(d.handle(opened), d.handle(resolved))
    types = [r["notification_type"] for r in await world.deliveries()]
    assert types.count("firing") == types.count("resolved")


async def test_alert_ended_because_its_rule_is_gone_gets_a_resolved_notification(
    world: World,
) -> None:
    """Issue 12 case 11, the dispatcher's side: an AlertResolved with a reason (the evaluator
    resolves alerts whose rule was deleted or changed, or whose device was retagged or
    decommissioned) follows as any other resolution, the reason in the body."""
    await world.integration("hook")
    await world.route("all", "hook")
    d = dispatcher(world)
    opened = await world.open_alert("d1")
    await d.handle(opened)
    resolved = await world.append(
        f"alert-t1-{opened.data['alert_id']}",  # the conftest's tenant
        "AlertResolved",
        {
            "alert_id": opened.data["alert_id"],
            "resolved_at": datetime.now(UTC).isoformat(),
            "reason": "rule_deleted",
        },
    )
    await d.handle(resolved)
    deliveries = await world.deliveries()
    assert [r["notification_type"] for r in deliveries] == ["firing", "resolved"]
    body = deliveries[1]["scheduled"]["payload"]
    assert (body["type"], body["data"]["reason"]) == ("alert.resolved", "rule_deleted")
