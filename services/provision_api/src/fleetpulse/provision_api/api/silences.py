"""Silences with matchers (create, list, read, expire early with DELETE) and inhibit rules."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Response

from fleetpulse.common.contracts.constants import ID_PATTERN
from fleetpulse.provision_api.api.deps import (
    Cursor,
    Limit,
    Operator,
    TenantAdmin,
    Viewer,
    Wired,
    problems,
)
from fleetpulse.provision_api.inhibition import InhibitBook, InhibitRule, InhibitRuleIn
from fleetpulse.provision_api.schemas import Page
from fleetpulse.provision_api.silences import Silence, SilenceBook, SilenceIn, SilenceState

silences = APIRouter(prefix="/silences", tags=["silences"])
SilenceId = Annotated[str, Path(pattern=ID_PATTERN)]


def _book(wired: Wired) -> SilenceBook:
    return SilenceBook(wired.queries.pool)


@silences.post("", status_code=201, response_model=Silence, responses=problems())
async def create_silence(
    body: SilenceIn, caller: Operator, wired: Wired, response: Response
) -> Any:
    """Hold the notifications of every alert matching all ``matchers`` from ``starts_at``
    (default now) until ``ends_at``; ``created_by`` is the caller. 422 names a bad matcher."""
    row = await _book(wired).create(caller.tenant_id, body, caller.actor)
    response.headers["Location"] = f"/api/v1/silences/{row['silence_id']}"
    return row


@silences.get("", response_model=Page[Silence], responses=problems())
async def list_silences(
    caller: Viewer,
    wired: Wired,
    state: SilenceState | None = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> Any:
    """The tenant's silences, newest first, optionally only those ``pending``, ``active`` or
    ``expired`` now."""
    items, next_cursor = await _book(wired).list(caller.tenant_id, state, limit, cursor)
    return {"items": items, "next_cursor": next_cursor}


@silences.get("/{silence_id}", response_model=Silence, responses=problems(404))
async def get_silence(silence_id: SilenceId, caller: Viewer, wired: Wired) -> Any:
    return await _book(wired).get(caller.tenant_id, silence_id)


@silences.delete("/{silence_id}", response_model=Silence, responses=problems(404, 409))
async def expire_silence(silence_id: SilenceId, caller: Operator, wired: Wired) -> Any:
    """Expire the silence now (it stays listed, ``expired``); 409 if it already expired."""
    return await _book(wired).expire(caller.tenant_id, silence_id, caller.actor)


inhibit_rules = APIRouter(prefix="/inhibit_rules", tags=["inhibit rules"])
InhibitRuleId = Annotated[str, Path(pattern=ID_PATTERN)]


def _rules(wired: Wired) -> InhibitBook:
    return InhibitBook(wired.queries.pool)


@inhibit_rules.post("", status_code=201, response_model=InhibitRule, responses=problems())
async def create_inhibit_rule(
    body: InhibitRuleIn, caller: TenantAdmin, wired: Wired, response: Response
) -> Any:
    """While an open alert matches ``source_matchers``, hold the notifications of the other
    alerts matching ``target_matchers`` with the same ``equal`` labels. 422 names a bad matcher."""
    row = await _rules(wired).create(caller.tenant_id, body, caller.actor)
    response.headers["Location"] = f"/api/v1/inhibit_rules/{row['inhibit_rule_id']}"
    return row


@inhibit_rules.get("", response_model=Page[InhibitRule], responses=problems())
async def list_inhibit_rules(
    caller: Viewer, wired: Wired, limit: Limit = 100, cursor: Cursor = None
) -> Any:
    items, next_cursor = await _rules(wired).list(caller.tenant_id, limit, cursor)
    return {"items": items, "next_cursor": next_cursor}


@inhibit_rules.get("/{inhibit_rule_id}", response_model=InhibitRule, responses=problems(404))
async def get_inhibit_rule(inhibit_rule_id: InhibitRuleId, caller: Viewer, wired: Wired) -> Any:
    return await _rules(wired).get(caller.tenant_id, inhibit_rule_id)


@inhibit_rules.delete("/{inhibit_rule_id}", status_code=204, responses=problems(404))
async def delete_inhibit_rule(
    inhibit_rule_id: InhibitRuleId, caller: TenantAdmin, wired: Wired
) -> Response:
    await _rules(wired).delete(caller.tenant_id, inhibit_rule_id, caller.actor)
    return Response(status_code=204)
