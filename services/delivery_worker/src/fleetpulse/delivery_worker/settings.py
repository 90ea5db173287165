"""Delivery worker settings (``FLEETPULSE_*``)."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator

from fleetpulse.common.crypto import SecretBox
from fleetpulse.common.settings import ServiceSettings


class Settings(ServiceSettings):
    webhook_encryption_key: SecretStr = Field(
        description="Base64 32-byte key that opens sealed webhook secrets (secretsmanager:// ok)"
    )
    allow_private_webhooks: bool = Field(
        default=False,
        description="Allow webhooks to loopback/private/link-local addresses (local development)",
    )
    webhook_timeout_s: float = Field(
        default=15.0, gt=0, le=60, description="Webhook request timeout"
    )
    concurrency: int = Field(default=64, ge=1, le=1024, description="Deliveries attempted at once")
    per_integration_concurrency: int = Field(
        default=8,
        ge=1,
        le=256,
        description="Attempts in flight per integration, so one slow endpoint cannot take every slot",
    )
    breaker_failures: int = Field(
        default=5,
        ge=1,
        description="Consecutive endpoint failures that open an integration's circuit",
    )
    breaker_open_s: float = Field(
        default=30.0,
        gt=0,
        description="How long an open circuit defers an integration's deliveries",
    )
    db_pool_size: int = Field(default=10, ge=2, le=100, description="Database connections")
    smtp_host: str | None = Field(default=None, description="SMTP server for email integrations")
    smtp_port: int = Field(default=587, ge=1, le=65535, description="SMTP port")
    smtp_username: str | None = Field(default=None, description="SMTP AUTH user")
    smtp_password: SecretStr | None = Field(default=None, description="SMTP AUTH password")
    smtp_starttls: bool = Field(default=True, description="Upgrade SMTP with STARTTLS")
    smtp_ca_file: str | None = Field(
        default=None, description="CA bundle to verify the SMTP server with (default: system CAs)"
    )
    smtp_from: str = Field(default="alerts@fleetpulse.local", description="Sender of alert email")
    mqtt_url: SecretStr | None = Field(
        default=None, description="Broker for MQTT integrations (mqtt://user:pass@host:port)"
    )

    @field_validator("webhook_encryption_key")
    @classmethod
    def _opens_secrets(cls, value: SecretStr) -> SecretStr:
        SecretBox(value.get_secret_value())  # raises ValueError naming what is wrong
        return value
