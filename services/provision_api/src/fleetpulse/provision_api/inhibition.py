"""Inhibit rules (Alertmanager's ``inhibit_rules``): create, list, read, delete.

An open (or acknowledged) alert matching ``source_matchers`` mutes the notifications of every
other alert matching ``target_matchers`` whose ``equal`` labels have the same values (a label
missing on both counts as equal, as in Alertmanager). Labels are those of
:mod:`fleetpulse.common.matchers`: e.g. ``equal: ["tags.site"]`` with a source matching a
site's gateway and targets matching its devices. Events ``InhibitRuleCreated`` /
``InhibitRuleDeleted`` on the ``inhibit-{tenant}-{id}`` stream.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

import asyncpg
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from fleetpulse.common import matchers as labels
from fleetpulse.common.contracts import InhibitRuleCreated, InhibitRuleDeleted
from fleetpulse.common.eventstore import NO_STREAM, NewEvent, PostgresEventStore
from fleetpulse.common.eventstore.model import stream_id
from fleetpulse.common.projections.silences import InhibitRulesProjection
from fleetpulse.provision_api.domain import InvalidError, NotFoundError, new_id
from fleetpulse.provision_api.pagination import decode_cursor, page
from fleetpulse.provision_api.schemas import Name
from fleetpulse.provision_api.silences import MatcherIn, write_one

Row = dict[str, Any]
_PROJECTION = InhibitRulesProjection()
LabelName = Annotated[str, StringConstraints(max_length=200)]
Matchers = Annotated[list[MatcherIn], Field(min_length=1, max_length=labels.MAX_MATCHERS)]


class InhibitRuleIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "gateway down mutes its site",
                    "source_matchers": [
                        {"name": "tags.role", "type": "=", "value": "gateway"},
                        {"name": "rule_id", "type": "=", "value": "rule_gateway_no_data"},
                    ],
                    "target_matchers": [{"name": "tags.role", "type": "!=", "value": "gateway"}],
                    "equal": ["tags.site"],
                }
            ]
        },
    )
    name: Name
    source_matchers: Matchers
    target_matchers: Matchers
    equal: Annotated[list[LabelName], Field(max_length=10)] = Field(default_factory=list)


class InhibitRule(BaseModel):
    inhibit_rule_id: str
    name: str
    source_matchers: list[MatcherIn]
    target_matchers: list[MatcherIn]
    equal: list[str]
    created_by: str
    created_at: datetime
    version: int


def inhibit_rule_created(rule_id: str, body: InhibitRuleIn, created_by: str) -> NewEvent:
    """The event, with every matcher and label name checked; :class:`InvalidError` naming it."""
    try:
        source = labels.matchers(
            [m.model_dump() for m in body.source_matchers],
            "body.source_matchers",
            may_match_all=True,
        )
        target = labels.matchers(
            [m.model_dump() for m in body.target_matchers],
            "body.target_matchers",
            may_match_all=True,
        )
        equal = [labels.label_name(n, f"body.equal[{i}]") for i, n in enumerate(body.equal)]
    except labels.MatcherError as error:
        raise InvalidError(error.field, error.detail) from None
    created = InhibitRuleCreated(
        inhibit_rule_id=rule_id,
        name=body.name,
        source_matchers=[m.as_dict() for m in source],
        target_matchers=[m.as_dict() for m in target],
        equal=equal,
        created_by=created_by,
    )
    return NewEvent.of(created)


class InhibitBook:
    """Commands and reads of inhibit rules, scoped to the caller's tenant."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool, self._events = pool, PostgresEventStore(pool)

    async def create(self, tenant_id: str, body: InhibitRuleIn, actor: str) -> Row:
        rule_id = new_id("inh")
        event = inhibit_rule_created(rule_id, body, actor)
        row = await self._write(tenant_id, rule_id, lambda _row: event, NO_STREAM, actor)
        assert row is not None
        return row

    async def delete(self, tenant_id: str, rule_id: str, actor: str) -> None:
        event = NewEvent.of(InhibitRuleDeleted(inhibit_rule_id=rule_id))
        await self._write(tenant_id, rule_id, lambda _row: event, None, actor)

    async def _write(
        self,
        tenant_id: str,
        rule_id: str,
        decide: Callable[[Row], NewEvent],
        expected: int | None,
        actor: str,
    ) -> Row | None:
        return await write_one(
            self._events,
            stream_id("inhibit", tenant_id, rule_id),
            tenant_id,
            lambda conn: self._row(conn, tenant_id, rule_id),
            decide,
            expected,
            actor,
            _PROJECTION,
            f"inhibit rule {rule_id}",
        )

    async def get(self, tenant_id: str, rule_id: str) -> Row:
        async with self._pool.acquire() as conn:
            row = await self._row(conn, tenant_id, rule_id)
        if row is None:
            raise NotFoundError(f"inhibit rule {rule_id}")
        return row

    async def list(
        self, tenant_id: str, limit: int, cursor: str | None
    ) -> tuple[list[Row], str | None]:
        after = decode_cursor(cursor, str)
        rows = await self._pool.fetch(
            "SELECT * FROM inhibit_rules WHERE tenant_id = $1 AND deleted_at IS NULL"
            " AND ($2::text IS NULL OR inhibit_rule_id > $2)"
            " ORDER BY inhibit_rule_id LIMIT $3",
            tenant_id,
            after[0] if after else None,
            limit + 1,
        )
        return page([dict(r) for r in rows], limit, lambda r: (r["inhibit_rule_id"],))

    @staticmethod
    async def _row(conn: asyncpg.Connection, tenant_id: str, rule_id: str) -> Row | None:
        row = await conn.fetchrow(
            "SELECT * FROM inhibit_rules WHERE tenant_id = $1 AND inhibit_rule_id = $2"
            " AND deleted_at IS NULL",
            tenant_id,
            rule_id,
        )
        return dict(row) if row else None
