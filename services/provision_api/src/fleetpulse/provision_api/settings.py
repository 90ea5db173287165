"""provision_api settings: ``FLEETPULSE_*`` environment variables (see ARCHITECTURE "Configuration")."""

from __future__ import annotations

import base64
import binascii
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationInfo, field_validator

from fleetpulse.common.settings import ServiceSettings

CredentialsBackend = Literal["mosquitto", "iot-core"]


class Settings(ServiceSettings):
    oidc_issuer: str = Field(
        description="Token issuer (iss), e.g. https://auth.example.com/realms/fleetpulse"
    )
    oidc_audience: str = Field(
        default="fleetpulse-api", description="Audience every token's aud must contain"
    )
    oidc_jwks_url: str | None = Field(
        default=None, description="JWKS URL; unset: jwks_uri of the issuer's discovery document"
    )
    jwks_cache_s: float = Field(
        default=300.0, gt=0, description="How long fetched signing keys are trusted"
    )
    jwks_min_refresh_s: float = Field(
        default=10.0, ge=0, description="Least time between two JWKS fetches for unknown kids"
    )
    api_host: str = Field(default="0.0.0.0", description="Interface the HTTP API listens on")
    api_port: int = Field(default=8000, ge=1, le=65535, description="Port of the HTTP API")
    forwarded_allow_ips: str = Field(
        default="127.0.0.1",
        description=(
            "Proxies (the ALB) trusted for X-Forwarded-For: addresses or networks, comma-separated,"
            " or * (trust the immediate peer only). The client is the right-most hop that is not"
            " a listed proxy"
        ),
    )
    credentials_backend: CredentialsBackend = Field(
        default="mosquitto", description="Where device credentials live: mosquitto | iot-core"
    )
    mqtt_url: SecretStr | None = Field(
        default=None,
        description="mqtt://admin:pass@host:port of the dynamic-security admin (mosquitto backend)",
    )
    mqtt_public_host: str = Field(
        default="localhost", description="Broker host name devices are told to connect to"
    )
    mqtt_public_port: int = Field(
        default=1883, ge=1, le=65535, description="Broker port devices are told to connect to"
    )
    iot_policy_name: str = Field(
        default="fleetpulse-device", description="AWS IoT policy attached to device certificates"
    )
    webhook_encryption_key: SecretStr = Field(
        description="base64 of 32 bytes sealing webhook secrets at rest (AES-256-GCM)"
    )
    provision_rate_per_minute: int = Field(
        default=10, ge=1, description="POST /provision attempts allowed per source per minute"
    )
    allow_private_webhooks: bool = Field(
        default=False,
        description="Allow webhooks to loopback/private/link-local addresses (local development)",
    )
    max_body_bytes: int = Field(
        default=1024 * 1024,
        ge=1024,
        description="Largest request body (bytes); larger ones answer 413 before anything reads them",
    )
    max_header_bytes: int = Field(
        default=64 * 1024,
        ge=4096,
        description="Largest request line + headers (bytes); the connection is refused beyond",
    )
    max_in_flight_per_source: int = Field(
        default=64,
        ge=1,
        description="Requests one client address may have in flight; more answer 429",
    )
    db_pool_size: int = Field(default=10, ge=1, le=100, description="Database connections")
    cors_origins: str = Field(
        default="",
        description=(
            "Browser origins allowed to call the API (the console), comma-separated, e.g."
            " https://console.example.com; empty: no CORS headers"
        ),
    )
    device_online_s: int = Field(
        default=300, ge=1, description="A device seen within this many seconds is online"
    )
    device_stale_s: int = Field(
        default=3600,
        ge=1,
        description="A device seen within this many seconds (but not online) is stale; else offline",
    )
    stream_poll_s: float = Field(
        default=1.0, gt=0, le=30, description="How often GET /events/stream looks for new events"
    )
    outbox_relay: bool = Field(
        default=True,
        description="Run the outbox relay (committed events -> SNS {prefix}domain-events) in this process",
    )

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, value: str) -> str:
        for origin in origin_list(value):
            parts = urlsplit(origin)
            if parts.scheme not in ("http", "https") or not parts.netloc or parts.path:
                raise ValueError(f"{origin!r} is not an origin such as https://console.example.com")
        return value

    @field_validator("device_stale_s")
    @classmethod
    def _stale_after_online(cls, value: int, info: ValidationInfo) -> int:
        online = info.data.get("device_online_s")
        if online is not None and value <= online:
            raise ValueError("must be greater than FLEETPULSE_DEVICE_ONLINE_S")
        return value

    @property
    def cors_origin_list(self) -> list[str]:
        return origin_list(self.cors_origins)

    @field_validator("mqtt_url")
    @classmethod
    def _mqtt_scheme(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and urlsplit(value.get_secret_value()).scheme not in ("mqtt", "mqtts"):
            raise ValueError("must be an mqtt:// or mqtts:// URL")
        return value

    @field_validator("oidc_issuer", "oidc_jwks_url")
    @classmethod
    def _issuer_url(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in ("http", "https"):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @field_validator("webhook_encryption_key")
    @classmethod
    def _key_of_32_bytes(cls, value: SecretStr) -> SecretStr:
        try:
            raw = base64.b64decode(value.get_secret_value(), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("must be base64") from None
        if len(raw) != 32:
            raise ValueError("must decode to 32 bytes")
        return value


def origin_list(value: str) -> list[str]:
    """``a, b`` -> ``["a", "b"]`` without blanks or a trailing slash."""
    return [o.strip().rstrip("/") for o in value.split(",") if o.strip()]
