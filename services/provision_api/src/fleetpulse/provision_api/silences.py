"""Silences with matchers (Alertmanager's ``silence`` package): create, read, expire early.

A silence holds the notifications of every alert whose labels (see
:mod:`fleetpulse.common.matchers`) match all its matchers while ``starts_at <= now < ends_at``.
Its state is derived from the times, as Alertmanager's is: ``pending`` before ``starts_at``,
``active`` until ``ends_at``, then ``expired``. Expiring early (DELETE) sets ``ends_at`` to now
(and a pending silence's ``starts_at`` too). Events ``SilenceCreated`` / ``SilenceExpired`` on
the ``silence-{tenant}-{id}`` stream (:func:`stream_id`) are the audit trail.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import asyncpg
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from fleetpulse.common import matchers as labels
from fleetpulse.common.contracts import SilenceCreated, SilenceExpired
from fleetpulse.common.eventstore import (
    NO_STREAM,
    NewEvent,
    PostgresEventStore,
    Projection,
    metadata,
)
from fleetpulse.common.eventstore.model import stream_id
from fleetpulse.common.projections.silences import SilencesProjection
from fleetpulse.provision_api.domain import (
    ConflictError,
    ForbiddenError,
    InvalidError,
    NotFoundError,
    iso,
    new_id,
)
from fleetpulse.provision_api.pagination import decode_cursor, page
from fleetpulse.provision_api.schemas import Line, Moment, Text

Row = dict[str, Any]
Clock = Callable[[], datetime]
SilenceState = Literal["pending", "active", "expired"]
MAX_DURATION = timedelta(days=366)
_PROJECTION = SilencesProjection()


def utcnow() -> datetime:
    return datetime.now(UTC)


class MatcherIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Annotated[str, StringConstraints(max_length=200)] = Field(
        description="rule_id, rule_name, device_id, severity, metric, alert_id, tags.<key> or "
        "attributes.<key>",
        examples=["tags.site"],
    )
    type: Literal["=", "!=", "=~", "!~"] = Field(
        "=", description="Equality or (anchored, RE2) regular expression, as Alertmanager's"
    )
    value: Annotated[Text, StringConstraints(max_length=labels.MAX_VALUE_CHARS)]


class SilenceIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "matchers": [
                        {"name": "tags.site", "type": "=", "value": "north"},
                        {"name": "severity", "type": "=~", "value": "minor|warning"},
                    ],
                    "ends_at": "2026-12-01T06:00:00Z",
                    "comment": "north site maintenance",
                }
            ]
        },
    )
    matchers: Annotated[list[MatcherIn], Field(min_length=1, max_length=labels.MAX_MATCHERS)]
    starts_at: Moment | None = Field(None, description="Default: now")
    ends_at: Moment
    comment: Annotated[Line, StringConstraints(min_length=1, max_length=1000)]


class Silence(BaseModel):
    silence_id: str
    matchers: list[MatcherIn]
    starts_at: datetime
    ends_at: datetime
    created_by: str
    comment: str
    created_at: datetime
    expired_by: str | None = None
    state: SilenceState
    version: int


def state_of(row: Row, now: datetime) -> SilenceState:
    if now >= row["ends_at"]:
        return "expired"
    return "pending" if now < row["starts_at"] else "active"


def silence_created(silence_id: str, body: SilenceIn, created_by: str, now: datetime) -> NewEvent:
    """Validate ``body`` as Alertmanager's ``validateSilence`` does; :class:`InvalidError`."""
    try:
        parsed = labels.matchers([m.model_dump() for m in body.matchers], "body.matchers")
    except labels.MatcherError as error:
        raise InvalidError(error.field, error.detail) from None
    starts_at = max(body.starts_at or now, now)  # a start in the past is now, as in Alertmanager
    if body.ends_at <= starts_at:
        raise InvalidError("body.ends_at", "must be after starts_at")
    if body.ends_at <= now:
        raise InvalidError("body.ends_at", "must be in the future")
    if body.ends_at - starts_at > MAX_DURATION:
        raise InvalidError("body.ends_at", "a silence lasts at most 366 days")
    created = SilenceCreated(
        silence_id=silence_id,
        matchers=[m.as_dict() for m in parsed],
        starts_at=iso(starts_at),
        ends_at=iso(body.ends_at),
        created_by=created_by,
        comment=body.comment,
    )
    return NewEvent.of(created)


def silence_expired(row: Row, by: str, now: datetime) -> NewEvent:
    if state_of(row, now) == "expired":
        raise ConflictError(f"silence {row['silence_id']} already expired")
    expired = SilenceExpired(silence_id=row["silence_id"], ends_at=iso(now), expired_by=by)
    return NewEvent.of(expired)


