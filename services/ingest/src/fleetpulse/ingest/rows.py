"""A batch's readings as PostgreSQL binary COPY data for ``telemetry_readings``. Pure.

Binary COPY (https://www.postgresql.org/docs/current/sql-copy.html#id-1.9.3.55.9.4) is what
makes the database's share of a reading small: no text to parse, no jsonb to build. The layout
(migration 0700): ``time``, ``received_at`` (timestamptz: int64 microseconds since 2000-01-01),
``seq`` (int8 or NULL), ``device_key`` (int4), ``metric_ids`` (int4[]), ``metric_values``
(float8[], booleans as 1.0/0.0 under the boolean's own metric id).

Readings of one *shape* (the same metric names, each a number or a boolean, in the same order)
share one ``struct.Struct`` and the constant bytes of their ``metric_ids`` array and of the
``metric_values`` array header, so a reading costs one ``pack`` call.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import chain

#: Microseconds from the Unix epoch to PostgreSQL's (2000-01-01 UTC).
PG_EPOCH_US = 946_684_800_000_000
HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)
TRAILER = struct.pack("!h", -1)
COLUMNS = ("time", "received_at", "seq", "device_key", "metric_ids", "metric_values")
_INT4_OID = 23
_FLOAT8_OID = 701

#: A metric as interned: its name and whether the device sent a boolean.
MetricKey = tuple[str, bool]
#: What makes two readings pack alike: metric names and value types (float or bool), in
#: payload order.
ShapeKey = tuple[tuple[str, ...], tuple[type, ...]]
#: Length words of float8 array elements, zipped with a reading's values (64 metrics at most).
_EIGHTS = (8,) * 256


def shape_key(metrics: Mapping[str, float | bool]) -> ShapeKey:
    return tuple(metrics), tuple(map(type, metrics.values()))


def metric_keys(key: ShapeKey) -> list[MetricKey]:
    return [(name, kind is bool) for name, kind in zip(*key, strict=True)]


@dataclass(frozen=True, slots=True)
class Shape:
    """How readings of one shape pack: ``with_seq`` / ``without_seq`` take
    ``(time, received, [seq,] key, arrays, 8, v1, 8, v2, ...)``."""

    arrays: bytes
    with_seq: struct.Struct
    without_seq: struct.Struct

    @classmethod
    def of(cls, ids: list[int]) -> Shape:
        n = len(ids)
        ids_array = _array_header(_INT4_OID, n, 4) + b"".join(struct.pack("!ii", 4, i) for i in ids)
        values_header = _array_header(_FLOAT8_OID, n, 8)
        arrays = ids_array + values_header
        tail = f"ii{len(arrays)}s" + "id" * n  # key, arrays, values
        return cls(
            arrays,
            struct.Struct(f"!hiqiqiq{tail}"),  # ncols, time, received_at, seq
            struct.Struct(f"!hiqiqi{tail}"),  # ncols, time, received_at, NULL
        )


def _array_header(oid: int, n: int, width: int) -> bytes:
    """Length word and header of a one-dimensional array without NULLs of ``n`` elements."""
    if n == 0:
        return struct.pack("!iiii", 12, 0, 0, oid)
    return struct.pack("!iiiiii", 20 + n * (4 + width), 1, 0, oid, n, 1)


def pack_row(
    shape: Shape, time_us: int, received_us: int, seq: int | None, key: int, values: Iterable[float]
) -> bytes:
    """One reading's row (``values`` in the shape's order; a boolean packs as 1.0/0.0)."""
    pairs = chain.from_iterable(zip(_EIGHTS, values, strict=False))  # too many: pack refuses
    if seq is None:
        return shape.without_seq.pack(
            6, 8, time_us - PG_EPOCH_US, 8, received_us - PG_EPOCH_US, -1, 4, key,
            shape.arrays, *pairs,
        )  # fmt: skip
    return shape.with_seq.pack(
        6, 8, time_us - PG_EPOCH_US, 8, received_us - PG_EPOCH_US, 8, seq, 4, key,
        shape.arrays, *pairs,
    )  # fmt: skip
