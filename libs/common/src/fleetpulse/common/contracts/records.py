"""The ingest -> evaluator queue record: :class:`Record` and its hand-written codec.

On the queue (SQS ``{prefix}evaluator``, packed ``{"v": 1, "records": [...]}``, gzip-compressed:
``fleetpulse.common.messaging.packing``) a record is
``{"type": "reading"|"heartbeat", "tenant_id", "device_id", "ts": ISO-8601, "seq": int|null,
"metrics": {...}, "received_at"?: ISO-8601}``. Ingest writes it with :func:`encode_record`, the
evaluator reads it with :func:`decode_record`. This is the evaluator's hot path (over 100,000
records/s): a slotted dataclass and plain functions, no per-record model validation.

``Record.traceparent`` is not on the wire: the evaluator sets it from the SQS message's
``traceparent`` attribute, so alert events keep the trace of the message that caused them even
when several messages are evaluated in one transaction.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

Value = float | int | bool


@dataclass(frozen=True, slots=True)
class Record:
    """A reading (``metrics``) or a heartbeat (no metrics) of one device."""

    tenant_id: str
    device_id: str
    ts: datetime
    metrics: Mapping[str, Value] = field(default_factory=dict)
    kind: str = "reading"
    traceparent: str | None = None
    received_at: datetime | None = None
    """When the platform received it (liveness); ``None``: when the evaluator got it."""


READING: Final = "reading"
HEARTBEAT: Final = "heartbeat"
RECORD_KINDS: Final = (READING, HEARTBEAT)


def encode_record(
    kind: str,
    tenant_id: str,
    device_id: str,
    ts: str,
    seq: int | None,
    metrics: Mapping[str, Value],
    received_at: str,
) -> dict[str, Any]:
    """One record as it goes on the queue (``ts``, ``received_at``: ISO-8601)."""
    return {
        "type": kind,
        "tenant_id": tenant_id,
        "device_id": device_id,
        "ts": ts,
        "seq": seq,
        "metrics": metrics,
        "received_at": received_at,
    }


def parse_ts(value: Any) -> datetime:
    """ISO-8601 (``Z`` or an offset; naive means UTC) or epoch milliseconds."""
    if isinstance(value, str):  # what ingest sends: checked first, per record
        ts = datetime.fromisoformat(value)
        return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return datetime.fromtimestamp(value / 1000, UTC)
    raise TypeError("ts must be a string or epoch milliseconds")


@functools.lru_cache(maxsize=256)
def _parse_received(value: str) -> datetime:
    """:func:`parse_ts` remembered: a message's readings share one ``received_at``."""
    return parse_ts(value)


def decode_record(raw: Mapping[str, Any], traceparent: str | None = None) -> Record:
    """One record; raises ``KeyError``/``TypeError``/``ValueError`` when it is malformed."""
    kind = raw.get("type", READING)
    if kind not in RECORD_KINDS:
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
        None if received is None else _received_at(received),
    )


def _received_at(value: Any) -> datetime:
    return _parse_received(value) if value.__class__ is str else parse_ts(value)


__all__ = [
    "HEARTBEAT",
    "READING",
    "RECORD_KINDS",
    "Record",
    "Value",
    "decode_record",
    "encode_record",
    "parse_ts",
]
