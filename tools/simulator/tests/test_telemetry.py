"""The telemetry generator is pure: seeded, no I/O, no clock."""

from __future__ import annotations

import json
import random
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from fleetpulse.simulator.runner import Budget
from fleetpulse.simulator.telemetry import (
    ConnectionBehaviour,
    Dropout,
    Publish,
    SensorModel,
    SensorProfile,
    iso_timestamp,
)

T0 = datetime(2026, 11, 22, 4, 0, tzinfo=UTC)
METRIC = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


def readings(seed: int, n: int, profile: SensorProfile | None = None) -> list[dict[str, object]]:
    model = SensorModel(random.Random(seed), profile or SensorProfile())
    return [model.reading(T0 + timedelta(seconds=10 * i), i + 1) for i in range(n)]


def metric(items: list[dict[str, object]], name: str) -> list[float]:
    return [item["metrics"][name] for item in items]  # type: ignore[index]


def test_payload_matches_the_mqtt_contract() -> None:
    reading = readings(1, 1)[0]
    assert reading["ts"] == "2026-11-22T04:00:00.000Z"
    assert reading["seq"] == 1
    metrics = reading["metrics"]
    assert isinstance(metrics, dict)
    assert set(metrics) == {"temperature_c", "humidity_pct", "battery_pct"}
    assert all(METRIC.match(name) for name in metrics)
    assert len(json.dumps(reading).encode()) < 16 * 1024


def test_same_seed_same_readings_other_seed_other_readings() -> None:
    assert readings(7, 50) == readings(7, 50)
    assert readings(7, 50) != readings(8, 50)


def test_readings_are_noisy_but_plausible() -> None:
    items = readings(3, 500, SensorProfile(spike_probability=0.0))
    temperatures = metric(items, "temperature_c")
    assert len(set(temperatures)) > 100  # noise, not a constant
    assert all(10.0 < t < 30.0 for t in temperatures)
    assert all(0.0 <= h <= 100.0 for h in metric(items, "humidity_pct"))


def test_battery_only_drains() -> None:
    battery = metric(
        readings(4, 2000, SensorProfile(battery_drain_pct_per_hour=5.0)), "battery_pct"
    )
    assert battery == sorted(battery, reverse=True)
    assert battery[0] - battery[-1] > 5.0
    assert all(0.0 <= b <= 100.0 for b in battery)


def test_drift_moves_the_mean() -> None:
    profile = SensorProfile(drift_c_per_hour=2.0, spike_probability=0.0, daily_amplitude_c=0.0)
    model = SensorModel(random.Random(5), profile)
    early = [model.reading(T0 + timedelta(seconds=i), i)["metrics"] for i in range(100)]
    late = [model.reading(T0 + timedelta(hours=10, seconds=i), i)["metrics"] for i in range(100)]
    assert mean_temperature(late) - mean_temperature(early) == pytest.approx(20.0, abs=1.0)


def mean_temperature(rows: list[Any]) -> float:
    return sum(float(row["temperature_c"]) for row in rows) / len(rows)


def test_spikes_happen_at_about_their_probability() -> None:
    profile = SensorProfile(spike_probability=0.05, spike_c=40.0)
    spikes = [t for t in metric(readings(6, 4000, profile), "temperature_c") if t > 45.0]
    assert 100 < len(spikes) < 300


def test_dropouts_happen_at_about_their_probability_and_last_a_bounded_time() -> None:
    behaviour = ConnectionBehaviour(
        random.Random(9), dropout_probability=0.01, min_offline_s=2.0, max_offline_s=4.0
    )
    actions = [behaviour.next_action() for _ in range(10_000)]
    dropouts = [a for a in actions if isinstance(a, Dropout)]
    assert 50 < len(dropouts) < 150
    assert all(2.0 <= d.seconds <= 4.0 for d in dropouts)
    assert sum(isinstance(a, Publish) for a in actions) == 10_000 - len(dropouts)


def test_iso_timestamp_is_utc_with_milliseconds() -> None:
    plus_two = datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=UTC).astimezone(
        __import__("datetime").timezone(timedelta(hours=2))
    )
    assert iso_timestamp(plus_two) == "2026-01-01T12:00:00.123Z"
    with pytest.raises(ValueError, match="aware"):
        iso_timestamp(datetime(2026, 1, 1))


def test_message_budget_is_shared_and_can_be_given_back() -> None:
    budget = Budget(messages=2, deadline=None)
    assert budget.take() and budget.take()
    assert not budget.take()
    budget.give_back()
    assert budget.take()
    assert budget.exhausted()
