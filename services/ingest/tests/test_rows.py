"""Binary COPY rows for telemetry_readings, read back field by field (PostgreSQL's format)."""

from __future__ import annotations

import struct

import pytest

from fleetpulse.ingest.rows import PG_EPOCH_US, Shape, metric_keys, pack_row, shape_key


def _fields(row: bytes) -> list[bytes | None]:
    (count,) = struct.unpack_from("!h", row)
    at, out = 2, []
    for _ in range(count):
        (size,) = struct.unpack_from("!i", row, at)
        at += 4
        out.append(None if size < 0 else row[at : at + size])
        at += max(size, 0)
    assert at == len(row)
    return out


def _array(field: bytes, kind: str) -> list[float]:
    ndim, _, _ = struct.unpack_from("!iii", field)
    if ndim == 0:
        return []
    n, _ = struct.unpack_from("!ii", field, 12)
    return [
        struct.unpack_from(f"!i{kind}", field, 20 + i * (4 + struct.calcsize(f"!{kind}")))[1]
        for i in range(n)
    ]


def test_a_reading_packs_as_the_columns_of_telemetry_readings() -> None:
    metrics: dict[str, float | bool] = {"temp": 21.5, "door": True, "rpm": 1200.0}
    key = shape_key(metrics)
    assert metric_keys(key) == [("temp", False), ("door", True), ("rpm", False)]
    row = pack_row(Shape.of([7, 3, 9]), PG_EPOCH_US + 5, PG_EPOCH_US + 6, 42, 11, metrics.values())
    time, received, seq, device, ids, values = _fields(row)
    assert struct.unpack("!q", time or b"") == (5,)
    assert struct.unpack("!q", received or b"") == (6,)
    assert struct.unpack("!q", seq or b"") == (42,)
    assert struct.unpack("!i", device or b"") == (11,)
    assert _array(ids or b"", "i") == [7, 3, 9]
    assert _array(values or b"", "d") == [21.5, 1.0, 1200.0]


def test_no_seq_is_null_and_no_metrics_are_empty_arrays() -> None:
    row = pack_row(Shape.of([]), PG_EPOCH_US, PG_EPOCH_US, None, 1, [])
    fields = _fields(row)
    assert fields[2] is None  # positive control above: a seq packs as 8 bytes
    assert _array(fields[4] or b"", "i") == [] and _array(fields[5] or b"", "d") == []


def test_the_same_names_with_a_boolean_are_another_shape() -> None:
    assert shape_key({"on": 1.0}) != shape_key({"on": True})
    assert shape_key({"a": 1.0, "b": 2.0}) != shape_key({"b": 2.0, "a": 1.0})  # payload order
    assert shape_key({"a": 1.0}) == shape_key({"a": 5.0})


def test_a_reading_with_more_values_than_its_shape_is_refused() -> None:
    with pytest.raises(struct.error):
        pack_row(Shape.of([1]), PG_EPOCH_US, PG_EPOCH_US, None, 1, [1.0, 2.0])
