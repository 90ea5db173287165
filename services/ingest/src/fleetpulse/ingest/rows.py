"""A batch's readings as PostgreSQL binary COPY data for ``telemetry_readings``. Pure.

Binary COPY (https://www.postgresql.org/docs/current/sql-copy.html, "Binary Format") is what
makes the database's share of a reading small: no text to parse, no jsonb to build. The layout
(migration 0700): ``time``, ``received_at`` (timestamptz: int64 microseconds since 2000-01-01),
``seq`` (int8 or NULL), ``device_key`` (int4), ``metric_ids`` (int4[]), ``metric_values``
(float8[], booleans as 1.0/0.0 under the boolean's own metric id).

Readings of one *shape* (the same metric names, each a number or a boolean, in the same order,
and the same NULL-ness of ``seq``) have rows of one fixed size: a NumPy structured dtype
(big-endian, unpadded) lays a whole group out at once, with the constant bytes of its
``metric_ids`` array and ``metric_values`` array header, in C rather than per reading in Python.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

#: Microseconds from the Unix epoch to PostgreSQL's (2000-01-01 UTC).
PG_EPOCH_US = 946_684_800_000_000
HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)
TRAILER = struct.pack("!h", -1)
COLUMNS = ("time", "received_at", "seq", "device_key", "metric_ids", "metric_values")
_INT4_OID = 23
_FLOAT8_OID = 701

#: A metric as interned: its name and whether the device sent a boolean.
MetricKey = tuple[str, bool]
#: What makes readings pack alike, one flat tuple: the metric names in payload order, then
#: each value's type (float or bool), then whether ``seq`` is NULL.
ShapeKey = tuple[object, ...]


def shape_key(metrics: Mapping[str, float | bool], seq: int | None) -> ShapeKey:
    return (*metrics, *map(type, metrics.values()), seq is None)


def metric_keys(key: ShapeKey) -> list[MetricKey]:
    n = (len(key) - 1) // 2
    return [(str(key[i]), key[n + i] is bool) for i in range(n)]


@dataclass(slots=True)
class Group:
    """The columns of a batch's readings of one shape; ``values`` flat, row after row."""

    times: list[int] = field(default_factory=list)
    received: list[int] = field(default_factory=list)
    seqs: list[int | None] = field(default_factory=list)
    keys: list[int] = field(default_factory=list)
    values: list[float | bool] = field(default_factory=list)


def group_readings(
    columns: Iterable[tuple[int, int, int | None, str, str, Mapping[str, float | bool]]],
    device_keys: Mapping[tuple[str, str], int],
) -> dict[ShapeKey, Group]:
    """Readings ``(time_us, received_us, seq, tenant, device, metrics)`` by shape, in one pass
    (list appends only: the per-reading work of the write path)."""
    groups: dict[ShapeKey, Group] = {}
    for time_us, received_us, seq, tenant, device, metrics in columns:
        key = (*metrics, *map(type, metrics.values()), seq is None)
        group = groups.get(key)
        if group is None:
            group = groups[key] = Group()
        group.times.append(time_us)
        group.received.append(received_us)
        group.seqs.append(seq)
        group.keys.append(device_keys[(tenant, device)])
        group.values.extend(metrics.values())
    return groups


@dataclass(frozen=True, slots=True)
class Shape:
    """How readings of one shape pack: the constant array bytes and the row dtype."""

    width: int
    arrays: bytes
    dtype: np.dtype
    with_seq: bool

    @classmethod
    def of(cls, ids: list[int], with_seq: bool) -> Shape:
        n = len(ids)
        ids_array = _array_header(_INT4_OID, n, 4) + b"".join(struct.pack("!ii", 4, i) for i in ids)
        arrays = ids_array + _array_header(_FLOAT8_OID, n, 8)
        return cls(n, arrays, _row_dtype(n, len(arrays), with_seq), with_seq)

    def pack(self, group: Group) -> bytes:
        """The group's rows (a boolean packs as 1.0/0.0). Raises ``ValueError`` when the
        group does not hold ``width`` values per reading."""
        rows = np.empty(len(group.times), self.dtype)
        rows["ncols"], rows["time_len"], rows["received_len"], rows["key_len"] = 6, 8, 8, 4
        rows["time"] = group.times
        rows["time"] -= PG_EPOCH_US
        rows["received"] = group.received
        rows["received"] -= PG_EPOCH_US
        if self.with_seq:
            rows["seq_len"], rows["seq"] = 8, group.seqs
        else:
            rows["seq_len"] = -1
        rows["key"], rows["arrays"] = group.keys, self.arrays
        if self.width:
            matrix = np.array(group.values, dtype=np.float64).reshape(len(group.times), self.width)
            for i in range(self.width):
                rows[f"len{i}"], rows[f"v{i}"] = 8, matrix[:, i]
        elif group.values:
            raise ValueError(f"{len(group.values)} values for a shape without metrics")
        return rows.tobytes()


def _row_dtype(n: int, arrays: int, with_seq: bool) -> np.dtype:
    fields = [
        ("ncols", ">i2"),
        ("time_len", ">i4"),
        ("time", ">i8"),
        ("received_len", ">i4"),
        ("received", ">i8"),
        ("seq_len", ">i4"),
        *([("seq", ">i8")] if with_seq else []),
        ("key_len", ">i4"),
        ("key", ">i4"),
        ("arrays", f"S{arrays}"),
    ]
    for i in range(n):
        fields += [(f"len{i}", ">i4"), (f"v{i}", ">f8")]
    return np.dtype(fields)  # a list of fields: packed, no alignment padding


def _array_header(oid: int, n: int, width: int) -> bytes:
    """Length word and header of a one-dimensional array without NULLs of ``n`` elements."""
    if n == 0:
        return struct.pack("!iiii", 12, 0, 0, oid)
    return struct.pack("!iiiiii", 20 + n * (4 + width), 1, 0, oid, n, 1)
