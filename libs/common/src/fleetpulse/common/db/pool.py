"""asyncpg pools with json/jsonb codecs, so rows carry dicts rather than strings."""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson
from pydantic import SecretStr

from fleetpulse.common.db.errors import TRANSIENT_ERRORS

__all__ = ["TRANSIENT_ERRORS", "connect", "create_pool", "dsn_of", "init_connection"]


def _encode_json(value: Any) -> str:
    return orjson.dumps(value).decode()


async def init_connection(conn: asyncpg.Connection) -> None:
    for type_name in ("json", "jsonb"):
        await conn.set_type_codec(
            type_name, encoder=_encode_json, decoder=orjson.loads, schema="pg_catalog"
        )


def dsn_of(url: str | SecretStr) -> str:
    return url.get_secret_value() if isinstance(url, SecretStr) else url


async def create_pool(
    dsn: str | SecretStr,
    *,
    min_size: int = 1,
    max_size: int = 10,
    application_name: str = "fleetpulse",
    command_timeout: float | None = 60.0,
) -> asyncpg.Pool:
    """A pool whose connections decode json/jsonb into Python values."""
    pool = await asyncpg.create_pool(
        dsn_of(dsn),
        min_size=min_size,
        max_size=max_size,
        init=init_connection,
        command_timeout=command_timeout,
        server_settings={"application_name": application_name},
    )
    assert pool is not None
    return pool


async def connect(
    dsn: str | SecretStr, *, application_name: str = "fleetpulse"
) -> asyncpg.Connection:
    """One connection with the same codecs as the pool (for LISTEN and migrations)."""
    conn = await asyncpg.connect(
        dsn_of(dsn), server_settings={"application_name": application_name}
    )
    await init_connection(conn)
    return conn
