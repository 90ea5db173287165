"""Property-based: for random arrival sequences the core's open/resolve sequence equals a small
reference model, also when batches are redelivered; under any reordering no alert resolves
before it opened and opens and resolves alternate.

Fault kinds (issue 12): a heartbeat must not hide a reading (liveness and reading order are
different clocks), and a late reading must never resolve an alert before it opened."""

from __future__ import annotations

import operator
from datetime import UTC, datetime, timedelta
from itertools import count
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from fleetpulse.common.rules.domain import (
    OpenAlert,
    Record,
    ResolveAlert,
    Rule,
    RuleState,
    Watermarks,
    evaluate_device,
    on_clock,
    on_silence,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
OPS = {
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
    "eq": operator.eq,
    "ne": operator.ne,
}

Reading = tuple[int, int | None]  # (seconds after T0, value or None for a heartbeat)
Batch = list[Reading]
Arrival = tuple[str, Any]  # ("batch", Batch) or ("tick", seconds)
Outcome = list[tuple[str, datetime]]

readings = st.tuples(st.integers(0, 60), st.one_of(st.none(), st.integers(0, 10)))
arrivals = st.lists(
    st.one_of(
        st.tuples(st.just("batch"), st.lists(readings, min_size=1, max_size=5)),
        st.tuples(st.just("tick"), st.integers(0, 80)),
    ),
    max_size=30,
)
threshold_rules = st.builds(
    lambda op, thr, clear, dur: Rule(
        "t",
        "r",
        "rule",
        "threshold",
        "major",
        metric="m",
        operator=op,
        threshold=thr,
        clear_threshold=clear,
        duration_s=dur,
    ),
    st.sampled_from(sorted(OPS)),
    st.integers(0, 10),
    st.one_of(st.none(), st.integers(0, 10)),
    st.sampled_from([0, 1, 3, 10]),
)


def _at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


def reference_threshold(rule: Rule, sequence: list[Arrival]) -> Outcome:
    """Obviously right, slow and stateful in the plainest way: values of the metric in device
    time order (heartbeats are no values), a firing alert ignores values from before it opened."""
    op, thr, clear = OPS[rule.operator], rule.threshold, rule.clear_threshold
    newest, firing, run_start, opened = -1, False, None, 0
    out: Outcome = []
    for kind, item in sequence:
        if kind == "tick":
            if not firing and run_start is not None and item >= run_start + rule.duration_s:
                opened = run_start + int(rule.duration_s)
                firing, out = True, [*out, ("open", _at(opened))]
            continue
        for ts, value in sorted(item, key=lambda r: r[0]):
            if value is None or ts <= newest:
                continue
            newest = ts
            if firing and ts < opened:
                continue
            if firing and not op(value, thr if clear is None else clear):
                firing, run_start, out = False, None, [*out, ("resolve", _at(ts))]
            elif not firing and op(value, thr):
                run_start = ts if run_start is None else run_start
                if ts - run_start >= rule.duration_s:
                    opened = run_start + int(rule.duration_s)
                    firing, out = True, [*out, ("open", _at(opened))]
            elif not firing:
                run_start = None
    return out


def _records(batch: Batch) -> list[Record]:
    return [
        Record(
            "t",
            "d",
            _at(ts),
            {} if v is None else {"m": v},
            "heartbeat" if v is None else "reading",
        )
        for ts, v in batch
    ]


def core_threshold(rule: Rule, sequence: list[Arrival]) -> Outcome:
    """The core as the service drives it: state carried between batches, clock ticks between."""
    states: dict[str, RuleState] = {}
    seen: Watermarks | None = None
    ids = (f"a{i}" for i in count())
    out: Outcome = []
    for kind, item in sequence:
        if kind == "tick":
            state, decision = on_clock(rule, states.get("r"), "d", _at(item), lambda: next(ids))
            states = {"r": state} if state is not None else {}
            out += [("open", decision.opened_at)] if isinstance(decision, OpenAlert) else []
            continue
        outcome = evaluate_device([rule], states, seen, _records(item), lambda: next(ids))
        states, seen = outcome.states, outcome.seen
        out += [
            ("open", d.opened_at) if isinstance(d, OpenAlert) else ("resolve", d.resolved_at)
            for d in outcome.decisions
        ]
    return out


def _with_redeliveries(sequence: list[Arrival], picks: list[tuple[int, int]]) -> list[Arrival]:
    """Each pick re-sends one batch again somewhere after its first delivery."""
    result = list(sequence)
    for which, where in picks:
        positions = [i for i, a in enumerate(result) if a[0] == "batch"]
        if positions:
            first = positions[which % len(positions)]
            result.insert(first + 1 + where % (len(result) - first), result[first])
    return result


@settings(max_examples=300, deadline=None)
@given(
    threshold_rules,
    arrivals,
    st.lists(st.tuples(st.integers(0, 100), st.integers(0, 100)), max_size=5),
)
def test_redelivered_batches_change_nothing(
    rule: Rule, sequence: list[Arrival], picks: list[tuple[int, int]]
) -> None:
    assert core_threshold(rule, _with_redeliveries(sequence, picks)) == reference_threshold(
        rule, sequence
    )


def alternates(outcome: Outcome) -> bool:
    return all(kind == ("open" if i % 2 == 0 else "resolve") for i, (kind, _) in enumerate(outcome))


@settings(max_examples=300, deadline=None)
@given(threshold_rules, arrivals)
def test_opens_and_resolves_alternate(rule: Rule, sequence: list[Arrival]) -> None:
    assert alternates(core_threshold(rule, sequence))


def reference_no_data(timeout: int, sequence: list[Arrival]) -> Outcome:
    """Traffic is a heartbeat or a reading newer than every reading before (here a record's
    receive time is its ts); a late or duplicate reading is not traffic."""
    newest_reading, alive, firing, opened = None, None, False, 0
    out: Outcome = []
    for kind, item in sequence:
        if kind == "tick":
            if alive is not None and not firing and item >= alive + timeout:
                opened = alive + timeout
                firing, out = True, [*out, ("open", _at(opened))]
            continue
        for ts, value in sorted(item, key=lambda r: r[0]):
            if value is not None and newest_reading is not None and ts <= newest_reading:
                continue
            if value is not None:
                newest_reading = ts
            if firing:
                firing, out = False, [*out, ("resolve", _at(max(ts, opened)))]
            alive = ts if alive is None else max(alive, ts)
    return out


def core_no_data(rule: Rule, sequence: list[Arrival]) -> Outcome:
    states: dict[str, RuleState] = {}
    seen: Watermarks | None = None
    alive: datetime | None = None
    out: Outcome = []
    for kind, item in sequence:
        if kind == "tick":
            if alive is not None:
                state, decision = on_silence(rule, states.get("r"), "d", alive, _at(item))
                states = {"r": state} if state is not None else {}
                out += [("open", decision.opened_at)] if isinstance(decision, OpenAlert) else []
            continue
        outcome = evaluate_device([rule], states, seen, _records(item))
        states, seen = outcome.states, outcome.seen
        if outcome.alive_at is not None:
            alive = outcome.alive_at if alive is None else max(alive, outcome.alive_at)
        out += [
            ("resolve", d.resolved_at) for d in outcome.decisions if isinstance(d, ResolveAlert)
        ]
    return out


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 20), arrivals)
def test_no_data_core_matches_reference(timeout: int, sequence: list[Arrival]) -> None:
    rule = Rule("t", "r", "silent", "no_data", "critical", timeout_s=timeout)
    assert core_no_data(rule, sequence) == reference_no_data(timeout, sequence)


