"""Property-based: for random arrival sequences the core's open/resolve sequence equals a small
reference model, also when batches are redelivered."""

from __future__ import annotations

import operator
from datetime import UTC, datetime, timedelta
from itertools import count
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from fleetpulse.evaluator.domain import (
    OpenAlert,
    Record,
    ResolveAlert,
    Rule,
    RuleState,
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
    """Obviously right, slow and stateful in the plainest way."""
    op, thr, clear = OPS[rule.operator], rule.threshold, rule.clear_threshold
    newest, firing, run_start = -1, False, None
    out: Outcome = []
    for kind, item in sequence:
        if kind == "tick":
            if not firing and run_start is not None and item >= run_start + rule.duration_s:
                firing, out = True, [*out, ("open", _at(run_start + int(rule.duration_s)))]
            continue
        for ts, value in sorted(item, key=lambda r: r[0]):
            if ts <= newest:
                continue
            newest = ts
            if value is None:
                continue
            if firing and not op(value, thr if clear is None else clear):
                firing, run_start, out = False, None, [*out, ("resolve", _at(ts))]
            elif not firing and op(value, thr):
                run_start = ts if run_start is None else run_start
                if ts - run_start >= rule.duration_s:
                    firing, out = True, [*out, ("open", _at(run_start + int(rule.duration_s)))]
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
    last_seen: datetime | None = None
    ids = (f"a{i}" for i in count())
    out: Outcome = []
    for kind, item in sequence:
        if kind == "tick":
            state, decision = on_clock(rule, states.get("r"), "d", _at(item), lambda: next(ids))
            states = {"r": state} if state is not None else {}
            out += [("open", decision.opened_at)] if isinstance(decision, OpenAlert) else []
            continue
        outcome = evaluate_device([rule], states, last_seen, _records(item), lambda: next(ids))
        states, last_seen = outcome.states, outcome.last_seen
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
    newest, firing = None, False
    out: Outcome = []
    for kind, item in sequence:
        if kind == "tick":
            if newest is not None and not firing and item >= newest + timeout:
                firing, out = True, [*out, ("open", _at(newest + timeout))]
            continue
        for ts, _ in sorted(item, key=lambda r: r[0]):
            if newest is None or ts > newest:
                newest = ts
                if firing:
                    firing, out = False, [*out, ("resolve", _at(ts))]
    return out


def core_no_data(rule: Rule, sequence: list[Arrival]) -> Outcome:
    states: dict[str, RuleState] = {}
    last_seen: datetime | None = None
    out: Outcome = []
    for kind, item in sequence:
        if kind == "tick":
            if last_seen is not None:
                state, decision = on_silence(rule, states.get("r"), "d", last_seen, _at(item))
                states = {"r": state} if state is not None else {}
                out += [("open", decision.opened_at)] if isinstance(decision, OpenAlert) else []
            continue
        outcome = evaluate_device([rule], states, last_seen, _records(item))
        states, last_seen = outcome.states, outcome.last_seen
        out += [
            ("resolve", d.resolved_at) for d in outcome.decisions if isinstance(d, ResolveAlert)
        ]
    return out


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 20), arrivals)
def test_no_data_core_matches_reference(timeout: int, sequence: list[Arrival]) -> None:
    rule = Rule("t", "r", "silent", "no_data", "critical", timeout_s=timeout)
    assert core_no_data(rule, sequence) == reference_no_data(timeout, sequence)
