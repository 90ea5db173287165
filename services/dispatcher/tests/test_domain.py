"""Routing decisions, no I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from fleetpulse.dispatcher.domain import (
    AlertFacts,
    GroupState,
    MaintenanceWindow,
    Route,
    delivery_id_for,
    firing_targets,
    flush_group,
    group_of,
    join_group,
    parse_windows,
)

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def alert(
    severity: str = "major",
    rule_id: str = "r1",
    tags: dict[str, str] | None = None,
    alert_id: str = "a1",
) -> AlertFacts:
    return AlertFacts(
        "t1",
        {"alert_id": alert_id, "rule_id": rule_id, "device_id": "d1", "severity": severity},
        tags or {},
    )


def targets(*routes: Route, facts: AlertFacts | None = None, **kwargs: object) -> list[str]:
    enabled = kwargs.pop("enabled", {r.integration_id: () for r in routes})
    found = firing_targets(
        routes,
        facts or alert(),
        now=NOW,
        enabled_integrations=enabled,  # type: ignore[arg-type]
        silenced_until=kwargs.get("silenced_until"),
    )  # type: ignore[arg-type]
    return [f"{t.route.route_id}->{t.integration_id}" for t in found]


@pytest.mark.parametrize(
    ("floor", "severity", "matches"),
    [
        (None, "info", True),
        ("major", "critical", True),
        ("major", "major", True),
        ("major", "minor", False),
        ("warning", "info", False),
        ("critical", "major", False),
    ],
)
def test_severity_at_least(floor: str | None, severity: str, matches: bool) -> None:
    assert Route("r", "i", severity_at_least=floor).matches(alert(severity)) is matches


def test_rule_ids_and_device_tags() -> None:
    route = Route("r", "i", rule_ids=frozenset({"r1", "r2"}), device_tags={"site": "north"})
    assert route.matches(alert(rule_id="r2", tags={"site": "north", "x": "y"}))
    assert not route.matches(alert(rule_id="r3", tags={"site": "north"}))
    assert not route.matches(alert(rule_id="r1", tags={"site": "south"}))
    assert not route.matches(alert(rule_id="r1"))


def test_empty_match_matches_everything() -> None:
    assert Route.from_row({"route_id": "r", "integration_id": "i", "match": {}}).matches(
        alert("info")
    )


def test_one_notification_per_integration_even_through_two_routes() -> None:
    assert targets(Route("b", "i1"), Route("a", "i1"), Route("c", "i2")) == ["a->i1", "c->i2"]


def test_disabled_integrations_are_skipped() -> None:
    assert targets(Route("a", "i1"), Route("b", "i2"), enabled={"i2": ()}) == ["b->i2"]


def test_silence_suppresses_until_it_ends() -> None:
    assert targets(Route("a", "i1"), silenced_until=NOW + timedelta(seconds=1)) == []
    assert targets(Route("a", "i1"), silenced_until=NOW) == ["a->i1"]


def test_maintenance_windows_on_route_or_integration_suppress() -> None:
    window = MaintenanceWindow(NOW - timedelta(hours=1), NOW + timedelta(hours=1))
    past = MaintenanceWindow(NOW - timedelta(hours=2), NOW)
    assert targets(Route("a", "i1", maintenance_windows=(window,))) == []
    assert targets(Route("a", "i1"), enabled={"i1": (window,)}) == []
    assert targets(Route("a", "i1", maintenance_windows=(past,))) == ["a->i1"]


def test_parse_windows_ignores_malformed_entries() -> None:
    windows = parse_windows(
        [
            {"start": "2030-01-01T00:00:00Z", "end": "2030-01-02T00:00:00+00:00"},
            {"start": "2030-01-01T00:00:00"},
            {"start": "bad", "end": "x"},
            3,
        ]
    )
    assert len(windows) == 1
    assert windows[0].covers(NOW)


def test_groups_by_labels_including_device_tags() -> None:
    route = Route("r", "i", group_by=("rule_id", "tags.site"))
    a = group_of(route, alert(tags={"site": "n"}, alert_id="a1"))
    b = group_of(route, alert(tags={"site": "n"}, alert_id="a2"))
    c = group_of(route, alert(tags={"site": "s"}, alert_id="a3"))
    assert a.key == b.key != c.key
    assert a.labels == {"rule_id": "r1", "tags.site": "n"}
    assert group_of(Route("r", "i"), alert()).key == "alert:a1"


def test_group_wait_then_group_interval() -> None:
    route = Route("r", "i", group_by=("rule_id",), group_wait_s=30, group_interval_s=600)
    state = join_group(GroupState(), {"alert_id": "a1"}, route, NOW)
    assert state.flush_at == NOW + timedelta(seconds=30)
    state = join_group(state, {"alert_id": "a2"}, route, NOW + timedelta(seconds=10))
    assert [m["alert_id"] for m in state.pending] == ["a1", "a2"]
    assert state.flush_at == NOW + timedelta(seconds=30)
    notified = GroupState((), None, NOW + timedelta(seconds=30), ({"alert_id": "a1"},))
    later = join_group(notified, {"alert_id": "a3"}, route, NOW + timedelta(seconds=60))
    assert later.flush_at == NOW + timedelta(seconds=630)
    # a group whose notified alerts all ended is new again: group_wait, not group_interval
    ended = join_group(GroupState((), None, NOW), {"alert_id": "a4"}, route, NOW)
    assert ended.flush_at == NOW + timedelta(seconds=30)


def test_flush_new_alerts_then_repeats_then_nothing() -> None:
    route = Route("r", "i", group_by=("rule_id",), repeat_interval_s=60)
    a1, a2 = {"alert_id": "a1"}, {"alert_id": "a2"}
    first = flush_group(GroupState((a1,), NOW), lambda _id: True, route, NOW)
    assert (first.kind, first.members, first.state.firing) == ("firing", (a1,), (a1,))
    assert first.state.flush_at == NOW + timedelta(seconds=60)
    early = flush_group(first.state, lambda _id: True, route, NOW + timedelta(seconds=59))
    assert early.members == () and early.state.flush_at == NOW + timedelta(seconds=60)
    repeat = flush_group(first.state, lambda _id: True, route, NOW + timedelta(seconds=60))
    assert (repeat.kind, repeat.members) == ("repeat", (a1,))
    assert repeat.state.flush_at == NOW + timedelta(seconds=120)
    grown = GroupState((a2,), NOW, repeat.state.last_notified_at, repeat.state.firing)
    both = flush_group(grown, lambda _id: True, route, NOW + timedelta(seconds=70))
    assert (both.kind, both.members) == ("firing", (a2, a1))
    gone = flush_group(both.state, lambda _id: False, route, NOW + timedelta(seconds=200))
    assert gone.members == () and gone.state == GroupState((), None, both.state.last_notified_at)


def test_joining_twice_changes_nothing() -> None:
    route = Route("r", "i", group_wait_s=5)
    state = join_group(GroupState(), {"alert_id": "a1"}, route, NOW)
    assert join_group(state, {"alert_id": "a1"}, route, NOW) == state


def test_delivery_ids_are_deterministic() -> None:
    assert delivery_id_for("e1", "i1") == delivery_id_for("e1", "i1") != delivery_id_for("e1", "i2")


def test_severity_floor_follows_the_one_severity_order() -> None:
    """Routing's "at least" and the evaluator's rank (critical first) are the same order."""
    from fleetpulse.common.contracts import SEVERITIES, severity_rank

    for floor in SEVERITIES:
        route = Route("r", "i", severity_at_least=floor)
        for severity in SEVERITIES:
            expected = severity_rank(severity) <= severity_rank(floor)
            assert route.matches(alert(severity)) is expected
