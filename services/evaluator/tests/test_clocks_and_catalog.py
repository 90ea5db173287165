"""The evaluator against a real PostgreSQL: the two clocks (issue 12 cases 3, 4, 9, 10) and
alerts whose rule or device is gone (case 11).

Each test names the fault kind it guards against; the positive control sits beside every
"nothing happened" check.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

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


async def statuses(pool: asyncpg.Pool) -> dict[str, str]:
    rows = await pool.fetch("SELECT device_id, status FROM alerts ORDER BY opened_at")
    return {r["device_id"]: r["status"] for r in rows}


async def test_heartbeat_does_not_hide_a_slightly_older_reading(
    db_pool: asyncpg.Pool, add_rule: Any, add_device: Any, make_evaluator: MakeEvaluator, clock: Any
) -> None:
    """Fault kind: liveness and reading order shared one clock. A heartbeat (receive time) made
    a reading whose device clock lags by 30 s look stale, so it was stored but never evaluated."""
    await add_device("lagging")
    await add_device("control")
    await add_rule("hot", metric="temp_c", operator="gt", threshold=50)
    evaluator = await make_evaluator()
    clock.now = at(100)
    await evaluator.handle([heartbeat("lagging", 100), heartbeat("control", 100)])
    clock.now = at(104)
    outcome = await evaluator.handle(
        [reading("lagging", 70, temp_c=99), reading("control", 70, temp_c=10)]
    )
    assert [(o.device_id, o.opened_at) for o in outcome.opened] == [("lagging", at(70))]
    assert await statuses(db_pool) == {"lagging": "open"}


async def test_late_reading_never_resolves_an_alert_before_it_opened(
    db_pool: asyncpg.Pool, add_rule: Any, add_device: Any, make_evaluator: MakeEvaluator, clock: Any
) -> None:
    """Fault kind (case 10): gt 50 for 5 s; (T0, 99) opens at T0+5 by the clock; 10 s later a
    store-and-forward (T0+3, 10) arrives. It is late for the firing state (older than the
    alert's opening): stored, not evaluated. A reading after the opening resolves it."""
    await add_device("d1")
    await add_rule("hot", metric="temp_c", operator="gt", threshold=50, duration_s=5)
    evaluator = await make_evaluator()
    clock.now = at(0)
    await evaluator.handle([reading("d1", 0, temp_c=99)])
    clock.now = at(6)
    assert [o.opened_at for o in (await evaluator.tick()).opened] == [at(5)]
    clock.now = at(10)
    late = await evaluator.handle([reading("d1", 3, temp_c=10)])
    assert late.resolved == []
    assert await statuses(db_pool) == {"d1": "open"}
    clock.now = at(12)
    current = await evaluator.handle([reading("d1", 11, temp_c=10)])  # positive control
    assert [d.resolved_at for d in current.resolved] == [at(11)]
    row = await db_pool.fetchrow("SELECT opened_at, resolved_at FROM alerts")
    assert row["resolved_at"] >= row["opened_at"]


async def test_late_reading_is_ordered_per_metric(
    db_pool: asyncpg.Pool, add_rule: Any, add_device: Any, make_evaluator: MakeEvaluator, clock: Any
) -> None:
    """Reading order is per metric: a humidity value older than the newest temperature is not
    late (its metric has not advanced past it); an older temperature is."""
    await add_device("d1")
    await add_rule("hot", metric="temp_c", operator="gt", threshold=50)
    await add_rule("humid", metric="humidity", operator="gt", threshold=90)
    evaluator = await make_evaluator()
    clock.now = at(60)
    await evaluator.handle([reading("d1", 60, temp_c=20)])
    outcome = await evaluator.handle([reading("d1", 30, humidity=95, temp_c=99)])
    assert [d.rule.rule_id for d in outcome.opened] == ["humid"]


async def test_same_time_clash_first_evaluated_wins(
    db_pool: asyncpg.Pool, add_rule: Any, add_device: Any, make_evaluator: MakeEvaluator, clock: Any
) -> None:
    """Case 3, the evaluator's side: of two readings with the same (device, ts) the first one is
    evaluated and the second is a duplicate, in one batch or in two (history keeps the first
    stored, and ingest forwards only what it stored)."""
    await add_device("d1")
    await add_rule("hot", metric="temp_c", operator="gt", threshold=50)
    evaluator = await make_evaluator()
    clock.now = at(5)
    first = await evaluator.handle([reading("d1", 1, temp_c=10), reading("d1", 1, temp_c=99)])
    second = await evaluator.handle([reading("d1", 1, temp_c=99)])
    assert (first.applied, first.skipped, second.applied, second.skipped) == (1, 1, 0, 1)
    assert await statuses(db_pool) == {}
    control = await evaluator.handle([reading("d1", 2, temp_c=99)])
    assert len(control.opened) == 1


async def test_resent_reading_does_not_resolve_no_data(
    db_pool: asyncpg.Pool, add_rule: Any, add_device: Any, make_evaluator: MakeEvaluator, clock: Any
) -> None:
    """Case 4, the evaluator's side: a message the broker re-sends (same device time as one
    already evaluated) is not traffic, so it does not resolve the no_data alert of a device that
    is in fact silent. A new reading does."""
    await add_device("d1", at=at(-100))
    await add_rule("silent", kind="no_data", timeout_s=30, at=at(-100))
    evaluator = await make_evaluator()
    clock.now = at(0)
    await evaluator.handle([reading("d1", 0, temp_c=20)])
    clock.now = at(31)
    assert len((await evaluator.tick()).opened) == 1
    clock.now = at(40)
    resent = await evaluator.handle([reading("d1", 0, temp_c=20)])
    assert resent.resolved == [] and await statuses(db_pool) == {"d1": "open"}
    clock.now = at(41)
    assert (await evaluator.tick()).opened == []
    fresh = await evaluator.handle([reading("d1", 41, temp_c=20)])
    assert [d.resolved_at for d in fresh.resolved] == [at(41)]


async def _open_two(evaluator: Evaluator, clock: Any) -> None:
    clock.now = at(1)
    opened = await evaluator.handle([reading("d1", 1, temp_c=99), reading("d2", 1, temp_c=99)])
    assert len(opened.opened) == 2


CHANGES: dict[str, tuple[str, str]] = {
    "rule_deleted": (
        "DELETE FROM rules WHERE rule_id = 'hot'",
        "",
    ),
    "rule_disabled": ("UPDATE rules SET enabled = false, version = 2 WHERE rule_id = 'hot'", ""),
    "rule_changed": (
        'UPDATE rules SET device_selector = \'{"tags": {"site": "b"}}\', version = 2',
        "",
    ),
    "device_deselected": (
        "UPDATE devices SET tags = '{\"site\": \"b\"}', version = 2 WHERE device_id = 'd1'",
        "d1",
    ),
    "device_decommissioned": (
        "UPDATE devices SET status = 'decommissioned', version = 2 WHERE device_id = 'd1'",
        "d1",
    ),
}


@pytest.mark.parametrize("reason", sorted(CHANGES))
async def test_alert_whose_rule_or_device_is_gone_resolves_with_a_reason(
    reason: str,
    db_pool: asyncpg.Pool,
    add_rule: Any,
    add_device: Any,
    make_evaluator: MakeEvaluator,
    refresh_catalogs: Callable[[], Awaitable[None]],
    clock: Any,
) -> None:
    """Fault kind (case 11): an alert whose rule was deleted, disabled or changed so it no longer
    selects the device, or whose device was retagged or decommissioned, stayed open forever.
    It resolves with the reason; an alert the change does not touch stays open."""
    await add_device("d1", tags={"site": "a"})
    await add_device("d2", tags={"site": "a"})
    await add_rule("hot", metric="temp_c", operator="gt", threshold=50, tags={"site": "a"})
    evaluator = await make_evaluator()
    await _open_two(evaluator, clock)
    statement, only = CHANGES[reason]
    await db_pool.execute(statement)
    await refresh_catalogs()
    clock.now = at(5)
    outcome = await evaluator.catalog_changed()
    ended = {"d1"} if only else {"d1", "d2"}
    assert {d.device_id for d in outcome.resolved} == ended
    expected = {"d1": "resolved", "d2": "resolved" if not only else "open"}
    assert await statuses(db_pool) == expected
    events = await db_pool.fetch(
        "SELECT data FROM events WHERE type = 'AlertResolved' ORDER BY position"
    )
    assert {e["data"]["reason"] for e in events} == {reason}
    assert await db_pool.fetchval(
        "SELECT count(*) FROM alerts WHERE details->>'resolved_reason' = $1", reason
    ) == len(ended)
    assert (await evaluator.catalog_changed()).resolved == []  # once
    if only:  # the untouched alert still follows its readings
        clock.now = at(6)
        assert len((await evaluator.handle([reading("d2", 6, temp_c=10)])).resolved) == 1


async def _silent_alerts(pool: asyncpg.Pool) -> list[tuple[str, str, datetime]]:
    rows = await pool.fetch("SELECT tenant_id, device_id, opened_at FROM alerts ORDER BY 1, 2")
    return [(r["tenant_id"], r["device_id"], r["opened_at"]) for r in rows]


async def test_no_data_deadline_starts_when_a_device_becomes_selected(
    db_pool: asyncpg.Pool,
    add_rule: Any,
    add_device: Any,
    make_evaluator: MakeEvaluator,
    refresh_catalogs: Callable[[], Awaitable[None]],
    clock: Any,
) -> None:
    """Fault kind (case 8): a device that never reported had no no_data deadline. It starts at
    the later of registration and rule creation, and again when a rule update or a tag change
    makes the rule select a device it did not select before."""
    await add_device("registered-late", tags={"site": "a"}, at=at(10))
    await add_device("retagged", tags={"site": "b"}, at=at(0))
    await add_device("other", tags={"site": "c"}, at=at(0))
    await add_rule("silent", kind="no_data", timeout_s=30, tags={"site": "a"}, at=at(5))
    evaluator = await make_evaluator()
    clock.now = at(39)
    assert (await evaluator.tick()).opened == []
    clock.now = at(41)
    assert [(o.device_id, o.opened_at) for o in (await evaluator.tick()).opened] == [
        ("registered-late", at(40))
    ]
    await db_pool.execute(
        'UPDATE devices SET tags = \'{"site": "a"}\', updated_at = $1, version = 2'
        " WHERE device_id = 'retagged'",
        at(50),
    )
    await refresh_catalogs()
    await evaluator.catalog_changed()
    clock.now = at(79)
    assert (await evaluator.tick()).opened == []
    clock.now = at(81)
    assert [o.device_id for o in (await evaluator.tick()).opened] == ["retagged"]
    await add_rule("silent", kind="no_data", timeout_s=30, version=2, at=at(90))  # selects all
    await refresh_catalogs()
    await evaluator.catalog_changed()
    clock.now = at(119)
    assert (await evaluator.tick()).opened == []
    clock.now = at(121)
    assert [o.device_id for o in (await evaluator.tick()).opened] == ["other"]
    assert len(await _silent_alerts(db_pool)) == 3


async def test_no_data_is_not_starved_by_silent_unselected_devices(
    db_pool: asyncpg.Pool,
    add_rule: Any,
    make_evaluator: MakeEvaluator,
    clock: Any,
) -> None:
    """Fault kind (case 12): the silence query took the first 1,000 (device, rule) pairs of all
    tenants before applying the selector. 1,000 silent devices of two tenants that no rule
    selects (they reported once, long ago) must not hold back the one selected device; the
    unselected ones never alert (the selected one is the positive control)."""
    now = at(0)
    parked = [(("acme", "zeta")[i % 2], f"a-parked-{i:04d}") for i in range(1000)]
    await db_pool.executemany(
        "INSERT INTO devices (tenant_id, device_id, tags, registered_at, updated_at, version)"
        ' VALUES ($1, $2, \'{"fleet": "parked"}\', $3, $3, 1)',
        [(t, d, now - timedelta(hours=2)) for t, d in parked],
    )
    await db_pool.executemany(
        "INSERT INTO evaluator_devices (tenant_id, device_id, last_seen, last_reading_at)"
        " VALUES ($1, $2, $3, $3)",
        [(t, d, now - timedelta(hours=1)) for t, d in parked],
    )
    await db_pool.execute(
        "INSERT INTO devices (tenant_id, device_id, tags, registered_at, updated_at, version)"
        " VALUES ('acme', 'z-watched', '{\"fleet\": \"live\"}', $1, $1, 1)",
        now - timedelta(hours=2),
    )
    for tenant in ("acme", "zeta"):
        await add_rule(
            "silent", kind="no_data", timeout_s=5, tags={"fleet": "live"}, tenant=tenant, at=now
        )
    evaluator = await make_evaluator()
    assert await db_pool.fetchval("SELECT count(*) FROM evaluator_deadlines") == 1
    clock.now = at(1)
    await evaluator.handle([heartbeat("z-watched", 1)])
    clock.now = at(6.5)
    outcome = await evaluator.tick()
    assert [(o.device_id, o.opened_at) for o in outcome.opened] == [("z-watched", at(6))]
    clock.now = at(60)
    assert (await evaluator.tick()).opened == []
    assert await _silent_alerts(db_pool) == [("acme", "z-watched", at(6))]


async def test_watermarks_in_the_database_match_the_pure_core(
    db_pool: asyncpg.Pool, add_rule: Any, add_device: Any, make_evaluator: MakeEvaluator, clock: Any
) -> None:
    """The per-metric marks kept by the upsert (NULL while every tracked metric is at the newest
    reading, merged per metric otherwise) decide exactly what the pure core decides with its
    in-memory watermarks, for batches of mixed metrics, duplicates and late readings."""
    import random

    from fleetpulse.common.rules.domain import OpenAlert, Rule, Watermarks, evaluate_device

    await add_device("d1")
    await add_rule("hot", metric="a", operator="gt", threshold=5)
    await add_rule("wet", metric="b", operator="gt", threshold=5, duration_s=2)
    evaluator = await make_evaluator()
    rules = [
        Rule(T, "hot", "h", "threshold", "major", metric="a", operator="gt", threshold=5),
        Rule(
            T,
            "wet",
            "w",
            "threshold",
            "major",
            metric="b",
            operator="gt",
            threshold=5,
            duration_s=2,
        ),
    ]
    rnd = random.Random(12)
    states: dict[str, Any] = {}
    seen: Watermarks | None = None
    expected: list[tuple[str, str, datetime]] = []
    actual: list[tuple[str, str, datetime]] = []
    newest = 0
    for _ in range(60):
        batch = []
        for _ in range(rnd.randint(1, 4)):
            ts = max(0, newest + rnd.randint(-6, 3))
            newest = max(newest, ts)
            metrics = rnd.choice([{"a"}, {"b"}, {"a", "b"}, {"a", "b", "c"}, {"c"}])
            batch.append(reading("d1", ts, **{m: rnd.randint(0, 10) for m in sorted(metrics)}))
        clock.now = at(newest)
        core = evaluate_device(rules, states, seen, batch, received_at=at(newest))
        states, seen = core.states, core.seen
        expected += [
            (
                type(d).__name__,
                d.rule.rule_id,
                d.opened_at if isinstance(d, OpenAlert) else d.resolved_at,
            )
            for d in core.decisions
        ]
        outcome = await evaluator.handle(batch)
        actual += [("OpenAlert", d.rule.rule_id, d.opened_at) for d in outcome.opened]
        actual += [("ResolveAlert", d.rule.rule_id, d.resolved_at) for d in outcome.resolved]
    assert sorted(actual) == sorted(expected)
    assert len(expected) > 4  # the sequence did open and resolve alerts


async def test_rule_changed_but_still_selecting_keeps_its_alert_under_the_new_condition(
    db_pool: asyncpg.Pool,
    add_rule: Any,
    add_device: Any,
    make_evaluator: MakeEvaluator,
    refresh_catalogs: Callable[[], Awaitable[None]],
    clock: Any,
) -> None:
    """The policy for a rule update that still selects the device: its open alert stays open
    (no resolve/reopen churn for a rename or a severity change) and is judged by the updated
    condition from the next value on."""
    await add_device("d1")
    await add_rule("hot", metric="temp_c", operator="gt", threshold=50)
    evaluator = await make_evaluator()
    clock.now = at(1)
    assert len((await evaluator.handle([reading("d1", 1, temp_c=60)])).opened) == 1
    await add_rule("hot", metric="temp_c", operator="gt", threshold=70, version=2)
    await refresh_catalogs()
    assert (await evaluator.catalog_changed()).resolved == []
    assert await statuses(db_pool) == {"d1": "open"}
    clock.now = at(2)
    resolved = await evaluator.handle([reading("d1", 2, temp_c=65)])  # meets 50, not 70
    assert [d.resolved_at for d in resolved.resolved] == [at(2)]
    assert await db_pool.fetchval("SELECT details->>'resolved_reason' FROM alerts") is None


async def test_two_replicas_handling_a_catalog_change_resolve_once(
    db_pool: asyncpg.Pool,
    add_rule: Any,
    add_device: Any,
    make_evaluator: MakeEvaluator,
    refresh_catalogs: Callable[[], Awaitable[None]],
    clock: Any,
) -> None:
    """Replicas see the same catalog change at the same time: the deadline sync and the end of
    the deleted rule's alerts happen once (one AlertResolved per alert), without errors."""
    for device in ("d1", "d2", "d3"):
        await add_device(device)
    await add_rule("hot", metric="temp_c", operator="gt", threshold=50)
    await add_rule("silent", kind="no_data", timeout_s=30)
    first, second = await make_evaluator(), await make_evaluator()
    clock.now = at(1)
    await first.handle([reading(d, 1, temp_c=99) for d in ("d1", "d2", "d3")])
    await db_pool.execute("DELETE FROM rules")
    await refresh_catalogs()
    outcomes = await asyncio.gather(first.catalog_changed(), second.catalog_changed())
    assert sum(len(o.resolved) for o in outcomes) == 3
    assert await db_pool.fetchval("SELECT count(*) FROM events WHERE type = 'AlertResolved'") == 3
    assert await db_pool.fetchval("SELECT count(*) FROM evaluator_deadlines") == 0
