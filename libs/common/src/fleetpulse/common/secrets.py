"""Resolve ``secretsmanager://<secret-id>[#<json-key>]`` references through Secrets Manager."""

from __future__ import annotations

import json
from typing import Any

from fleetpulse.common.aws import AwsConfig, aws_client
from fleetpulse.common.errors import ConfigurationError

SCHEME = "secretsmanager://"

_cache: dict[tuple[str | None, str], str] = {}


def is_secret_reference(value: str) -> bool:
    return value.startswith(SCHEME)


def parse_reference(reference: str) -> tuple[str, str | None]:
    """``secretsmanager://id#key`` -> ("id", "key"); the key is None when absent."""
    body = reference.removeprefix(SCHEME)
    secret_id, _, key = body.partition("#")
    return secret_id, key or None


class SecretsManagerResolver:
    """Looks secrets up once per process; never logs or echoes a secret's value."""

    def __init__(self, aws: AwsConfig) -> None:
        self._aws = aws

    async def resolve(self, setting: str, reference: str) -> str:
        secret_id, key = parse_reference(reference)
        if not secret_id:
            raise ConfigurationError(setting, "secretsmanager:// reference names no secret")
        raw = await self._secret_string(setting, secret_id)
        return raw if key is None else _json_key(setting, secret_id, raw, key)

    async def _secret_string(self, setting: str, secret_id: str) -> str:
        cache_key = (self._aws.endpoint_url, secret_id)
        if cache_key not in _cache:
            _cache[cache_key] = await self._fetch(setting, secret_id)
        return _cache[cache_key]

    async def _fetch(self, setting: str, secret_id: str) -> str:
        try:
            async with aws_client("secretsmanager", self._aws) as client:
                response: dict[str, Any] = await client.get_secret_value(SecretId=secret_id)
        except Exception as exc:  # botocore raises many unrelated types; report one line
            raise ConfigurationError(
                setting, f"cannot read secret {secret_id!r}: {type(exc).__name__}"
            ) from None
        value = response.get("SecretString")
        if value is None:
            raise ConfigurationError(setting, f"secret {secret_id!r} has no SecretString")
        return str(value)


def _json_key(setting: str, secret_id: str, raw: str, key: str) -> str:
    try:
        document = json.loads(raw)
    except json.JSONDecodeError:
        raise ConfigurationError(setting, f"secret {secret_id!r} is not a JSON object") from None
    if not isinstance(document, dict) or key not in document:
        raise ConfigurationError(setting, f"secret {secret_id!r} has no key {key!r}")
    return str(document[key])


def clear_cache() -> None:
    _cache.clear()
