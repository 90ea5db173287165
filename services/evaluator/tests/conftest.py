"""Evaluator test helpers: catalog rows written directly (as the catalog projection would)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from fleetpulse.common.eventstore import PostgresEventStore
from fleetpulse.evaluator.alerting import PostgresAlertLog
from fleetpulse.evaluator.catalog import Catalog, PostgresCatalogSource
from fleetpulse.evaluator.service import Evaluator

TENANT = "acme"
AddRule = Callable[..., Awaitable[None]]
AddDevice = Callable[..., Awaitable[None]]


async def insert_rule(
    pool: asyncpg.Pool,
    rule_id: str,
    *,
    kind: str = "threshold",
    severity: str = "major",
    tags: dict[str, Any] | None = None,
    version: int = 1,
    tenant: str = TENANT,
    **definition: Any,
) -> None:
    now = datetime.now(UTC)
    await pool.execute(
        """
        INSERT INTO rules (tenant_id, rule_id, name, kind, severity, definition, device_selector,
                           created_at, updated_at, version)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9)
        ON CONFLICT (tenant_id, rule_id) DO UPDATE SET definition = EXCLUDED.definition,
            kind = EXCLUDED.kind, device_selector = EXCLUDED.device_selector,
            version = EXCLUDED.version, updated_at = EXCLUDED.updated_at
        """,
        tenant,
        rule_id,
        f"rule {rule_id}",
        kind,
        severity,
        definition,
        {"tags": tags} if tags else {},
        now,
        version,
    )


async def insert_device(
    pool: asyncpg.Pool, device_id: str, *, tags: dict[str, Any] | None = None, tenant: str = TENANT
) -> None:
    now = datetime.now(UTC)
    await pool.execute(
        """
        INSERT INTO devices (tenant_id, device_id, name, tags, registered_at, updated_at, version)
        VALUES ($1, $2, $2, $3, $4, $4, 1)
        """,
        tenant,
        device_id,
        tags or {},
        now,
    )


@pytest.fixture
def add_rule(db_pool: asyncpg.Pool) -> AddRule:
    async def add(rule_id: str, **kw: Any) -> None:
        await insert_rule(db_pool, rule_id, **kw)

    return add


@pytest.fixture
def add_device(db_pool: asyncpg.Pool) -> AddDevice:
    async def add(device_id: str, **kw: Any) -> None:
        await insert_device(db_pool, device_id, **kw)

    return add


class Clock:
    def __init__(self, now: datetime | None = None) -> None:
        self.now = now or datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make_evaluator(db_pool: asyncpg.Pool, clock: Clock) -> Callable[..., Awaitable[Evaluator]]:
    async def make(**kw: Any) -> Evaluator:
        catalog = Catalog()
        await PostgresCatalogSource(db_pool, catalog).refresh()
        kw.setdefault("duration_grace_s", 0.0)
        return Evaluator(
            db_pool, catalog, PostgresAlertLog(PostgresEventStore(db_pool)), clock=clock, **kw
        )

    return make
