"""A batch's readings as PostgreSQL binary COPY data for ``telemetry_readings``. Pure.

Binary COPY (https://www.postgresql.org/docs/current/sql-copy.html, "Binary Format") is what
makes the database's share of a reading small: no text to parse, no jsonb to build. The layout
(migration 0700): ``time``, ``received_at`` (timestamptz: int64 microseconds since 2000-01-01),
``seq`` (int8 or NULL), ``device_key`` (int4), ``metric_ids`` (int4[]), ``metric_values``
(float8[], booleans as 1.0/0.0 under the boolean's own metric id).

Readings of one *shape* (the same metric names, each a number or a boolean, in the same order)
and the same NULL-ness of ``seq`` have rows of one fixed size: a NumPy structured dtype
(big-endian, unpadded) lays a whole group out at once, with the constant bytes of its
``metric_ids`` array and ``metric_values`` array header, in C rather than per reading in Python.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

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
#: What makes two readings pack alike: metric names and value types (float or bool), in
#: payload order.
ShapeKey = tuple[tuple[str, ...], tuple[type, ...]]


def shape_key(metrics: Mapping[str, float | bool]) -> ShapeKey:
    return tuple(metrics), tuple(map(type, metrics.values()))


def metric_keys(key: ShapeKey) -> list[MetricKey]:
    return [(name, kind is bool) for name, kind in zip(*key, strict=True)]


@dataclass(frozen=True, slots=True)
class Shape:
    """How readings of one shape pack: the constant array bytes and the row dtypes with and
    without ``seq``."""

    width: int
    arrays: bytes
    with_seq: np.dtype
    without_seq: np.dtype

    @classmethod
    def of(cls, ids: list[int]) -> Shape:
        n = len(ids)
        ids_array = _array_header(_INT4_OID, n, 4) + b"".join(struct.pack("!ii", 4, i) for i in ids)
        arrays = ids_array + _array_header(_FLOAT8_OID, n, 8)
        return cls(n, arrays, _row_dtype(n, len(arrays), True), _row_dtype(n, len(arrays), False))

    def pack(
        self,
        times: Sequence[int],
        received: Sequence[int],
        seqs: Sequence[int | None] | None,
        keys: Sequence[int],
        values: Iterable[Iterable[float]],
    ) -> bytes:
        """Rows for readings of this shape (``values`` per reading in the shape's order, a
        boolean as itself: it packs as 1.0/0.0); ``seqs`` ``None``: every ``seq`` is NULL.
        Raises ``ValueError`` when a reading has another number of values."""
        rows = np.empty(len(times), self.without_seq if seqs is None else self.with_seq)
        rows["ncols"], rows["time_len"], rows["received_len"], rows["key_len"] = 6, 8, 8, 4
        rows["time"] = times
        rows["time"] -= PG_EPOCH_US
        rows["received"] = received
        rows["received"] -= PG_EPOCH_US
        if seqs is None:
            rows["seq_len"] = -1
        else:
            rows["seq_len"], rows["seq"] = 8, seqs
        rows["key"], rows["arrays"] = keys, self.arrays
        if self.width:
            matrix = np.array([list(v) for v in values], dtype=np.float64)
            if matrix.shape != (len(times), self.width):
                raise ValueError(
                    f"readings of {matrix.shape[1:]} values for a shape of {self.width}"
                )
            for i in range(self.width):
                rows[f"len{i}"], rows[f"v{i}"] = 8, matrix[:, i]
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
