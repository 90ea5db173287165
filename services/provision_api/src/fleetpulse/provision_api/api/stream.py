"""``GET /api/v1/events/stream``: the caller's tenant's events as server-sent events, live.

Fed from the event log by ``position`` (appends are serialised, so following position never
skips a late commit); each frame's ``id`` is the position, so a client that reconnects with
``Last-Event-ID`` resumes after the last event it saw. A stream ends after ``STREAM_MAX_S`` (the
client reconnects with a fresh token) or when the API shuts down.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query
from fastapi.responses import StreamingResponse

from fleetpulse.common.eventstore import RecordedEvent
from fleetpulse.common.runtime import sleep_until_stopped
from fleetpulse.provision_api.api.deps import Viewer, Wired, problems
from fleetpulse.provision_api.domain import InvalidError
from fleetpulse.provision_api.queries import Queries

events = APIRouter(prefix="/events", tags=["events"])
BATCH = 200
HEARTBEAT_S = 15.0
STREAM_MAX_S = 300.0
RETRY_MS = 2000
#: Event types whose data is sent along: alerts are what a live console shows. Other events
#: carry only their stream and type (their data may hold sealed secrets; clients refetch).
DATA_PREFIXES = ("Alert",)


def frame(event: RecordedEvent) -> str:
    """One SSE frame: ``id`` = position, ``data`` = a JSON summary of the event."""
    body: dict[str, Any] = {
        "position": event.position,
        "type": event.type,
        "stream_id": event.stream_id,
        "version": event.version,
        "recorded_at": event.recorded_at.isoformat(),
    }
    if event.type.startswith(DATA_PREFIXES):
        body["data"] = event.data
    return f"id: {event.position}\ndata: {json.dumps(body, separators=(',', ':'))}\n\n"


def resume_position(last_event_id: str | None, after: int | None) -> int | None:
    """Where to resume: ``Last-Event-ID`` (a position) wins over ``?after=``; None: from now."""
    if last_event_id is None or not last_event_id.strip():
        return after
    raw = last_event_id.strip()
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise InvalidError("header.Last-Event-ID", "expected the id of a received event")
    return int(raw)


async def frames(
    queries: Queries,
    tenant_id: str,
    position: int,
    stopping: asyncio.Event,
    poll_s: float,
    max_s: float = STREAM_MAX_S,
) -> AsyncIterator[str]:
    """Frames of the tenant's events after ``position`` until ``max_s`` or ``stopping``."""
    yield f"retry: {RETRY_MS}\n: resuming after {position}\n\n"
    started = last_sent = time.monotonic()
    while not stopping.is_set() and time.monotonic() - started < max_s:
        batch = await queries.events_after(tenant_id, position, BATCH)
        for event in batch:
            position = event.position
            yield frame(event)
        if batch:
            last_sent = time.monotonic()
        if len(batch) == BATCH:
            continue
        if time.monotonic() - last_sent >= HEARTBEAT_S:
            last_sent = time.monotonic()
            yield ": heartbeat\n\n"
        await sleep_until_stopped(stopping, poll_s)


@events.get(
    "/stream",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "Server-sent events: `id` = log position, `data` = JSON "
            "{position, type, stream_id, version, recorded_at, data (alert events only)}",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
        **problems(),
    },
)
async def stream_events(
    caller: Viewer,
    wired: Wired,
    last_event_id: Annotated[
        str | None,
        Header(alias="Last-Event-ID", max_length=32, description="Resume after this event"),
    ] = None,
    after: Annotated[
        int | None,
        Query(ge=0, le=2**62, description="Start after this position (default: from now on)"),
    ] = None,
) -> StreamingResponse:
    """The caller's tenant's events, live, as ``text/event-stream`` (never another tenant's)."""
    position = resume_position(last_event_id, after)
    if position is None:
        position = await wired.queries.head_position(caller.tenant_id)
    body = frames(wired.queries, caller.tenant_id, position, wired.stopping, wired.stream_poll_s)
    return StreamingResponse(
        body,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
