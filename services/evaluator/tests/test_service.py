"""The evaluator against a real PostgreSQL: alerts, idempotence, ordering, clock, close/ack."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from fleetpulse.common.eventstore import NewEvent, PostgresEventStore
from fleetpulse.common.projections.alerts import AlertsProjection
from fleetpulse.common.rules.domain import Record
from fleetpulse.evaluator.service import Evaluator

T = "acme"
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
MakeEvaluator = Callable[..., Awaitable[Evaluator]]


def at(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


def reading(device: str, s: float, **metrics: Any) -> Record:
    return Record(T, device, at(s), metrics)


def heartbeat(device: str, s: float) -> Record:
    return Record(T, device, at(s), {}, "heartbeat")


async def alert_events(pool: asyncpg.Pool) -> list[tuple[str, str]]:
    rows = await pool.fetch(
        "SELECT type, data->>'device_id' AS device FROM events WHERE stream_id LIKE 'alert-%' ORDER BY position"
    )
    return [(r["type"], r["device"]) for r in rows]


async def alerts(pool: asyncpg.Pool) -> list[dict[str, Any]]:
    return [dict(r) for r in await pool.fetch("SELECT * FROM alerts ORDER BY opened_at, alert_id")]


async def test_breach_opens_and_recovery_resolves(
    db_pool: asyncpg.Pool, add_rule: Any, add_device: Any, make_evaluator: MakeEvaluator
) -> None:
    await add_device("d1")
    await add_rule("hot", metric="temp_c", operator="gt", threshold=80)
    evaluator = await make_evaluator()
    outcome = await evaluator.handle([reading("d1", 0, temp_c=70), reading("d1", 1, temp_c=85)])
    assert len(outcome.opened) == 1
    [alert] = await alerts(db_pool)
    assert (alert["status"], alert["fingerprint"], alert["opened_at"]) == (
        "open",
        "acme:hot:d1",
        at(1),
    )
    opened = await db_pool.fetchrow("SELECT data, metadata FROM events WHERE type = 'AlertOpened'")
    assert opened["data"]["value"] == 85 and opened["data"]["rule_name"] == "rule hot"
    assert opened["metadata"]["actor"] == "evaluator"
    await evaluator.handle([reading("d1", 2, temp_c=60)])
    assert [a["status"] for a in await alerts(db_pool)] == ["resolved"]
    assert await db_pool.fetchval("SELECT count(*) FROM evaluator_rule_state") == 0


async def test_duplicated_batch_does_not_double_open(
    db_pool: asyncpg.Pool, add_rule: Any, add_device: Any, make_evaluator: MakeEvaluator
) -> None:
    await add_device("d1")
    await add_rule("hot", metric="temp_c", operator="gt", threshold=80)
    evaluator = await make_evaluator()
    batch = [reading("d1", 1, temp_c=85), reading("d1", 2, temp_c=60), reading("d1", 3, temp_c=90)]
    await evaluator.handle(batch)
    again = await evaluator.handle(batch)
    assert (again.applied, again.skipped, again.opened) == (0, 3, [])
    assert await alert_events(db_pool) == [
        ("AlertOpened", "d1"),
        ("AlertResolved", "d1"),
        ("AlertOpened", "d1"),
    ]


async def test_out_of_order_reading_does_not_flip_state(
    db_pool: asyncpg.Pool, add_rule: Any, add_device: Any, make_evaluator: MakeEvaluator
) -> None:
    await add_device("d1")
    await add_rule("hot", metric="temp_c", operator="gt", threshold=80)
    evaluator = await make_evaluator()
    await evaluator.handle([reading("d1", 10, temp_c=95)])
    late = await evaluator.handle([reading("d1", 5, temp_c=20)])  # older than what was seen
    assert late.skipped == 1 and late.resolved == []
    assert [a["status"] for a in await alerts(db_pool)] == ["open"]


async def test_duration_survives_a_restart_and_opens_on_time(
    db_pool: asyncpg.Pool,
    add_rule: Any,
    add_device: Any,
    make_evaluator: MakeEvaluator,
    clock: Any,
) -> None:
    await add_device("d1")
    await add_rule("slow", metric="temp_c", operator="gte", threshold=80, duration_s=60)
    first = await make_evaluator()
    clock.now = at(30)
    await first.handle([reading("d1", 0, temp_c=85), reading("d1", 30, temp_c=86)])
    assert (await first.tick()).opened == []
    restarted = await make_evaluator()  # nothing carried over in memory
    clock.now = at(61)
    outcome = await restarted.tick()
    assert [o.opened_at for o in outcome.opened] == [at(60)]
    assert [a["opened_at"] for a in await alerts(db_pool)] == [at(60)]
    assert (await restarted.tick()).opened == []


async def test_reading_after_the_duration_opens_without_waiting_for_the_clock(
    db_pool: asyncpg.Pool,
    add_rule: Any,
    add_device: Any,
    make_evaluator: MakeEvaluator,
) -> None:
    await add_device("d1")
    await add_rule("slow", metric="temp_c", operator="gt", threshold=80, duration_s=5)
    evaluator = await make_evaluator()
    await evaluator.handle([reading("d1", 0, temp_c=85)])
    outcome = await evaluator.handle([reading("d1", 7, temp_c=85)])
    assert [o.opened_at for o in outcome.opened] == [at(5)]


async def test_silent_device_opens_by_the_clock_and_resolves_on_heartbeat(
    db_pool: asyncpg.Pool,
    add_rule: Any,
    add_device: Any,
    make_evaluator: MakeEvaluator,
    clock: Any,
) -> None:
    await add_device("d1", at=at(-100))
    await add_device("d2", at=at(-100))
    await add_rule("silent", kind="no_data", severity="critical", timeout_s=30, at=at(-100))
    evaluator = await make_evaluator()
    clock.now = at(0)
    await evaluator.handle([heartbeat("d1", 0), reading("d2", 0, temp_c=1)])
    clock.now = at(29)
    assert (await evaluator.tick()).opened == []
    clock.now = at(25)
    await evaluator.handle([reading("d2", 25, temp_c=1)])
    clock.now = at(31)
    outcome = await evaluator.tick()
    assert [(o.device_id, o.opened_at) for o in outcome.opened] == [("d1", at(30))]
    assert (await evaluator.tick()).opened == []  # one open alert per fingerprint
    clock.now = at(40)
    resolved = await evaluator.handle([heartbeat("d1", 40)])
    assert len(resolved.resolved) == 1
    assert [a["status"] for a in await alerts(db_pool)] == ["resolved"]


async def _operator(pool: asyncpg.Pool, alert_id: str, event_type: str, **data: Any) -> None:
    store, projection = PostgresEventStore(pool), AlertsProjection()
    stream = f"alert-{T}-{alert_id}"
    async with pool.acquire() as conn, conn.transaction():
        version = await store.stream_version(stream, conn=conn)
        [event] = await store.append(
            stream,
            [NewEvent(event_type, {"alert_id": alert_id, **data})],
            tenant_id=T,
            expected_version=version,
            conn=conn,
        )
        await projection.apply(conn, event)


async def test_breach_after_close_opens_a_new_alert(
    db_pool: asyncpg.Pool,
    add_rule: Any,
    add_device: Any,
    make_evaluator: MakeEvaluator,
) -> None:
    await add_device("d1")
    await add_rule("hot", metric="temp_c", operator="gt", threshold=80)
    evaluator = await make_evaluator()
    [opened] = (await evaluator.handle([reading("d1", 1, temp_c=85)])).opened
    await _operator(db_pool, opened.alert_id, "AlertClosed", closed_at=at(2).isoformat(), by="ops")
    outcome = await evaluator.handle([reading("d1", 3, temp_c=86)])
    assert len(outcome.opened) == 1 and outcome.opened[0].alert_id != opened.alert_id
    assert [a["status"] for a in await alerts(db_pool)] == ["closed", "open"]


async def test_silent_device_after_close_rearms_from_the_close(
    db_pool: asyncpg.Pool,
    add_rule: Any,
    add_device: Any,
    make_evaluator: MakeEvaluator,
    clock: Any,
) -> None:
    await add_device("d1", at=at(-100))
    await add_rule("silent", kind="no_data", timeout_s=30, at=at(-100))
    evaluator = await make_evaluator()
    clock.now = at(0)
    await evaluator.handle([heartbeat("d1", 0)])
    clock.now = at(31)
    [opened] = (await evaluator.tick()).opened
    await _operator(db_pool, opened.alert_id, "AlertClosed", closed_at=at(35).isoformat(), by="ops")
    clock.now = at(60)
    assert (await evaluator.tick()).opened == []
    clock.now = at(66)
    assert [o.opened_at for o in (await evaluator.tick()).opened] == [at(65)]


async def test_acknowledged_and_silenced_alert_still_resolves(
    db_pool: asyncpg.Pool,
    add_rule: Any,
    add_device: Any,
    make_evaluator: MakeEvaluator,
) -> None:
    await add_device("d1")
    await add_rule("hot", metric="temp_c", operator="gt", threshold=80)
    evaluator = await make_evaluator()
    [opened] = (await evaluator.handle([reading("d1", 1, temp_c=85)])).opened
    await _operator(
        db_pool, opened.alert_id, "AlertAcknowledged", acknowledged_at=at(2).isoformat(), by="ops"
    )
    await _operator(db_pool, opened.alert_id, "AlertSilenced", until=at(3600).isoformat(), by="ops")
    outcome = await evaluator.handle([reading("d1", 3, temp_c=10)])
    assert len(outcome.resolved) == 1
    assert [(a["status"], a["version"]) for a in await alerts(db_pool)] == [("resolved", 4)]


async def test_hysteresis_and_tag_selection(
    db_pool: asyncpg.Pool,
    add_rule: Any,
    add_device: Any,
    make_evaluator: MakeEvaluator,
) -> None:
    await add_device("north", tags={"site": "north"})
    await add_device("south", tags={"site": "south"})
    await add_rule(
        "hot",
        metric="temp_c",
        operator="gt",
        threshold=80,
        clear_threshold=70,
        tags={"site": "north"},
    )
    evaluator = await make_evaluator()
    await evaluator.handle([reading("north", 1, temp_c=85), reading("south", 1, temp_c=99)])
    assert await alert_events(db_pool) == [("AlertOpened", "north")]
    assert (await evaluator.handle([reading("north", 2, temp_c=75)])).resolved == []
    assert len((await evaluator.handle([reading("north", 3, temp_c=70)])).resolved) == 1


async def test_already_open_alert_is_adopted_not_duplicated(
    db_pool: asyncpg.Pool,
    add_rule: Any,
    add_device: Any,
    make_evaluator: MakeEvaluator,
) -> None:
    await add_device("d1")
    await add_rule("hot", metric="temp_c", operator="gt", threshold=80)
    evaluator = await make_evaluator()
    [opened] = (await evaluator.handle([reading("d1", 1, temp_c=85)])).opened
    await db_pool.execute("DELETE FROM evaluator_rule_state")  # state lost, the alert is still open
    again = await evaluator.handle([reading("d1", 2, temp_c=90)])
    assert again.opened == []
    assert await db_pool.fetchval("SELECT alert_id FROM evaluator_rule_state") == opened.alert_id
    await evaluator.handle([reading("d1", 3, temp_c=10)])
    assert [a["status"] for a in await alerts(db_pool)] == ["resolved"]


async def test_concurrent_evaluators_open_exactly_what_one_would(
    db_pool: asyncpg.Pool,
    add_rule: Any,
    add_device: Any,
    make_evaluator: MakeEvaluator,
) -> None:
    devices = [f"d{i}" for i in range(20)]
    for device in devices:
        await add_device(device)
    await add_rule("hot", metric="temp_c", operator="gt", threshold=80)
    await add_rule("warm", metric="temp_c", operator="gt", threshold=50, duration_s=3)
    values = [40, 90, 95, 60, 30, 85, 99, 20]
    batches = [
        [reading(d, s, temp_c=values[(s + i) % len(values)]) for i, d in enumerate(devices)]
        for s in range(len(values))
    ]
    replicas = [await make_evaluator(), await make_evaluator()]
    for batch in batches:  # every batch reaches both replicas at once, whole and split, racing
        await asyncio.gather(
            replicas[0].handle(batch),
            replicas[1].handle(batch),
            replicas[1].handle(batch[:10]),
            replicas[0].handle(batch[10:]),
        )
    for batch in batches:  # and late redeliveries of everything change nothing
        await asyncio.gather(replicas[0].handle(batch), replicas[1].handle(batch))
    events = await alert_events(db_pool)
    expected = await _single_replica_events(batches)
    assert sorted(events) == sorted(expected)
    assert (
        await db_pool.fetchval(
            "SELECT count(*) FROM (SELECT fingerprint FROM alerts WHERE status = 'open' GROUP BY 1 HAVING count(*) > 1) x"
        )
        == 0
    )


async def _single_replica_events(batches: list[list[Record]]) -> list[tuple[str, str]]:
    from fleetpulse.common.rules.domain import OpenAlert, Rule, evaluate_device

    rules = [
        Rule(T, "hot", "h", "threshold", "major", metric="temp_c", operator="gt", threshold=80),
        Rule(
            T,
            "warm",
            "w",
            "threshold",
            "major",
            metric="temp_c",
            operator="gt",
            threshold=50,
            duration_s=3,
        ),
    ]
    states: dict[str, Any] = {}
    seen: dict[str, Any] = {}
    events = []
    for batch in batches:
        for record in batch:
            out = evaluate_device(
                rules, states.get(record.device_id, {}), seen.get(record.device_id), [record]
            )
            states[record.device_id], seen[record.device_id] = out.states, out.seen
            events += [
                ("AlertOpened" if isinstance(d, OpenAlert) else "AlertResolved", d.device_id)
                for d in out.decisions
            ]
    return events
