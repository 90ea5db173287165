"""Throwaway databases on the local PostgreSQL: one migrated template per session, a fresh
copy of it per test (``CREATE DATABASE ... TEMPLATE``), dropped afterwards.

The server is ``FLEETPULSE_TEST_POSTGRES_URL`` (default ``postgresql://postgres@127.0.0.1:5432/postgres``).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import pytest_asyncio

from fleetpulse.common.db import create_pool
from fleetpulse.common.db.migrate import migrate
from fleetpulse.common.db.pool import connect
from fleetpulse.common.eventstore import PostgresEventStore

DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"


def server_url() -> str:
    return os.environ.get("FLEETPULSE_TEST_POSTGRES_URL", DEFAULT_SERVER)


def database_url_for(name: str) -> str:
    parts = urlsplit(server_url())
    return urlunsplit(parts._replace(path=f"/{name}"))


async def create_database(name: str, template: str | None = None) -> str:
    admin = await asyncpg.connect(server_url())
    try:
        clause = f' TEMPLATE "{template}"' if template else ""
        await admin.execute(f'CREATE DATABASE "{name}"{clause}')
    finally:
        await admin.close()
    return database_url_for(name)


async def drop_database(name: str) -> None:
    admin = await asyncpg.connect(server_url())
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def create_migrated_database(name: str) -> str:
    url = await create_database(name)
    conn = await connect(url)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    return url


def unique_name(prefix: str) -> str:
    return f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"


@pytest_asyncio.fixture(scope="session")
async def migrated_template() -> AsyncIterator[str]:
    """Name of a database with every migration applied, used as a template."""
    name = unique_name("fp_template")
    await create_migrated_database(name)
    yield name
    await drop_database(name)


@pytest_asyncio.fixture
async def database_url(migrated_template: str) -> AsyncIterator[str]:
    """URL of a fresh, migrated database for one test."""
    name = unique_name("fp_test")
    url = await create_database(name, template=migrated_template)
    yield url
    await drop_database(name)


@pytest_asyncio.fixture
async def db_pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url, min_size=1, max_size=20)
    yield pool
    await pool.close()


@pytest.fixture
def event_store(db_pool: asyncpg.Pool) -> PostgresEventStore:
    return PostgresEventStore(db_pool)
