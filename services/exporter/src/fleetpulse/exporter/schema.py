"""The lake's file schemas and the pure conversion of database rows into Arrow tables.

Both datasets are Hive-partitioned by ``tenant_id`` and ``date`` (UTC, ``YYYY-MM-DD``); the
partition columns live in the object key, not in the files. The Glue tables in
``infra/terraform/lake.tf`` declare the same columns (a test compares them).

- telemetry: one row per reading. Metrics whose names are in :data:`KNOWN_METRICS` get a typed
  column; any other metric (or a known one of an unexpected type) goes to ``other_metrics``
  (numbers) or ``other_flags`` (booleans), so nothing is dropped (:func:`telemetry_select_list`).
- events: one row per event of the log; ``data`` and ``metadata`` are JSON text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any

import pyarrow as pa

from fleetpulse.common.contracts.constants import METRIC_PATTERN

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


_JSON_TYPES = {pa.float64(): ("number", "float8"), pa.bool_(): ("boolean", "boolean")}
_MAPS = {  # file column -> (JSON type, SQL type, known metrics of that type stay out of it)
    "other_metrics": ("number", "float8", pa.float64()),
    "other_flags": ("boolean", "boolean", pa.bool_()),
}
_SAFE_NAME = re.compile(METRIC_PATTERN)


def _checked(name: str) -> str:
    """A metric name safe to inline in SQL (the contract's metric-name pattern)."""
    if not _SAFE_NAME.match(name):
        raise ValueError(f"not a metric name: {name!r}")
    return name


def _known_column(name: str, kind: pa.DataType) -> str:
    _checked(name)
    json_type, sql_type = _JSON_TYPES[kind]
    return (
        f"CASE WHEN jsonb_typeof(metrics -> '{name}') = '{json_type}'"
        f" THEN (metrics -> '{name}')::{sql_type} END AS {name}"
    )


def _map_aggregates(column: str) -> str:
    json_type, sql_type, kind = _MAPS[column]
    known = ",".join(_checked(n) for n, k in KNOWN_METRICS.items() if k == kind)
    wanted = f"FILTER (WHERE jsonb_typeof(value) = '{json_type}' AND key <> ALL('{{{known}}}'))"
    return (
        f"array_agg(key ORDER BY key) {wanted} AS {column}_keys, "
        f"array_agg(value::{sql_type} ORDER BY key) {wanted} AS {column}_values"
    )


def telemetry_select_list() -> str:
    """The SELECT list that flattens ``telemetry.metrics`` the way :data:`TELEMETRY_SCHEMA` wants.

    Use with :func:`telemetry_from`. A metric gets its typed column when its name is known and
    its JSON type matches; otherwise it lands in ``other_metrics`` (numbers) or ``other_flags``
    (booleans), keys sorted. Done in PostgreSQL (one pass over each reading's metrics), so the
    exporter's Python only moves columns.
    """
    known = [_known_column(name, kind) for name, kind in KNOWN_METRICS.items()]
    maps = [f"m.{column}_{part}" for column in _MAPS for part in ("keys", "values")]
    return ", ".join(["device_id", "time", "seq", "received_at", *known, *maps])


def telemetry_from() -> str:
    """The FROM clause for :func:`telemetry_select_list`: the maps' one pass (lateral ``m``)."""
    aggregates = ", ".join(_map_aggregates(column) for column in _MAPS)
    lateral = f"(SELECT {aggregates} FROM jsonb_each(metrics))"  # noqa: S608 - checked names
    return f"telemetry LEFT JOIN LATERAL {lateral} AS m ON true"


def _map_array(rows: Sequence[Mapping[str, Any]], column: str, kind: pa.DataType) -> pa.Array:
    offsets, keys, values, nulls = [0], [], [], []
    for row in rows:
        row_keys = row[f"{column}_keys"]
        nulls.append(row_keys is None)
        if row_keys is not None:
            keys.extend(row_keys)
            values.extend(row[f"{column}_values"])
        offsets.append(len(keys))
    return pa.MapArray.from_arrays(
        pa.array(offsets, pa.int32()),
        pa.array(keys, pa.string()),
        pa.array(values, kind),
        mask=pa.array(nulls, pa.bool_()),
    )


def telemetry_table(rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    """Rows selected with :func:`telemetry_select_list` as an Arrow table."""
    plain = TELEMETRY_SCHEMA.names[: -len(_MAPS)]
    columns: list[pa.Array] = [
        pa.array([row[name] for row in rows], TELEMETRY_SCHEMA.field(name).type) for name in plain
    ]
    columns += [_map_array(rows, column, _MAPS[column][2]) for column in _MAPS]
    return pa.Table.from_arrays(columns, schema=TELEMETRY_SCHEMA)


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
