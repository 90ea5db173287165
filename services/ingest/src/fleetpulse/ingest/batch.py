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
    topic_owner,
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
    #: The broker sent it with the retain flag: a retained message re-sent on (re)subscription.
    retained: bool = False


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
    """Liveness of one device in a batch: when any accepted message arrived, last heartbeat."""

    last_seen_us: int
    last_heartbeat_us: int | None = None


@dataclass(slots=True)
class LatestReading:
    """The latest-state of one device from the readings a batch stored: newest time, and per
    metric the value of the newest stored reading carrying it."""

    time_us: int
    metrics: dict[str, float | bool]

    def add(self, record: Record) -> None:
        if record.time_us > self.time_us:
            self.time_us = record.time_us
            self.metrics.update(record.metrics)
        else:
            self.metrics = {**record.metrics, **self.metrics}


#: Keys ``(tenant, device, time_us)`` of the readings a write stored; ``None``: all of them.
Stored = set[tuple[str, str, int]] | None


@dataclass(slots=True)
class Batch:
    """Columns for ``telemetry``, ``device_state``, ``quarantine`` and the per-minute counters.

    Same-time policy (first stored wins): a reading whose (tenant, device, time) is already in
    this batch is dropped here and counted in :attr:`duplicates_in_batch`; one already in the
    table is left out by the insert (``ON CONFLICT DO NOTHING``). The latest state and the
    evaluator records are built afterwards from the readings the write actually stored
    (:meth:`device_state_columns`, :meth:`evaluator_records`), so they agree with history.
    """

    throttle: QuarantineThrottle
    envelopes: list[Envelope] = field(default_factory=list)
    #: (envelope, verdict, quarantine row stored?) per message, to rebuild parts (:meth:`halves`).
    items: list[tuple[Envelope, Verdict | None, bool | None]] = field(default_factory=list)
    times: list[int] = field(default_factory=list)
    tenants: list[str] = field(default_factory=list)
    devices: list[str] = field(default_factory=list)
    seqs: list[int | None] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)
    received: list[int] = field(default_factory=list)
    #: Accepted records in arrival order: heartbeats and the readings not dropped in-batch.
    records: list[Record] = field(default_factory=list)
    #: The readings of :attr:`records` (what the telemetry insert writes, in that order).
    readings: list[Record] = field(default_factory=list)
    keys: set[tuple[str, str, int]] = field(default_factory=set)
    seen: dict[tuple[str, str], DeviceSeen] = field(default_factory=dict)
    quarantine: list[tuple[int, str | None, str | None, str, str, str, bytes]] = field(
        default_factory=list
    )
    quarantine_counts: Counter[tuple[int, str, str, bool]] = field(default_factory=Counter)
    quarantined: Counter[str] = field(default_factory=Counter)
    forward: bool = True
    accepted_messages: int = 0
    #: Readings of this batch dropped because an earlier one here has the same time.
    duplicates_in_batch: int = 0
    #: Messages the broker re-sent because they are retained: not new telemetry, only counted.
    retained: int = 0
    first_received_us: int = 0

    @property
    def rows(self) -> int:
        return len(self.times) + len(self.quarantine) + len(self.seen) // 4

    def add(self, envelope: Envelope, verdict: Verdict, stored: bool | None = None) -> None:
        """Add one validated message; ``stored`` replays a quarantine throttle decision."""
        self._arrived(envelope)
        if isinstance(verdict, Accepted):
            self.items.append((envelope, verdict, None))
            self._accept(envelope, verdict)
        else:
            self.items.append((envelope, verdict, self._quarantine(envelope, verdict, stored)))

    def add_retained(self, envelope: Envelope) -> None:
        """A retained message re-sent on (re)subscription: acknowledged and counted, not stored."""
        self._arrived(envelope)
        self.items.append((envelope, None, None))
        self.retained += 1

    def _arrived(self, envelope: Envelope) -> None:
        if not self.envelopes:
            self.first_received_us = envelope.received_us
        self.envelopes.append(envelope)

    def _accept(self, envelope: Envelope, verdict: Accepted) -> None:
        self.accepted_messages += 1
        records, received = verdict.records, envelope.received_us
        if not records:
            return
        first = records[0]  # one message, one topic: one device and one kind
        device = (first.tenant_id, first.device_id)
        seen = self.seen.get(device)
        if seen is None:
            seen = self.seen[device] = DeviceSeen(received)
        elif received > seen.last_seen_us:
            seen.last_seen_us = received
        if first.kind == "heartbeat":
            for record in records:
                seen.last_heartbeat_us = max(seen.last_heartbeat_us or 0, record.time_us)
            self.records.extend(records)
            return
        for record in records:
            self._append_reading(record, received)

    def _append_reading(self, record: Record, received_us: int) -> None:
        key = (record.tenant_id, record.device_id, record.time_us)
        if key in self.keys:
            self.duplicates_in_batch += 1
            return
        self.keys.add(key)
        self.records.append(record)
        self.readings.append(record)
        self.times.append(record.time_us)
        self.tenants.append(record.tenant_id)
        self.devices.append(record.device_id)
        self.seqs.append(record.seq)
        self.metrics.append(_json.encode(record.metrics).decode())
        self.received.append(received_us)

    def _quarantine(self, envelope: Envelope, verdict: Rejected, stored: bool | None) -> bool:
        self.quarantined[verdict.reason] += 1
        minute = envelope.received_us // MINUTE_US * MINUTE_US
        tenant = verdict.tenant_id or ""
        if stored is None:
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
        return stored

    def halves(self) -> tuple[Batch, Batch]:
        """The messages split in two batches (same verdicts and throttle decisions), to isolate
        a message whose rows PostgreSQL refuses."""
        middle = len(self.items) // 2
        return self._part(self.items[:middle]), self._part(self.items[middle:])

    def _part(self, items: list[tuple[Envelope, Verdict | None, bool | None]]) -> Batch:
        part = Batch(self.throttle, forward=self.forward)
        for envelope, verdict, stored in items:
            if verdict is None:
                part.add_retained(envelope)
            else:
                part.add(envelope, verdict, stored)
        return part

    def rejected_by_storage(self, detail: str) -> Batch:
        """This batch's messages quarantined ``STORAGE_REJECTED`` with ``detail`` instead."""
        part = Batch(self.throttle, forward=self.forward)
        for envelope, verdict, _ in self.items:
            tenant, device = topic_owner(envelope.topic)
            if isinstance(verdict, Rejected):
                tenant, device = verdict.tenant_id, verdict.device_id
            part.add(envelope, Rejected(Reason.STORAGE_REJECTED, detail, tenant, device))
        return part

    def stored_readings(self, stored: Stored) -> list[Record]:
        """The readings of :attr:`records` that the write stored (``stored`` from the store)."""
        if stored is None:
            return self.readings
        return [r for r in self.readings if (r.tenant_id, r.device_id, r.time_us) in stored]

    def device_state_columns(self, stored: Stored = None) -> tuple[list[Any], ...]:
        """``device_state`` upsert columns: liveness from every accepted message, the latest
        reading and metrics only from the readings stored."""
        latest: dict[tuple[str, str], LatestReading] = {}
        for record in self.stored_readings(stored):
            key = (record.tenant_id, record.device_id)
            state = latest.get(key)
            if state is None:
                latest[key] = LatestReading(record.time_us, dict(record.metrics))
            else:
                state.add(record)
        keys = sorted(self.seen)  # one lock order for every writer: no deadlocks between batches
        states = [self.seen[k] for k in keys]
        readings = [latest.get(k) for k in keys]
        return (
            [k[0] for k in keys],
            [k[1] for k in keys],
            [s.last_seen_us for s in states],
            [None if r is None else r.time_us for r in readings],
            [s.last_heartbeat_us for s in states],
            [_json.encode({} if r is None else r.metrics).decode() for r in readings],
        )

    def evaluator_records(self, stored: Stored = None) -> list[dict[str, Any]]:
        """What the evaluator gets: every heartbeat, and the readings the write stored."""
        if not self.forward:
            return []
        return [
            _evaluator_record(r)
            for r in self.records
            if r.kind == "heartbeat"
            or stored is None
            or (r.tenant_id, r.device_id, r.time_us) in stored
        ]

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
