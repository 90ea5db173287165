"""The stack's database on the local PostgreSQL: created if missing, then migrated."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Mapping
from urllib.parse import urlsplit, urlunsplit

import asyncpg

_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def database_url(server_url: str, name: str) -> str:
    """``server_url`` (any database) pointed at database ``name``."""
    if not _NAME.match(name):
        raise ValueError(f"database name {name!r} must match {_NAME.pattern}")
    parts = urlsplit(server_url)
    return urlunsplit(parts._replace(path=f"/{name}"))


async def ensure_database(server_url: str, name: str) -> bool:
    """Create database ``name`` unless it exists; True if it was created."""
    database_url(server_url, name)  # validates the name before it is spliced into SQL
    conn = await asyncpg.connect(server_url)
    try:
        if await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            return False
        await conn.execute(f'CREATE DATABASE "{name}"')
        return True
    finally:
        await conn.close()


async def drop_database(server_url: str, name: str) -> None:
    database_url(server_url, name)
    conn = await asyncpg.connect(server_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def run_migrations(migrate: str, env: Mapping[str, str]) -> str:
    """Run ``fleetpulse-migrate``; its output line, or ``RuntimeError`` with its stderr."""
    result = subprocess.run([migrate], env=dict(env), capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"fleetpulse-migrate failed: {result.stderr.strip()}")
    return result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
