"""Property-based: general (condition) rules against a plain reference model.

For random arrival sequences of two metrics, with windows, rates, attributes and all/any, the
core's open/resolve sequence equals the reference model's, also when batches are redelivered and
when the memory goes through its database shape between batches (a restart or another replica).
"""

from __future__ import annotations

import operator
from datetime import UTC, datetime, timedelta
from itertools import count
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from fleetpulse.common.rules.conditions import Condition
from fleetpulse.common.rules.domain import (
    OpenAlert,
    Record,
    Rule,
    RuleMemory,
    RuleState,
    Watermarks,
    evaluate_device,
    on_clock,
)
from fleetpulse.evaluator.store import _samples_json, _samples_of

T0 = datetime(2026, 1, 1, tzinfo=UTC)
OPS = {"gt": operator.gt, "gte": operator.ge, "lt": operator.lt, "lte": operator.le}
ATTRIBUTES = {"limit": 5}

Reading = tuple[int, int | None, int | None]  # (seconds, value of a, value of b)
Arrival = tuple[str, Any]
Outcome = list[tuple[str, datetime]]


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@st.composite
def conditions(draw: st.DrawFn) -> Condition:
    aggregate = draw(st.sampled_from(["last", "avg", "min", "max", "count", "rate"]))
    rate_per = draw(st.sampled_from(["second", "window"])) if aggregate == "rate" else "second"
    needs_window = aggregate in ("avg", "min", "max", "count") or rate_per == "window"
    window: int | None = None
    if needs_window or (aggregate == "rate" and draw(st.booleans())):
        window = draw(st.sampled_from([1, 3, 10]))
    from_attribute = draw(st.booleans())
    threshold = draw(st.integers(-3, 10))
    clear = None if from_attribute else draw(st.one_of(st.none(), st.integers(-3, 10)))
    return Condition(
        metric=draw(st.sampled_from(["a", "b"])),
        operator=draw(st.sampled_from(sorted(OPS))),
        threshold=None if from_attribute else float(threshold),
        threshold_from=draw(st.sampled_from(["attributes.limit", "attributes.missing"]))
        if from_attribute
        else None,
        default=draw(st.one_of(st.none(), st.just(7.0))) if from_attribute else None,
        clear_threshold=None if clear is None else float(clear),
        aggregate=aggregate,
        window_s=window,
        rate_per=rate_per,
    )


general_rules = st.builds(
    lambda conds, match, duration: Rule(
        "t",
        "r",
        "rule",
        "condition",
        "major",
        conditions=tuple(conds),
        match=match,
        duration_s=duration,
    ),
    st.lists(conditions(), min_size=1, max_size=3),
    st.sampled_from(["all", "any"]),
    st.sampled_from([0, 2, 5]),
)
readings = st.tuples(
    st.integers(0, 30),
    st.one_of(st.none(), st.integers(0, 10)),
    st.one_of(st.none(), st.integers(0, 10)),
)
arrivals = st.lists(
    st.one_of(
        st.tuples(st.just("batch"), st.lists(readings, min_size=1, max_size=5)),
        st.tuples(st.just("tick"), st.integers(0, 40)),
    ),
    max_size=25,
)


def reference_measure(c: Condition, history: list[tuple[int, int]]) -> float | None:
    """Written from the definitions, not from the core: ``history`` is the metric's accepted
    values oldest first."""
    if not history:
        return None
    newest = history[-1][0]
    window = [(t, v) for t, v in history if c.window_s is None or t > newest - c.window_s]
    if c.aggregate == "last":
        return history[-1][1]
    if c.aggregate == "count":
        return len(window)
    if c.aggregate in ("avg", "min", "max"):
        values = [v for _, v in window]
        return {"avg": sum(values) / len(values), "min": min(values), "max": max(values)}[
            c.aggregate
        ]
    pair = window if c.window_s is not None else history[-2:]
    if len(pair) < 2:
        return None
    (t0, v0), (t1, v1) = pair[0], pair[-1]
    return v1 - v0 if c.rate_per == "window" else (v1 - v0) / (t1 - t0)


def reference_holds(rule: Rule, history: dict[str, list[tuple[int, int]]], firing: bool) -> bool:
    results = []
    for c in rule.conditions:
        measured = reference_measure(c, history[c.metric])
        if firing and c.clear_threshold is not None:
            bound: float | None = c.clear_threshold
        elif c.threshold is not None:
            bound = c.threshold
        else:
            key = (c.threshold_from or "").split(".", 1)[1]
            bound = ATTRIBUTES.get(key, c.default)  # type: ignore[arg-type]
        results.append(
            measured is not None and bound is not None and OPS[c.operator](measured, bound)
        )
    return all(results) if rule.match == "all" else any(results)


