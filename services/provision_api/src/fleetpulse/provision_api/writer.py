"""Commands append events and apply the projections inline, in one transaction (read-your-writes).

A unit of work first takes a transaction-scoped advisory lock per stream it will write, so
commands on one entity (and their side effects on the broker) run one at a time, while the
event store's global append lock is only held from the append to the commit.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg

from fleetpulse.common.eventstore import NewEvent, PostgresEventStore, Projection, RecordedEvent


@dataclass(slots=True)
class Unit:
    conn: asyncpg.Connection
    store: PostgresEventStore
    projections: Sequence[Projection]

    async def append(
        self, stream: str, events: Sequence[NewEvent], *, tenant_id: str, expected_version: int
    ) -> list[RecordedEvent]:
        recorded = await self.store.append(
            stream, events, tenant_id=tenant_id, expected_version=expected_version, conn=self.conn
        )
        for event in recorded:
            for projection in self.projections:
                await projection.apply(self.conn, event)
        return recorded


class CommandWriter:
    def __init__(self, store: PostgresEventStore, projections: Sequence[Projection]) -> None:
        self._store = store
        self._projections = tuple(projections)

    @property
    def store(self) -> PostgresEventStore:
        return self._store

    @asynccontextmanager
    async def unit(self, *streams: str) -> AsyncIterator[Unit]:
        async with self._store.pool.acquire() as conn, conn.transaction():
            for stream in sorted(set(streams)):
                await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 7))", stream)
            yield Unit(conn, self._store, self._projections)
