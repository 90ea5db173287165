"""The evaluator's handlers: a batch of records, and the clock (durations, silences).

Each handler runs one transaction per unit of work: lock the devices' rows, load their states,
run the pure core, write the new states and append the alert events it decided, commit. A
deadlock or serialization failure retries the unit on fresh state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, TypeVar

import asyncpg

from fleetpulse.common.db import TRANSIENT_ERRORS
from fleetpulse.common.observability import meter, tracer
from fleetpulse.evaluator.alerting import PostgresAlertLog
from fleetpulse.evaluator.catalog import Catalog
from fleetpulse.evaluator.domain import (
    Decision,
    IdFactory,
    OpenAlert,
    Record,
    Rule,
    RuleState,
    Step,
    evaluate_device,
    new_alert_id,
    on_clock,
    on_silence,
    reconcile,
)
from fleetpulse.evaluator.store import (
    DeviceKey,
    PostgresRuleStateStore,
    SilentCandidate,
    StateWrite,
)

log = logging.getLogger(__name__)
T = TypeVar("T")
Clock = Callable[[], datetime]
_RETRYABLE = (asyncpg.DeadlockDetectedError, asyncpg.SerializationError)
_ATTEMPTS = 6

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
        """Open what the clock decides: elapsed pending durations and silent devices."""
        now = self._clock()
        outcome = Outcome()
        for key in await self._states.due_pending(self._pool, now - self._grace):
            with self._clock_span("evaluator.clock duration", key):
                outcome.add(await self._transaction(partial(self._clock_device, key=key, now=now)))
        for key, candidates in self._silent_by_device(
            await self._states.silent(self._pool, self._catalog.no_data_rules(), now)
        ).items():
            with self._clock_span("evaluator.clock no_data", key):
                outcome.add(
                    await self._transaction(
                        partial(self._silence_device, key=key, candidates=candidates, now=now)
                    )
                )
        return outcome

    def _clock_span(self, name: str, key: DeviceKey) -> AbstractContextManager[Any]:
        """A clock-driven decision starts its own trace (no reading caused it): the alert
        events it appends carry this span's ``traceparent`` in their metadata."""
        return self._tracer.start_as_current_span(
            name, attributes={"tenant_id": key[0], "device_id": key[1]}
        )

    async def run_clock(self, stop: asyncio.Event, interval_s: float = 1.0) -> None:
        """Call :meth:`tick` every ``interval_s`` until ``stop`` is set."""
        while not stop.is_set():
            try:
                await self.tick()
            except TRANSIENT_ERRORS as exc:
                log.warning(
                    "clock tick failed; retrying", extra={"error": f"{type(exc).__name__}: {exc}"}
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval_s)

    async def _evaluate(
        self, conn: asyncpg.Connection, by_device: Mapping[DeviceKey, list[Record]]
    ) -> Outcome:
        newest = {key: max(r.ts for r in records) for key, records in by_device.items()}
        last_seen = await self._states.advance_devices(conn, newest)
        states = await self._states.load(conn, by_device)
        writes: list[StateWrite] = []
        decisions: list[tuple[DeviceKey, Decision]] = []
        outcome = Outcome()
        for key, records in by_device.items():
            rules = self._catalog.rules_for(key)
            result = evaluate_device(
                rules, states.get(key, {}), last_seen.get(key), records, self._new_id
            )
            outcome.applied += result.applied
            if result.changed:
                writes += _writes(key, rules, result.changed, result.states)
            if result.decisions:
                decisions += [(key, d) for d in result.decisions]
        outcome.skipped = sum(map(len, by_device.values())) - outcome.applied
        await self._states.save(conn, writes)
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

    async def _silence_device(
        self,
        conn: asyncpg.Connection,
        key: DeviceKey,
        candidates: Sequence[SilentCandidate],
        now: datetime,
    ) -> Outcome:
        locked = await self._states.lock_devices(conn, [key], skip_locked=True)
        last_seen = locked.get(key)
        if last_seen is None:
            return Outcome()
        states = (await self._states.load(conn, [key])).get(key, {})
        rules = {r.rule_id: r for r in self._catalog.rules_for(key)}
        steps: dict[str, Step] = {}
        for candidate in candidates:
            rule = rules.get(candidate.rule_id)
            if rule is not None and rule.kind == "no_data":
                state = reconcile(rule, states.get(rule.rule_id))
                steps[rule.rule_id] = on_silence(
                    rule, state, key[1], last_seen, now, candidate.rearmed_at, self._new_id
                )
        return await self._commit_steps(conn, key, rules, states, steps)

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
                _alerts.add(1, {"type": "AlertResolved", "severity": decision.rule.severity})

    async def _open(
        self, conn: asyncpg.Connection, key: DeviceKey, decision: OpenAlert, outcome: Outcome
    ) -> None:
        if await self._alert_log.open(conn, decision):
            outcome.opened.append(decision)
            _alerts.add(1, {"type": "AlertOpened", "severity": decision.rule.severity})
            return
        fingerprint = decision.rule.fingerprint(key[1])
        adopted = await self._states.adopt_alert(conn, key, decision.rule.rule_id, fingerprint)
        log.info(
            "alert already open; state adopts it",
            extra={"fingerprint": fingerprint, "alert_id": adopted},
        )

    def _silent_by_device(
        self, candidates: Iterable[SilentCandidate]
    ) -> dict[DeviceKey, list[SilentCandidate]]:
        grouped: dict[DeviceKey, list[SilentCandidate]] = {}
        for candidate in candidates:
            if self._catalog.selects(candidate.key, candidate.rule_id) is not None:
                grouped.setdefault(candidate.key, []).append(candidate)
        return grouped

    async def _transaction(self, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        for attempt in range(_ATTEMPTS):
            try:
                async with self._pool.acquire() as conn, conn.transaction():
                    return await work(conn)
            except _RETRYABLE as exc:
                if attempt == _ATTEMPTS - 1:
                    raise
                log.info("transaction conflict; retrying", extra={"error": type(exc).__name__})
                await asyncio.sleep(0.005 * 2**attempt)
        raise AssertionError("unreachable")


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
