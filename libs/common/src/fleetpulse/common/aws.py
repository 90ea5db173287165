"""One place that builds aiobotocore clients, honouring FLEETPULSE_AWS_ENDPOINT_URL."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

DEFAULT_REGION = "us-east-1"


@dataclass(frozen=True, slots=True)
class AwsConfig:
    """Where AWS calls go: ``endpoint_url`` points at moto or LocalStack; None means real AWS."""

    endpoint_url: str | None = None
    region: str = DEFAULT_REGION

    @classmethod
    def from_environ(cls, environ: dict[str, str] | None = None) -> AwsConfig:
        env = os.environ if environ is None else environ
        region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or DEFAULT_REGION
        return cls(endpoint_url=env.get("FLEETPULSE_AWS_ENDPOINT_URL") or None, region=region)


@asynccontextmanager
async def aws_client(service: str, config: AwsConfig) -> AsyncIterator[Any]:
    """An aiobotocore client for ``service``; emulators get dummy credentials if none are set."""
    session = get_session()
    kwargs: dict[str, Any] = {
        "region_name": config.region,
        "config": AioConfig(
            retries={"max_attempts": 5, "mode": "standard"}, max_pool_connections=50
        ),
    }
    if config.endpoint_url:
        kwargs["endpoint_url"] = config.endpoint_url
        if not (os.environ.get("AWS_ACCESS_KEY_ID") or os.environ.get("AWS_PROFILE")):
            kwargs["aws_access_key_id"] = "testing"
            kwargs["aws_secret_access_key"] = "testing"  # noqa: S105 - emulator placeholder
    async with session.create_client(service, **kwargs) as client:  # type: ignore[call-overload]
        yield client
