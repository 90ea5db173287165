"""Service settings: ``FLEETPULSE_*`` environment variables, with Secrets Manager references.

Any value may be ``secretsmanager://<secret-id>`` or ``secretsmanager://<secret-id>#<json-key>``;
:func:`load_settings` resolves those through AWS Secrets Manager (cached per process) before the
settings are validated. A missing or invalid setting raises :class:`ConfigurationError` naming the
environment variable; :func:`fleetpulse.common.runtime.run` turns that into one line and exit 2.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from fleetpulse.common.aws import AwsConfig
from fleetpulse.common.errors import ConfigurationError
from fleetpulse.common.secrets import SecretsManagerResolver, is_secret_reference

ENV_PREFIX = "FLEETPULSE_"
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]

S = TypeVar("S", bound="ServiceSettings")


class ServiceSettings(BaseSettings):
    """What every service shares. Subclasses add their own fields; field ``x`` reads ``FLEETPULSE_X``."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    database_url: SecretStr = Field(description="PostgreSQL/TimescaleDB DSN (postgresql://...)")
    aws_endpoint_url: str | None = Field(
        default=None, description="AWS emulator endpoint (moto/LocalStack); unset on AWS"
    )
    queue_prefix: str = Field(
        default="fleetpulse-", pattern=r"^[A-Za-z0-9_-]{0,40}$", description="SQS/SNS name prefix"
    )
    log_level: LogLevel = Field(default="INFO", description="Log level")
    otlp_endpoint: str | None = Field(
        default=None, description="OTLP/HTTP collector endpoint; unset disables export"
    )
    traces_file: str | None = Field(
        default=None,
        description="Also append every finished span as one JSON line to this file (tests, debugging)",
    )
    health_port: int = Field(
        default=8080, ge=0, le=65535, description="Port of /healthz and /readyz (0 disables)"
    )
    auto_create: bool = Field(
        default=False, description="Create the queues, topics and subscriptions this service uses"
    )

    @field_validator("database_url")
    @classmethod
    def _postgres_scheme(cls, value: SecretStr) -> SecretStr:
        scheme = urlsplit(value.get_secret_value()).scheme
        if scheme not in ("postgres", "postgresql"):
            raise ValueError("must be a postgresql:// URL")
        return value

    @field_validator("aws_endpoint_url", "otlp_endpoint")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in ("http", "https"):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @property
    def aws(self) -> AwsConfig:
        return AwsConfig.from_environ({**os.environ, **_endpoint_env(self.aws_endpoint_url)})


def _endpoint_env(endpoint: str | None) -> dict[str, str]:
    return {"FLEETPULSE_AWS_ENDPOINT_URL": endpoint} if endpoint else {}


def env_name(field: str) -> str:
    """The environment variable that sets ``field``."""
    return ENV_PREFIX + field.upper()


def settings_table(cls: type[ServiceSettings]) -> list[tuple[str, str, str]]:
    """(variable, default, description) for every field: the README's configuration table."""
    rows = []
    for name, info in cls.model_fields.items():
        default = "required" if info.is_required() else repr(info.get_default())
        rows.append((env_name(name), default, info.description or ""))
    return rows


async def load_settings(cls: type[S], environ: Mapping[str, str] | None = None) -> S:
    """Build ``cls`` from the environment, resolving ``secretsmanager://`` values first."""
    env = dict(os.environ if environ is None else environ)
    overrides = await _resolve_references(cls, env)
    try:
        return _from_mapping(cls, env, overrides)
    except ValidationError as exc:
        raise _first_problem(exc) from None


def _from_mapping(cls: type[S], env: dict[str, str], overrides: dict[str, Any]) -> S:
    values: dict[str, Any] = {
        name: env[env_name(name)] for name in cls.model_fields if env_name(name) in env
    }
    values.update(overrides)
    return cls.model_validate(values)


async def _resolve_references(cls: type[ServiceSettings], env: dict[str, str]) -> dict[str, str]:
    wanted = {env_name(name): name for name in cls.model_fields}
    references = {
        var: value for var, value in env.items() if var in wanted and is_secret_reference(value)
    }
    if not references:
        return {}
    resolver = SecretsManagerResolver(AwsConfig.from_environ(env))
    resolved = {}
    for var, reference in references.items():
        resolved[wanted[var]] = await resolver.resolve(var, reference)
    return resolved


def _first_problem(exc: ValidationError) -> ConfigurationError:
    error = exc.errors(include_input=False, include_url=False)[0]
    field = str(error["loc"][0]) if error["loc"] else "?"
    return ConfigurationError(env_name(field), str(error["msg"]))
