"""Evaluator settings: ``FLEETPULSE_*`` environment variables (see ``ServiceSettings``)."""

from __future__ import annotations

from pydantic import Field

from fleetpulse.common.settings import ServiceSettings


class Settings(ServiceSettings):
    consumer_concurrency: int = Field(
        default=16, ge=1, le=256, description="SQS messages (record batches) in flight at once"
    )
    batch_max_records: int = Field(
        default=10_000, ge=1, description="Records of several messages evaluated in one transaction"
    )
    batch_linger_ms: float = Field(
        default=20.0, ge=0, le=1000, description="How long a transaction waits for more messages"
    )
    visibility_timeout_s: int = Field(
        default=30, ge=5, description="SQS visibility timeout of a received batch"
    )
    tick_interval_s: float = Field(
        default=1.0,
        gt=0,
        le=10,
        description="How often due durations and no_data deadlines are checked",
    )
    duration_grace_s: float = Field(
        default=1.0,
        ge=0,
        le=60,
        description="How long past a pending duration the clock waits for late records before opening",
    )
    catalog_refresh_s: float = Field(
        default=1.0,
        gt=0,
        le=5,
        description="How often rules and device tags are checked for changes",
    )
    db_pool_size: int = Field(default=8, ge=2, le=100, description="Database connections")
    outbox_relay: bool = Field(
        default=True,
        description="Run the outbox relay (alert events -> SNS domain-events) in this process",
    )
