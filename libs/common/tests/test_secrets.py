"""``secretsmanager://`` settings resolved through moto's Secrets Manager (real HTTP)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from fleetpulse.common.aws import AwsConfig, aws_client
from fleetpulse.common.errors import ConfigurationError
from fleetpulse.common.secrets import clear_cache
from fleetpulse.common.settings import ServiceSettings, load_settings

DSN = "postgresql://app:s3cr3t-pw@db.internal:5432/fleetpulse"


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    clear_cache()
    yield
    clear_cache()


@pytest.fixture
async def secrets(aws_config: AwsConfig) -> AsyncIterator[Any]:
    async with aws_client("secretsmanager", aws_config) as client:
        yield client


def _environ(moto_server: str, database_url: str) -> dict[str, str]:
    return {"FLEETPULSE_AWS_ENDPOINT_URL": moto_server, "FLEETPULSE_DATABASE_URL": database_url}


async def test_whole_secret_becomes_the_value(
    secrets: Any, moto_server: str, queue_prefix: str
) -> None:
    await secrets.create_secret(Name=f"{queue_prefix}db", SecretString=DSN)
    settings = await load_settings(
        ServiceSettings, _environ(moto_server, f"secretsmanager://{queue_prefix}db")
    )
    assert settings.database_url.get_secret_value() == DSN
    assert DSN not in repr(settings)


async def test_json_key_of_a_secret_becomes_the_value(
    secrets: Any, moto_server: str, queue_prefix: str
) -> None:
    await secrets.create_secret(
        Name=f"{queue_prefix}db", SecretString=json.dumps({"url": DSN, "user": "app"})
    )
    reference = f"secretsmanager://{queue_prefix}db#url"
    settings = await load_settings(ServiceSettings, _environ(moto_server, reference))
    assert settings.database_url.get_secret_value() == DSN


async def test_missing_secret_names_the_setting(moto_server: str, queue_prefix: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        await load_settings(
            ServiceSettings, _environ(moto_server, f"secretsmanager://{queue_prefix}nope")
        )
    assert info.value.setting == "FLEETPULSE_DATABASE_URL"
    assert f"{queue_prefix}nope" in str(info.value)


async def test_missing_key_names_the_setting_and_hides_the_secret(
    secrets: Any, moto_server: str, queue_prefix: str
) -> None:
    await secrets.create_secret(Name=f"{queue_prefix}db", SecretString=json.dumps({"url": DSN}))
    with pytest.raises(ConfigurationError) as info:
        await load_settings(
            ServiceSettings, _environ(moto_server, f"secretsmanager://{queue_prefix}db#dsn")
        )
    assert info.value.setting == "FLEETPULSE_DATABASE_URL"
    assert "'dsn'" in str(info.value)
    assert "s3cr3t" not in str(info.value)


async def test_invalid_resolved_value_is_reported_without_echoing_it(
    secrets: Any, moto_server: str, queue_prefix: str
) -> None:
    await secrets.create_secret(
        Name=f"{queue_prefix}db", SecretString="mysql://root:s3cr3t-pw@h/db"
    )
    with pytest.raises(ConfigurationError) as info:
        await load_settings(
            ServiceSettings, _environ(moto_server, f"secretsmanager://{queue_prefix}db")
        )
    assert info.value.setting == "FLEETPULSE_DATABASE_URL"
    assert "s3cr3t" not in str(info.value)
