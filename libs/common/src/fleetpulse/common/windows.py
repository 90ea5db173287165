"""Maintenance windows, pure: absolute (``start``/``end``) or recurring (RRULE or cron).

Shapes (JSON, in a route's ``match.maintenance_windows`` or an integration's
``config.maintenance_windows``):

- recurring: ``{"rrule": "FREQ=WEEKLY;BYDAY=SA;BYHOUR=2;BYMINUTE=0", "time_zone":
  "Europe/Berlin", "duration_s": 7200}`` (RFC 5545 RRULE, via ``python-dateutil``; ``dtstart``,
  a local wall-clock time, anchors ``INTERVAL`` and defaults to 2020-01-01T00:00; FREQ is
  DAILY, WEEKLY, MONTHLY or YEARLY) or ``{"cron": "0 2 * * 6", "time_zone": ..., "duration_s":
  ...}`` (five-field cron, via ``croniter``);
- absolute (the older stored form, still read): ``{"start": "...Z", "end": "...Z"}``.

Recurring occurrences are local wall-clock times in ``time_zone`` (IANA), so a window at 02:00
stays at 02:00 local across DST changes. An occurrence falling into a spring-forward gap starts
when the gap ends (02:30 that does not exist is 03:30); one falling twice in a fall-back hour
starts at the first of them (``fold=0``). ``duration_s`` is elapsed time.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterError, croniter
from dateutil import rrule

MAX_DURATION_S = 31 * 86400
DEFAULT_DTSTART = datetime(2020, 1, 1)
ALLOWED_FREQS = ("DAILY", "WEEKLY", "MONTHLY", "YEARLY")
MAX_EXPRESSION_CHARS = 500
MAX_CANDIDATES = 20_000
FREQ = re.compile(r"(?:^|;)FREQ=([A-Z]+)(?:;|$)")
INTERVAL = re.compile(r"(?:^|;)INTERVAL=(\d{1,6})(?:;|$)")
ANCHOR_CHUNK = 64
_PERIODS = {"DAILY": timedelta(days=1), "WEEKLY": timedelta(weeks=1)}


class WindowError(ValueError):
    """A window that cannot be used; ``field`` names the part (``rrule``, ``time_zone``...)."""

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}")
        self.field = field
        self.detail = detail


class Window(Protocol):
    def covers(self, at: datetime) -> bool: ...


@dataclass(frozen=True, slots=True)
class MaintenanceWindow:
    """An absolute window: ``start <= at < end``."""

    start: datetime
    end: datetime

    def covers(self, at: datetime) -> bool:
        return self.start <= at < self.end


@dataclass(frozen=True, slots=True)
class RecurringWindow:
    """Occurrences of ``rule`` (RRULE or cron text) in ``zone``, each lasting ``duration``."""

    kind: str  # "rrule" or "cron"
    rule: str
    zone: ZoneInfo
    duration: timedelta
    dtstart: datetime = DEFAULT_DTSTART

    def covers(self, at: datetime) -> bool:
        start = self.last_start(at)
        return start is not None and start <= at < start + self.duration

    def last_start(self, at: datetime) -> datetime | None:
        """The latest occurrence start (UTC) at or before ``at`` (an aware instant): the only
        one that can cover ``at``, as every occurrence lasts ``duration``. None when there is
        none, or (for a re-anchored rule, see :meth:`anchor`) none recent enough to cover."""
        # local wall clock of ``at``; an hour later too, as a fall-back hour repeats wall times
        local = at.astimezone(self.zone).replace(tzinfo=None)
        for candidate in self._local_starts_from(local + timedelta(hours=1)):
            start = candidate.replace(tzinfo=self.zone).astimezone(UTC)
            if start <= at:
                return start
            if candidate < local - timedelta(hours=3):
                break  # well before ``at`` in any zone: nothing found means none
        return None

    def _local_starts_from(self, local: datetime) -> Iterator[datetime]:
        """Naive local starts at or before ``local``, newest first."""
        if self.kind == "cron":
            it = croniter(self.rule, local + timedelta(minutes=1))
            for _ in range(MAX_CANDIDATES):
                try:
                    yield it.get_prev(datetime)
                except CroniterError:  # no (earlier) occurrence, e.g. "0 0 31 4 *"
                    return
            return
        parsed = _rrule(self.rule, self.anchor(local))
        recent = parsed.between(local - timedelta(hours=3), local, inc=True)
        yield from reversed(recent[-MAX_CANDIDATES:])
        earlier = parsed.before(local - timedelta(hours=3), inc=True)
        if earlier is not None:
            yield earlier

    def anchor(self, local: datetime) -> datetime:
        """``dtstart``, or for a DAILY or WEEKLY rule without COUNT, ``dtstart`` moved forward
        by whole ``INTERVAL`` periods (which keeps every later occurrence) to at most
        ``ANCHOR_CHUNK`` periods before what can still cover ``local``: checking a rule
        anchored years ago then walks weeks of occurrences, not years."""
        upper = self.rule.upper()
        freq = FREQ.search(upper)
        if freq is None or freq.group(1) not in _PERIODS or "COUNT=" in upper:
            return self.dtstart
        interval = INTERVAL.search(upper)
        step = _PERIODS[freq.group(1)] * (int(interval.group(1)) if interval else 1)
        earliest = local - self.duration - timedelta(hours=4)
        if earliest <= self.dtstart:
            return self.dtstart
        periods = (earliest - self.dtstart) // step
        return self.dtstart + step * (periods - periods % ANCHOR_CHUNK)


@functools.lru_cache(maxsize=1024)
def _rrule(text: str, dtstart: datetime) -> rrule.rrule:
    """The parsed rule, cached (with its occurrences: ``cache=True``) per text and anchor."""
    parsed = rrule.rrulestr(text, dtstart=dtstart, cache=True)
    if not isinstance(parsed, rrule.rrule):
        raise ValueError("one RRULE, without RDATE/EXDATE")
    return parsed


def window(raw: Mapping[str, Any]) -> Window:
    """A window from its JSON form; :class:`WindowError` naming the part that is wrong."""
    if raw.get("start") is not None or raw.get("end") is not None:
        return _absolute(raw)
    kinds = [k for k in ("rrule", "cron") if raw.get(k) is not None]
    if len(kinds) != 1:
        raise WindowError("rrule", "give exactly one of rrule, cron (or start and end)")
    kind, text = kinds[0], raw[kinds[0]]
    if not isinstance(text, str) or not text.strip() or len(text) > MAX_EXPRESSION_CHARS:
        raise WindowError(kind, f"text of at most {MAX_EXPRESSION_CHARS} characters")
    zone = _zone(raw.get("time_zone"))
    duration = raw.get("duration_s")
    if not isinstance(duration, int) or isinstance(duration, bool):
        raise WindowError("duration_s", "whole seconds")
    if not 1 <= duration <= MAX_DURATION_S:
        raise WindowError("duration_s", f"between 1 and {MAX_DURATION_S} seconds")
    dtstart = _dtstart(raw.get("dtstart"))
    if kind == "rrule":
        _check_rrule(text, dtstart)
    elif not croniter.is_valid(text) or len(text.split()) != 5:
        raise WindowError("cron", "not a five-field cron expression (minute hour day month dow)")
    else:
        _check_cron(text, dtstart)
    return RecurringWindow(kind, text.strip(), zone, timedelta(seconds=duration), dtstart)


def _absolute(raw: Mapping[str, Any]) -> MaintenanceWindow:
    try:
        start, end = _instant(raw["start"]), _instant(raw["end"])
    except (KeyError, TypeError, ValueError):
        raise WindowError("start", "start and end are ISO-8601 instants with an offset") from None
    if end <= start:
        raise WindowError("end", "must be after start")
    return MaintenanceWindow(start, end)


def _instant(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError("maintenance window times need a time zone")
    return parsed


def _zone(name: object) -> ZoneInfo:
    if not isinstance(name, str) or not name or len(name) > 64 or name.startswith(("/", ".")):
        raise WindowError("time_zone", "an IANA time zone name such as Europe/Berlin")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise WindowError("time_zone", f"unknown IANA time zone {name!r}") from None


def _dtstart(value: object) -> datetime:
    if value is None:
        return DEFAULT_DTSTART
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        raise WindowError("dtstart", "a local date-time such as 2026-01-03T02:00") from None
    if parsed.tzinfo is not None:
        raise WindowError("dtstart", "a local wall-clock time, without an offset")
    return parsed


def _check_rrule(text: str, dtstart: datetime) -> None:
    upper = text.upper()
    if "DTSTART" in upper or "\n" in text or upper.startswith("RRULE:"):
        raise WindowError("rrule", "the RRULE value only (FREQ=...;...); anchor it with dtstart")
    freq = FREQ.search(upper.strip())
    if freq is None or freq.group(1) not in ALLOWED_FREQS:
        raise WindowError("rrule", "FREQ must be DAILY, WEEKLY, MONTHLY or YEARLY")
    try:
        parsed = _rrule(text, dtstart)
    except (ValueError, TypeError, KeyError, IndexError, OverflowError) as error:
        raise WindowError("rrule", f"not a valid RRULE: {error}") from None
    if parsed.after(dtstart, inc=True) is None:
        raise WindowError("rrule", "the rule has no occurrence")


def _check_cron(text: str, dtstart: datetime) -> None:
    try:
        croniter(text, dtstart).get_next(datetime)
    except CroniterError:
        raise WindowError("cron", "the expression has no occurrence (e.g. 31 April)") from None


def parse_windows(raw: object) -> tuple[Window, ...]:
    """Windows from stored configuration; entries that are not valid (any more) are ignored
    rather than blocking every alert (the API refuses them at create time)."""
    windows: list[Window] = []
    for item in raw if isinstance(raw, list) else []:
        try:
            windows.append(window(item))
        except (WindowError, TypeError, AttributeError):
            continue
    return tuple(windows)


__all__ = ["MaintenanceWindow", "RecurringWindow", "Window", "WindowError", "parse_windows"]
