"""The rule language's conditions, pure: per-metric memory (recent values) and what it says.

A *condition* looks at one metric: its newest value (``last``), an aggregate of the values of the
last ``window_s`` seconds up to its newest value (``avg``, ``min``, ``max``, ``count``), or its
rate of change (``rate``: per second between the two newest values, or over the window; or
``rate_per: "window"``, the change across the window). The result is compared with a constant
``threshold`` or a per-device one (``threshold_from: "attributes.<key>"``, ``default`` when the
device lacks a numeric attribute; without either the condition does not hold). While the rule's
alert is firing a condition is tested against its ``clear_threshold`` (hysteresis).

A condition's memory is the values it still needs, oldest first, in device time: values are fed
only when newer than the metric's newest evaluated one (the caller's per-metric watermarks), so
the memory of a redelivered or reordered stream is the memory of the ordered one. It is
persisted with the rule state (``evaluator_condition_memory``) so windows survive restarts and
are shared by replicas.
"""

from __future__ import annotations

import operator
from bisect import bisect_right
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

AGGREGATES = ("last", "avg", "min", "max", "count", "rate")
Aggregate = Literal["last", "avg", "min", "max", "count", "rate"]
COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
    "eq": operator.eq,
    "ne": operator.ne,
}
ATTRIBUTE_PREFIX = "attributes."
Sample = tuple[datetime, float]
Samples = tuple[Sample, ...]


def _sample_time(sample: Sample) -> datetime:
    return sample[0]


class InvalidConditionError(ValueError):
    """A condition that cannot be evaluated (an impossible combination of fields)."""


@dataclass(frozen=True, slots=True)
class Condition:
    metric: str
    operator: str = "gt"
    threshold: float | None = None
    threshold_from: str | None = None
    default: float | None = None
    clear_threshold: float | None = None
    aggregate: str = "last"
    window_s: float | None = None
    rate_per: Literal["second", "window"] = "second"

    def __post_init__(self) -> None:
        problem = condition_problem(self)
        if problem is not None:
            raise InvalidConditionError(problem)

    @property
    def window(self) -> timedelta | None:
        return None if self.window_s is None else timedelta(seconds=self.window_s)

    def label(self) -> str:
        """``temp_c``, ``avg(temp_c) 300s``, ``rate(p)/s``: how alerts name the value."""
        if self.aggregate == "last":
            return self.metric
        window = f" {self.window_s:g}s" if self.window_s else ""
        per = "/s" if self.aggregate == "rate" and self.rate_per == "second" else ""
        return f"{self.aggregate}({self.metric}){per}{window}"

    def feed(self, samples: Samples, ts: datetime, value: float) -> Samples:
        """The memory after a value newer than every remembered one."""
        if self.window_s is not None:
            start = ts - timedelta(seconds=self.window_s)
            first = bisect_right(samples, start, key=_sample_time) if samples else 0
            return (*samples[first:], (ts, value))
        keep = 1 if self.aggregate == "rate" else 0  # a rate per second needs the previous one
        return (*samples[len(samples) - keep :], (ts, value)) if keep else ((ts, value),)

    def measure(self, samples: Samples) -> float | None:
        """What the condition compares: ``None`` while the memory cannot tell (no value yet, or
        one value for a rate)."""
        if not samples:
            return None
        if self.aggregate == "last":
            return samples[-1][1]
        if self.aggregate == "count":
            return float(len(samples))
        if self.aggregate == "avg":
            return sum([s[1] for s in samples]) / len(samples)
        if self.aggregate == "min":
            return min([s[1] for s in samples])
        if self.aggregate == "max":
            return max([s[1] for s in samples])
        if len(samples) < 2:
            return None
        (t0, v0), (t1, v1) = samples[0], samples[-1]
        if self.rate_per == "window":
            return v1 - v0
        return (v1 - v0) / (t1 - t0).total_seconds()

    def bound(self, attributes: Mapping[str, Any], clearing: bool) -> float | None:
        """The threshold for this device (``clearing``: while the alert fires)."""
        if clearing and self.clear_threshold is not None:
            return self.clear_threshold
        if self.threshold_from is None:
            return self.threshold
        found = attributes.get(self.threshold_from.removeprefix(ATTRIBUTE_PREFIX))
        if isinstance(found, int | float) and not isinstance(found, bool):
            return float(found)
        return self.default

    def holds(
        self, samples: Samples, attributes: Mapping[str, Any], clearing: bool = False
    ) -> bool:
        measured = self.measure(samples)
        bound = self.bound(attributes, clearing)
        if measured is None or bound is None:
            return False
        return COMPARE[self.operator](measured, bound)


