"""Ingest metrics: OpenTelemetry instruments plus plain counters (for logs and tests)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from opentelemetry.metrics import CallbackOptions, Observation

from fleetpulse.common.observability import meter


@dataclass(slots=True)
class IngestStats:
    received: int = 0
    accepted: int = 0
    readings: int = 0
    duplicates: int = 0
    batches: int = 0
    write_errors: int = 0
    #: Messages the broker re-sent because they are retained (counted, not stored).
    retained: int = 0
    #: Messages neither stored nor quarantinable (the database refused even the quarantine row).
    dropped: int = 0
    quarantined: Counter[str] = field(default_factory=Counter)


class IngestMetrics:
    """received, accepted, quarantined{reason}, duplicates, batch size, commit latency, lag."""

    def __init__(self, pending: Callable[[], int] | None = None) -> None:
        self.stats = IngestStats()
        m = meter("fleetpulse.ingest")
        self._received = m.create_counter("ingest.messages.received", unit="{message}")
        self._accepted = m.create_counter("ingest.messages.accepted", unit="{message}")
        self._readings = m.create_counter("ingest.readings.accepted", unit="{reading}")
        self._quarantined = m.create_counter("ingest.messages.quarantined", unit="{message}")
        self._duplicates = m.create_counter("ingest.readings.duplicates", unit="{reading}")
        self._batch_size = m.create_histogram("ingest.batch.size", unit="{message}")
        self._commit = m.create_histogram("ingest.batch.commit_latency", unit="ms")
        self._lag = m.create_histogram(
            "ingest.consumer.lag", unit="ms", description="receive to acknowledgement"
        )
        self._write_errors = m.create_counter("ingest.batch.write_errors")
        self._retained = m.create_counter(
            "ingest.messages.retained",
            unit="{message}",
            description="retained messages re-sent by the broker on (re)subscription; not stored",
        )
        self._dropped = m.create_counter("ingest.messages.dropped", unit="{message}")
        self._pending = pending
        m.create_observable_gauge("ingest.pending", callbacks=[self._observe_pending])

    def _observe_pending(self, _options: CallbackOptions) -> list[Observation]:
        return [Observation(self._pending())] if self._pending is not None else []

    def batch_done(
        self,
        *,
        messages: int,
        accepted: int,
        readings: int,
        duplicates: int,
        quarantined: Counter[str],
        retained: int = 0,
        commit_ms: float,
        lag_ms: float,
    ) -> None:
        s = self.stats
        s.received += messages
        s.accepted += accepted
        s.readings += readings
        s.duplicates += duplicates
        s.retained += retained
        s.batches += 1
        s.quarantined.update(quarantined)
        self._received.add(messages)
        self._accepted.add(accepted)
        self._readings.add(readings - duplicates)
        self._duplicates.add(duplicates)
        if retained:
            self._retained.add(retained)
        for reason, n in quarantined.items():
            self._quarantined.add(n, {"reason": reason})
        self._batch_size.record(messages)
        self._commit.record(commit_ms)
        self._lag.record(lag_ms)

    def dropped(self, messages: int) -> None:
        self.stats.dropped += messages
        self._dropped.add(messages)

    def write_failed(self) -> None:
        self.stats.write_errors += 1
        self._write_errors.add(1)
