"""The evaluator-queue record: what ingest encodes is what the evaluator decodes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from fleetpulse.common.contracts.records import Record, decode_record, encode_record


def test_a_reading_survives_the_queue() -> None:
    raw = encode_record(
        "reading", "acme", "d1", "2026-01-01T00:00:00+00:00", 7, {"temp_c": 21.5, "on": True},
        "2026-01-01T00:00:01+00:00",
    )  # fmt: skip
    assert raw == {
        "type": "reading", "tenant_id": "acme", "device_id": "d1",
        "ts": "2026-01-01T00:00:00+00:00", "seq": 7, "metrics": {"temp_c": 21.5, "on": True},
        "received_at": "2026-01-01T00:00:01+00:00",
    }  # fmt: skip
    assert decode_record(raw, "00-trace") == Record(
        "acme",
        "d1",
        datetime(2026, 1, 1, tzinfo=UTC),
        {"temp_c": 21.5, "on": True},
        "reading",
        "00-trace",
        datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC),
    )


def test_older_and_other_shapes_still_decode() -> None:
    heartbeat = decode_record({"type": "heartbeat", "tenant_id": "t", "device_id": "d",
                               "ts": 1767225600000})  # fmt: skip
    assert heartbeat.kind == "heartbeat" and heartbeat.metrics == {}
    assert heartbeat.ts == datetime(2026, 1, 1, tzinfo=UTC) and heartbeat.received_at is None
    naive = decode_record({"tenant_id": "t", "device_id": "d", "ts": "2026-01-01T00:00:00"})
    assert naive.kind == "reading" and naive.ts.tzinfo is UTC


@pytest.mark.parametrize(
    "raw",
    [
        {"type": "alarm", "tenant_id": "t", "device_id": "d", "ts": 0},
        {"tenant_id": "t", "device_id": "d", "ts": 0, "metrics": [1]},
        {"tenant_id": "t", "ts": 0},
        {"tenant_id": "t", "device_id": "d", "ts": None},
    ],
)
def test_malformed_records_raise(raw: dict[str, object]) -> None:
    with pytest.raises((KeyError, TypeError, ValueError)):
        decode_record(raw)
