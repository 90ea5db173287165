"""Batch building, pure: the same-time policy (first wins) and the parts a bisect writes."""

from __future__ import annotations

import time

from fleetpulse.ingest.batch import Batch, Envelope, QuarantineThrottle
from fleetpulse.ingest.domain import (
    Accepted,
    RateLimiter,
    Reason,
    Record,
    Rejected,
    TimeWindow,
    Validator,
    Verdict,
)

NOW_US = int(time.time() * 1_000_000)
TOPIC = "tenant/t1/device/d1/telemetry"


def reading(time_us: int, **metrics: float) -> Accepted:
    return Accepted([Record("reading", "t1", "d1", time_us, None, dict(metrics))])


def heartbeat() -> Accepted:
    return Accepted([Record("heartbeat", "t1", "d1", NOW_US, None, {})])


def envelope(received_us: int = NOW_US) -> Envelope:
    return Envelope("src", TOPIC, b"{}", received_us)


def test_same_time_in_one_batch_first_wins_everywhere() -> None:
    """Kind: SAME-TIME CLASH DISAGREES (item 3), within one batch."""
    batch = Batch(QuarantineThrottle(100))
    t = NOW_US - 1000
    batch.add(envelope(), reading(t, temp_c=10))
    batch.add(envelope(), reading(t, temp_c=99))
    batch.add(envelope(), heartbeat())
    assert (batch.times, batch.duplicates_in_batch) == ([t], 1)
    _, _, _, last_reading, last_heartbeat, metrics = batch.device_state_columns()
    assert (last_reading, last_heartbeat, metrics) == ([t], [NOW_US], ['{"temp_c":10}'])
    fed = batch.evaluator_records()
    assert [(r["type"], r["metrics"]) for r in fed] == [
        ("reading", {"temp_c": 10}),
        ("heartbeat", {}),
    ]


def test_only_stored_readings_shape_the_latest_state_and_the_evaluator_feed() -> None:
    batch = Batch(QuarantineThrottle(100))
    batch.add(envelope(), reading(NOW_US - 2, a=1.5))
    batch.add(envelope(), reading(NOW_US - 1, a=2.5))  # already in the table: not stored
    stored = {("t1", "d1", NOW_US - 2)}
    _, _, _, last_reading, _, metrics = batch.device_state_columns(stored)
    assert (last_reading, metrics) == ([NOW_US - 2], ['{"a":1.5}'])
    assert [r["metrics"] for r in batch.evaluator_records(stored)] == [{"a": 1.5}]
    nothing = batch.device_state_columns(set())
    assert (nothing[3], nothing[5]) == ([None], ["{}"])  # liveness only: last_seen still set
    assert nothing[2] == [NOW_US]


def test_halves_keep_every_message_and_the_throttle_decisions() -> None:
    """Bisecting (item 7) must not change what is stored or counted."""
    batch = Batch(QuarantineThrottle(1))
    bad = Rejected(Reason.BAD_JSON, "x", "t1", "d1")
    validator = Validator(lambda t, d: "active", RateLimiter(1, 3), TimeWindow(10**9, 10**12))
    verdicts: dict[bytes, Verdict] = {}
    for i in range(3):
        batch.add(envelope(), bad)
        payload = b'{"ts": %d, "metrics": {"a": %d}}' % (NOW_US // 1000 - i, i)
        verdicts[payload] = validator.validate(TOPIC, payload, NOW_US)
        batch.add(Envelope("src", TOPIC, payload, NOW_US), verdicts[payload])
    retained = Envelope("src", TOPIC, b"{}", NOW_US, retained=True)
    batch.add_retained(retained)

    def revalidate(e: Envelope) -> Verdict:  # the rate limiter's tokens are spent by now
        return validator.validate(e.topic, e.payload, e.received_us, rate_limit=False)

    first, second = batch.halves(revalidate)
    assert first.envelopes + second.envelopes == batch.envelopes
    assert len(first.quarantine) + len(second.quarantine) == len(batch.quarantine) == 1
    assert first.quarantined + second.quarantined == batch.quarantined
    assert sorted(first.times + second.times) == sorted(batch.times)
    assert first.retained + second.retained == 1


def test_rejected_by_storage_is_attributed_to_the_topics_device() -> None:
    batch = Batch(QuarantineThrottle(100))
    batch.add(envelope(), reading(NOW_US, a=1))
    rejected = batch.rejected_by_storage("23514: check")
    assert [(q[1], q[2], q[4], q[5]) for q in rejected.quarantine] == [
        ("t1", "d1", "STORAGE_REJECTED", "23514: check")
    ]
    assert rejected.times == []
