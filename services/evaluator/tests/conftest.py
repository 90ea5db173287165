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
    at: datetime | None = None,
    enabled: bool = True,
    **definition: Any,
) -> None:
    now = at or datetime.now(UTC)
    await pool.execute(
        """
        INSERT INTO rules (tenant_id, rule_id, name, kind, severity, definition, device_selector,
                           created_at, updated_at, version, enabled)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9, $10)
        ON CONFLICT (tenant_id, rule_id) DO UPDATE SET definition = EXCLUDED.definition,
            kind = EXCLUDED.kind, device_selector = EXCLUDED.device_selector,
            version = EXCLUDED.version, updated_at = EXCLUDED.updated_at,
            enabled = EXCLUDED.enabled
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
        enabled,
    )


async def insert_device(
    pool: asyncpg.Pool,
    device_id: str,
    *,
    tags: dict[str, Any] | None = None,
    tenant: str = TENANT,
    at: datetime | None = None,
) -> None:
    now = at or datetime.now(UTC)
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
def catalog_sources() -> list[PostgresCatalogSource]:
    return []


@pytest.fixture
def refresh_catalogs(catalog_sources: list[PostgresCatalogSource]) -> Callable[[], Awaitable[None]]:
    """Reload the catalogs of every evaluator made so far (as their refresher would)."""

    async def refresh() -> None:
        for source in catalog_sources:
            await source.refresh()

    return refresh


@pytest.fixture
def make_evaluator(
    db_pool: asyncpg.Pool, clock: Clock, catalog_sources: list[PostgresCatalogSource]
) -> Callable[..., Awaitable[Evaluator]]:
    async def make(**kw: Any) -> Evaluator:
        catalog = Catalog()
        source = PostgresCatalogSource(db_pool, catalog)
        catalog_sources.append(source)
        await source.refresh()
        kw.setdefault("duration_grace_s", 0.0)
        evaluator = Evaluator(
            db_pool, catalog, PostgresAlertLog(PostgresEventStore(db_pool)), clock=clock, **kw
        )
        await evaluator.catalog_changed()  # as the service does after each catalog change
        return evaluator

    return make
