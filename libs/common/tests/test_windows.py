"""Maintenance windows: RRULE and cron occurrences in an IANA zone, DST-correct; validation."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from fleetpulse.common.windows import RecurringWindow, WindowError, parse_windows, window

SATURDAY_2AM_BERLIN = [
    {"rrule": "FREQ=WEEKLY;BYDAY=SA;BYHOUR=2;BYMINUTE=0", "time_zone": "Europe/Berlin"},
    {"cron": "0 2 * * 6", "time_zone": "Europe/Berlin"},
]


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize("spec", SATURDAY_2AM_BERLIN)
def test_a_weekly_window_stays_at_local_time_across_dst(spec: dict[str, Any]) -> None:
    w = window({**spec, "duration_s": 3600})
    # winter (UTC+1): 02:00-03:00 local is 01:00-02:00 UTC
    assert w.covers(_utc("2026-01-10T01:00:00"))
    assert w.covers(_utc("2026-01-10T01:59:59"))
    assert not w.covers(_utc("2026-01-10T02:00:00"))
    assert not w.covers(_utc("2026-01-10T00:59:59"))
    # summer (UTC+2): the same local hour is 00:00-01:00 UTC (a fixed UTC time would miss it)
    assert w.covers(_utc("2026-07-11T00:30:00"))
    assert not w.covers(_utc("2026-07-11T01:30:00"))
    # not on other days
    assert not w.covers(_utc("2026-07-12T00:30:00"))


@pytest.mark.parametrize(
    "spec",
    [
        {"rrule": "FREQ=DAILY;BYHOUR=2;BYMINUTE=30", "time_zone": "Europe/Berlin"},
        {"cron": "30 2 * * *", "time_zone": "Europe/Berlin"},
    ],
)
def test_occurrences_in_a_dst_gap_or_overlap(spec: dict[str, Any]) -> None:
    w = window({**spec, "duration_s": 1800})
    # 2026-03-29 02:30 does not exist in Berlin: the occurrence starts when the gap ends
    # (03:30 CEST = 01:30 UTC)
    assert w.covers(_utc("2026-03-29T01:45:00"))
    assert not w.covers(_utc("2026-03-29T00:45:00"))
    # 2026-10-25 02:30 happens twice: the first one (CEST, 00:30 UTC) counts, once
    assert w.covers(_utc("2026-10-25T00:45:00"))
    assert not w.covers(_utc("2026-10-25T01:45:00"))
    # the days around stay at 02:30 local
    assert w.covers(_utc("2026-03-28T01:45:00"))  # CET
    assert w.covers(_utc("2026-03-30T00:45:00"))  # CEST


def test_rrule_interval_counts_from_dtstart() -> None:
    w = window(
        {
            "rrule": "FREQ=WEEKLY;INTERVAL=2;BYDAY=MO;BYHOUR=9",
            "dtstart": "2026-01-05T00:00",
            "time_zone": "America/New_York",
            "duration_s": 600,
        }
    )
    assert w.covers(_utc("2026-01-05T14:05:00"))  # 09:05 EST
    assert not w.covers(_utc("2026-01-12T14:05:00"))  # the off week
    assert w.covers(_utc("2026-01-19T14:05:00"))


def test_a_window_longer_than_its_period_covers_everything() -> None:
    w = window({"cron": "0 * * * *", "time_zone": "UTC", "duration_s": 7200})
    start = _utc("2026-05-01T00:00:00")
    assert all(w.covers(start + timedelta(minutes=7 * i)) for i in range(100))


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"rrule": "FREQ=HOURLY", "time_zone": "UTC", "duration_s": 60}, "rrule"),
        ({"rrule": "FREQ=DAILY;BYHOUR=24", "time_zone": "UTC", "duration_s": 60}, "rrule"),
        ({"rrule": "FREQ=DAILY;BOGUS=1", "time_zone": "UTC", "duration_s": 60}, "rrule"),
        (
            {"rrule": "DTSTART:20200101\nRRULE:FREQ=DAILY", "time_zone": "UTC", "duration_s": 6},
            "rrule",
        ),
        ({"rrule": "FREQ=DAILY;COUNT=0", "time_zone": "UTC", "duration_s": 60}, "rrule"),
        ({"cron": "0 2 * *", "time_zone": "UTC", "duration_s": 60}, "cron"),
        ({"cron": "0 25 * * *", "time_zone": "UTC", "duration_s": 60}, "cron"),
        ({"cron": "0 2 * * 6", "time_zone": "Europe/Nowhere", "duration_s": 60}, "time_zone"),
        ({"cron": "0 2 * * 6", "time_zone": "../etc/passwd", "duration_s": 60}, "time_zone"),
        ({"cron": "0 2 * * 6", "duration_s": 60}, "time_zone"),
        ({"cron": "0 2 * * 6", "time_zone": "UTC"}, "duration_s"),
        ({"cron": "0 2 * * 6", "time_zone": "UTC", "duration_s": 0}, "duration_s"),
        (
            {"cron": "0 2 * * 6", "rrule": "FREQ=DAILY", "time_zone": "UTC", "duration_s": 6},
            "rrule",
        ),
        ({"time_zone": "UTC", "duration_s": 6}, "rrule"),
        ({"start": "2026-01-02T00:00:00Z", "end": "2026-01-01T00:00:00Z"}, "end"),
        ({"start": "2026-01-01T00:00:00", "end": "2026-01-02T00:00:00"}, "start"),
    ],
)
def test_invalid_windows_name_the_part(raw: dict[str, Any], field: str) -> None:
    with pytest.raises(WindowError) as caught:
        window(raw)
    assert caught.value.field == field


def test_stored_windows_of_both_forms_are_read_and_bad_ones_skipped() -> None:
    windows = parse_windows(
        [
            {"start": "2026-01-01T00:00:00Z", "end": "2026-01-02T00:00:00+00:00"},
            {"cron": "0 2 * * 6", "time_zone": "Europe/Berlin", "duration_s": 3600},
            {"cron": "bad", "time_zone": "UTC", "duration_s": 1},
            3,
        ]
    )
    assert len(windows) == 2
    assert windows[0].covers(_utc("2026-01-01T12:00:00"))
    assert windows[1].covers(_utc("2026-01-10T01:30:00"))


class _FromDtstart(RecurringWindow):
    """The same window, always walking the rule from its original dtstart."""

    def anchor(self, local: datetime) -> datetime:
        return self.dtstart


@pytest.mark.parametrize(
    "spec",
    [
        {"rrule": "FREQ=DAILY;BYHOUR=0,6,12,18;BYMINUTE=0,30", "duration_s": 600},
        {"rrule": "FREQ=WEEKLY;INTERVAL=3;BYDAY=MO,TH;BYHOUR=2", "duration_s": 7200,
         "dtstart": "2021-02-03T00:00"},
        {"rrule": "FREQ=DAILY;INTERVAL=5;BYHOUR=23;BYMINUTE=30", "duration_s": 90000},
        {"rrule": "FREQ=MONTHLY;BYDAY=-1SU;BYHOUR=1", "duration_s": 86400},
    ],
)  # fmt: skip
def test_re_anchoring_keeps_every_answer(spec: dict[str, Any]) -> None:
    """Checking a rule anchored in 2020 walks recent occurrences only, with the same answers
    as walking the whole rule (random instants over three years, two zones)."""
    rnd = random.Random(7)
    for zone in ("America/New_York", "Australia/Lord_Howe"):
        w = window({**spec, "time_zone": zone})
        assert isinstance(w, RecurringWindow)
        plain = _FromDtstart(w.kind, w.rule, w.zone, w.duration, w.dtstart)
        for _ in range(300):
            at = _utc("2024-01-01T00:00:00") + timedelta(seconds=rnd.randrange(3 * 365 * 86400))
            assert w.covers(at) == plain.covers(at), at


def test_a_dense_rule_anchored_years_ago_is_checked_quickly() -> None:
    w = window(
        {
            "rrule": "FREQ=DAILY;BYHOUR=0,3,6,9,12,15,18,21;BYMINUTE=0,15,30,45",
            "time_zone": "Europe/Berlin",
            "duration_s": 600,
        }
    )
    started = time.perf_counter()
    for i in range(200):
        w.covers(_utc("2035-06-01T00:00:00") + timedelta(minutes=37 * i))
    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize("cron", ["0 0 31 4 *", "0 0 30 2 *"])
def test_a_cron_that_never_fires_is_refused_and_never_raises_once_stored(cron: str) -> None:
    """A syntactically valid cron with no occurrence (31 April): refused at create time, and
    one already stored covers nothing instead of raising in the dispatcher (which once held
    every notification of the tenant until the DLQ took them)."""
    with pytest.raises(WindowError, match="no occurrence"):
        window({"cron": cron, "time_zone": "UTC", "duration_s": 60})
    stored = RecurringWindow("cron", cron, ZoneInfo("UTC"), timedelta(seconds=60))
    assert stored.covers(datetime(2026, 4, 30, 0, 0, 30, tzinfo=UTC)) is False
    control = RecurringWindow("cron", "0 0 30 4 *", ZoneInfo("UTC"), timedelta(seconds=60))
    assert control.covers(datetime(2026, 4, 30, 0, 0, 30, tzinfo=UTC)) is True
