"""Silences with matchers: create, list, read, expire early (DELETE)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Response

from fleetpulse.provision_api.api.deps import Cursor, Limit, Operator, Viewer, Wired, problems
from fleetpulse.provision_api.domain import ID_PATTERN
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
