"""Dispatcher settings (``FLEETPULSE_*``)."""

from __future__ import annotations

from pydantic import Field

from fleetpulse.common.settings import ServiceSettings


class Settings(ServiceSettings):
    concurrency: int = Field(default=16, ge=1, le=256, description="Alert events handled at once")
    db_pool_size: int = Field(default=10, ge=2, le=100, description="Database connections")
    group_poll_s: float = Field(
        default=1.0, gt=0, le=60, description="How often due alert groups are looked for"
    )
