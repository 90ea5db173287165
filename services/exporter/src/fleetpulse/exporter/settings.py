"""Exporter settings (``FLEETPULSE_*``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from fleetpulse.common.settings import ServiceSettings


class Settings(ServiceSettings):
    lake_bucket: str = Field(
        pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$",
        description="S3 bucket of the analytics lake (telemetry/ and events/ Parquet datasets)",
    )
    lake_prefix: str = Field(
        default="",
        pattern=r"^([A-Za-z0-9_.-]+/)*$",
        description="Key prefix inside the lake bucket ('' or ending in /)",
    )
    lake_kms_key_id: str | None = Field(
        default=None, description="KMS key for SSE-KMS on exported objects; unset: bucket default"
    )
    export_interval_s: float = Field(
        default=300.0, gt=0, le=86400, description="Seconds between two export runs"
    )
    export_rows_per_file: int = Field(
        default=500_000, ge=1, le=10_000_000, description="Most rows in one exported Parquet file"
    )
    export_compression: Literal["zstd", "snappy"] = Field(
        default="zstd", description="Parquet compression codec: zstd | snappy"
    )
    export_max_events: int = Field(
        default=100_000, ge=1, le=5_000_000, description="Most events exported in one range"
    )
    export_min_rows: int = Field(
        default=100_000,
        ge=1,
        le=10_000_000,
        description="New rows a dataset needs before a run writes them (fewer, larger files)",
    )
    export_max_delay_s: float = Field(
        default=3600.0,
        ge=0,
        le=7 * 86400,
        description="Longest a dataset's new rows wait for FLEETPULSE_EXPORT_MIN_ROWS",
    )
    db_pool_size: int = Field(default=4, ge=2, le=100, description="Database connections")
