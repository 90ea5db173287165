"""Binary COPY rows for telemetry_readings, read back field by field (PostgreSQL's format)."""

from __future__ import annotations

import struct

import pytest

from fleetpulse.ingest.rows import PG_EPOCH_US, Group, Shape, group_readings, metric_keys


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


def test_readings_pack_as_the_columns_of_telemetry_readings() -> None:
    metrics: dict[str, float | bool] = {"temp": 21.5, "door": True, "rpm": 1200.0}
    other: dict[str, float | bool] = {"temp": -1.25, "door": False, "rpm": 0.0}
    groups = group_readings(
        [
            (PG_EPOCH_US + 5, PG_EPOCH_US + 6, 42, "acme", "d1", metrics),
            (PG_EPOCH_US + 7, PG_EPOCH_US + 8, 43, "acme", "d2", other),
        ],
        {("acme", "d1"): 11, ("acme", "d2"): 12},
    )
    ((key, group),) = groups.items()
    assert metric_keys(key) == [("temp", False), ("door", True), ("rpm", False)]
    first, second = _rows(Shape.of([7, 3, 9], with_seq=True).pack(group))
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
    groups = group_readings([(PG_EPOCH_US, PG_EPOCH_US, None, "t", "d", {})], {("t", "d"): 1})
    ((key, group),) = groups.items()
    (fields,) = _rows(Shape.of([], with_seq=not key[-1]).pack(group))
    assert fields[2] is None  # positive control above: a seq packs as 8 bytes
    assert _array(fields[4] or b"", "i") == [] and _array(fields[5] or b"", "d") == []


def test_readings_differing_in_names_order_types_or_seq_are_other_shapes() -> None:
    reading = (PG_EPOCH_US, PG_EPOCH_US, None, "t", "d")
    keys = {("t", "d"): 1}
    alike = group_readings([(*reading, {"a": 1.0}), (*reading, {"a": 5.0})], keys)
    assert [len(g.times) for g in alike.values()] == [2]  # control: one shape
    differing = [{"on": 1.0}, {"on": True}, {"a": 1.0, "b": 2.0}, {"b": 2.0, "a": 1.0}]
    assert len(group_readings([(*reading, m) for m in differing], keys)) == 4
    with_seq = (PG_EPOCH_US, PG_EPOCH_US, 1, "t", "d", {"a": 1.0})
    assert len(group_readings([(*reading, {"a": 1.0}), with_seq], keys)) == 2


def test_a_group_with_other_values_than_its_shape_is_refused() -> None:
    group = Group([PG_EPOCH_US], [PG_EPOCH_US], [None], [1], [1.0])
    assert _rows(Shape.of([1], with_seq=False).pack(group))  # control
    group.values.append(2.0)
    with pytest.raises(ValueError, match="reshape"):
        Shape.of([1], with_seq=False).pack(group)
