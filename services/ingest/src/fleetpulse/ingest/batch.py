"""A batch under construction: validated messages -> the columns one transaction writes. Pure."""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from fleetpulse.ingest.domain import (
    Accepted,
    Reason,
    Record,
    Rejected,
    Verdict,
    iso_from_us,
    truncate_payload,
)

MINUTE_US = 60_000_000
_json = msgspec.json.Encoder()


@dataclass(slots=True)
class Envelope:
    """One received message; ``token`` is what its source needs to acknowledge it."""

    source: Hashable
    topic: str
    payload: bytes
    received_us: int
    token: Any = None
    #: Set by a source that could not even unwrap the message: it is quarantined as BAD_JSON.
    defect: str | None = None


class QuarantineThrottle:
    """Stores at most ``rows_per_minute`` quarantine rows per tenant and reason each minute."""

    def __init__(self, rows_per_minute: int) -> None:
        self._limit = rows_per_minute
        self._minute = -1
        self._stored: Counter[tuple[str, str]] = Counter()

    def store(self, minute: int, tenant: str, reason: str) -> bool:
        if minute != self._minute:
            self._minute, self._stored = minute, Counter()
        key = (tenant, reason)
        if self._stored[key] >= self._limit:
            return False
        self._stored[key] += 1
        return True


@dataclass(slots=True)
class DeviceSeen:
    last_seen_us: int
    last_reading_us: int | None = None
    last_heartbeat_us: int | None = None
    metrics: dict[str, float | bool] = field(default_factory=dict)

    def add(self, record: Record, received_us: int) -> None:
        self.last_seen_us = max(self.last_seen_us, received_us)
        if record.kind == "heartbeat":
            self.last_heartbeat_us = max(self.last_heartbeat_us or 0, record.time_us)
            return
        if self.last_reading_us is None or record.time_us >= self.last_reading_us:
            self.last_reading_us = record.time_us
            self.metrics.update(record.metrics)
        else:
            self.metrics = {**record.metrics, **self.metrics}


@dataclass(slots=True)
class Batch:
    """Columns for ``telemetry``, ``device_state``, ``quarantine`` and the per-minute counters."""

    throttle: QuarantineThrottle
    envelopes: list[Envelope] = field(default_factory=list)
    times: list[int] = field(default_factory=list)
    tenants: list[str] = field(default_factory=list)
    devices: list[str] = field(default_factory=list)
    seqs: list[int | None] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)
    received: list[int] = field(default_factory=list)
    seen: dict[tuple[str, str], DeviceSeen] = field(default_factory=dict)
    quarantine: list[tuple[int, str | None, str | None, str, str, str, bytes]] = field(
        default_factory=list
    )
    quarantine_counts: Counter[tuple[int, str, str, bool]] = field(default_factory=Counter)
    quarantined: Counter[str] = field(default_factory=Counter)
    #: Records for the evaluator queue; only collected when forwarding is enabled.
    evaluator_records: list[dict[str, Any]] = field(default_factory=list)
    forward: bool = True
    accepted_messages: int = 0
    first_received_us: int = 0

    @property
    def rows(self) -> int:
        return len(self.times) + len(self.quarantine) + len(self.seen) // 4

    def add(self, envelope: Envelope, verdict: Verdict) -> None:
        if not self.envelopes:
            self.first_received_us = envelope.received_us
        self.envelopes.append(envelope)
        if isinstance(verdict, Accepted):
            self._accept(envelope, verdict)
        else:
            self._quarantine(envelope, verdict)

    def _accept(self, envelope: Envelope, verdict: Accepted) -> None:
        self.accepted_messages += 1
        for record in verdict.records:
            key = (record.tenant_id, record.device_id)
            seen = self.seen.get(key)
            if seen is None:
                seen = self.seen[key] = DeviceSeen(envelope.received_us)
            seen.add(record, envelope.received_us)
            if self.forward:
                self.evaluator_records.append(_evaluator_record(record))
            if record.kind == "reading":
                self._append_reading(record, envelope.received_us)

    def _append_reading(self, record: Record, received_us: int) -> None:
        self.times.append(record.time_us)
        self.tenants.append(record.tenant_id)
        self.devices.append(record.device_id)
        self.seqs.append(record.seq)
        self.metrics.append(_json.encode(record.metrics).decode())
        self.received.append(received_us)

    def _quarantine(self, envelope: Envelope, verdict: Rejected) -> None:
        self.quarantined[verdict.reason] += 1
        minute = envelope.received_us // MINUTE_US * MINUTE_US
        tenant = verdict.tenant_id or ""
        stored = self.throttle.store(minute, tenant, verdict.reason)
        self.quarantine_counts[(minute, tenant, verdict.reason, stored)] += 1
        if stored:
            self.quarantine.append(
                (
                    envelope.received_us,
                    verdict.tenant_id,
                    verdict.device_id,
                    envelope.topic[:1024],
                    verdict.reason,
                    verdict.detail,
                    truncate_payload(envelope.payload),
                )
            )

    def device_state_columns(self) -> tuple[list[Any], ...]:
        keys = sorted(self.seen)  # one lock order for every writer: no deadlocks between batches
        states = [self.seen[k] for k in keys]
        return (
            [k[0] for k in keys],
            [k[1] for k in keys],
            [s.last_seen_us for s in states],
            [s.last_reading_us for s in states],
            [s.last_heartbeat_us for s in states],
            [_json.encode(s.metrics).decode() for s in states],
        )

    def quarantine_count_columns(self) -> tuple[list[Any], ...]:
        merged: dict[tuple[int, str, str], list[int]] = {}
        for (minute, tenant, reason, stored), n in self.quarantine_counts.items():
            merged.setdefault((minute, tenant, reason), [0, 0])[0 if stored else 1] += n
        keys = sorted(merged)
        return (
            [k[0] for k in keys],
            [k[1] for k in keys],
            [k[2] for k in keys],
            [merged[k][0] for k in keys],
            [merged[k][1] for k in keys],
        )


def _evaluator_record(record: Record) -> dict[str, Any]:
    return {
        "type": record.kind,
        "tenant_id": record.tenant_id,
        "device_id": record.device_id,
        "ts": iso_from_us(record.time_us),
        "seq": record.seq,
        "metrics": record.metrics,
    }


__all__ = ["Batch", "Envelope", "QuarantineThrottle", "Reason"]
