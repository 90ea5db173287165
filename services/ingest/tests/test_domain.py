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
        TOPIC, b'{"ts": "2026-01-01T00:00:00.5Z", "metrics": {"a": 1}}', 1767225600_000_000
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
        (TOPIC, b'{"ts": 1, "metrics": {"a": 1}}', Reason.TIMESTAMP_OUT_OF_RANGE),
        (
            TOPIC,
            b'{"ts": "2999-01-01T00:00:00Z", "metrics": {"a": 1}}',
            Reason.TIMESTAMP_OUT_OF_RANGE,
        ),
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
    many = b'{"readings": [%s]}' % b",".join([b'{"ts":1,"metrics":{"a":1}}'] * 501)
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


# --- issue 12, items 1, 2, 5, 6: what a payload means (pure; the MQTT round trips are in
# test_payload_semantics.py) ------------------------------------------------------------------


def accepted(payload: bytes, topic: str = TOPIC) -> list[dict[str, float | bool]]:
    verdict = validator().validate(topic, payload, NOW_US)
    assert isinstance(verdict, Accepted), verdict
    return [r.metrics for r in verdict.records]


@pytest.mark.parametrize(
    "payload",
    [
        b'{"metrics": {"readings": 5}}',
        b'{"metrics":{"readings":5}}',
        b'{"metrics": {"re\\u0061dings": 5}}',
        b'{"metrics": {"x": 1}, "seq": 3}',
        b'{ "metrics" : { "readings" : 5 } }',
    ],
)
def test_form_is_decided_by_parsed_keys_not_bytes(payload: bytes) -> None:
    """Fault kind: BATCH FORM GUESSED FROM BYTES. A metric (or escaped key) spelled like the
    batch key is still one reading."""
    assert len(accepted(payload)) == 1


@pytest.mark.parametrize(
    "payload",
    [
        b'{"re\\u0061dings": [{"ts": %d, "metrics": {"a": 1}}]}',
        b'{\n "readings" :[{"ts": %d, "metrics": {"a": 1}}]}',
    ],
)
def test_escaped_or_spaced_batch_key_is_a_batch(payload: bytes) -> None:
    """Fault kind: BATCH FORM GUESSED FROM BYTES (the other direction)."""
    assert accepted(payload % (NOW_US // 1000)) == [{"a": 1.0}]


@pytest.mark.parametrize(
    "payload",
    [
        b'{"temp_c": 21.5}',  # another platform's flat format
        b'{"ts": 1, "values": {"temp_c": 21.5}}',  # ThingsBoard-like
        b'{"metrics": {}}',
        b'{"metrics": {"a": 1}, "temp_c": 2}',  # half known: nothing is half stored
        b'{"readings": [{"ts": 1, "metrics": {"a": 1}, "extra": 1}]}',
        b'{"readings": [{"ts": 1}]}',
        b'{"readings": [{"ts": 1, "metrics": {}}]}',
        b'{"readings": []}',
        b'{"readings": [{"ts": 1, "metrics": {"a": 1}}], "metrics": {"b": 1}}',
        b'{"metrics": {"a": 1, "b": {"c": 2}}}',  # nested object
        b'{"metrics": {"a": null}}',
        b'{"metrics": {"a": [1]}}',
        b'{"metrics": {"a": "1"}}',
        b'{"metrics": [1, 2]}',
        b'{"metrics": 5}',
        b"[]",
        b'[{"metrics": {"a": 1}}]',
        b"5",
    ],
)
def test_reading_without_usable_metrics_is_schema_invalid(payload: bytes) -> None:
    """Fault kind: PAYLOAD HALF STORED. No metrics, unknown fields, wrong types: quarantined."""
    assert reason(TOPIC, payload) == Reason.SCHEMA_INVALID


def test_unknown_field_is_named_in_the_reason() -> None:
    verdict = validator().validate(TOPIC, b'{"temp_c": 21.5}', NOW_US)
    assert isinstance(verdict, Rejected)
    assert "temp_c" in verdict.detail


def test_heartbeats_need_no_metrics() -> None:
    heartbeat = "tenant/t1/device/d1/heartbeat"
    assert accepted(b"{}", heartbeat) == [{}]
    assert accepted(b'{"metrics": {}}', heartbeat) == [{}]
    assert reason(heartbeat, b'{"uptime": 5}') == Reason.SCHEMA_INVALID


@pytest.mark.parametrize(
    "value",
    [b"1e308", b"-1e308", b"1.7976931348623157e308", b"1e101", b"-1e101", b"1" + b"0" * 120],
)
def test_values_that_break_aggregates_are_refused(value: bytes) -> None:
    """Fault kind: VALUE OVERFLOWS STORAGE OR QUERIES. Magnitudes whose sums overflow float8."""
    assert reason(TOPIC, b'{"metrics": {"big": %s}}' % value) == Reason.SCHEMA_INVALID


def test_values_within_bounds_and_booleans_are_kept() -> None:
    payload = b'{"metrics": {"a": 1e100, "b": -1e100, "c": 5e-324, "d": true, "e": 0}}'
    assert accepted(payload) == [{"a": 1e100, "b": -1e100, "c": 5e-324, "d": True, "e": 0.0}]


@pytest.mark.parametrize(
    ("topic", "tenant", "device"),
    [
        ("tenant/t1/device/d1/firmware", "t1", "d1"),
        ("tenant/t1/device/d1/telemetry/extra", "t1", "d1"),
        ("tenant/t1/device/d1/", "t1", "d1"),
        ("tenant/t1/device/d1", "t1", "d1"),
        ("tenant/t1/device/d 1/telemetry", "t1", None),
        ("tenant/t1/other", "t1", None),
        ("tenant/t1\n/device/d1/telemetry", None, None),
        ("other/t1/device/d1/telemetry", None, None),
    ],
)
def test_bad_topic_is_attributed_to_the_tenant_and_device_it_names(
    topic: str, tenant: str | None, device: str | None
) -> None:
    """Fault kind: BAD_TOPIC UNATTRIBUTED (the tenant never sees it in its quarantine)."""
    verdict = validator().validate(topic, b'{"metrics": {"a": 1}}', NOW_US)
    assert isinstance(verdict, Rejected)
    assert (verdict.reason, verdict.tenant_id, verdict.device_id) == (
        Reason.BAD_TOPIC,
        tenant,
        device,
    )
