"""The silences projection: ``silences`` rows from ``SilenceCreated`` / ``SilenceExpired``.

Owned by provision_api (applied inline, in the transaction that appends); the dispatcher reads
the rows. Idempotent: an event applies only when it is newer than the row (``version``).
Timestamps come from the event data, never from the clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import ClassVar

import asyncpg

from fleetpulse.common.eventstore.model import RecordedEvent
from fleetpulse.common.eventstore.projection import EventHandler, HandlerProjection


def _instant(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def _created(conn: asyncpg.Connection, event: RecordedEvent) -> None:
    data = event.data
    await conn.execute(
        """
        INSERT INTO silences (tenant_id, silence_id, matchers, starts_at, ends_at, created_by,
                              comment, created_at, version)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
        ON CONFLICT (tenant_id, silence_id) DO NOTHING
        """,
        event.tenant_id,
        data["silence_id"],
        data["matchers"],
        _instant(data["starts_at"]),
        _instant(data["ends_at"]),
        data["created_by"],
        data.get("comment", ""),
        event.recorded_at,
        event.version,
    )


async def _expired(conn: asyncpg.Connection, event: RecordedEvent) -> None:
    """Expired early at ``ends_at``; a silence that had not started ends before it starts."""
    await conn.execute(
        """
        UPDATE silences SET ends_at = $3, starts_at = least(starts_at, $3), expired_by = $4,
                            version = $5
        WHERE tenant_id = $1 AND silence_id = $2 AND version < $5
        """,
        event.tenant_id,
        event.data["silence_id"],
        _instant(event.data["ends_at"]),
        event.data.get("expired_by"),
        event.version,
    )


class SilencesProjection(HandlerProjection):
    name = "silences"
    tables = ("silences",)
    handlers: ClassVar[Mapping[str, EventHandler]] = {
        "SilenceCreated": _created,
        "SilenceExpired": _expired,
    }


__all__ = ["SilencesProjection"]
