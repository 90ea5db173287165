"""The payload contract without I/O."""

from __future__ import annotations

import time

import pytest

from fleetpulse.ingest.domain import (
    Accepted,
    DeviceStatus,
    RateLimiter,
    Reason,
    Rejected,
    TimeWindow,
    Validator,
    parse_topic,
)

NOW_US = int(time.time() * 1_000_000)
TOPIC = "tenant/t1/device/d1/telemetry"
REGISTRY: dict[tuple[str, str], DeviceStatus] = {
    ("t1", "d1"): "active",
    ("t1", "old"): "decommissioned",
}


def validator(rate: float = 1000.0, burst: int = 1000) -> Validator:
    return Validator(
        lambda t, d: REGISTRY.get((t, d)),
        RateLimiter(rate, burst),
        TimeWindow(300_000_000, 30 * 86_400_000_000),
    )


def reason(topic: str, payload: bytes) -> Reason | None:
    verdict = validator().validate(topic, payload, NOW_US)
    return verdict.reason if isinstance(verdict, Rejected) else None


def test_parse_topic() -> None:
    assert parse_topic(TOPIC) is not None
    for bad in (
        "tenant/t1/device/d1",
        "tenant/t1/device/d1/other",
        "x/t1/device/d1/telemetry",
        "tenant/t 1/device/d1/telemetry",
        "tenant/t1/device/d1/telemetry/x",
        "tenant//device/d1/heartbeat",
    ):
        assert parse_topic(bad) is None, bad


def test_single_reading_with_epoch_ms_and_iso() -> None:
    ms = NOW_US // 1000
    verdict = validator().validate(
        TOPIC, b'{"ts": %d, "seq": 4, "metrics": {"temp_c": 21.5, "door": false}}' % ms, NOW_US
    )
    assert isinstance(verdict, Accepted)
    (record,) = verdict.records
    assert (record.time_us, record.seq, record.metrics) == (
        ms * 1000,
        4,
        {"temp_c": 21.5, "door": False},
    )
    iso = validator().validate(
        TOPIC, b'{"ts": "2026-01-01T00:00:00.5Z", "metrics": {}}', 1767225600_000_000
    )
    assert isinstance(iso, Accepted)
    assert iso.records[0].time_us == 1767225600_500_000


def test_reading_without_ts_gets_receive_time() -> None:
    verdict = validator().validate(TOPIC, b'{"metrics": {"a": 1}}', NOW_US)
    assert isinstance(verdict, Accepted)
    assert verdict.records[0].time_us == NOW_US


def test_batch_and_heartbeat() -> None:
    ms = NOW_US // 1000
    batch = b'{"readings": [%s]}' % b",".join(
        b'{"ts":%d,"metrics":{"a":%d}}' % (ms - i, i) for i in range(400)
    )
    verdict = validator().validate(TOPIC, batch, NOW_US)
    assert isinstance(verdict, Accepted)
    assert len(verdict.records) == 400
    heartbeat = validator().validate("tenant/t1/device/d1/heartbeat", b"{}", NOW_US)
    assert isinstance(heartbeat, Accepted)
    assert heartbeat.records[0].kind == "heartbeat"


@pytest.mark.parametrize(
    ("topic", "payload", "expected"),
    [
        ("tenant/t1/device/d1/bogus", b"{}", Reason.BAD_TOPIC),
        (TOPIC, b"{" * 20_000, Reason.PAYLOAD_TOO_LARGE),
        (TOPIC, b'{"metrics": ', Reason.BAD_JSON),
        (TOPIC, b'{"metrics": {"a": NaN}}', Reason.BAD_JSON),
        (TOPIC, b'{"metrics": {"a": Infinity}}', Reason.BAD_JSON),
        (TOPIC, b'{"metrics": {"a": 1e999}}', Reason.SCHEMA_INVALID),
        (TOPIC, b'\xff\xfe{"metrics": {}}', Reason.BAD_JSON),
        (TOPIC, b'{"metrics": {"a\xff": 1}}', Reason.BAD_JSON),
        (TOPIC, b'{"metrics": {"a": "warm"}}', Reason.SCHEMA_INVALID),
        (TOPIC, b'{"metrics": {"Bad-Name": 1}}', Reason.SCHEMA_INVALID),
        (TOPIC, b'{"seq": -1, "metrics": {}}', Reason.SCHEMA_INVALID),
        (TOPIC, b'{"ts": true, "metrics": {}}', Reason.SCHEMA_INVALID),
        (TOPIC, b'{"x": ' + b"[" * 5000 + b"]" * 5000 + b"}", Reason.SCHEMA_INVALID),
        (TOPIC, b"[" * 5000 + b"]" * 5000, Reason.SCHEMA_INVALID),
        (TOPIC, b'{"readings": [{"metrics": {"a": 1}}]}', Reason.SCHEMA_INVALID),
        (TOPIC, b'{"ts": 1, "metrics": {}}', Reason.TIMESTAMP_OUT_OF_RANGE),
        (TOPIC, b'{"ts": "2999-01-01T00:00:00Z", "metrics": {}}', Reason.TIMESTAMP_OUT_OF_RANGE),
        ("tenant/t1/device/nope/telemetry", b"{}", Reason.UNKNOWN_DEVICE),
        ("tenant/t2/device/d1/telemetry", b"{}", Reason.UNKNOWN_DEVICE),
        ("tenant/t1/device/old/telemetry", b"{}", Reason.DEVICE_DECOMMISSIONED),
    ],
)
def test_rejections(topic: str, payload: bytes, expected: Reason) -> None:
    assert reason(topic, payload) == expected


def test_too_many_metrics_and_readings() -> None:
    metrics = ",".join(f'"m{i}": {i}' for i in range(65)).encode()
    assert reason(TOPIC, b'{"metrics": {%s}}' % metrics) == Reason.SCHEMA_INVALID
    ms = NOW_US // 1000
    many = b'{"readings": [%s]}' % b",".join(b'{"ts":%d}' % (ms - i) for i in range(501))
    assert reason(TOPIC, many) == Reason.SCHEMA_INVALID


def test_rate_limiter_refills() -> None:
    limiter = RateLimiter(rate=20, burst=100)
    key = ("t", "d")
    assert sum(limiter.allow(key, 0.0) for _ in range(150)) == 100
    assert sum(limiter.allow(key, 1.0) for _ in range(50)) == 20
    assert limiter.allow(("t", "other"), 1.0)


def test_rate_limited_message_is_rejected() -> None:
    v = validator(rate=1, burst=2)
    verdicts = [v.validate(TOPIC, b"{}", NOW_US) for _ in range(3)]
    assert isinstance(verdicts[2], Rejected)
    assert verdicts[2].reason == Reason.RATE_LIMITED
