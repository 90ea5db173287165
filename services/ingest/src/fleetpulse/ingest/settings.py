"""Ingest settings: ``FLEETPULSE_*`` environment variables (see ``settings_table``)."""

from __future__ import annotations

from pydantic import Field, SecretStr, ValidationInfo, field_validator

from fleetpulse.common.settings import ServiceSettings

KNOWN_SOURCES = frozenset({"mqtt", "sqs"})


class Settings(ServiceSettings):
    """Ingest: MQTT shared subscription and/or the SQS ingest queue -> telemetry."""

    mqtt_url: SecretStr | None = Field(
        default=None,
        description="Broker URL mqtt://user:pass@host:port (mqtts:// for TLS); required for the mqtt source",
    )
    sources: str = Field(
        default="mqtt", description="Comma-separated sources to consume: mqtt, sqs"
    )
    mqtt_client_id: str = Field(
        default="fleetpulse-ingest",
        pattern=r"^[A-Za-z0-9_-]{1,40}$",
        description="Client id prefix; connection i uses '{prefix}-{i}' with a persistent session. "
        "Give each replica its own, stable prefix (e.g. a StatefulSet ordinal): the broker keeps "
        "giving an offline persistent member of the shared group its share of the messages, "
        "so a replica that is retired for good must have its sessions cleaned (clean-session "
        "connect with the same client ids), or that share waits in the broker.",
    )
    mqtt_connections: int = Field(
        default=4,
        ge=1,
        le=64,
        description="Connections in the shared group; each holds up to the broker's "
        "max_inflight_messages unacknowledged messages",
    )
    mqtt_share_group: str = Field(
        default="ingest",
        pattern=r"^[A-Za-z0-9_-]{0,40}$",
        description="Shared subscription group, so replicas split the load. Empty: a plain "
        "subscription (one replica, FLEETPULSE_MQTT_CONNECTIONS=1), which Mosquitto 2.0 restores "
        "with the persistent session after a broker restart; it drops $share subscriptions "
        "there, so until ingest reconnects a restarted broker discards what devices publish",
    )
    mqtt_max_inflight: int = Field(
        default=1000,
        ge=0,
        le=65_535,
        description="The broker's max_inflight_messages (per connection; MQTT 3.1.1 cannot "
        "negotiate it): a batch holding this / FLEETPULSE_WRITERS messages of one connection "
        "is written as soon as nothing more is buffered instead of waiting out "
        "FLEETPULSE_BATCH_MAX_MS, so the next batch fills while it commits. Higher than the "
        "broker's: a full window waits FLEETPULSE_BATCH_MAX_MS; lower: smaller batches when "
        "traffic pauses; 0: no window (batches wait for rows or time only)",
    )
    batch_max_rows: int = Field(
        default=5000, ge=1, le=100_000, description="Flush a batch at this many readings"
    )
    batch_max_ms: int = Field(
        default=100,
        ge=1,
        le=60_000,
        description="Flush a batch at most this many ms after its first message",
    )
    writers: int = Field(
        default=2,
        ge=1,
        le=16,
        description="Batches written concurrently, each in its own transaction (pool connection)",
    )
    committed_batches: int = Field(
        default=2,
        ge=1,
        le=16,
        description="Committed batches whose readings are being forwarded to the evaluator and "
        "whose messages acknowledged while FLEETPULSE_WRITERS write the next ones: a slow "
        "forward does not hold a write back. Acknowledged in the order the batches were "
        "collected, each only after its own commit and forward (no loss when ingest or the "
        "broker stops)",
    )
    max_pending_messages: int = Field(
        default=20_000,
        ge=100,
        description="Received but not yet batched messages; when full, sources stop pulling",
    )
    rate_limit_per_s: float = Field(
        default=20.0, gt=0, description="Per-device token bucket refill (messages per second)"
    )
    rate_limit_burst: int = Field(default=100, ge=1, description="Per-device token bucket size")
    retention_days: int = Field(
        default=30,
        ge=1,
        description="Readings older than this are quarantined (TIMESTAMP_OUT_OF_RANGE)",
    )
    telemetry_keep_days: int = Field(
        default=90,
        ge=1,
        description="Plain PostgreSQL: daily telemetry partitions older than this are dropped "
        "(TimescaleDB's own retention policy keeps 90 days); hourly rollups are kept",
    )
    max_future_s: int = Field(
        default=300, ge=0, description="Readings further in the future are quarantined"
    )
    quarantine_rows_per_minute: int = Field(
        default=50,
        ge=0,
        description="Quarantine rows stored per tenant and reason per minute; the rest only counted",
    )
    registry_poll_ms: int = Field(
        default=1000, ge=100, description="How often device status changes are polled"
    )
    forward_to_evaluator: bool = Field(
        default=True, description="Send accepted readings to the {prefix}evaluator queue"
    )
    sqs_wait_s: int = Field(default=10, ge=0, le=20, description="SQS long-poll wait")

    @field_validator("sources")
    @classmethod
    def _known_sources(cls, value: str) -> str:
        chosen = {s.strip() for s in value.split(",") if s.strip()}
        if not chosen or chosen - KNOWN_SOURCES:
            raise ValueError(f"must name sources among {sorted(KNOWN_SOURCES)}")
        return ",".join(sorted(chosen))

    @field_validator("mqtt_share_group")
    @classmethod
    def _plain_subscription_has_one_connection(cls, value: str, info: ValidationInfo) -> str:
        if not value and info.data.get("mqtt_connections", 1) != 1:
            raise ValueError(
                "empty (a plain subscription) needs FLEETPULSE_MQTT_CONNECTIONS=1: "
                "every connection would receive every message"
            )
        return value

    @field_validator("telemetry_keep_days")
    @classmethod
    def _keep_what_is_accepted(cls, value: int, info: ValidationInfo) -> int:
        accepted = info.data.get("retention_days", 30)
        if value < accepted:
            raise ValueError(
                f"must be at least FLEETPULSE_RETENTION_DAYS ({accepted}): readings that old "
                "are still accepted"
            )
        return value

    @property
    def source_names(self) -> frozenset[str]:
        return frozenset(self.sources.split(","))
