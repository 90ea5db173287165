"""A batch under construction: validated messages -> the columns one transaction writes. Pure."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from fleetpulse.common.contracts.records import encode_record
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
    """One device in a batch: liveness (any accepted message, heartbeats) and the latest state
    from its readings (newest time; per metric the value of the newest reading carrying it)."""

    last_seen_us: int
    last_reading_us: int | None = None
    last_heartbeat_us: int | None = None
    metrics: dict[str, float | bool] = field(default_factory=dict)

    def add_reading(self, time_us: int, metrics: dict[str, float | bool]) -> None:
        if self.last_reading_us is None or time_us > self.last_reading_us:
            self.last_reading_us = time_us
            self.metrics.update(metrics)
        else:
            self.metrics = {**metrics, **self.metrics}


#: Keys ``(tenant, device, time_us)`` of the readings a write stored; ``None``: all of them.
Stored = set[tuple[str, str, int]] | None
#: Re-validates an accepted message when a batch is split (:meth:`Batch.halves`).
Revalidate = Callable[[Envelope], Verdict]
_RETAINED = "retained"


@dataclass(slots=True)
class Batch:
    """Columns for ``telemetry``, ``device_state``, ``quarantine`` and the per-minute counters.

    Same-time policy (first stored wins): a reading whose (tenant, device, time) is already in
    this batch is dropped here and counted in :attr:`duplicates_in_batch`; one already in the
    table is left out by the insert (``ON CONFLICT DO NOTHING``) and the store reports which
    were stored. The latest state and the evaluator records then only reflect the readings
    stored (:meth:`device_state_columns`, :meth:`evaluator_records`), so they agree with history.

    Per reading it keeps only columns (ints, strings and the parsed metrics dicts, which hold
    only strings and numbers and so stay untracked by the garbage collector): no object it
    would have to walk (that doubled ingest's CPU per reading when it did).
    """

    throttle: QuarantineThrottle
    envelopes: list[Envelope] = field(default_factory=list)
    #: Per message: ``None`` accepted, ``_RETAINED``, or (rejection, quarantine row stored?).
    notes: list[tuple[Rejected, bool] | str | None] = field(default_factory=list)
    times: list[int] = field(default_factory=list)
    tenants: list[str] = field(default_factory=list)
    devices: list[str] = field(default_factory=list)
    seqs: list[int | None] = field(default_factory=list)
    metrics: list[dict[str, float | bool]] = field(default_factory=list)
    received: list[int] = field(default_factory=list)
    #: Times already in this batch, per device (the in-batch same-time check).
    device_times: dict[tuple[str, str], set[int]] = field(default_factory=dict)
    seen: dict[tuple[str, str], DeviceSeen] = field(default_factory=dict)
    quarantine: list[tuple[int, str | None, str | None, str, str, str, bytes]] = field(
        default_factory=list
    )
    quarantine_counts: Counter[tuple[int, str, str, bool]] = field(default_factory=Counter)
    quarantined: Counter[str] = field(default_factory=Counter)
    #: Records for the evaluator queue (only collected when forwarding is enabled), and per
    #: record the reading's time (``None`` for a heartbeat) to leave out readings not stored.
    evaluator: list[dict[str, Any]] = field(default_factory=list)
    evaluator_times: list[int | None] = field(default_factory=list)
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
            self.notes.append(None)
            self._accept(envelope, verdict)
        else:
            self.notes.append((verdict, self._quarantine(envelope, verdict, stored)))

    def add_retained(self, envelope: Envelope) -> None:
        """A retained message re-sent on (re)subscription: acknowledged and counted, not stored."""
        self._arrived(envelope)
        self.notes.append(_RETAINED)
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
        received_iso = iso_from_us(received) if self.forward else ""  # one per message
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
                self._forward(record, None, received_iso)
            return
        times = self.device_times.get(device)
        if times is None:
            times = self.device_times[device] = set()
        for record in records:
            if record.time_us in times:
                self.duplicates_in_batch += 1
                continue
            times.add(record.time_us)
            seen.add_reading(record.time_us, record.metrics)
            self._append_reading(record, received)
            self._forward(record, record.time_us, received_iso)

    def _forward(self, record: Record, time_us: int | None, received_iso: str) -> None:
        if self.forward:
            self.evaluator.append(_evaluator_record(record, received_iso))
            self.evaluator_times.append(time_us)

    def _append_reading(self, record: Record, received_us: int) -> None:
        self.times.append(record.time_us)
        self.tenants.append(record.tenant_id)
        self.devices.append(record.device_id)
        self.seqs.append(record.seq)
        self.metrics.append(record.metrics)
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

    def halves(self, revalidate: Revalidate) -> tuple[Batch, Batch]:
        """The messages split in two batches, to isolate a message whose rows PostgreSQL
        refuses: quarantined ones keep their verdict and throttle decision, accepted ones are
        validated again by ``revalidate`` (which must not rate-limit them a second time)."""
        middle = len(self.envelopes) // 2
        return self._part(0, middle, revalidate), self._part(middle, None, revalidate)

    def _part(self, start: int, end: int | None, revalidate: Revalidate) -> Batch:
        part = Batch(self.throttle, forward=self.forward)
        for envelope, note in zip(self.envelopes[start:end], self.notes[start:end], strict=True):
            if note is None:
                part.add(envelope, revalidate(envelope))
            elif note == _RETAINED:
                part.add_retained(envelope)
            else:
                assert isinstance(note, tuple)
                part.add(envelope, note[0], note[1])
        return part

    def rejected_by_storage(self, detail: str) -> Batch:
        """This batch's messages quarantined ``STORAGE_REJECTED`` with ``detail`` instead."""
        part = Batch(self.throttle, forward=self.forward)
        for envelope, note in zip(self.envelopes, self.notes, strict=True):
            tenant, device = topic_owner(envelope.topic)
            if isinstance(note, tuple):
                tenant, device = note[0].tenant_id, note[0].device_id
            part.add(envelope, Rejected(Reason.STORAGE_REJECTED, detail, tenant, device))
        return part

    def device_state_columns(self, stored: Stored = None) -> tuple[list[Any], ...]:
        """``device_state`` upsert columns: liveness from every accepted message, the latest
        reading and metrics only from the readings stored."""
        seen = self.seen if stored is None else self._seen_stored(stored)
        keys = sorted(seen)  # one lock order for every writer: no deadlocks between batches
        states = [seen[k] for k in keys]
        return (
            [k[0] for k in keys],
            [k[1] for k in keys],
            [s.last_seen_us for s in states],
            [s.last_reading_us for s in states],
            [s.last_heartbeat_us for s in states],
            [_json.encode(s.metrics).decode() for s in states],
        )

    def _seen_stored(self, stored: set[tuple[str, str, int]]) -> dict[tuple[str, str], DeviceSeen]:
        """The rare path (the write met duplicates): the reading state again, from the stored
        readings' columns only."""
        seen = {
            k: DeviceSeen(s.last_seen_us, None, s.last_heartbeat_us) for k, s in self.seen.items()
        }
        for i, time_us in enumerate(self.times):
            key = (self.tenants[i], self.devices[i])
            if (*key, time_us) in stored:
                seen[key].add_reading(time_us, self.metrics[i])
        return seen

    def evaluator_records(self, stored: Stored = None) -> list[dict[str, Any]]:
        """What the evaluator gets: every heartbeat, and the readings the write stored."""
        if stored is None:
            return self.evaluator
        return [
            record
            for record, time_us in zip(self.evaluator, self.evaluator_times, strict=True)
            if time_us is None or (record["tenant_id"], record["device_id"], time_us) in stored
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


def _evaluator_record(record: Record, received_iso: str) -> dict[str, Any]:
    """One evaluator-queue record; ``received_at`` (when the broker delivered it to ingest) is
    the evaluator's liveness clock, ``ts`` its device-time reading order."""
    return encode_record(
        record.kind,
        record.tenant_id,
        record.device_id,
        iso_from_us(record.time_us),
        record.seq,
        record.metrics,
        received_iso,
    )


__all__ = ["Batch", "Envelope", "QuarantineThrottle", "Reason"]
