"""The ingest -> evaluator queue record."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

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
