"""A grouped notification flushed later by the clock continues the trace of the alert that leads
it: the DeliveryScheduled event's metadata carries the lead AlertOpened's ``traceparent``."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from fleetpulse.dispatcher.service import Dispatcher
from fleetpulse.dispatcher.store import PostgresDispatchStore

TRACEPARENT = "00-" + "c" * 32 + "-" + "3" * 16 + "-01"


async def test_a_group_flush_continues_the_lead_alerts_trace(
    world: Any, db_pool: asyncpg.Pool
) -> None:
    await world.integration("hook")
    await world.route("grouped", "hook", group_by=["rule_id"], group_wait_s=30)
    await world.route("direct", "hook", match={"rule_ids": ["r2"]})
    now = [datetime.now(UTC)]
    d = Dispatcher(PostgresDispatchStore(world.store), lambda: now[0])
    lead = await world.open_alert("d1")
    lead = dataclasses.replace(lead, metadata={**lead.metadata, "traceparent": TRACEPARENT})
    await d.handle(lead)
    await d.handle(await world.open_alert("d2"))
    untraced = await world.open_alert("d3", rule_id="r2")  # positive control: no trace to carry
    await d.handle(untraced)
    now[0] += timedelta(seconds=31)
    assert await d.flush_due_groups() == 1
    rows = await db_pool.fetch(
        "SELECT data, metadata FROM events WHERE type = 'DeliveryScheduled' ORDER BY position"
    )
    by_alert = {r["data"]["alert_id"]: r["metadata"] for r in rows}
    assert by_alert[lead.data["alert_id"]]["traceparent"] == TRACEPARENT
    assert "traceparent" not in by_alert[untraced.data["alert_id"]]
