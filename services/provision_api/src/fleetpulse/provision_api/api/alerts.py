"""Alerts (read, acknowledge, silence, close), deliveries with attempts, quarantine."""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response

from fleetpulse.common.contracts.constants import ID_PATTERN
from fleetpulse.common.eventstore import stream_id
from fleetpulse.provision_api import domain, schemas
from fleetpulse.provision_api.api.deps import (
    Cursor,
    IfMatch,
    Limit,
    Operator,
    Viewer,
    Wired,
    etag,
    problems,
)
from fleetpulse.provision_api.api.devices import event_out
from fleetpulse.provision_api.history import AsOf, as_of_instant, read_as_of, recorded_until

alerts = APIRouter(prefix="/alerts", tags=["alerts"])
deliveries = APIRouter(prefix="/deliveries", tags=["deliveries"])
quarantine = APIRouter(prefix="/quarantine", tags=["quarantine"])
AlertId = Annotated[str, Path(pattern=ID_PATTERN)]
ALERT_EVENTS_SHOWN = 500
MAX_COUNT_RANGE = timedelta(days=31)


@alerts.get("", response_model=schemas.Page[schemas.Alert], responses=problems())
async def list_alerts(
    caller: Viewer,
    wired: Wired,
    status: schemas.AlertStatus | None = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> Any:
    """The tenant's alerts, newest first, optionally by status."""
    items, next_cursor = await wired.queries.alerts(caller.tenant_id, status, limit, cursor)
    return {"items": items, "next_cursor": next_cursor}


@alerts.get("/{alert_id}", response_model=schemas.AlertWithEvents, responses=problems(404))
async def get_alert(
    alert_id: AlertId, caller: Viewer, wired: Wired, response: Response, as_of: AsOf = None
) -> Any:
    """The alert with its event history (opened, acknowledged, silenced, resolved, closed).

    With ``as_of``: the alert and its history as they were then (rebuilt from its events).
    """
    stream = stream_id("alert", caller.tenant_id, alert_id)
    if as_of is not None:
        at = as_of_instant(as_of)
        row = await read_as_of(
            wired.queries.pool,
            "alert",
            caller.tenant_id,
            alert_id,
            at,
            lambda q: q.alert(caller.tenant_id, alert_id),
        )
    else:
        row = await wired.queries.alert(caller.tenant_id, alert_id)
    events, _ = await wired.queries.stream(stream, caller.tenant_id, ALERT_EVENTS_SHOWN, None)
    if as_of is not None:
        events = recorded_until(events, at)
    response.headers.update(etag(row["version"]))
    return {**row, "events": [event_out(e) for e in events]}


@alerts.post("/{alert_id}/ack", response_model=schemas.Alert, responses=problems(404, 409, 412))
async def acknowledge_alert(
    alert_id: AlertId, caller: Operator, wired: Wired, version: IfMatch, response: Response
) -> Any:
    row = await wired.commands.alert_action(
        caller.tenant_id, alert_id, caller.actor, version, domain.acknowledge
    )
    response.headers.update(etag(row["version"]))
    return row


@alerts.post("/{alert_id}/silence", response_model=schemas.Alert, responses=problems(404, 409, 412))
async def silence_alert(
    alert_id: AlertId,
    body: schemas.SilenceIn,
    caller: Operator,
    wired: Wired,
    version: IfMatch,
    response: Response,
) -> Any:
    """Suppress notifications for the alert for ``duration_s`` seconds."""
    decide = functools.partial(_silence, duration_s=body.duration_s)
    row = await wired.commands.alert_action(
        caller.tenant_id, alert_id, caller.actor, version, decide
    )
    response.headers.update(etag(row["version"]))
    return row


def _silence(alert_id: str, status: str, by: str, now: Any, *, duration_s: int) -> Any:
    return domain.silence(alert_id, status, by, now, duration_s)


@alerts.post("/{alert_id}/close", response_model=schemas.Alert, responses=problems(404, 409, 412))
async def close_alert(
    alert_id: AlertId, caller: Operator, wired: Wired, version: IfMatch, response: Response
) -> Any:
    row = await wired.commands.alert_action(
        caller.tenant_id, alert_id, caller.actor, version, domain.close
    )
    response.headers.update(etag(row["version"]))
    return row


@deliveries.get("", response_model=schemas.Page[schemas.Delivery], responses=problems())
async def list_deliveries(
    caller: Viewer,
    wired: Wired,
    alert_id: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> Any:
    """Notification deliveries (optionally of one alert), each with its attempts."""
    items, next_cursor = await wired.queries.deliveries(caller.tenant_id, alert_id, limit, cursor)
    return {"items": items, "next_cursor": next_cursor}


@deliveries.get("/{delivery_id}", response_model=schemas.Delivery, responses=problems(404))
async def get_delivery(
    delivery_id: Annotated[str, Path(pattern=ID_PATTERN)], caller: Viewer, wired: Wired
) -> Any:
    return await wired.queries.delivery(caller.tenant_id, delivery_id)


@quarantine.get("", response_model=schemas.Page[schemas.QuarantinedMessage], responses=problems())
async def list_quarantine(
    caller: Viewer,
    wired: Wired,
    device_id: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    reason: schemas.QuarantineReason | None = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> Any:
    """Messages ingest refused for this tenant, newest first, with the reason."""
    items, next_cursor = await wired.queries.quarantine(
        caller.tenant_id, device_id, limit, cursor, reason
    )
    return {"items": items, "next_cursor": next_cursor}


@quarantine.get(
    "/counts",
    response_model=schemas.QuarantineCounts,
    response_model_by_alias=True,
    responses=problems(),
)
async def quarantine_counts(
    caller: Viewer,
    wired: Wired,
    time_from: Annotated[
        datetime | None, Query(alias="from", description="default: to - 24h")
    ] = None,
    time_to: Annotated[datetime | None, Query(alias="to", description="default: now")] = None,
    reason: schemas.QuarantineReason | None = None,
) -> Any:
    """How many messages were quarantined per minute and reason (at most 31 days), including
    those only counted beyond the per-minute row cap."""
    start, end = counts_window(time_from, time_to)
    items = await wired.queries.quarantine_counts(caller.tenant_id, start, end, reason)
    return {"from": start, "to": end, "items": items}


def counts_window(start: datetime | None, end: datetime | None) -> tuple[datetime, datetime]:
    end = _aware(end) or datetime.now(UTC)
    start = _aware(start) or end - timedelta(hours=24)
    if start >= end:
        raise domain.InvalidError("query.from", "must be before to")
    if end - start > MAX_COUNT_RANGE:
        raise domain.InvalidError("query.from", "the window may span at most 31 days")
    return start, end


def _aware(moment: datetime | None) -> datetime | None:
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)
