"""The evaluator queue's messages: packed records (``{"v": 1, "records": [...]}``) from ingest."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from fleetpulse.common.messaging import unpack_records
from fleetpulse.common.rules.domain import Record

log = logging.getLogger(__name__)


def parse_ts(value: Any) -> datetime:
    """ISO-8601 (``Z`` or an offset; naive means UTC) or epoch milliseconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value / 1000, UTC)
    if not isinstance(value, str):
        raise TypeError("ts must be a string or epoch milliseconds")
    ts = datetime.fromisoformat(value)
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)


def record_from(raw: Mapping[str, Any], traceparent: str | None = None) -> Record:
    """One record; raises ``KeyError``/``TypeError``/``ValueError`` when it is malformed."""
    kind = raw.get("type", "reading")
    if kind not in ("reading", "heartbeat"):
        raise ValueError(f"unknown record type {kind!r}")
    metrics = raw.get("metrics") or {}
    if not isinstance(metrics, dict):
        raise TypeError("metrics must be an object")
    received = raw.get("received_at")
    return Record(
        str(raw["tenant_id"]),
        str(raw["device_id"]),
        parse_ts(raw["ts"]),
        metrics,
        kind,
        traceparent,
        None if received is None else parse_ts(received),
    )


def decode_records(body: str | bytes, traceparent: str | None = None) -> tuple[list[Record], int]:
    """The records of a packed body and how many malformed ones were left out.

    Raises ``ValueError`` when the body itself is not a packed batch.
    """
    records, malformed = [], 0
    for raw in unpack_records(body):
        try:
            records.append(record_from(raw, traceparent))
        except (KeyError, TypeError, ValueError) as exc:
            malformed += 1
            log.warning(
                "malformed record left out", extra={"error": f"{type(exc).__name__}: {exc}"}
            )
    return records, malformed
