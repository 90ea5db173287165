"""``PostgresEventStore``: the event log in one table, appends serialised for gap-free reading."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from fleetpulse.common.errors import ConcurrencyError
from fleetpulse.common.eventstore.model import ANY_VERSION, NewEvent, RecordedEvent

CONFLICT_SQLSTATE = "FP409"
_COLUMNS = "position, event_id, stream_id, version, type, tenant_id, data, metadata, recorded_at"

Executor = asyncpg.Connection | asyncpg.Pool


class PostgresEventStore:
    """Append, read a stream, read everything after a position.

    Every method takes an optional ``conn``: pass the connection of an open transaction to append
    together with other writes (an inline projection, an inbox row); the append then commits or
    rolls back with them. Keep such transactions short: appends are serialised until commit.
    """

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @property
    def pool(self) -> asyncpg.Pool:
        return self._pool

    async def append(
        self,
        stream_id: str,
        events: Sequence[NewEvent],
        *,
        tenant_id: str,
        expected_version: int = ANY_VERSION,
        conn: asyncpg.Connection | None = None,
    ) -> list[RecordedEvent]:
        """Append ``events``; ``expected_version`` 0 means the stream must be new.

        Raises :class:`ConcurrencyError` when the stream moved on.
        """
        if not events:
            return []
        args = append_args(stream_id, events, tenant_id, expected_version)
        try:
            rows = await (conn or self._pool).fetch(
                "SELECT * FROM fleetpulse_append($1, $2, $3, $4, $5, $6, $7)", *args
            )
        except asyncpg.PostgresError as exc:
            raise _translate(exc, stream_id, expected_version) from exc
        return [
            _recorded(stream_id, tenant_id, event, row)
            for event, row in zip(events, rows, strict=True)
        ]

    async def read_stream(
        self, stream_id: str, *, after_version: int = 0, conn: asyncpg.Connection | None = None
    ) -> list[RecordedEvent]:
        rows = await (conn or self._pool).fetch(
            f"SELECT {_COLUMNS} FROM events WHERE stream_id = $1 AND version > $2 ORDER BY version",  # noqa: S608
            stream_id,
            after_version,
        )
        return [RecordedEvent.from_row(row) for row in rows]

    async def stream_version(
        self, stream_id: str, *, conn: asyncpg.Connection | None = None
    ) -> int:
        version = await (conn or self._pool).fetchval(
            "SELECT coalesce(max(version), 0) FROM events WHERE stream_id = $1", stream_id
        )
        return int(version)

    async def read_all(
        self,
        *,
        after_position: int = 0,
        limit: int = 1000,
        conn: asyncpg.Connection | None = None,
    ) -> list[RecordedEvent]:
        """Events after ``after_position`` in position order; never skips a late commit."""
        rows = await (conn or self._pool).fetch(
            f"SELECT {_COLUMNS} FROM events WHERE position > $1 ORDER BY position LIMIT $2",  # noqa: S608
            after_position,
            limit,
        )
        return [RecordedEvent.from_row(row) for row in rows]

    async def head_position(self, *, conn: asyncpg.Connection | None = None) -> int:
        return int(
            await (conn or self._pool).fetchval("SELECT coalesce(max(position), 0) FROM events")
        )


def append_args(
    stream_id: str, events: Sequence[NewEvent], tenant_id: str, expected_version: int
) -> tuple[Any, ...]:
    return (
        stream_id,
        expected_version,
        tenant_id,
        [e.event_id for e in events],
        [e.type for e in events],
        [e.data for e in events],
        [e.metadata for e in events],
    )


def _translate(exc: asyncpg.PostgresError, stream_id: str, expected: int) -> Exception:
    if getattr(exc, "sqlstate", None) == CONFLICT_SQLSTATE:
        detail = str(getattr(exc, "detail", "") or "0:-1")
        actual = int(detail.split(":")[1])
        return ConcurrencyError(stream_id, expected, actual)
    if isinstance(exc, asyncpg.UniqueViolationError):
        return ConcurrencyError(stream_id, expected, -1)
    original: Exception = exc
    return original


def _recorded(
    stream_id: str, tenant_id: str, event: NewEvent, row: asyncpg.Record
) -> RecordedEvent:
    return RecordedEvent(
        position=row["out_position"],
        event_id=event.event_id,
        stream_id=stream_id,
        version=row["out_version"],
        type=event.type,
        tenant_id=tenant_id,
        data=event.data,
        metadata=event.metadata,
        recorded_at=row["out_recorded_at"],
    )
