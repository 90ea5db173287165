"""Rule evaluation, pure: (rule, state, record or clock) -> (new state, decision).

No I/O here. A key is one (tenant, rule, device); its state is ``None`` (nothing going on),
``pending`` (a threshold condition holds since ``since`` but not yet for ``duration_s``) or
``firing`` (alert ``alert_id`` is open).

Two clocks, kept apart:

- Reading order is device time, per metric. A device's records are applied oldest first; a value
  of metric ``m`` is evaluated only when its ``ts`` is newer than the newest value of ``m``
  already evaluated (:class:`Watermarks`). An equal ``ts`` is a duplicate (the first one evaluated
  wins, as history keeps the first stored), an older one is *late*: stored by ingest, never
  evaluated. Heartbeats carry no metrics and so never hide a reading. A firing state also ignores
  values older than its ``since`` (when the alert opened): what the clock already decided is not
  rewritten by a reading that arrives after the grace window, so ``resolved_at >= opened_at``.
- Liveness is receive time. A heartbeat, or a reading newer (device time) than the newest reading
  of the device, is traffic: it resolves an open ``no_data`` alert at its receive time. A late or
  duplicate reading is not traffic (a re-sent message proves nothing about the device now).

Threshold rules open when ``value <operator> threshold`` has held for ``duration_s``; the alert's
``opened_at`` is ``since + duration_s`` whether a newer record or the clock (:func:`on_clock`)
noticed it first. While firing, the condition is tested against ``clear_threshold`` when given
(hysteresis), and a value no longer meeting it resolves the alert. ``no_data`` rules open at
``start + timeout_s`` where ``start`` is the later of the device's last traffic and when the
(rule, device) pair began (fired by the clock, :func:`on_silence`).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from fleetpulse.common.contracts.constants import SEVERITIES as SEVERITIES
from fleetpulse.common.contracts.constants import fingerprint as alert_fingerprint
from fleetpulse.common.contracts.constants import severity_rank as severity_rank
from fleetpulse.common.contracts.records import Record as Record
from fleetpulse.common.rules.conditions import (
    COMPARE,
    Condition,
    InvalidConditionError,
    Samples,
    Schedule,
    condition_from,
    measures,
    schedule_from,
)

Value = float | int | bool
Status = Literal["pending", "firing"]
IdFactory = Callable[[], str]

# ``value <op> bound`` as a bound method of the bound: one C call on the hot path.
_BOUND_TESTS: dict[str, str] = {
    "gt": "__lt__",
    "gte": "__le__",
    "lt": "__gt__",
    "lte": "__ge__",
    "eq": "__eq__",
    "ne": "__ne__",
}
#: Comparison operators by name (the same table conditions use).
OPERATORS = COMPARE
RULE_KINDS = ("threshold", "no_data", "condition")
MATCHES = ("all", "any")


def new_alert_id() -> str:
    return uuid.uuid4().hex


class InvalidRuleError(ValueError):
    """A rule definition the evaluator cannot evaluate (it is skipped and logged)."""


@dataclass(frozen=True, slots=True)
class Rule:
    tenant_id: str
    rule_id: str
    name: str
    kind: str
    severity: str
    selector: Mapping[str, Any] = field(default_factory=dict)
    metric: str | None = None
    operator: str = "gt"
    threshold: float = 0.0
    clear_threshold: float | None = None
    duration_s: float = 0.0
    timeout_s: float = 0.0
    version: int = 1
    conditions: tuple[Condition, ...] = ()
    """The general path (``condition`` rules, or a threshold rule with a schedule): each
    condition on one metric, combined by ``match``; empty: a plain threshold (the hot path)."""
    match: str = "all"
    schedule: Schedule | None = None
    """When set, the rule holds only inside its weekly windows (device time of the value)."""
    condition_metrics: frozenset[str] = field(init=False, repr=False, compare=False)
    breached_by: Callable[[Value], Any] = field(init=False, repr=False, compare=False)
    """``breached_by(value) is True`` when ``value`` meets the condition."""
    still_breached_by: Callable[[Value], Any] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in RULE_KINDS:
            raise InvalidRuleError(f"unknown rule kind {self.kind!r}")
        if self.severity not in SEVERITIES:
            raise InvalidRuleError(f"unknown severity {self.severity!r}")
        if self.kind == "threshold" and (not self.metric or self.operator not in OPERATORS):
            raise InvalidRuleError("a threshold rule needs a metric and a known operator")
        if self.kind == "no_data" and self.timeout_s <= 0:
            raise InvalidRuleError("a no_data rule needs timeout_s > 0")
        if self.kind == "condition" and not self.conditions:
            raise InvalidRuleError("a condition rule needs at least one condition")
        if self.match not in MATCHES:
            raise InvalidRuleError(f"unknown match {self.match!r}")
        if self.kind == "threshold" and self.schedule is not None and not self.conditions:
            only = Condition(
                self.metric or "",
                self.operator,
                threshold=self.threshold,
                clear_threshold=self.clear_threshold,
            )
            object.__setattr__(self, "conditions", (only,))
        metrics = frozenset(c.metric for c in self.conditions)
        object.__setattr__(self, "condition_metrics", metrics)
        test = _BOUND_TESTS.get(self.operator, "__eq__")
        clear = self.threshold if self.clear_threshold is None else self.clear_threshold
        object.__setattr__(self, "breached_by", getattr(float(self.threshold), test))
        object.__setattr__(self, "still_breached_by", getattr(float(clear), test))

    def selects(self, tags: Mapping[str, Any]) -> bool:
        """True when every tag of the selector has the same value on the device."""
        return all(tags.get(key) == value for key, value in self.selector.items())

    def breaches(self, value: Value) -> bool:
        return self.breached_by(value) is True

    def still_breaches(self, value: Value) -> bool:
        """While firing: the condition against ``clear_threshold`` (hysteresis) if there is one."""
        return self.still_breached_by(value) is True

    @property
    def duration(self) -> timedelta:
        return timedelta(seconds=self.duration_s)

    @property
    def timeout(self) -> timedelta:
        return timedelta(seconds=self.timeout_s)

    def fingerprint(self, device_id: str) -> str:
        return alert_fingerprint(self.tenant_id, self.rule_id, device_id)

    def holds(
        self,
        memory: Sequence[Samples],
        attributes: Mapping[str, Any],
        clearing: bool,
        at: datetime,
    ) -> bool:
        """The general path's whole condition (``clearing``: while firing, hysteresis)."""
        if self.schedule is not None and not self.schedule.active_at(at):
            return False
        wanted = self.match == "all"  # all: stop at the first False; any: at the first True
        for condition, samples in zip(self.conditions, memory, strict=True):
            if condition.holds(samples, attributes, clearing) is not wanted:
                return not wanted
        return wanted


