"""The evaluator's handlers: a batch of records, the clock (durations, silences) and catalog
changes (rules or devices created, changed, deleted).

Each handler runs one transaction per unit of work: lock the devices' rows, load their states,
run the pure core, write the new states and append the alert events it decided, commit. A
deadlock or serialization failure retries the unit on fresh state.

``no_data`` deadlines live in ``evaluator_deadlines``, one row per (tenant, rule, device) the rule
selects, kept in step with the catalog by :meth:`Evaluator.catalog_changed`. The clock reads only
the rows that are due (an index on ``due_at``): each either opens an alert or moves to its real
deadline (last traffic, or the pair's start, or the close of its last alert, plus ``timeout_s``).
A catalog change also ends the states whose rule no longer applies to their device: a firing one
resolves with the reason (``rule_deleted``, ``rule_disabled``, ``rule_changed``,
``device_deselected``, ``device_decommissioned``). A rule updated so that it still selects the
device keeps its open alert, judged by the new condition from the next value on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, TypeVar

import asyncpg

from fleetpulse.common.contracts import AlertOpened, AlertResolved
from fleetpulse.common.db import translated
from fleetpulse.common.errors import TransactionConflictError, TransientError
from fleetpulse.common.observability import meter, tracer
from fleetpulse.common.retry import RetryPolicy, doubling
from fleetpulse.common.rules.domain import (
    Decision,
    IdFactory,
    OpenAlert,
    Record,
    Rule,
    RuleMemory,
    RulePlan,
    RuleState,
    Step,
    batch_watermarks,
    by_time,
    end_state,
    evaluate_device,
    new_alert_id,
    on_clock,
    on_silence,
    reconcile,
    silence_due,
)
from fleetpulse.common.runtime import sleep_until_stopped
from fleetpulse.evaluator.alerting import PostgresAlertLog
from fleetpulse.evaluator.catalog import Catalog
from fleetpulse.evaluator.store import (
    Deadline,
    DeviceAdvance,
    DeviceKey,
    PostgresRuleStateStore,
    StateRow,
    StateWrite,
)

log = logging.getLogger(__name__)
T = TypeVar("T")
Clock = Callable[[], datetime]
#: A transaction the server rolled back (deadlock, serialization) is rerun: 6 tries, 5 ms doubling.
_CONFLICT_RETRY = RetryPolicy(
    on=(TransactionConflictError,),
    attempts=6,
    wait=doubling(0.005),
    logger=log,
    message="transaction conflict; retrying",
    level=logging.INFO,
)
_DEADLINE_BATCH = 2000  # due (rule, device) pairs read per round of a tick
_DEADLINE_CHUNK = 250  # devices per transaction
_DEADLINE_ROUNDS = 50

_meter = meter("fleetpulse.evaluator")
_records = _meter.create_counter("fleetpulse.evaluator.records", description="Records by outcome")
_alerts = _meter.create_counter("fleetpulse.evaluator.alerts", description="Alert events appended")
_latency = _meter.create_histogram(
    "fleetpulse.evaluator.batch_seconds",
    unit="s",
    description="Time to evaluate and commit a batch",
)


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class Outcome:
    """What one unit of work did; ``opened``/``resolved`` hold the committed decisions."""

    applied: int = 0
    skipped: int = 0
    opened: list[OpenAlert] = field(default_factory=list)
    resolved: list[Decision] = field(default_factory=list)

    def add(self, other: Outcome) -> None:
        self.applied += other.applied
        self.skipped += other.skipped
        self.opened += other.opened
        self.resolved += other.resolved


class Evaluator:
    """Evaluates record batches and the clock against rule state kept in PostgreSQL.

    Parameters:
        pool: database pool.
        catalog: rules and device tags (kept fresh by ``PostgresCatalogSource``).
        alert_log: where alert decisions are appended.
        duration_grace_s: how long past a pending duration the clock waits before opening, so a
            record delayed in the queue can still cancel it (``opened_at`` is not affected).
        clock: the wall clock (tests pass their own).
        new_id: alert id factory.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        catalog: Catalog,
        alert_log: PostgresAlertLog,
        *,
        duration_grace_s: float = 1.0,
        clock: Clock = utcnow,
        new_id: IdFactory = new_alert_id,
    ) -> None:
        self._pool = pool
        self._catalog = catalog
        self._alert_log = alert_log
        self._states = PostgresRuleStateStore()
        self._grace = timedelta(seconds=duration_grace_s)
        self._clock = clock
        self._new_id = new_id
        self._tracer = tracer("fleetpulse.evaluator")

    async def handle(self, records: Iterable[Record]) -> Outcome:
        """Evaluate a batch of records in one transaction (idempotent under redelivery)."""
        by_device: dict[DeviceKey, list[Record]] = {}
        for record in records:
            by_device.setdefault((record.tenant_id, record.device_id), []).append(record)
        if not by_device:
            return Outcome()
        started = time.perf_counter()
        with self._tracer.start_as_current_span(
            "evaluate batch", attributes={"records": sum(map(len, by_device.values()))}
        ):
            outcome = await self._transaction(lambda conn: self._evaluate(conn, by_device))
        _latency.record(time.perf_counter() - started)
        _records.add(outcome.applied, {"outcome": "applied"})
        _records.add(outcome.skipped, {"outcome": "stale"})
        return outcome

    async def tick(self) -> Outcome:
        """Open what the clock decides: elapsed pending durations and due no_data deadlines."""
        now = self._clock()
        outcome = Outcome()
        for key in await self._states.due_pending(self._pool, now - self._grace):
            with self._clock_span("evaluator.clock duration", tenant_id=key[0], device_id=key[1]):
                outcome.add(await self._transaction(partial(self._clock_device, key=key, now=now)))
        for _ in range(_DEADLINE_ROUNDS):  # each round handles up to _DEADLINE_BATCH due pairs
            due = await self._states.due_deadlines(self._pool, now, _DEADLINE_BATCH)
            handled = 0
            for chunk in _device_chunks(due, _DEADLINE_CHUNK):
                with self._clock_span("evaluator.clock no_data", deadlines=len(chunk)):
                    done, result = await self._transaction(
                        partial(self._silence_devices, deadlines=chunk, now=now)
                    )
                handled += done
                outcome.add(result)
            if len(due) < _DEADLINE_BATCH or not handled:
                break
        return outcome

    async def catalog_changed(self) -> Outcome:
        """Bring rule state in step with a changed catalog: the no_data deadlines of the pairs
        now selected, and the end of every state whose rule no longer applies to its device
        (deleted, disabled, changed so it no longer selects it, device retagged or
        decommissioned); a firing one resolves with that reason."""
        await self._transaction(self._states.sync_deadlines)  # replicas may sync at once
        outcome = Outcome()
        orphans: dict[DeviceKey, dict[str, str]] = {}
        for row in await self._states.all_states(self._pool):
            reason = self._ended_because(row)
            if reason is not None:
                orphans.setdefault(row.key, {})[row.rule_id] = reason
        for key, reasons in sorted(orphans.items()):
            outcome.add(
                await self._transaction(partial(self._end_states, key=key, reasons=reasons))
            )
        await self._states.drop_stale_memory(self._pool)
        return outcome

    def _clock_span(self, name: str, **attributes: str | int) -> AbstractContextManager[Any]:
        """A clock-driven decision starts its own trace (no reading caused it): the alert
        events it appends carry this span's ``traceparent`` in their metadata."""
        return self._tracer.start_as_current_span(name, attributes=attributes)

    async def run_clock(self, stop: asyncio.Event, interval_s: float = 1.0) -> None:
        """Call :meth:`tick` every ``interval_s`` until ``stop`` is set."""
        while not stop.is_set():
            try:
                with translated:
                    await self.tick()
            except TransientError as exc:
                log.warning(
                    "clock tick failed; retrying", extra={"error": f"{type(exc).__name__}: {exc}"}
                )
            await sleep_until_stopped(stop, interval_s)

    async def _evaluate(
        self, conn: asyncpg.Connection, by_device: Mapping[DeviceKey, Sequence[Record]]
    ) -> Outcome:
        now = self._clock()
        plans = {key: self._catalog.plan_for(key) for key in by_device}
        by_device = {key: by_time(records) for key, records in by_device.items()}
        advances = {key: _advance(plans[key], recs, now) for key, recs in by_device.items()}
        seen = await self._states.advance_devices(conn, advances)
        states = await self._states.load(conn, by_device)
        general = [key for key, plan in plans.items() if plan.general]
        memories = await self._states.load_memory(conn, general) if general else {}
        writes: list[StateWrite] = []
        memory_writes: list[tuple[DeviceKey, str, RuleMemory]] = []
        decisions: list[tuple[DeviceKey, Decision]] = []
        outcome = Outcome()
        for key, records in by_device.items():
            plan = plans[key]
            result = evaluate_device(
                plan,
                states.get(key, {}),
                seen.get(key),
                records,
                self._new_id,
                now,
                memories.get(key),
            )
            outcome.applied += result.applied
            if result.memory_changed:
                memory_writes += [(key, r, result.memory[r]) for r in result.memory_changed]
            if result.changed:
                writes += _writes(key, plan.rules, result.changed, result.states)
            if result.decisions:
                decisions += [(key, d) for d in result.decisions]
        outcome.skipped = sum(map(len, by_device.values())) - outcome.applied
        await self._states.save(conn, writes)
        await self._states.save_memory(conn, memory_writes)
        await self._decide(conn, decisions, outcome)
        return outcome

    async def _clock_device(
        self, conn: asyncpg.Connection, key: DeviceKey, now: datetime
    ) -> Outcome:
        if key not in await self._states.lock_devices(conn, [key], skip_locked=True):
            return Outcome()  # being evaluated right now; the next tick looks again
        states = (await self._states.load(conn, [key])).get(key, {})
        rules = {r.rule_id: r for r in self._catalog.rules_for(key)}
        steps: dict[str, Step] = {}
        for rule_id, state in states.items():
            rule = rules.get(rule_id)
            if state.status != "pending":
                continue
            if rule is None or reconcile(rule, state) is None:
                steps[rule_id] = (None, None)  # its rule is gone or changed: nothing pending
            else:
                steps[rule_id] = on_clock(rule, state, key[1], now - self._grace, self._new_id)
        return await self._commit_steps(conn, key, rules, states, steps)

    async def _silence_devices(
        self, conn: asyncpg.Connection, deadlines: Sequence[Deadline], now: datetime
    ) -> tuple[int, Outcome]:
        """Due no_data pairs of a few devices: open, or move ``due_at`` to the real deadline."""
        locked = await self._states.lock_devices(conn, {d.key for d in deadlines}, skip_locked=True)
        live = [d for d in deadlines if d.key in locked]  # others: the next tick looks again
        if not live:
            return 0, Outcome()
        states = await self._states.load(conn, locked)
        closed = await self._states.closed_at(conn, locked)
        steps: dict[DeviceKey, dict[str, Step]] = {}
        next_due: list[tuple[DeviceKey, str, datetime | None]] = []
        for deadline in live:
            key, rule = deadline.key, self._catalog.selects(deadline.key, deadline.rule_id)
            if rule is None or rule.kind != "no_data":
                next_due.append((key, deadline.rule_id, None))  # the catalog sync drops it too
                continue
            start = max(filter(None, (deadline.armed_at, deadline.alive_at)))
            rearmed = closed.get((key, rule.rule_id))
            state = reconcile(rule, states.get(key, {}).get(rule.rule_id))
            step = on_silence(rule, state, key[1], start, now, rearmed, self._new_id)
            steps.setdefault(key, {})[rule.rule_id] = step
            firing = step[0] is not None and step[0].status == "firing"
            due = now + rule.timeout if firing else silence_due(rule, start, rearmed)
            next_due.append((key, rule.rule_id, due))
        outcome = Outcome()
        for key, device_steps in steps.items():
            rules = {r.rule_id: r for r in self._catalog.rules_for(key)}
            outcome.add(
                await self._commit_steps(conn, key, rules, states.get(key, {}), device_steps)
            )
        await self._states.reschedule(conn, next_due)
        return len(live), outcome

    def _ended_because(self, row: StateRow) -> str | None:
        """Why the state's rule no longer applies to its device; ``None`` while it does."""
        if self._catalog.selects(row.key, row.rule_id) is not None:
            return None
        device = self._catalog.device(row.key)
        if device is None or not device.active:
            return "device_decommissioned"
        rule = self._catalog.known_rule(row.key[0], row.rule_id)
        if rule is None:
            return "rule_deleted"
        if not self._catalog.enabled(rule):
            return "rule_disabled"
        return "rule_changed" if rule.version != row.rule_version else "device_deselected"

    async def _end_states(
        self, conn: asyncpg.Connection, key: DeviceKey, reasons: Mapping[str, str]
    ) -> Outcome:
        await self._states.lock_devices(conn, [key])
        states = (await self._states.load(conn, [key])).get(key, {})
        now = self._clock()
        decisions: list[tuple[DeviceKey, Decision]] = []
        for rule_id, reason in reasons.items():
            state = states.get(rule_id)
            if state is None:
                continue
            rule = self._catalog.known_rule(key[0], rule_id) or await self._gone_rule(
                conn, key, rule_id, state
            )
            _, decision = end_state(rule, state, key[1], now, reason)
            if decision is not None:
                decisions.append((key, decision))
        await self._states.save(conn, [StateWrite(key, rule_id, None) for rule_id in reasons])
        await self._states.drop_memory(conn, key, reasons)
        outcome = Outcome()
        await self._decide(conn, decisions, outcome)
        return outcome

    async def _gone_rule(
        self, conn: asyncpg.Connection, key: DeviceKey, rule_id: str, state: RuleState
    ) -> Rule:
        """A stand-in for a deleted rule: what its alert's resolution needs (id, severity)."""
        severity = await conn.fetchval(
            "SELECT severity FROM alerts WHERE tenant_id = $1 AND alert_id = $2",
            key[0],
            state.alert_id,
        )
        return Rule(
            key[0],
            rule_id,
            rule_id,
            "no_data",
            severity or "info",
            timeout_s=1.0,
            version=state.rule_version,
        )

    async def _commit_steps(
        self,
        conn: asyncpg.Connection,
        key: DeviceKey,
        rules: Mapping[str, Rule],
        states: Mapping[str, RuleState],
        steps: Mapping[str, Step],
    ) -> Outcome:
        changed = {
            rule_id for rule_id, (state, _) in steps.items() if state is not states.get(rule_id)
        }
        new_states = {rule_id: state for rule_id, (state, _) in steps.items() if state is not None}
        await self._states.save(conn, _writes(key, list(rules.values()), changed, new_states))
        outcome = Outcome()
        await self._decide(conn, [(key, d) for _, d in steps.values() if d is not None], outcome)
        return outcome

    async def _decide(
        self,
        conn: asyncpg.Connection,
        decisions: Sequence[tuple[DeviceKey, Decision]],
        outcome: Outcome,
    ) -> None:
        for key, decision in decisions:
            if isinstance(decision, OpenAlert):
                await self._open(conn, key, decision, outcome)
            elif await self._alert_log.resolve(conn, decision):
                outcome.resolved.append(decision)
                _alerts.add(1, {"type": AlertResolved.TYPE, "severity": decision.rule.severity})

    async def _open(
        self, conn: asyncpg.Connection, key: DeviceKey, decision: OpenAlert, outcome: Outcome
    ) -> None:
        if await self._alert_log.open(conn, decision):
            outcome.opened.append(decision)
            _alerts.add(1, {"type": AlertOpened.TYPE, "severity": decision.rule.severity})
            return
        fingerprint = decision.rule.fingerprint(key[1])
        adopted = await self._states.adopt_alert(conn, key, decision.rule.rule_id, fingerprint)
        log.info(
            "alert already open; state adopts it",
            extra={"fingerprint": fingerprint, "alert_id": adopted},
        )

    async def _transaction(self, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        return await _CONFLICT_RETRY.call(partial(self._transaction_once, work))

    async def _transaction_once(self, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        with translated:
            async with self._pool.acquire() as conn, conn.transaction():
                return await work(conn)


def _writes(
    key: DeviceKey, rules: Sequence[Rule], changed: Iterable[str], states: Mapping[str, RuleState]
) -> list[StateWrite]:
    by_id = {r.rule_id: r for r in rules}
    writes = []
    for rule_id in changed:
        state = states.get(rule_id)
        rule = by_id.get(rule_id)
        due_at = state.due_at(rule) if state is not None and rule is not None else None
        writes.append(StateWrite(key, rule_id, state, due_at))
    return writes


def _advance(plan: RulePlan, records: Sequence[Record], now: datetime) -> DeviceAdvance:
    """Where a batch (oldest first) moves a device: watermarks (device time), liveness
    (receive time)."""
    heartbeat_at: datetime | None = None
    reading_at: datetime | None = None
    oldest: datetime | None = None
    for record in records:
        at = record.received_at or now
        if record.kind == "heartbeat":
            heartbeat_at = at if heartbeat_at is None or at > heartbeat_at else heartbeat_at
            continue
        reading_at = at if reading_at is None or at > reading_at else reading_at
        oldest = record.ts if oldest is None or record.ts < oldest else oldest
    marks = batch_watermarks(plan, records)
    return DeviceAdvance(marks, heartbeat_at, reading_at, oldest, plan.metrics)


def _device_chunks(deadlines: Sequence[Deadline], size: int) -> list[list[Deadline]]:
    """Due pairs in chunks of at most ``size`` devices (a device's pairs stay together)."""
    by_device: dict[DeviceKey, list[Deadline]] = {}
    for deadline in deadlines:
        by_device.setdefault(deadline.key, []).append(deadline)
    keys = sorted(by_device)
    return [
        [d for key in keys[i : i + size] for d in by_device[key]] for i in range(0, len(keys), size)
    ]
