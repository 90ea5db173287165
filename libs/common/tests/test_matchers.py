"""Alertmanager label matchers: the four types, anchoring, missing labels, validation, RE2."""

from __future__ import annotations

import time

import pytest

from fleetpulse.common.matchers import (
    MatcherError,
    alert_labels,
    matcher,
    matchers,
    matches_all,
    parse_stored,
)


@pytest.mark.parametrize(
    ("type_", "value", "label", "expected"),
    [
        ("=", "north", "north", True),
        ("=", "north", "northeast", False),
        ("!=", "north", "south", True),
        ("!=", "north", "north", False),
        ("=~", "north|south", "south", True),
        ("=~", "north", "northeast", False),  # anchored as Alertmanager anchors: ^(?:v)$
        ("=~", "nor", "north", False),
        ("!~", "r-test.*", "r-test-1", False),
        ("!~", "r-test.*", "r1", True),
    ],
)
def test_match_types(type_: str, value: str, label: str, expected: bool) -> None:
    m = matcher({"name": "tags.site", "type": type_, "value": value})
    assert m.matches(label) is expected


def test_a_missing_label_is_the_empty_string() -> None:
    parsed = matchers(
        [
            {"name": "severity", "type": "=", "value": "major"},
            {"name": "tags.site", "type": "!=", "value": "north"},
        ]
    )
    assert matches_all(parsed, {"severity": "major"})
    assert not matches_all(parsed, {"severity": "major", "tags.site": "north"})
    empty = matcher({"name": "tags.site", "type": "=", "value": ""})
    assert empty.matches("") and not empty.matches("north")


def test_labels_of_an_alert_and_its_device() -> None:
    labels = alert_labels(
        {"alert_id": "a1", "rule_id": "r1", "severity": "major", "device_id": "d1", "x": "y"},
        {"site": "north"},
        {"floor": 3, "cold": True, "nested": {"a": 1}},
    )
    assert labels == {
        "alert_id": "a1",
        "rule_id": "r1",
        "severity": "major",
        "device_id": "d1",
        "tags.site": "north",
        "attributes.floor": "3",
        "attributes.cold": "true",
    }


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ([], "matchers"),
        ([{"name": "rule_id", "type": "=~", "value": ".*"}], "matchers"),
        ([{"name": "rule_id", "type": "=~", "value": "(a"}], "matchers[0].value"),
        ([{"name": "rule_id", "type": "=~", "value": "(?=a)"}], "matchers[0].value"),
        ([{"name": "rule_id", "type": "=~", "value": "a{2000}"}], "matchers[0].value"),
        ([{"name": "rule_id", "type": "==", "value": "a"}], "matchers[0].type"),
        ([{"name": "Rule", "type": "=", "value": "a"}], "matchers[0].name"),
        ([{"name": "rule_id", "type": "=", "value": "x" * 513}], "matchers[0].value"),
        ([{"name": "rule_id", "value": "a"}] * 33, "matchers"),
    ],
)
def test_invalid_matchers_name_the_field(raw: list[dict[str, str]], field: str) -> None:
    with pytest.raises(MatcherError) as caught:
        matchers(raw)
    assert caught.value.field == field


def test_catastrophic_patterns_run_in_linear_time() -> None:
    """The classic ReDoS pattern takes exponential time in a backtracking engine (``re``)."""
    m = matcher({"name": "rule_id", "type": "=~", "value": "(a+)+b"})
    started = time.perf_counter()
    for _ in range(100):
        assert not m.matches("a" * 512)
    assert time.perf_counter() - started < 1.0


def test_stored_matchers_that_no_longer_compile_match_nothing() -> None:
    assert parse_stored([{"name": "rule_id", "type": "=~", "value": "(a"}]) is None
    assert parse_stored([{"name": "rule_id", "type": "=", "value": "a"}]) is not None