def rule_from_catalog(
    *,
    tenant_id: str,
    rule_id: str,
    name: str,
    kind: str,
    severity: str,
    definition: Mapping[str, Any],
    device_selector: Mapping[str, Any] | None,
    version: int,
) -> Rule:
    """A :class:`Rule` from a ``rules`` row (``definition`` holds the kind-specific fields)."""
    clear = definition.get("clear_threshold")
    try:
        match = "any" if definition.get("any") else "all"
        conditions = tuple(condition_from(c) for c in definition.get(match) or ())
        schedule = definition.get("schedule")
        return Rule(
            tenant_id=tenant_id,
            rule_id=rule_id,
            name=name,
            kind=kind,
            severity=severity,
            selector=dict((device_selector or {}).get("tags") or {}),
            metric=definition.get("metric"),
            operator=definition.get("operator", "gt"),
            threshold=float(definition.get("threshold", 0.0)),
            clear_threshold=None if clear is None else float(clear),
            duration_s=float(definition.get("duration_s") or 0.0),
            timeout_s=float(definition.get("timeout_s") or 0.0),
            version=version,
            conditions=conditions,
            match=match,
            schedule=None if schedule is None else schedule_from(schedule),
        )
    except (TypeError, ValueError, KeyError, InvalidConditionError) as exc:
        raise InvalidRuleError(str(exc)) from exc


@dataclass(frozen=True, slots=True)
class RuleState:
    status: Status
    since: datetime
    """pending: when the condition began to hold; firing: when the alert opened."""
    rule_version: int
    alert_id: str | None = None
    value: Any = None
    """The triggering value: a number (threshold) or ``{label: measured}`` (conditions)."""

    def due_at(self, rule: Rule) -> datetime | None:
        """When a pending state opens if nothing changes."""
        return self.since + rule.duration if self.status == "pending" else None


