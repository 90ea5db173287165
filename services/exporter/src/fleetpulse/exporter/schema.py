"""The lake's file schemas and the pure conversion of database rows into Arrow tables.

Both datasets are Hive-partitioned by ``tenant_id`` and ``date`` (UTC, ``YYYY-MM-DD``); the
partition columns live in the object key, not in the files. The Glue tables in
``infra/terraform/lake.tf`` declare the same columns (a test compares them).

- telemetry: one row per reading. Metrics whose names are in :data:`KNOWN_METRICS` get a typed
  column; any other metric (or a known one of an unexpected type) goes to ``other_metrics``
  (numbers) or ``other_flags`` (booleans), so nothing is dropped.
- events: one row per event of the log; ``data`` and ``metadata`` are JSON text.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any

import pyarrow as pa

PARTITION_COLUMNS = ("tenant_id", "date")
TIMESTAMP = pa.timestamp("us", tz="UTC")

# Metric names the platform's devices and simulator publish; extend as fleets standardise.
KNOWN_METRICS: dict[str, pa.DataType] = {
    "temperature_c": pa.float64(),
    "temp_c": pa.float64(),
    "humidity_pct": pa.float64(),
    "battery_pct": pa.float64(),
    "battery_v": pa.float64(),
    "pressure_hpa": pa.float64(),
    "speed_kmh": pa.float64(),
    "door_open": pa.bool_(),
}

TELEMETRY_SCHEMA = pa.schema(
    [
        pa.field("device_id", pa.string(), nullable=False),
        pa.field("time", TIMESTAMP, nullable=False),
        pa.field("seq", pa.int64()),
        pa.field("received_at", TIMESTAMP, nullable=False),
        *(pa.field(name, kind) for name, kind in KNOWN_METRICS.items()),
        pa.field("other_metrics", pa.map_(pa.string(), pa.float64())),
        pa.field("other_flags", pa.map_(pa.string(), pa.bool_())),
    ]
)

EVENTS_SCHEMA = pa.schema(
    [
        pa.field("position", pa.int64(), nullable=False),
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("stream_id", pa.string(), nullable=False),
        pa.field("version", pa.int32(), nullable=False),
        pa.field("type", pa.string(), nullable=False),
        pa.field("data", pa.string(), nullable=False),
        pa.field("metadata", pa.string(), nullable=False),
        pa.field("recorded_at", TIMESTAMP, nullable=False),
    ]
)

SCHEMAS = {"telemetry": TELEMETRY_SCHEMA, "events": EVENTS_SCHEMA}


def partition_date(moment: datetime) -> date:
    """The ``date`` partition of a timestamp: its UTC calendar day."""
    return moment.astimezone(UTC).date()


def _metrics(raw: Any) -> dict[str, Any]:
    return json.loads(raw) if isinstance(raw, str) else dict(raw or {})


def _split_metrics(
    metrics: Mapping[str, Any],
) -> tuple[dict[str, Any], dict[str, float], dict[str, bool]]:
    typed: dict[str, Any] = {}
    numbers: dict[str, float] = {}
    flags: dict[str, bool] = {}
    for name, value in metrics.items():
        kind = KNOWN_METRICS.get(name)
        if isinstance(value, bool):
            if kind == pa.bool_():
                typed[name] = value
            else:
                flags[name] = value
        elif kind == pa.float64():
            typed[name] = float(value)
        else:
            numbers[name] = float(value)
    return typed, numbers, flags


def telemetry_table(rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    """Rows ``{device_id, time, seq, received_at, metrics}`` (metrics: dict or JSON text)."""
    columns: dict[str, list[Any]] = {name: [] for name in TELEMETRY_SCHEMA.names}
    for row in rows:
        typed, numbers, flags = _split_metrics(_metrics(row["metrics"]))
        columns["device_id"].append(row["device_id"])
        columns["time"].append(row["time"])
        columns["seq"].append(row["seq"])
        columns["received_at"].append(row["received_at"])
        for name in KNOWN_METRICS:
            columns[name].append(typed.get(name))
        columns["other_metrics"].append(list(numbers.items()) or None)
        columns["other_flags"].append(list(flags.items()) or None)
    return pa.table(columns, schema=TELEMETRY_SCHEMA)


def events_table(rows: Iterable[Mapping[str, Any]]) -> pa.Table:
    """Rows ``{position, event_id, stream_id, version, type, data, metadata, recorded_at}``."""
    columns: dict[str, list[Any]] = {name: [] for name in EVENTS_SCHEMA.names}
    for row in rows:
        for name in EVENTS_SCHEMA.names:
            value = row[name]
            if name in ("data", "metadata") and not isinstance(value, str):
                value = json.dumps(value, separators=(",", ":"), sort_keys=True)
            elif name == "event_id":
                value = str(value)
            columns[name].append(value)
    return pa.table(columns, schema=EVENTS_SCHEMA)


def hive_type(kind: pa.DataType) -> str:
    """The Glue/Athena (Hive) type name of an Arrow type used in :data:`SCHEMAS`."""
    if pa.types.is_map(kind):
        return f"map<{hive_type(kind.key_type)},{hive_type(kind.item_type)}>"
    names = {
        pa.string(): "string",
        pa.int64(): "bigint",
        pa.int32(): "int",
        pa.float64(): "double",
        pa.bool_(): "boolean",
        TIMESTAMP: "timestamp",
    }
    return names[kind]
