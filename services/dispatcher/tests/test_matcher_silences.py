"""Matcher silences in the dispatcher's grouped path: a silence holds a group's repeats (and
its new alerts) while active; the same group repeats again once it expires."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from fleetpulse.common.eventstore import NewEvent, metadata, stream_id
from fleetpulse.common.projections.silences import SilencesProjection
from fleetpulse.dispatcher.service import Dispatcher
from fleetpulse.dispatcher.store import PostgresDispatchStore

from .conftest import TENANT
from .test_dispatcher import Clock

World = Any


async def _silence_event(world: World, silence_id: str, type_: str, data: dict[str, Any]) -> None:
    async with world.store.pool.acquire() as conn, conn.transaction():
        [event] = await world.store.append(
            stream_id("silence", TENANT, silence_id),
            [NewEvent(type_, {"silence_id": silence_id, **data}, metadata(actor="test"))],
            tenant_id=TENANT,
            conn=conn,
        )
        await SilencesProjection().apply(conn, event)


async def _silence(world: World, silence_id: str, start: datetime, end: datetime) -> None:
    await _silence_event(
        world,
        silence_id,
        "SilenceCreated",
        {
            "matchers": [{"name": "tags.site", "type": "=", "value": "north"}],
            "starts_at": start.isoformat(),
            "ends_at": end.isoformat(),
            "created_by": "user:op",
            "comment": "maintenance",
        },
    )


async def test_a_silence_holds_repeats_until_it_expires(world: World) -> None:
    await world.device("d1", {"site": "north"})
    await world.device("d2", {"site": "south"})
    await world.integration("hook")
    await world.route("grouped", "hook", group_by=["device_id"], repeat_interval_s=60)
    clock = Clock()
    d = Dispatcher(PostgresDispatchStore(world.store), clock)
    north, south = await world.open_alert("d1", rule_id="r1"), await world.open_alert("d2")
    await d.handle(north)
    await d.handle(south)
    await _silence(world, "s1", clock.now, clock.now + timedelta(hours=1))
    for _ in range(13):
        clock.advance(10)
        await d.flush_due_groups()
    rows = await world.deliveries()
    by_alert = {
        alert: [r["notification_type"] for r in rows if r["alert_id"] == alert]
        for alert in (north.data["alert_id"], south.data["alert_id"])
    }
    # the silenced group stops repeating; the other group (positive control) repeats twice
    assert by_alert[north.data["alert_id"]] == ["firing"]
    assert by_alert[south.data["alert_id"]] == ["firing", "repeat", "repeat"]

    await _silence_event(
        world, "s1", "SilenceExpired", {"ends_at": clock.now.isoformat(), "expired_by": "op"}
    )
    # the held group was dropped from repeating; a new alert in it fires again at once
    again = await world.open_alert("d1", rule_id="r2")
    await d.handle(again)
    kinds = [
        r["notification_type"]
        for r in await world.deliveries()
        if r["alert_id"] == again.data["alert_id"]
    ]
    assert kinds == ["firing"]


async def test_silence_matchers_see_device_attributes_when_devices_have_them(
    world: World,
) -> None:
    """Devices gain ``attributes`` in another change (issue 19 "Rules"); the dispatcher reads
    them when the column exists. Here the column is added to this test's own database."""
    await world.store.pool.execute(
        "ALTER TABLE devices ADD COLUMN IF NOT EXISTS attributes jsonb NOT NULL DEFAULT '{}'"
    )
    await world.device("d1")
    await world.device("d2")
    await world.store.pool.execute(
        "UPDATE devices SET attributes = $1 WHERE device_id = 'd1'", {"zone": "cold", "floor": 3}
    )
    await world.integration("hook")
    await world.route("all", "hook")
    clock = Clock()
    await _silence_event(
        world,
        "s2",
        "SilenceCreated",
        {
            "matchers": [
                {"name": "attributes.zone", "type": "=~", "value": "cold|frozen"},
                {"name": "attributes.floor", "type": "=", "value": "3"},
            ],
            "starts_at": (clock.now - timedelta(minutes=1)).isoformat(),
            "ends_at": (clock.now + timedelta(hours=1)).isoformat(),
            "created_by": "user:op",
            "comment": "cold rooms",
        },
    )
    d = Dispatcher(PostgresDispatchStore(world.store), clock)
    held, heard = await world.open_alert("d1"), await world.open_alert("d2")
    await d.handle(held)
    await d.handle(heard)
    rows = await world.deliveries()
    assert [r["alert_id"] for r in rows] == [heard.data["alert_id"]]


async def test_a_new_alert_held_in_a_group_is_notified_after_the_silence(world: World) -> None:
    """Silenced when the group's wait ends, it leaves the group for ``dispatch_held``; once
    the silence expired it joins the group again and is notified (its neighbour, not
    silenced, was notified at once: the positive control)."""
    await world.device("d1", {"site": "north"})
    await world.device("d2", {"site": "south"})
    await world.integration("hook")
    await world.route("grouped", "hook", group_by=["rule_id"], group_wait_s=10)
    clock = Clock()
    d = Dispatcher(PostgresDispatchStore(world.store), clock)
    await _silence(world, "s3", clock.now, clock.now + timedelta(minutes=1))
    north, south = await world.open_alert("d1"), await world.open_alert("d2")
    await d.handle(north)
    await d.handle(south)
    clock.advance(11)
    await d.flush_due_groups()

    def kinds(rows: list[dict[str, Any]], alert: Any) -> list[str]:
        return [r["notification_type"] for r in rows if r["alert_id"] == alert.data["alert_id"]]

    rows = await world.deliveries()
    assert kinds(rows, south) == ["firing"] and kinds(rows, north) == []
    clock.advance(60)  # the silence is over
    assert await d.release_held() == 1
    clock.advance(1)
    await d.flush_due_groups()
    scheduled = [r for r in await world.deliveries() if r["notification_type"] == "firing"]
    assert len(scheduled) == 2
    lead = scheduled[-1]["scheduled"]["payload"]["data"]
    assert lead["alert_id"] == north.data["alert_id"]
    assert {a["alert_id"] for a in lead["alerts"]} == {
        north.data["alert_id"],
        south.data["alert_id"],
    }