@dataclass(frozen=True, slots=True)
class OpenAlert:
    rule: Rule
    device_id: str
    alert_id: str
    opened_at: datetime
    value: Any
    reason: str
    traceparent: str | None = None


@dataclass(frozen=True, slots=True)
class ResolveAlert:
    rule: Rule
    device_id: str
    alert_id: str
    resolved_at: datetime
    value: Any
    traceparent: str | None = None
    reason: str | None = None
    """Why an alert ended other than by its condition (``rule_deleted``, ``device_deselected``...)."""


Decision = OpenAlert | ResolveAlert
Step = tuple[RuleState | None, Decision | None]


def reconcile(rule: Rule, state: RuleState | None) -> RuleState | None:
    """A pending state of an older rule version starts over; a firing one keeps its alert."""
    if state is not None and state.status == "pending" and state.rule_version != rule.version:
        return None
    return state


def on_value(
    rule: Rule,
    state: RuleState | None,
    device_id: str,
    ts: datetime,
    value: Value,
    new_id: IdFactory = new_alert_id,
) -> Step:
    """A threshold rule sees ``value`` of its metric at ``ts`` (newer than anything applied).

    A firing state ignores a value older than its alert's ``opened_at`` (late for the state)."""
    if state is not None and state.status == "firing":
        if ts < state.since or rule.still_breaches(value):
            return state, None
        assert state.alert_id is not None
        return None, ResolveAlert(rule, device_id, state.alert_id, ts, value)
    if not rule.breaches(value):
        return None, None
    since = ts if state is None else state.since
    pending = RuleState("pending", since, rule.version, value=value)
    if ts - since >= rule.duration:
        return _open(rule, pending, device_id, since + rule.duration, new_id)
    return pending, None


@dataclass(frozen=True, slots=True)
class RuleMemory:
    """A general rule's memory of one device: per condition, the values it still needs."""

    rule_version: int
    samples: tuple[Samples, ...]


def _remember(
    rule: Rule, memory: RuleMemory | None, ts: datetime, fresh: Mapping[str, Value]
) -> RuleMemory:
    """The rule's memory with the ``fresh`` values at ``ts`` fed to each condition's samples;
    a memory of an older rule version starts over."""
    if memory is None or memory.rule_version != rule.version:
        memory = RuleMemory(rule.version, tuple(() for _ in rule.conditions))
    samples = list(memory.samples)
    for i, condition in enumerate(rule.conditions):
        value = fresh.get(condition.metric)
        if value is not None:
            samples[i] = condition.feed(samples[i], ts, float(value))
    return RuleMemory(rule.version, tuple(samples))


def on_values(
    rule: Rule,
    state: RuleState | None,
    memory: RuleMemory | None,
    device_id: str,
    ts: datetime,
    fresh: Mapping[str, Value],
    attributes: Mapping[str, Any],
    new_id: IdFactory = new_alert_id,
) -> tuple[RuleState | None, RuleMemory | None, Decision | None]:
    """A general rule sees the ``fresh`` values (metric -> value, each newer than anything
    applied of its metric) of one record at ``ts``: the memory takes them, then the whole
    condition decides as :func:`on_value` does. A memory of an older rule version starts over."""
    if fresh.keys().isdisjoint(rule.condition_metrics):
        return state, memory, None
    memory = _remember(rule, memory, ts, fresh)
    firing = state is not None and state.status == "firing"
    if state is not None and firing and ts < state.since:
        return state, memory, None
    holds = rule.holds(memory.samples, attributes, firing, ts)
    if state is not None and firing:
        if holds:
            return state, memory, None
        assert state.alert_id is not None
        values = _measured(rule, memory)
        return None, memory, ResolveAlert(rule, device_id, state.alert_id, ts, values)
    if not holds:
        return None, memory, None
    since = ts if state is None else state.since
    pending = RuleState("pending", since, rule.version, value=_measured(rule, memory))
    if ts - since >= rule.duration:
        new_state, decision = _open(rule, pending, device_id, since + rule.duration, new_id)
        return new_state, memory, decision
    return pending, memory, None


def _measured(rule: Rule, memory: RuleMemory) -> Any:
    """What an alert reports: ``{condition label: measured}``; a scheduled threshold rule's
    plain value."""
    values = measures(rule.conditions, memory.samples)
    return next(iter(values.values())) if rule.kind == "threshold" else values


