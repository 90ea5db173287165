"""The silences and inhibit rules projections: ``silences`` rows from ``SilenceCreated`` /
``SilenceExpired``, ``inhibit_rules`` rows from ``InhibitRuleCreated`` / ``InhibitRuleDeleted``.

Owned by provision_api (applied inline, in the transaction that appends); the dispatcher reads
the rows. Idempotent: an event applies only when it is newer than the row (``version``).
Timestamps come from the event data, never from the clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import ClassVar

import asyncpg

from fleetpulse.common.contracts.events import (
    InhibitRuleCreated,
    InhibitRuleDeleted,
    SilenceCreated,
    SilenceExpired,
    or_default,
    or_none,
)
from fleetpulse.common.eventstore.model import RecordedEvent
from fleetpulse.common.eventstore.projection import EventHandler, HandlerProjection


def _instant(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def _created(conn: asyncpg.Connection, event: RecordedEvent) -> None:
    data = SilenceCreated.from_data(event.data)
    await conn.execute(
        """
        INSERT INTO silences (tenant_id, silence_id, matchers, starts_at, ends_at, created_by,
                              comment, created_at, version)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
        ON CONFLICT (tenant_id, silence_id) DO NOTHING
        """,
        event.tenant_id,
        data.silence_id,
        data.matchers,
        _instant(data.starts_at),
        _instant(data.ends_at),
        data.created_by,
        or_default(data.comment, ""),
        event.recorded_at,
        event.version,
    )


async def _expired(conn: asyncpg.Connection, event: RecordedEvent) -> None:
    """Expired early at ``ends_at``; a silence that had not started ends before it starts."""
    data = SilenceExpired.from_data(event.data)
    await conn.execute(
        """
        UPDATE silences SET ends_at = $3, starts_at = least(starts_at, $3), expired_by = $4,
                            version = $5
        WHERE tenant_id = $1 AND silence_id = $2 AND version < $5
        """,
        event.tenant_id,
        data.silence_id,
        _instant(data.ends_at),
        or_none(data.expired_by),
        event.version,
    )


class SilencesProjection(HandlerProjection):
    name: str = "silences"
    tables: tuple[str, ...] = ("silences",)
    handlers: ClassVar[Mapping[str, EventHandler]] = {
        SilenceCreated.TYPE: _created,
        SilenceExpired.TYPE: _expired,
    }


async def _inhibit_created(conn: asyncpg.Connection, event: RecordedEvent) -> None:
    data = InhibitRuleCreated.from_data(event.data)
    await conn.execute(
        """
        INSERT INTO inhibit_rules (tenant_id, inhibit_rule_id, name, source_matchers,
                                   target_matchers, equal, created_by, created_at, version)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
        ON CONFLICT (tenant_id, inhibit_rule_id) DO NOTHING
        """,
        event.tenant_id,
        data.inhibit_rule_id,
        or_default(data.name, ""),
        data.source_matchers,
        data.target_matchers,
        or_default(data.equal, []),
        data.created_by,
        event.recorded_at,
        event.version,
    )


async def _inhibit_deleted(conn: asyncpg.Connection, event: RecordedEvent) -> None:
    await conn.execute(
        "UPDATE inhibit_rules SET deleted_at = $3, version = $4"
        " WHERE tenant_id = $1 AND inhibit_rule_id = $2 AND version < $4",
        event.tenant_id,
        InhibitRuleDeleted.from_data(event.data).inhibit_rule_id,
        event.recorded_at,
        event.version,
    )


class InhibitRulesProjection(HandlerProjection):
    name: str = "inhibit_rules"
    tables: tuple[str, ...] = ("inhibit_rules",)
    handlers: ClassVar[Mapping[str, EventHandler]] = {
        InhibitRuleCreated.TYPE: _inhibit_created,
        InhibitRuleDeleted.TYPE: _inhibit_deleted,
    }


__all__ = ["InhibitRulesProjection", "SilencesProjection"]
