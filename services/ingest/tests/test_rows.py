"""Binary COPY rows for telemetry_readings, read back field by field (PostgreSQL's format)."""

from __future__ import annotations

import struct

import pytest

from fleetpulse.ingest.rows import PG_EPOCH_US, Shape, metric_keys, shape_key


def _rows(data: bytes) -> list[list[bytes | None]]:
    rows, at = [], 0
    while at < len(data):
        (count,) = struct.unpack_from("!h", data, at)
        at, row = at + 2, []
        for _ in range(count):
            (size,) = struct.unpack_from("!i", data, at)
            at += 4
            row.append(None if size < 0 else data[at : at + size])
            at += max(size, 0)
        rows.append(row)
    assert at == len(data)
    return rows


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
    other: dict[str, float | bool] = {"temp": -1.25, "door": False, "rpm": 0.0}
    data = Shape.of([7, 3, 9]).pack(
        [PG_EPOCH_US + 5, PG_EPOCH_US + 7],
        [PG_EPOCH_US + 6, PG_EPOCH_US + 8],
        [42, 43],
        [11, 12],
        [metrics.values(), other.values()],
    )
    first, second = _rows(data)
    time, received, seq, device, ids, values = first
    assert struct.unpack("!q", time or b"") == (5,)
    assert struct.unpack("!q", received or b"") == (6,)
    assert struct.unpack("!q", seq or b"") == (42,)
    assert struct.unpack("!i", device or b"") == (11,)
    assert _array(ids or b"", "i") == [7, 3, 9]
    assert _array(values or b"", "d") == [21.5, 1.0, 1200.0]
    assert struct.unpack("!q", second[0] or b"") == (7,)
    assert struct.unpack("!i", second[3] or b"") == (12,)
    assert _array(second[5] or b"", "d") == [-1.25, 0.0, 0.0]


def test_no_seq_is_null_and_no_metrics_are_empty_arrays() -> None:
    (fields,) = _rows(Shape.of([]).pack([PG_EPOCH_US], [PG_EPOCH_US], None, [1], [[]]))
    assert fields[2] is None  # positive control above: a seq packs as 8 bytes
    assert _array(fields[4] or b"", "i") == [] and _array(fields[5] or b"", "d") == []


def test_the_same_names_with_a_boolean_are_another_shape() -> None:
    assert shape_key({"on": 1.0}) != shape_key({"on": True})
    assert shape_key({"a": 1.0, "b": 2.0}) != shape_key({"b": 2.0, "a": 1.0})  # payload order
    assert shape_key({"a": 1.0}) == shape_key({"a": 5.0})


def test_a_reading_with_more_values_than_its_shape_is_refused() -> None:
    shape = Shape.of([1])
    assert _rows(shape.pack([PG_EPOCH_US], [PG_EPOCH_US], None, [1], [[1.0]]))  # control
    with pytest.raises(ValueError, match="values"):
        shape.pack([PG_EPOCH_US], [PG_EPOCH_US], None, [1], [[1.0, 2.0]])