def on_clock(
    rule: Rule,
    state: RuleState | None,
    device_id: str,
    now: datetime,
    new_id: IdFactory = new_alert_id,
) -> Step:
    """The clock reached ``now``: a pending threshold whose duration has elapsed opens (a
    scheduled rule's pending state is dropped instead when its window closed before then)."""
    if state is None or state.status != "pending" or now < state.since + rule.duration:
        return state, None
    due = state.since + rule.duration
    if rule.schedule is not None and not rule.schedule.active_at(due):
        return None, None
    return _open(rule, state, device_id, due, new_id)


def on_seen(rule: Rule, state: RuleState | None, device_id: str, at: datetime) -> Step:
    """A no_data rule sees traffic of its device received at ``at``: an open alert resolves."""
    if state is not None and state.status == "firing":
        assert state.alert_id is not None
        return None, ResolveAlert(rule, device_id, state.alert_id, max(at, state.since), None)
    return state, None


def end_state(
    rule: Rule, state: RuleState | None, device_id: str, at: datetime, reason: str
) -> Step:
    """The rule no longer applies to the device (``reason``): a firing alert resolves, a pending
    state is dropped."""
    if state is not None and state.status == "firing" and state.alert_id is not None:
        resolved = ResolveAlert(rule, device_id, state.alert_id, max(at, state.since), None)
        return None, replace(resolved, reason=reason)
    return None, None


def silence_due(rule: Rule, last_seen: datetime, rearmed_at: datetime | None = None) -> datetime:
    """When a no_data rule opens: ``timeout_s`` after ``last_seen`` (the later of the last
    traffic and the pair's start) or after a close, whichever is later."""
    start = last_seen if rearmed_at is None else max(last_seen, rearmed_at)
    return start + rule.timeout


def on_silence(
    rule: Rule,
    state: RuleState | None,
    device_id: str,
    last_seen: datetime,
    now: datetime,
    rearmed_at: datetime | None = None,
    new_id: IdFactory = new_alert_id,
) -> Step:
    """The clock reached ``now`` with no record since ``last_seen``: a no_data rule may open."""
    due = silence_due(rule, last_seen, rearmed_at)
    if state is not None or now < due:
        return state, None
    pending = RuleState("pending", last_seen, rule.version)
    return _open(rule, pending, device_id, due, new_id)


def _open(rule: Rule, pending: RuleState, device_id: str, at: datetime, new_id: IdFactory) -> Step:
    alert_id = new_id()
    firing = RuleState("firing", at, rule.version, alert_id=alert_id, value=pending.value)
    return firing, OpenAlert(rule, device_id, alert_id, at, pending.value, _reason(rule, pending))


def _reason(rule: Rule, pending: RuleState) -> str:
    if rule.kind == "no_data":
        return f"no telemetry or heartbeat for {rule.timeout_s:g}s"
    held = f" for {rule.duration_s:g}s" if rule.duration_s else ""
    if rule.kind == "condition":
        return f"{rule.match} of {len(rule.conditions)} conditions held{held} ({pending.value})"
    return f"{rule.metric} {rule.operator} {rule.threshold:g}{held} (value {pending.value})"


@dataclass(slots=True)
class Watermarks:
    """How far a device's readings were evaluated, in device time: the newest reading of any
    metric (traffic detection) and the newest value of each metric (evaluation order)."""

    newest: datetime | None = None
    metrics: dict[str, datetime] = field(default_factory=dict)


@dataclass(slots=True)
class DeviceOutcome:
    """What a batch of records did to one device's rule states."""

    states: dict[str, RuleState]
    changed: set[str]
    decisions: list[Decision]
    seen: Watermarks
    applied: int = 0
    memory: dict[str, RuleMemory] = field(default_factory=dict)
    """General rules' memories (rule id -> memory); ``memory_changed`` names those to write."""
    memory_changed: set[str] = field(default_factory=set)
    alive_at: datetime | None = None
    """Receive time of the newest traffic in the batch (a heartbeat, or a reading newer than
    any before); ``None``: none (only late or duplicate readings)."""