def condition_problem(condition: Condition) -> str | None:
    """Why the condition is impossible, or ``None`` (the API's 422 text and the evaluator's)."""
    c = condition
    if c.operator not in COMPARE:
        return f"unknown operator {c.operator!r}"
    if c.aggregate not in AGGREGATES:
        return f"unknown aggregate {c.aggregate!r}"
    if (c.threshold is None) == (c.threshold_from is None):
        return "give exactly one of threshold and threshold_from"
    if c.threshold_from is not None and not (
        c.threshold_from.startswith(ATTRIBUTE_PREFIX)
        and len(c.threshold_from) > len(ATTRIBUTE_PREFIX)
    ):
        return "threshold_from must name a device attribute: attributes.<key>"
    if c.default is not None and c.threshold_from is None:
        return "default applies only with threshold_from"
    if c.clear_threshold is not None and c.threshold_from is not None:
        return "clear_threshold needs a constant threshold"
    if c.window_s is not None and c.window_s <= 0:
        return "window_s must be > 0"
    if c.aggregate in ("avg", "min", "max", "count") and c.window_s is None:
        return f"aggregate {c.aggregate} needs window_s"
    if c.aggregate == "last" and c.window_s is not None:
        return "window_s needs an aggregate (avg, min, max, count or rate)"
    if c.aggregate != "rate" and c.rate_per != "second":
        return "rate_per applies only to aggregate rate"
    if c.aggregate == "rate" and c.rate_per == "window" and c.window_s is None:
        return "a rate per window needs window_s"
    return None


def condition_from(data: Mapping[str, Any]) -> Condition:
    """A :class:`Condition` from its stored JSON shape (raises :class:`InvalidConditionError`)."""
    try:
        return Condition(
            metric=str(data["metric"]),
            operator=str(data.get("operator", "gt")),
            threshold=_number(data.get("threshold")),
            threshold_from=data.get("threshold_from"),
            default=_number(data.get("default")),
            clear_threshold=_number(data.get("clear_threshold")),
            aggregate=str(data.get("aggregate", "last")),
            window_s=_number(data.get("window_s")),
            rate_per=data.get("rate_per", "second"),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidConditionError(str(exc)) from exc


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


@dataclass(frozen=True, slots=True)
class Schedule:
    """Weekly windows in an IANA time zone: ``windows`` are ``(weekday 0=Monday, start minute,
    end minute)`` of local wall-clock time (end exclusive; an end before the start runs past
    midnight into the next day). DST-correct: an instant is converted to local time first."""

    timezone: str
    windows: tuple[tuple[int, int, int], ...]

    def active_at(self, at: datetime) -> bool:
        local = at.astimezone(_zone(self.timezone))
        minute = local.hour * 60 + local.minute
        day = local.weekday()
        for weekday, start, end in self.windows:
            if start < end:
                if weekday == day and start <= minute < end:
                    return True
            elif (weekday == day and minute >= start) or (
                (weekday + 1) % 7 == day and minute < end
            ):
                return True
        return False


DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)  # ZoneInfo caches zones itself


def _minute(text: str) -> int:
    hours, _, minutes = text.partition(":")
    value = int(hours) * 60 + int(minutes)
    if not 0 <= value <= 24 * 60 or len(minutes) != 2:
        raise ValueError(f"time {text!r} is not HH:MM")
    return value


def schedule_from(data: Mapping[str, Any]) -> Schedule:
    """A :class:`Schedule` from ``{"timezone": "Europe/Berlin", "windows": [{"days": ["mon"],
    "start": "08:00", "end": "18:00"}]}`` (raises ``ValueError`` naming the problem)."""
    timezone = str(data.get("timezone", ""))
    try:
        _zone(timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {timezone!r}") from exc
    windows: list[tuple[int, int, int]] = []
    for window in data.get("windows") or ():
        start, end = _minute(str(window["start"])), _minute(str(window["end"]))
        if start == end:
            raise ValueError("a schedule window needs start != end")
        for day in window.get("days") or DAYS:
            if day not in DAYS:
                raise ValueError(f"unknown day {day!r} (mon..sun)")
            windows.append((DAYS.index(day), start, end))
    if not windows:
        raise ValueError("a schedule needs at least one window")
    return Schedule(timezone, tuple(windows))


def measures(conditions: Sequence[Condition], memory: Sequence[Samples]) -> dict[str, float | None]:
    """Each condition's measured value by label (what an alert reports)."""
    return {c.label(): c.measure(m) for c, m in zip(conditions, memory, strict=True)}
