"""Export ranges, deterministic object keys and Parquet encoding (pure; no I/O).

An export writes one range of a stream: events with ``done < position <= until``, telemetry with
``done <= ingest_xid < until``. The range is fixed in the checkpoint before the first object is
written and every object key derives from it (and from the partition and the file's index), so
re-running a range after a crash writes the same keys again: S3 replaces each object atomically,
and a query sees either the old or the new copy of the same rows, never a partial file and never
two copies.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq

Dataset = Literal["events", "telemetry"]
Compression = Literal["zstd", "snappy"]


@dataclass(frozen=True, slots=True)
class ExportRange:
    """``[start, until)`` or ``(start, until]`` of a stream (see the module docstring)."""

    dataset: Dataset
    start: int
    until: int
    rows_per_file: int


@dataclass(frozen=True, slots=True)
class Coalescing:
    """When a new range is worth writing: ``min_rows`` new rows, or ``max_delay_s`` since the
    last commit. Waiting for rows keeps files from being tiny (Athena reads a few big files far
    faster than many small ones) without ever rewriting or deleting a visible file.
    """

    min_rows: int = 1
    max_delay_s: float = 0.0

    def due(self, rows: int, seconds_since_commit: float | None) -> bool:
        """``seconds_since_commit`` None: nothing committed yet (always due)."""
        if seconds_since_commit is None or rows >= self.min_rows:
            return True
        return seconds_since_commit >= self.max_delay_s


@dataclass(frozen=True, slots=True)
class Partition:
    tenant_id: str
    date: date

    def path(self, dataset: Dataset) -> str:
        return f"{dataset}/tenant_id={self.tenant_id}/date={self.date.isoformat()}/"


@dataclass(frozen=True, slots=True)
class PlannedFile:
    """One object: its key and its rows (in the order they are written)."""

    key: str
    partition: Partition
    rows: Sequence[Any]


def object_key(prefix: str, export: ExportRange, partition: Partition, index: int) -> str:
    """``{prefix}{dataset}/tenant_id=T/date=D/part-{start}-{until}-{index}.parquet``.

    Zero-padded so keys sort in export order.
    """
    name = f"part-{export.start:020d}-{export.until:020d}-{index:05d}.parquet"
    return prefix + partition.path(export.dataset) + name


def split_rows(
    grouped: Iterable[tuple[Partition, Sequence[Any]]], size: int
) -> Iterator[tuple[Partition, Sequence[Any]]]:
    """Each partition's rows in chunks of at most ``size``."""
    for partition, rows in grouped:
        for first in range(0, len(rows), size):
            yield partition, rows[first : first + size]


class FilePlanner:
    """Names the chunks of one range: the n-th chunk of a partition becomes its file ``n``.

    Fed the same chunks in the same order (a range's rows are read in a deterministic order),
    it yields the same keys with the same rows on every run.
    """

    def __init__(self, prefix: str, export: ExportRange) -> None:
        self._prefix = prefix
        self._export = export
        self._next: dict[Partition, int] = {}

    def plan(self, partition: Partition, rows: Sequence[Any]) -> PlannedFile:
        index = self._next.get(partition, 0)
        self._next[partition] = index + 1
        return PlannedFile(
            object_key(self._prefix, self._export, partition, index), partition, rows
        )


def parquet_bytes(table: pa.Table, compression: Compression = "zstd") -> bytes:
    """The table as one Parquet file (row groups of at most 128k rows)."""
    sink = io.BytesIO()
    pq.write_table(table, sink, compression=compression, row_group_size=128 * 1024)
    return sink.getvalue()
