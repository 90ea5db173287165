"""The pure evaluation core: examples of each rule behaviour."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from fleetpulse.common.rules.domain import (
    SEVERITIES,
    InvalidRuleError,
    OpenAlert,
    Record,
    ResolveAlert,
    Rule,
    RuleState,
    Watermarks,
    evaluate_device,
    on_clock,
    on_silence,
    rule_from_catalog,
    severity_rank,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


def hot(**kw: object) -> Rule:
    fields: dict[str, object] = {"metric": "temp_c", "operator": "gt", "threshold": 80.0, **kw}
    return Rule("t", "r1", "hot", "threshold", "major", **fields)  # type: ignore[arg-type]


def readings(*pairs: tuple[float, float]) -> list[Record]:
    return [Record("t", "d1", at(s), {"temp_c": v}) for s, v in pairs]


def test_severity_order() -> None:
    assert sorted(["info", "critical", "warning", "major", "minor"], key=severity_rank) == list(
        SEVERITIES
    )


def test_immediate_open_and_resolve() -> None:
    out = evaluate_device([hot()], {}, None, readings((0, 70), (1, 85), (2, 90), (3, 60)))
    assert [type(d) for d in out.decisions] == [OpenAlert, ResolveAlert]
    assert out.decisions[0].opened_at == at(1)  # type: ignore[union-attr]
    assert out.states == {} and out.seen.newest == at(3) and out.applied == 4


def test_hysteresis_keeps_firing_until_clear_threshold() -> None:
    out = evaluate_device(
        [hot(clear_threshold=70.0)], {}, None, readings((0, 85), (1, 75), (2, 71), (3, 70))
    )
    assert [(type(d).__name__, d.value) for d in out.decisions] == [
        ("OpenAlert", 85),
        ("ResolveAlert", 70),
    ]


def test_duration_opens_at_pending_since_plus_duration() -> None:
    rule = hot(duration_s=60)
    out = evaluate_device([rule], {}, None, readings((0, 85), (30, 86)))
    assert out.decisions == [] and out.states["r1"].status == "pending"
    state, decision = on_clock(rule, out.states["r1"], "d1", at(59.9))
    assert decision is None
    state, decision = on_clock(rule, state, "d1", at(75))
    assert isinstance(decision, OpenAlert) and decision.opened_at == at(60) and decision.value == 86


def test_dip_below_threshold_restarts_the_duration() -> None:
    out = evaluate_device(
        [hot(duration_s=10)], {}, None, readings((0, 85), (5, 50), (8, 85), (16, 85), (18, 90))
    )
    assert [d.opened_at for d in out.decisions if isinstance(d, OpenAlert)] == [at(18)]


def test_stale_and_duplicate_records_are_skipped() -> None:
    first = evaluate_device([hot()], {}, None, readings((10, 90)))
    again = evaluate_device([hot()], first.states, first.seen, readings((10, 90), (5, 10)))
    assert again.decisions == [] and again.applied == 0 and again.changed == set()
    assert again.states == first.states


def test_records_without_the_metric_and_heartbeats_leave_threshold_state_alone() -> None:
    records = [
        *readings((0, 90)),
        Record("t", "d1", at(1), {"other": 1}),
        Record("t", "d1", at(2), {}, "heartbeat"),
    ]
    out = evaluate_device([hot()], {}, None, records)
    assert out.states["r1"].status == "firing" and out.seen.metrics == {"temp_c": at(0)}
    assert out.seen.newest == at(1)  # a heartbeat is liveness, not reading order


def test_no_data_opens_at_last_seen_plus_timeout_and_resolves_on_data() -> None:
    rule = Rule("t", "nd", "silent", "no_data", "critical", timeout_s=30)
    state, decision = on_silence(rule, None, "d1", at(0), at(29))
    assert decision is None
    state, decision = on_silence(rule, None, "d1", at(0), at(31))
    assert isinstance(decision, OpenAlert) and decision.opened_at == at(30)
    assert on_silence(rule, state, "d1", at(0), at(99)) == (state, None)  # already open
    assert state is not None
    out = evaluate_device(
        [rule], {"nd": state}, Watermarks(at(0)), [Record("t", "d1", at(40), {}, "heartbeat")]
    )
    assert isinstance(out.decisions[0], ResolveAlert) and out.decisions[0].resolved_at == at(40)
    assert out.states == {} and out.changed == {"nd"}


def test_no_data_rearms_after_a_close() -> None:
    rule = Rule("t", "nd", "silent", "no_data", "critical", timeout_s=30)
    assert on_silence(rule, None, "d1", at(0), at(50), rearmed_at=at(40))[1] is None
    decision = on_silence(rule, None, "d1", at(0), at(71), rearmed_at=at(40))[1]
    assert isinstance(decision, OpenAlert) and decision.opened_at == at(70)


def test_pending_of_an_older_rule_version_starts_over() -> None:
    old = RuleState("pending", at(0), rule_version=1, value=90)
    out = evaluate_device(
        [hot(version=2, duration_s=10)], {"r1": old}, Watermarks(at(0)), readings((5, 90))
    )
    assert out.states["r1"].since == at(5) and "r1" in out.changed


def test_state_of_a_rule_no_longer_selected_is_kept() -> None:
    firing = RuleState("firing", at(0), 1, alert_id="a1")
    out = evaluate_device([], {"gone": firing}, Watermarks(at(0)), readings((5, 90)))
    assert out.states == {"gone": firing} and out.changed == set()


def test_selector_matches_on_device_tags() -> None:
    rule = hot(selector={"site": "a"})
    assert (
        rule.selects({"site": "a", "x": 1})
        and not rule.selects({"site": "b"})
        and not rule.selects({})
    )


def test_rule_from_catalog_row() -> None:
    rule = rule_from_catalog(
        tenant_id="t",
        rule_id="r",
        name="n",
        kind="threshold",
        severity="minor",
        definition={"metric": "m", "operator": "lte", "threshold": 3, "duration_s": 5},
        device_selector={"tags": {"site": "a"}},
        version=4,
    )
    assert (rule.operator, rule.threshold, rule.duration_s, rule.selector, rule.version) == (
        "lte",
        3.0,
        5.0,
        {"site": "a"},
        4,
    )
    with pytest.raises(InvalidRuleError):
        rule_from_catalog(
            tenant_id="t",
            rule_id="r",
            name="n",
            kind="threshold",
            severity="minor",
            definition={"operator": "gt"},
            device_selector=None,
            version=1,
        )
