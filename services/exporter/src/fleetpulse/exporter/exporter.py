"""The export use case: claim a range, write its files, then commit the checkpoint."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from fleetpulse.exporter.files import (
    Compression,
    Dataset,
    ExportRange,
    FilePlanner,
    Partition,
    parquet_bytes,
    split_rows,
)
from fleetpulse.exporter.lake import ObjectStore
from fleetpulse.exporter.schema import events_table, telemetry_table
from fleetpulse.exporter.store import PostgresExportStore

log = logging.getLogger(__name__)
Chunks = AsyncIterator[tuple[Partition, Sequence[Any]]]


@dataclass(frozen=True, slots=True)
class ExportResult:
    """What one range wrote: ``files`` objects holding ``rows`` rows."""

    dataset: Dataset
    start: int
    until: int
    files: int
    rows: int


@dataclass(frozen=True, slots=True)
class ExportOptions:
    prefix: str = ""
    rows_per_file: int = 500_000
    compression: Compression = "zstd"


class Exporter:
    """Exports the event log and telemetry into the lake, each range exactly once.

    A range is written in three steps: fix it in the checkpoint (``pending_until``), put every
    file (keys derive from the range), commit the checkpoint. A crash before the commit leaves
    the range pending; the next run rewrites the same keys with the same rows.
    """

    def __init__(
        self, store: PostgresExportStore, lake: ObjectStore, options: ExportOptions
    ) -> None:
        self._store = store
        self._lake = lake
        self._options = options

    async def export_all(self, stop: asyncio.Event | None = None) -> list[ExportResult]:
        """Events until caught up, then one telemetry range (to the current watermark).

        Returns the ranges that wrote rows (an empty telemetry range still moves the checkpoint).
        Once ``stop`` is set no further range is started (the one in flight is finished).
        """
        stopping = stop.is_set if stop is not None else lambda: False
        results = []
        while not stopping() and (result := await self.export_range("events")) is not None:
            results.append(result)
        if stopping():
            return results
        telemetry = await self.export_range("telemetry")
        return results + ([telemetry] if telemetry and telemetry.rows else [])

    async def export_range(self, dataset: Dataset) -> ExportResult | None:
        export = await self._store.claim(dataset, self._options.rows_per_file)
        if export is None:
            return None
        files, rows = await self._write(export)
        if not await self._store.commit(export, files, rows):
            log.warning("export range committed by another exporter", extra={"dataset": dataset})
        log.info(
            "exported range",
            extra={
                "dataset": dataset,
                "start": export.start,
                "until": export.until,
                "files": files,
                "rows": rows,
            },
        )
        return ExportResult(dataset, export.start, export.until, files, rows)

    async def _write(self, export: ExportRange) -> tuple[int, int]:
        planner = FilePlanner(self._options.prefix, export)
        convert = events_table if export.dataset == "events" else telemetry_table
        files = rows = 0
        async for partition, chunk in self._chunks(export):
            planned = planner.plan(partition, chunk)
            await self._lake.put(planned.key, self._encode(convert, planned.rows))
            files, rows = files + 1, rows + len(planned.rows)
        return files, rows

    def _chunks(self, export: ExportRange) -> Chunks:
        if export.dataset == "telemetry":
            return self._store.telemetry_partitions(export)
        return self._event_chunks(export)

    async def _event_chunks(self, export: ExportRange) -> Chunks:
        grouped = await self._store.event_partitions(export)
        for partition, chunk in split_rows(grouped, export.rows_per_file):
            yield partition, chunk

    def _encode(self, convert: Callable[[Sequence[Any]], pa.Table], rows: Iterable[Any]) -> bytes:
        return parquet_bytes(convert(list(rows)), self._options.compression)