@dataclass(frozen=True, slots=True)
class RulePlan:
    """A device's rules arranged for the hot loop: threshold rules grouped by metric (each
    group most severe first), so each metric of a record is order-checked once."""

    rules: tuple[Rule, ...]
    by_metric: tuple[tuple[str, tuple[Rule, ...]], ...]
    no_data: tuple[Rule, ...]
    metrics: tuple[str, ...] = ()
    """The metrics whose order matters (those of threshold and general rules)."""
    general: tuple[Rule, ...] = ()
    """Rules with conditions (window, rate, attributes, schedule): :func:`on_values`."""
    attributes: Mapping[str, Any] = field(default_factory=dict)
    """The device's attributes (``threshold_from``)."""

    @classmethod
    def of(cls, rules: Sequence[Rule], attributes: Mapping[str, Any] | None = None) -> RulePlan:
        groups: dict[str, list[Rule]] = {}
        for rule in rules:
            if rule.conditions:
                for condition in rule.conditions:
                    groups.setdefault(condition.metric, [])
            elif rule.kind == "threshold" and rule.metric:
                groups.setdefault(rule.metric, []).append(rule)
        by_metric = tuple((metric, tuple(group)) for metric, group in groups.items())
        no_data = tuple(r for r in rules if r.kind == "no_data")
        general = tuple(r for r in rules if r.conditions)
        return cls(tuple(rules), by_metric, no_data, tuple(groups), general, attributes or {})


def batch_watermarks(plan: RulePlan, ordered: Sequence[Record]) -> Watermarks:
    """The newest device times in ``ordered`` (records oldest first): what the device's
    watermarks advance to (only the metrics a threshold rule of the device looks at)."""
    tracked = plan.metrics
    marks: dict[str, datetime] = {}
    newest: datetime | None = None
    for record in reversed(ordered):  # newest first: usually one record holds every metric
        if record.kind == "heartbeat":
            continue
        if newest is None:
            newest = record.ts
        metrics = record.metrics
        for metric in tracked:
            if metric not in marks and metric in metrics:
                marks[metric] = record.ts
        if len(marks) == len(tracked):
            break
    return Watermarks(newest, marks)


def by_time(records: Sequence[Record]) -> Sequence[Record]:
    """``records`` oldest first (a stable sort: of two with the same time, the first stays
    first)."""
    return records if len(records) < 2 else sorted(records, key=_by_ts)


def evaluate_device(
    rules: Sequence[Rule] | RulePlan,
    states: Mapping[str, RuleState],
    seen: Watermarks | None,
    records: Sequence[Record],
    new_id: IdFactory = new_alert_id,
    received_at: datetime | None = None,
    memory: Mapping[str, RuleMemory] | None = None,
    clock: timedelta | None = None,
) -> DeviceOutcome:
    """Apply one device's records, oldest first (see the module docstring for what is late).

    ``rules`` are the device's rules (or their :class:`RulePlan`); ``states`` maps rule id to
    the device's non-empty states; ``seen`` is what was evaluated before (``None``: nothing);
    ``received_at`` is when the batch arrived (a record's own ``received_at`` wins; without
    either, its ``ts``); ``memory`` holds the general rules' memories. ``changed`` names the
    rules whose state must be written (absent from ``states`` afterwards means deleted).
    ``clock`` (the backtest): the stream is also the clock; before each record at ``ts`` a
    pending state due by ``ts - clock`` opens, as the live clock (with that grace) would. States of rules not in ``rules`` are kept as they are
    (:func:`end_state` ends them, driven by catalog changes).
    """
    plan = rules if isinstance(rules, RulePlan) else RulePlan.of(rules)
    mine = Watermarks() if seen is None else Watermarks(seen.newest, dict(seen.metrics))
    outcome = DeviceOutcome(dict(states), set(), [], mine, memory=dict(memory or {}))
    if states:
        for rule in plan.rules:
            old = states.get(rule.rule_id)
            _record_step(outcome, rule.rule_id, old, reconcile(rule, old), None, None)
    _apply(plan, by_time(records), outcome, new_id, received_at, clock)
    return outcome


def _by_ts(record: Record) -> datetime:
    return record.ts


