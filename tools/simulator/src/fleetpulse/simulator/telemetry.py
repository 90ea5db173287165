"""Realistic readings and connection behaviour for one simulated device. Pure: no I/O, no clock.

Everything random comes from the ``random.Random`` passed in, so a seed reproduces a run.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

SECONDS_PER_DAY = 86400.0


@dataclass(frozen=True, slots=True)
class SensorProfile:
    """How a device's sensors behave; the defaults look like a refrigerated container."""

    base_temperature_c: float = 21.0
    daily_amplitude_c: float = 2.0
    noise_c: float = 0.3
    drift_c_per_hour: float = 0.05
    spike_probability: float = 0.01
    spike_c: float = 35.0
    base_humidity_pct: float = 45.0
    humidity_noise_pct: float = 1.5
    battery_drain_pct_per_hour: float = 0.5


@dataclass
class SensorModel:
    """Successive readings of one device: call :meth:`reading` with increasing timestamps."""

    rng: random.Random
    profile: SensorProfile = field(default_factory=SensorProfile)
    started_at: datetime | None = None
    battery_pct: float = -1.0
    offset_c: float = 0.0

    def __post_init__(self) -> None:
        if self.battery_pct < 0:
            self.battery_pct = self.rng.uniform(60.0, 100.0)
        self.offset_c = self.rng.gauss(0.0, 1.0)  # every unit sits a little off nominal

    def reading(self, ts: datetime, seq: int) -> dict[str, object]:
        """The MQTT payload for ``ts``: ``{"ts", "seq", "metrics": {...}}``."""
        started = self.started_at = self.started_at or ts
        hours = (ts - started).total_seconds() / 3600.0
        temperature = self.temperature(ts, hours)
        return {
            "ts": iso_timestamp(ts),
            "seq": seq,
            "metrics": {
                "temperature_c": round(temperature, 2),
                "humidity_pct": round(self.humidity(temperature), 2),
                "battery_pct": round(self.battery(hours), 2),
            },
        }

    def temperature(self, ts: datetime, hours: float) -> float:
        p = self.profile
        day_phase = 2 * math.pi * (seconds_of_day(ts) / SECONDS_PER_DAY)
        value = p.base_temperature_c + self.offset_c + p.drift_c_per_hour * hours
        value += p.daily_amplitude_c * math.sin(day_phase - math.pi / 2)
        value += self.rng.gauss(0.0, p.noise_c)
        if self.rng.random() < p.spike_probability:
            value += p.spike_c * self.rng.uniform(0.8, 1.2)
        return value

    def humidity(self, temperature_c: float) -> float:
        p = self.profile
        value = p.base_humidity_pct - 1.5 * (temperature_c - p.base_temperature_c)
        return clamp(value + self.rng.gauss(0.0, p.humidity_noise_pct), 0.0, 100.0)

    def battery(self, hours: float) -> float:
        drained = self.battery_pct - self.profile.battery_drain_pct_per_hour * hours
        return clamp(drained, 0.0, 100.0)


@dataclass(frozen=True, slots=True)
class Publish:
    """Publish the next reading."""


@dataclass(frozen=True, slots=True)
class Dropout:
    """Disconnect, stay offline ``seconds``, then reconnect (the readings are lost, like a real
    device whose buffer is off)."""

    seconds: float


@dataclass
class ConnectionBehaviour:
    """Decides, message by message, whether a device stays online."""

    rng: random.Random
    dropout_probability: float = 0.002
    min_offline_s: float = 1.0
    max_offline_s: float = 10.0

    def next_action(self) -> Publish | Dropout:
        if self.rng.random() < self.dropout_probability:
            return Dropout(self.rng.uniform(self.min_offline_s, self.max_offline_s))
        return Publish()


def iso_timestamp(ts: datetime) -> str:
    """``2026-11-22T04:00:00.000Z`` (UTC, milliseconds), the form the MQTT contract shows."""
    if ts.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    utc = ts.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def seconds_of_day(ts: datetime) -> float:
    midnight = ts.replace(hour=0, minute=0, second=0, microsecond=0)
    return (ts - midnight) / timedelta(seconds=1)


def clamp(value: float, low: float, high: float) -> float:
    return max(low, min(high, value))
