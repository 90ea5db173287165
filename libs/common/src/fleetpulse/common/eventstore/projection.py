"""Projections: tables derived from the log, with their checkpoint in the same transaction.

A projection's ``apply`` must be idempotent (compare the row's ``version`` with the event's): a
writer may also apply it inline, in the transaction that appends the event, for read-your-writes
and to let the database enforce an invariant at append time; the runner then finds nothing to do.
Dropping the rows and replaying the log (:meth:`ProjectionRunner.rebuild`) yields identical rows.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import ClassVar, Protocol

import asyncpg

from fleetpulse.common.db import DATABASE_ERRORS, describe, is_permanent
from fleetpulse.common.eventstore.checkpoints import lock_checkpoint, save_checkpoint
from fleetpulse.common.eventstore.model import RecordedEvent
from fleetpulse.common.eventstore.notifications import EventNotifications
from fleetpulse.common.eventstore.postgres import PostgresEventStore

log = logging.getLogger(__name__)


class Projection(Protocol):
    """``name`` keys the checkpoint; ``tables`` are emptied before a rebuild."""

    name: str
    tables: tuple[str, ...]

    async def apply(self, conn: asyncpg.Connection, event: RecordedEvent) -> None: ...


EventHandler = Callable[[asyncpg.Connection, RecordedEvent], Awaitable[None]]


class HandlerProjection:
    """A projection made of one handler per event type; other types are ignored.

    Subclasses set ``name``, ``tables`` and ``handlers``.
    """

    name: str
    tables: tuple[str, ...]
    handlers: ClassVar[Mapping[str, EventHandler]]

    def handles(self, event_type: str) -> bool:
        return event_type in self.handlers

    async def apply(self, conn: asyncpg.Connection, event: RecordedEvent) -> None:
        handler = self.handlers.get(event.type)
        if handler is not None:
            await handler(conn, event)


class ProjectionRunner:
    """Keeps one projection up to date with the log; safe to run in several processes."""

    def __init__(
        self, store: PostgresEventStore, projection: Projection, *, batch_size: int = 500
    ) -> None:
        self._store = store
        self._projection = projection
        self._batch_size = batch_size

    async def catch_up(self) -> int:
        """Apply every event past the checkpoint; returns how many were read."""
        total = 0
        while (count := await self._apply_batch()) > 0:
            total += count
        return total

    async def _apply_batch(self) -> int:
        async with self._store.pool.acquire() as conn, conn.transaction():
            position = await lock_checkpoint(conn, self._projection.name)
            events = await self._store.read_all(
                after_position=position, limit=self._batch_size, conn=conn
            )
            for event in events:
                await self._projection.apply(conn, event)
            if events:
                await save_checkpoint(conn, self._projection.name, events[-1].position)
            return len(events)

    async def rebuild(self) -> int:
        """Empty the projection's tables and replay the whole log, in one transaction."""
        async with self._store.pool.acquire() as conn, conn.transaction():
            await lock_checkpoint(conn, self._projection.name)
            for table in self._projection.tables:
                await conn.execute(f"TRUNCATE {table}")
            position, total = 0, 0
            while events := await self._store.read_all(
                after_position=position, limit=self._batch_size, conn=conn
            ):
                for event in events:
                    await self._projection.apply(conn, event)
                position, total = events[-1].position, total + len(events)
            await save_checkpoint(conn, self._projection.name, position)
            return total

    async def run(
        self, stop: asyncio.Event, notifications: EventNotifications, *, poll_s: float = 1.0
    ) -> None:
        """Catch up whenever events are appended (or every ``poll_s``) until ``stop`` is set."""
        while not stop.is_set():
            try:
                await self.catch_up()
            except DATABASE_ERRORS as exc:
                # permanent ones too (logged as errors): a projection cannot skip an event, and
                # retrying on the next notification loses nothing
                log.log(
                    logging.ERROR if is_permanent(exc) else logging.WARNING,
                    "projection catch-up failed; retrying",
                    extra={"projection": self._projection.name, "error": describe(exc)},
                )
            await notifications.wait(poll_s)
