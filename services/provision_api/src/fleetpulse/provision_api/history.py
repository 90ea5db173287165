"""Time travel: an entity as it was at time T, rebuilt from its events.

The entity's stream is folded, up to T, through the very projection handlers that maintain the
live tables (:class:`CatalogProjection`, :class:`AlertsProjection`): inside one transaction that
is always rolled back, temporary tables shadow the projection's tables (PostgreSQL resolves
``pg_temp`` first), the events recorded at or before T are applied in version order, and the
ordinary read query runs against that scratch state. No second copy of the apply logic exists,
so ``as_of`` now equals the live row by construction; nothing of the live tables is touched.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

import asyncpg
from fastapi import Query

from fleetpulse.common.eventstore import Projection, RecordedEvent
from fleetpulse.common.projections.alerts import AlertsProjection
from fleetpulse.common.projections.catalog import CatalogProjection
from fleetpulse.provision_api.domain import InvalidError
from fleetpulse.provision_api.queries import Queries

T = TypeVar("T")
PROJECTIONS: tuple[Projection, ...] = (CatalogProjection(), AlertsProjection())


def as_of_instant(moment: datetime) -> datetime:
    """``moment`` in UTC (naive means UTC); InvalidError (422) when it cannot be represented."""
    try:
        aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
        return aware.astimezone(UTC)
    except (OverflowError, ValueError):
        raise InvalidError("query.as_of", "out of range") from None


async def read_as_of(
    pool: asyncpg.Pool,
    tenant_id: str,
    stream: str,
    at: datetime,
    read: Callable[[Queries], Awaitable[T]],
) -> T:
    """``read`` run against the state folded from ``stream``'s events recorded at or before ``at``.

    Raises what ``read`` raises (NotFoundError when the entity did not exist yet at ``at``).
    """
    async with pool.acquire() as conn:
        transaction = conn.transaction()
        await transaction.start()
        try:
            await _shadow_tables(conn)
            for event in await _events_until(conn, tenant_id, stream, at):
                for projection in PROJECTIONS:
                    await projection.apply(conn, event)
            return await read(Queries(conn))
        finally:
            await transaction.rollback()


async def _shadow_tables(conn: asyncpg.Connection) -> None:
    for table in sorted({t for p in PROJECTIONS for t in p.tables}):
        await conn.execute(f"CREATE TEMP TABLE {table} (LIKE {table} INCLUDING ALL) ON COMMIT DROP")


async def _events_until(
    conn: asyncpg.Connection, tenant_id: str, stream: str, at: datetime
) -> list[RecordedEvent]:
    rows = await conn.fetch(
        "SELECT * FROM events WHERE stream_id = $1 AND tenant_id = $2 AND recorded_at <= $3 "
        "ORDER BY version",
        stream,
        tenant_id,
        at,
    )
    return [RecordedEvent.from_row(row) for row in rows]


def recorded_until(events: list[Any], at: datetime) -> list[Any]:
    """The events of a history recorded at or before ``at``."""
    return [e for e in events if e.recorded_at <= at]


AsOf = Annotated[
    datetime | None,
    Query(
        description="Rebuild the entity from its events recorded at or before this ISO-8601 time "
        "(naive means UTC); 404 if it did not exist yet",
        examples=["2026-11-22T04:00:00Z"],
    ),
]