def _apply(
    plan: RulePlan,
    ordered: Sequence[Record],
    outcome: DeviceOutcome,
    new_id: IdFactory,
    received_at: datetime | None,
    clock: timedelta | None = None,
) -> None:
    """The hot loop: apply records oldest first (most readings of most devices change nothing).

    A reading newer than the newest one so far is newer than every metric's mark (marks only
    ever hold reading times), so only older ones look their metrics' marks up. A heartbeat
    and a newest-so-far reading are alive (they advance liveness); other readings only feed
    their metrics that are newer than the metric's mark."""
    seen = outcome.seen
    newest = seen.newest
    for record in ordered:
        ts = record.ts
        if clock is not None and outcome.states:
            tick_pending(plan, outcome, record.device_id, ts - clock, new_id)
        advanced = alive = False
        if record.kind == "heartbeat":
            alive = True
        elif newest is None or ts > newest:
            newest, advanced, alive = ts, True, True
        fresh = _apply_values(plan, record, outcome, advanced, new_id)
        if alive:
            _apply_alive(plan, record, outcome, received_at)
        else:
            outcome.applied += fresh
    seen.newest = newest


def _apply_values(
    plan: RulePlan, record: Record, outcome: DeviceOutcome, advanced: bool, new_id: IdFactory
) -> bool:
    """Feed the record's values to the metric rules and the general rules; True when any value
    was newer than its metric's mark (``advanced``: newer than every mark)."""
    states, marks = outcome.states, outcome.seen.metrics
    ts, metrics = record.ts, record.metrics
    fresh = False
    fresh_values: dict[str, Value] | None = {} if plan.general else None
    for metric, rules in plan.by_metric:
        value = metrics.get(metric)
        if value is None:
            continue
        if not advanced:
            mark = marks.get(metric)
            if mark is not None and ts <= mark:
                continue  # a duplicate or a late value of this metric
        marks[metric] = ts
        fresh = True
        if fresh_values is not None:
            fresh_values[metric] = value
        for rule in rules:
            state = states.get(rule.rule_id) if states else None
            if state is None and rule.breached_by(value) is not True:
                continue
            new_state, decision = on_value(rule, state, record.device_id, ts, value, new_id)
            _record_step(outcome, rule.rule_id, state, new_state, decision, record.traceparent)
    if fresh_values:
        _apply_general(plan, record, fresh_values, outcome, new_id)
    return fresh


def _apply_alive(
    plan: RulePlan, record: Record, outcome: DeviceOutcome, received_at: datetime | None
) -> None:
    """The device was heard at the record's receive time: liveness and ``no_data`` rules."""
    outcome.applied += 1
    at = record.received_at or received_at or record.ts
    if outcome.alive_at is None or at > outcome.alive_at:
        outcome.alive_at = at
    states = outcome.states
    if not (states and plan.no_data):
        return
    for rule in plan.no_data:
        state = states.get(rule.rule_id)
        if state is not None:
            new_state, decision = on_seen(rule, state, record.device_id, at)
            _record_step(outcome, rule.rule_id, state, new_state, decision, record.traceparent)


def tick_pending(
    plan: RulePlan, outcome: DeviceOutcome, device_id: str, now: datetime, new_id: IdFactory
) -> None:
    """The clock reached ``now`` for the device: its due pending states open (:func:`on_clock`)."""
    states = outcome.states
    for rule in plan.rules:
        state = states.get(rule.rule_id)
        if state is not None and state.status == "pending":
            new_state, decision = on_clock(rule, state, device_id, now, new_id)
            _record_step(outcome, rule.rule_id, state, new_state, decision, None)


def _apply_general(
    plan: RulePlan,
    record: Record,
    fresh: Mapping[str, Value],
    outcome: DeviceOutcome,
    new_id: IdFactory,
) -> None:
    states, memories = outcome.states, outcome.memory
    for rule in plan.general:
        rule_id = rule.rule_id
        state, memory = states.get(rule_id), memories.get(rule_id)
        new_state, new_memory, decision = on_values(
            rule, state, memory, record.device_id, record.ts, fresh, plan.attributes, new_id
        )
        if new_memory is not memory and new_memory is not None:
            memories[rule_id] = new_memory
            outcome.memory_changed.add(rule_id)
        _record_step(outcome, rule_id, state, new_state, decision, record.traceparent)


def _record_step(
    outcome: DeviceOutcome,
    rule_id: str,
    old: RuleState | None,
    new: RuleState | None,
    decision: Decision | None,
    traceparent: str | None,
) -> None:
    if new is not old:
        outcome.changed.add(rule_id)
        if new is None:
            outcome.states.pop(rule_id, None)
        else:
            outcome.states[rule_id] = new
    if decision is not None:
        outcome.decisions.append(replace(decision, traceparent=traceparent))
