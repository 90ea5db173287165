"""The unit of work: append events and apply the projections in one transaction.

The platform's core invariant, written once. A :class:`UnitOfWork` wraps the connection of an
open transaction; :meth:`UnitOfWork.append` appends to a stream at an expected version and
applies the registered projections inline, so the database enforces the projections' invariants
(one open alert per fingerprint, one delivery per id) at append time and readers see their
writes. A stream that moved on raises :class:`~fleetpulse.common.errors.ConcurrencyError`; any
other database failure leaves as a translated FleetPulse error (``TransientError``,
``PermanentError``, ``DataRejectedError``).

:class:`UnitsOfWork` opens units: on a pooled connection of their own, or as a savepoint of the
caller's transaction (``conn=``) so a refusal leaves the caller's batch intact; and
:meth:`UnitsOfWork.run` reruns a unit under a :class:`~fleetpulse.common.retry.RetryPolicy` (a
conflict or a transient failure: read again, decide again). Shape after pyeventsourcing's
recorders (the append and the inline projection in one transaction) and cosmicpython's unit of
work (one context manager the handlers write through).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TypeVar

import asyncpg

from fleetpulse.common.db.errors import translated
from fleetpulse.common.errors import ConcurrencyError
from fleetpulse.common.eventstore.model import NewEvent, RecordedEvent
from fleetpulse.common.eventstore.postgres import (
    CONFLICT_SQLSTATE,
    PostgresEventStore,
    append_args,
)
from fleetpulse.common.eventstore.projection import Projection
from fleetpulse.common.retry import NO_RETRY, RetryPolicy

T = TypeVar("T")

_LOCK_SQL = "SELECT pg_advisory_xact_lock(hashtextextended($1, 7))"


@dataclass(frozen=True, slots=True)
class Append:
    """One stream's append of a batch (:meth:`UnitOfWork.append_batch`)."""

    stream: str
    events: Sequence[NewEvent]
    tenant_id: str
    expected_version: int


class UnitOfWork:
    """One open transaction: appends apply the projections; commit or roll back together."""

    __slots__ = ("_projections", "_store", "conn")

    def __init__(
        self,
        conn: asyncpg.Connection,
        store: PostgresEventStore,
        projections: Sequence[Projection] = (),
    ) -> None:
        self.conn = conn
        self._store = store
        self._projections = projections

    @property
    def store(self) -> PostgresEventStore:
        return self._store

    async def append(
        self,
        stream: str,
        events: Sequence[NewEvent],
        *,
        tenant_id: str,
        expected_version: int,
        projections: Sequence[Projection] | None = None,
    ) -> list[RecordedEvent]:
        """Append ``events`` at ``expected_version`` and apply the projections (or the
        ``projections`` given for this append) to each; ``ConcurrencyError`` if it moved on."""
        with translated:
            recorded = await self._store.append(
                stream,
                events,
                tenant_id=tenant_id,
                expected_version=expected_version,
                conn=self.conn,
            )
            for projection in self._projections if projections is None else projections:
                await _apply(projection, self.conn, recorded)
        return recorded

    async def append_batch(self, appends: Sequence[Append]) -> None:
        """Every append in one pipelined round trip, no projection applied (the caller applies
        them in bulk); any stream that moved on fails them all with ``ConcurrencyError``."""
        with translated:
            try:
                await self.conn.executemany(
                    "SELECT fleetpulse_append($1, $2, $3, $4, $5, $6, $7)",
                    [
                        append_args(a.stream, a.events, a.tenant_id, a.expected_version)
                        for a in appends
                    ],
                )
            except asyncpg.PostgresError as exc:
                if getattr(exc, "sqlstate", None) != CONFLICT_SQLSTATE and not isinstance(
                    exc, asyncpg.UniqueViolationError
                ):
                    raise
                raise ConcurrencyError("(batch)", -1, -1) from exc

    async def stream_version(self, stream: str) -> int:
        with translated:
            return await self._store.stream_version(stream, conn=self.conn)

    async def lock(self, *keys: str) -> None:
        """Take a transaction-scoped advisory lock per key, in sorted order (no deadlock)."""
        with translated:
            for key in sorted(set(keys)):
                await self.conn.execute(_LOCK_SQL, key)

    @asynccontextmanager
    async def savepoint(self) -> AsyncIterator[UnitOfWork]:
        """A nested unit: its failure rolls back only what it wrote."""
        async with self.conn.transaction():
            yield self


class UnitsOfWork:
    """Opens units of work on a store's pool with the registered projections.

    ``retry``: the policy :meth:`run` applies (default: one try). Only a unit on its own
    connection is worth retrying after a transient failure; a savepoint of the caller's
    transaction retries conflicts only (the caller's transaction decides the rest).
    """

    def __init__(
        self,
        store: PostgresEventStore,
        projections: Sequence[Projection] = (),
        *,
        retry: RetryPolicy = NO_RETRY,
    ) -> None:
        self._store = store
        self._projections = tuple(projections)
        self._retry = retry

    @property
    def store(self) -> PostgresEventStore:
        return self._store

    @property
    def pool(self) -> asyncpg.Pool:
        return self._store.pool

    @asynccontextmanager
    async def begin(
        self, *, conn: asyncpg.Connection | None = None, lock: Sequence[str] = ()
    ) -> AsyncIterator[UnitOfWork]:
        """A unit on a pooled connection, or a savepoint of ``conn``'s open transaction; the
        advisory ``lock`` keys are taken first (commands on one entity run one at a time)."""
        if conn is not None:
            async with conn.transaction():
                yield await self._opened(conn, lock)
            return
        with translated:
            async with self._store.pool.acquire() as own, own.transaction():
                yield await self._opened(own, lock)

    async def run(
        self,
        work: Callable[[UnitOfWork], Awaitable[T]],
        *,
        conn: asyncpg.Connection | None = None,
        lock: Sequence[str] = (),
        retry: RetryPolicy | None = None,
    ) -> T:
        """``await work(unit)`` in a unit, rerun in a fresh unit per ``retry`` (or the default)."""

        async def once() -> T:
            async with self.begin(conn=conn, lock=lock) as unit:
                return await work(unit)

        return await (retry or self._retry).call(once)

    async def _opened(self, conn: asyncpg.Connection, lock: Sequence[str]) -> UnitOfWork:
        unit = UnitOfWork(conn, self._store, self._projections)
        if lock:
            await unit.lock(*lock)
        return unit


async def _apply(
    projection: Projection, conn: asyncpg.Connection, events: Sequence[RecordedEvent]
) -> None:
    """Apply ``events`` in order; in bulk when the projection can (``apply_batch``)."""
    apply_batch = getattr(projection, "apply_batch", None)
    if apply_batch is not None:
        await apply_batch(conn, events)
        return
    for event in events:
        await projection.apply(conn, event)


__all__ = ["Append", "UnitOfWork", "UnitsOfWork"]
