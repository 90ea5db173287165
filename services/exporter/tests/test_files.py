"""Pure parts: keys, file planning, coalescing, Arrow conversion (no I/O)."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime

import pyarrow.parquet as pq
import pytest

from fleetpulse.exporter.files import (
    Coalescing,
    ExportRange,
    FilePlanner,
    Partition,
    object_key,
    parquet_bytes,
    split_rows,
)
from fleetpulse.exporter.schema import (
    KNOWN_METRICS,
    TELEMETRY_SCHEMA,
    telemetry_select_list,
    telemetry_table,
)

RANGE = ExportRange("telemetry", 10, 20, rows_per_file=2)
P1 = Partition("t1", date(2026, 11, 20))
P2 = Partition("t2", date(2026, 11, 20))


def test_keys_derive_from_range_partition_and_index_only() -> None:
    key = object_key("lake/", RANGE, P1, 3)
    assert key == (
        "lake/telemetry/tenant_id=t1/date=2026-11-20/"
        "part-00000000000000000010-00000000000000000020-00003.parquet"
    )
    assert object_key("lake/", RANGE, P1, 3) == key
    assert object_key("lake/", ExportRange("telemetry", 10, 21, 2), P1, 3) != key


def test_planner_numbers_each_partitions_chunks_from_zero() -> None:
    chunks = list(split_rows([(P1, [1, 2, 3]), (P2, [4])], RANGE.rows_per_file))
    planner = FilePlanner("", RANGE)
    planned = [planner.plan(p, rows) for p, rows in chunks]
    assert [(f.key[-13:], list(f.rows)) for f in planned] == [
        ("00000.parquet", [1, 2]),
        ("00001.parquet", [3]),
        ("00000.parquet", [4]),
    ]


@pytest.mark.parametrize(
    ("rows", "age", "due"),
    [(5, 1.0, True), (4, None, True), (4, 9.9, False), (4, 10.0, True), (0, 10.0, True)],
)
def test_coalescing(rows: int, age: float | None, due: bool) -> None:
    assert Coalescing(min_rows=5, max_delay_s=10.0).due(rows, age) is due


def test_flattened_rows_become_an_arrow_table_with_typed_columns_and_maps() -> None:
    at = datetime(2026, 11, 20, tzinfo=UTC)
    empty = dict.fromkeys(KNOWN_METRICS)
    rows = [
        {
            "device_id": "d1", "time": at, "seq": 1, "received_at": at, **empty,
            "temp_c": 1.0, "door_open": True,
            "other_metrics_keys": ["rpm"], "other_metrics_values": [3000.0],
            "other_flags_keys": ["armed", "battery_v"], "other_flags_values": [False, False],
        },
        {
            "device_id": "d2", "time": at, "seq": None, "received_at": at, **empty,
            "other_metrics_keys": None, "other_metrics_values": None,
            "other_flags_keys": None, "other_flags_values": None,
        },
    ]  # fmt: skip
    table = pq.read_table(io.BytesIO(parquet_bytes(telemetry_table(rows))))
    first, second = table.to_pylist()
    assert table.schema.equals(TELEMETRY_SCHEMA, check_metadata=False)
    assert (first["temp_c"], first["door_open"], first["battery_v"]) == (1.0, True, None)
    assert first["other_metrics"] == [("rpm", 3000.0)]
    assert first["other_flags"] == [("armed", False), ("battery_v", False)]
    assert (second["other_metrics"], second["other_flags"], second["seq"]) == (None, None, None)


def test_the_flattening_sql_names_only_metric_shaped_keys() -> None:
    sql = telemetry_select_list()
    assert all(f" AS {name}" in sql for name in KNOWN_METRICS)
    assert "m.other_metrics_keys" in sql and "m.other_flags_values" in sql