async def write_one(
    events: PostgresEventStore,
    stream: str,
    tenant_id: str,
    load: Callable[[asyncpg.Connection], Awaitable[Row | None]],
    decide: Callable[[Row], NewEvent],
    expected: int | None,
    actor: str,
    projection: Projection,
    what: str,
) -> Row | None:
    """Append the event ``decide`` makes of the current row (``{}`` when creating, with
    ``expected`` NO_STREAM; None: the row's version) under the stream's lock, apply
    ``projection`` inline, and return the row as written (None: it is gone). :class:`NotFoundError` if there is no
    row to change; :class:`ForbiddenError` if the tenant is not registered."""
    async with events.pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 7))", stream)
        if not await conn.fetchval("SELECT 1 FROM tenants WHERE tenant_id = $1", tenant_id):
            raise ForbiddenError(f"tenant {tenant_id} is not registered")
        row = await load(conn)
        if expected is None:
            if row is None:
                raise NotFoundError(what)
            expected = int(row["version"])
        event = decide(row or {})
        stamped = NewEvent(event.type, event.data, metadata(actor=actor), event.event_id)
        recorded = await events.append(
            stream, [stamped], tenant_id=tenant_id, expected_version=expected, conn=conn
        )
        for item in recorded:
            await projection.apply(conn, item)
        return await load(conn)


class SilenceBook:
    """Commands and reads of silences; every statement is scoped to the caller's tenant."""

    def __init__(self, pool: asyncpg.Pool, clock: Clock = utcnow) -> None:
        self._pool, self._events, self._clock = pool, PostgresEventStore(pool), clock

    async def create(self, tenant_id: str, body: SilenceIn, actor: str) -> Row:
        silence_id = new_id("sil")
        event = silence_created(silence_id, body, actor, self._clock())
        return await self._write(tenant_id, silence_id, lambda _row: event, NO_STREAM, actor)

    async def expire(self, tenant_id: str, silence_id: str, actor: str) -> Row:
        now = self._clock()
        return await self._write(
            tenant_id, silence_id, lambda row: silence_expired(row, actor, now), None, actor
        )

    async def _write(
        self,
        tenant_id: str,
        silence_id: str,
        decide: Callable[[Row], NewEvent],
        expected: int | None,
        actor: str,
    ) -> Row:
        written = await write_one(
            self._events,
            stream_id("silence", tenant_id, silence_id),
            tenant_id,
            lambda conn: self._row(conn, tenant_id, silence_id),
            decide,
            expected,
            actor,
            _PROJECTION,
            f"silence {silence_id}",
        )
        assert written is not None  # silences are never deleted
        return self._view(written)

    async def get(self, tenant_id: str, silence_id: str) -> Row:
        async with self._pool.acquire() as conn:
            row = await self._row(conn, tenant_id, silence_id)
        if row is None:
            raise NotFoundError(f"silence {silence_id}")
        return self._view(row)

    async def list(
        self, tenant_id: str, state: SilenceState | None, limit: int, cursor: str | None
    ) -> tuple[list[Row], str | None]:
        """Newest first (by ``created_at``), optionally only in ``state`` now."""
        after = decode_cursor(cursor, datetime, str)
        now = self._clock()
        rows = await self._pool.fetch(
            """
            SELECT * FROM silences
            WHERE tenant_id = $1
              AND ($2::text IS NULL
                   OR ($2 = 'expired' AND ends_at <= $3)
                   OR ($2 = 'active' AND starts_at <= $3 AND ends_at > $3)
                   OR ($2 = 'pending' AND starts_at > $3 AND ends_at > $3))
              AND ($4::timestamptz IS NULL OR (created_at, silence_id) < ($4, $5::text))
            ORDER BY created_at DESC, silence_id DESC LIMIT $6
            """,
            tenant_id,
            state,
            now,
            after[0] if after else None,
            after[1] if after else None,
            limit + 1,
        )
        items, next_cursor = page(
            [dict(r) for r in rows], limit, lambda r: (r["created_at"], r["silence_id"])
        )
        return [self._view(r) for r in items], next_cursor

    @staticmethod
    async def _row(conn: asyncpg.Connection, tenant_id: str, silence_id: str) -> Row | None:
        row = await conn.fetchrow(
            "SELECT * FROM silences WHERE tenant_id = $1 AND silence_id = $2",
            tenant_id,
            silence_id,
        )
        return dict(row) if row else None

    def _view(self, row: Row) -> Row:
        return {**row, "state": state_of(row, self._clock())}