def _reordered(sequence: list[Arrival], order: list[int]) -> list[Arrival]:
    """The same arrivals, batches split and delivered in another order (ticks stay put)."""
    readings = [r for kind, item in sequence if kind == "batch" for r in item]
    shuffled = [readings[i % len(readings)] for i in order] if readings else []
    out: list[Arrival] = []
    for kind, item in sequence:
        if kind == "tick":
            out.append((kind, item))
        elif shuffled:
            out.append(("batch", [shuffled.pop() for _ in range(min(len(item), len(shuffled)))]))
    return out


def never_resolves_before_open(outcome: Outcome) -> bool:
    opened = None
    for kind, at in outcome:
        if kind == "open":
            opened = at
        elif opened is None or at < opened:
            return False
    return True


@settings(max_examples=300, deadline=None)
@given(threshold_rules, arrivals, st.lists(st.integers(0, 1000), max_size=40))
def test_reordered_and_late_readings_never_resolve_before_open(
    rule: Rule, sequence: list[Arrival], order: list[int]
) -> None:
    """Fault kind: a late (store-and-forward) reading resolved an alert before it opened."""
    outcome = core_threshold(rule, _reordered(sequence, order))
    assert alternates(outcome) and never_resolves_before_open(outcome)


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 20), arrivals, st.lists(st.integers(0, 1000), max_size=40))
def test_no_data_never_resolves_before_open(
    timeout: int, sequence: list[Arrival], order: list[int]
) -> None:
    rule = Rule("t", "r", "silent", "no_data", "critical", timeout_s=timeout)
    outcome = core_no_data(rule, _reordered(sequence, order))
    assert alternates(outcome) and never_resolves_before_open(outcome)


def test_heartbeat_does_not_hide_an_older_reading() -> None:
    """Fault kind: liveness and reading order shared one clock, so a heartbeat (receive time)
    made a reading with a slightly older device time look stale and it was never evaluated."""
    rule = Rule("t", "r", "hot", "threshold", "major", metric="m", operator="gt", threshold=5)
    assert core_threshold(rule, [("batch", [(30, None)]), ("batch", [(4, 9)])]) == [
        ("open", _at(4))
    ]
    control = core_threshold(rule, [("batch", [(30, None)]), ("batch", [(4, 1)])])
    assert control == []


def test_late_reading_after_a_clock_open_does_not_resolve_before_it() -> None:
    """Issue 12 case 10: gt 5 for 5 s; (T0, 9) opens at T0+5 by the clock; (T0+3, 1) arrives
    later: stored, not evaluated (late for the firing state); (T0+8, 1) resolves at T0+8."""
    rule = Rule(
        "t", "r", "hot", "threshold", "major", metric="m", operator="gt", threshold=5, duration_s=5
    )
    sequence: list[Arrival] = [("batch", [(0, 9)]), ("tick", 6), ("batch", [(3, 1)])]
    assert core_threshold(rule, sequence) == [("open", _at(5))]
    assert core_threshold(rule, [*sequence, ("batch", [(8, 1)])]) == [
        ("open", _at(5)),
        ("resolve", _at(8)),
    ]