def reference_general(rule: Rule, sequence: list[Arrival]) -> Outcome:
    history: dict[str, list[tuple[int, int]]] = {"a": [], "b": []}
    used = {c.metric for c in rule.conditions}
    firing, run_start, opened = False, None, 0
    out: Outcome = []
    for kind, item in sequence:
        if kind == "tick":
            if not firing and run_start is not None and item >= run_start + rule.duration_s:
                opened = run_start + int(rule.duration_s)
                firing, out = True, [*out, ("open", _at(opened))]
            continue
        for ts, a, b in sorted(item, key=lambda r: r[0]):
            fed = False  # a value of a metric the rule looks at
            for metric, value in (("a", a), ("b", b)):
                if value is not None and (not history[metric] or ts > history[metric][-1][0]):
                    history[metric].append((ts, value))
                    fed = fed or metric in used
            if not fed or (firing and ts < opened):
                continue
            holds = reference_holds(rule, history, firing)
            if firing and not holds:
                firing, run_start, out = False, None, [*out, ("resolve", _at(ts))]
            elif not firing and holds:
                run_start = ts if run_start is None else run_start
                if ts - run_start >= rule.duration_s:
                    opened = run_start + int(rule.duration_s)
                    firing, out = True, [*out, ("open", _at(opened))]
            elif not firing:
                run_start = None
    return out


def _records(batch: list[Reading]) -> list[Record]:
    records = []
    for ts, a, b in batch:
        metrics = {k: v for k, v in (("a", a), ("b", b)) if v is not None}
        records.append(Record("t", "d", _at(ts), metrics, "reading" if metrics else "heartbeat"))
    return records


def core_general(rule: Rule, sequence: list[Arrival]) -> Outcome:
    """The core as the service drives it, the memory stored and loaded between batches."""
    from fleetpulse.common.rules.domain import RulePlan

    plan = RulePlan.of([rule], ATTRIBUTES)
    states: dict[str, RuleState] = {}
    memory: dict[str, RuleMemory] = {}
    seen: Watermarks | None = None
    ids = (f"a{i}" for i in count())
    out: Outcome = []
    for kind, item in sequence:
        if kind == "tick":
            state, decision = on_clock(rule, states.get("r"), "d", _at(item), lambda: next(ids))
            states = {"r": state} if state is not None else {}
            out += [("open", decision.opened_at)] if isinstance(decision, OpenAlert) else []
            continue
        outcome = evaluate_device(
            plan, states, seen, _records(item), lambda: next(ids), memory=memory
        )
        states, seen = outcome.states, outcome.seen
        memory = {
            r: RuleMemory(m.rule_version, _samples_of(_samples_json(m.samples)))
            for r, m in outcome.memory.items()
        }
        out += [
            ("open", d.opened_at) if isinstance(d, OpenAlert) else ("resolve", d.resolved_at)
            for d in outcome.decisions
        ]
    return out


def _with_redeliveries(sequence: list[Arrival], picks: list[tuple[int, int]]) -> list[Arrival]:
    result = list(sequence)
    for which, where in picks:
        positions = [i for i, a in enumerate(result) if a[0] == "batch"]
        if positions:
            first = positions[which % len(positions)]
            result.insert(first + 1 + where % (len(result) - first), result[first])
    return result


@settings(max_examples=300, deadline=None)
@given(
    general_rules,
    arrivals,
    st.lists(st.tuples(st.integers(0, 100), st.integers(0, 100)), max_size=4),
)
def test_general_rules_match_the_reference_under_redelivery(
    rule: Rule, sequence: list[Arrival], picks: list[tuple[int, int]]
) -> None:
    assert core_general(rule, _with_redeliveries(sequence, picks)) == reference_general(
        rule, sequence
    )


@settings(max_examples=200, deadline=None)
@given(general_rules, arrivals, st.randoms(use_true_random=False))
def test_general_rules_alternate_under_any_reordering(
    rule: Rule, sequence: list[Arrival], random: Any
) -> None:
    shuffled = list(sequence)
    random.shuffle(shuffled)
    outcome = core_general(rule, shuffled)
    assert all(k == ("open" if i % 2 == 0 else "resolve") for i, (k, _) in enumerate(outcome))
    opened = [t for k, t in outcome if k == "open"]
    resolved = [t for k, t in outcome if k == "resolve"]
    assert all(r >= o for o, r in zip(opened, resolved, strict=False))
