"""The rule language's pure parts: schedules (DST-correct), conditions, scheduled rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from fleetpulse.common.rules.conditions import (
    Condition,
    InvalidConditionError,
    schedule_from,
)
from fleetpulse.common.rules.domain import (
    OpenAlert,
    Record,
    ResolveAlert,
    RuleState,
    evaluate_device,
    on_clock,
    rule_from_catalog,
)

BERLIN_WORKDAY = {
    "timezone": "Europe/Berlin",
    "windows": [{"days": ["mon", "tue", "wed", "thu", "fri"], "start": "08:00", "end": "18:00"}],
}


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_schedule_follows_local_time_across_the_dst_change() -> None:
    schedule = schedule_from(BERLIN_WORKDAY)
    # Friday 27 March 2026, CET (UTC+1): 08:30 local is 07:30 UTC
    assert schedule.active_at(utc(2026, 3, 27, 7, 30))
    assert not schedule.active_at(utc(2026, 3, 27, 6, 30))  # 07:30 local
    assert schedule.active_at(utc(2026, 3, 27, 16, 30))  # 17:30 local
    # Clocks go forward on Sunday 29 March; Monday 30 March is CEST (UTC+2)
    assert schedule.active_at(utc(2026, 3, 30, 6, 30))  # 08:30 local (a fixed +1 says 07:30)
    assert not schedule.active_at(utc(2026, 3, 30, 16, 30))  # 18:30 local (fixed +1: 17:30)
    assert not schedule.active_at(utc(2026, 3, 29, 10, 0))  # Sunday
    # and back in October: Monday 26 October 2026 is CET again
    assert schedule.active_at(utc(2026, 10, 26, 16, 30))  # 17:30 local
    assert not schedule.active_at(utc(2026, 10, 26, 6, 30))  # 07:30 local


def test_overnight_window_runs_into_the_next_day() -> None:
    schedule = schedule_from(
        {
            "timezone": "America/New_York",
            "windows": [{"days": ["fri"], "start": "22:00", "end": "06:00"}],
        }
    )
    assert schedule.active_at(utc(2026, 11, 7, 3, 0))  # Sat 03:00 UTC is Fri 22:00 EST
    assert schedule.active_at(utc(2026, 11, 7, 10, 30))  # Sat 05:30 local (EST, UTC-5)
    assert not schedule.active_at(utc(2026, 11, 7, 11, 30))  # Sat 06:30 local
    assert not schedule.active_at(utc(2026, 11, 6, 2, 0))  # Thu 21:00 local


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        (
            {"timezone": "Nowhere/Land", "windows": [{"start": "08:00", "end": "09:00"}]},
            "time zone",
        ),
        ({"timezone": "UTC", "windows": []}, "at least one window"),
        ({"timezone": "UTC", "windows": [{"start": "08:00", "end": "08:00"}]}, "start != end"),
        (
            {"timezone": "UTC", "windows": [{"days": ["xyz"], "start": "08:00", "end": "09:00"}]},
            "day",
        ),
    ],
)
def test_bad_schedules_are_refused(bad: dict[str, object], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        schedule_from(bad)


def test_conditions_measure_windows_and_rates() -> None:
    t = utc(2026, 1, 1)
    samples: tuple[tuple[datetime, float], ...] = ()
    avg = Condition("m", "gt", threshold=5, aggregate="avg", window_s=10)
    for s, v in ((0, 1.0), (5, 3.0), (12, 8.0)):
        samples = avg.feed(samples, t + timedelta(seconds=s), v)
    assert [v for _, v in samples] == [3.0, 8.0]  # the value at 0 s left the 10 s window
    assert avg.measure(samples) == 5.5 and avg.holds(samples, {})
    rate = Condition("m", "lt", threshold=-1, aggregate="rate")
    kept = ()
    for s, v in ((0, 10.0), (2, 4.0)):
        kept = rate.feed(kept, t + timedelta(seconds=s), v)
    assert rate.measure(kept) == -3.0 and rate.holds(kept, {})
    assert rate.measure(kept[-1:]) is None  # one value is no rate
    with pytest.raises(InvalidConditionError, match="needs window_s"):
        Condition("m", "gt", threshold=1, aggregate="count")


def test_scheduled_threshold_rule_opens_inside_and_resolves_outside_its_window() -> None:
    rule = rule_from_catalog(
        tenant_id="t",
        rule_id="r",
        name="office hours",
        kind="threshold",
        severity="major",
        definition={"metric": "m", "operator": "gt", "threshold": 5, "schedule": BERLIN_WORKDAY},
        device_selector=None,
        version=1,
    )
    outside = Record("t", "d", utc(2026, 3, 30, 5, 30), {"m": 9})  # Monday 07:30 CEST
    inside = Record("t", "d", utc(2026, 3, 30, 6, 30), {"m": 9})  # Monday 08:30 CEST
    after = Record("t", "d", utc(2026, 3, 30, 16, 30), {"m": 9})  # Monday 18:30 CEST
    first = evaluate_device([rule], {}, None, [outside])
    assert first.decisions == []
    second = evaluate_device([rule], first.states, first.seen, [inside], memory=first.memory)
    [opened] = second.decisions
    assert isinstance(opened, OpenAlert) and opened.value == 9.0
    third = evaluate_device([rule], second.states, second.seen, [after], memory=second.memory)
    [resolved] = third.decisions
    assert isinstance(resolved, ResolveAlert) and resolved.resolved_at == after.ts


def test_clock_does_not_open_a_scheduled_rule_after_its_window_closed() -> None:
    definition = {
        "metric": "m",
        "operator": "gt",
        "threshold": 5,
        "duration_s": 3600,
        "schedule": BERLIN_WORKDAY,
    }
    rule = rule_from_catalog(
        tenant_id="t",
        rule_id="r",
        name="office hours",
        kind="threshold",
        severity="major",
        definition=definition,
        device_selector=None,
        version=1,
    )
    pending = RuleState("pending", utc(2026, 3, 30, 15, 30), 1, value=9)  # 17:30 CEST
    assert on_clock(rule, pending, "d", utc(2026, 3, 30, 17, 0)) == (None, None)  # due 18:30
    earlier = RuleState("pending", utc(2026, 3, 30, 14, 0), 1, value=9)  # due 17:00 CEST
    state, decision = on_clock(rule, earlier, "d", utc(2026, 3, 30, 15, 0))
    assert state is not None and state.status == "firing"
    assert isinstance(decision, OpenAlert) and decision.opened_at == utc(2026, 3, 30, 15, 0)
    assert decision.reason.startswith("m gt 5 for 3600s")
