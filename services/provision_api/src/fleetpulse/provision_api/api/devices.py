from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Response

from fleetpulse.common.contracts.constants import ID_PATTERN, METRIC_PATTERN
from fleetpulse.common.eventstore import RecordedEvent, stream_id
from fleetpulse.provision_api import schemas
from fleetpulse.provision_api.api.deps import (
    Cursor,
    IfMatch,
    Limit,
    Services,
    TenantAdmin,
    Viewer,
    Wired,
    etag,
    problems,
)
from fleetpulse.provision_api.domain import InvalidError, topic_prefix
from fleetpulse.provision_api.history import AsOf, as_of_instant, read_as_of
from fleetpulse.provision_api.service import Registered

router = APIRouter(prefix="/devices", tags=["devices"])
DeviceId = Annotated[str, Path(pattern=ID_PATTERN, examples=["truck-042"])]
TAG_FILTER = re.compile(r"^([A-Za-z0-9_.-]{1,64}):(.{0,256})$", re.DOTALL)
BUCKET = re.compile(r"^([1-9][0-9]{0,5})(s|m|h|d)$")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_BUCKETS = 10_000
MAX_RANGE = timedelta(days=400)


def with_credentials(wired: Services, registered: Registered) -> dict[str, Any]:
    row, creds = registered.device, registered.credentials
    mqtt = {
        "host": wired.mqtt_host,
        "port": wired.mqtt_port,
        "client_id": creds.client_id,
        "username": creds.username,
        "password": creds.password,
        "topic_prefix": topic_prefix(row["tenant_id"], row["device_id"]),
        "certificate_pem": creds.certificate_pem,
        "private_key": creds.private_key,
    }
    return {**row, "mqtt": mqtt}


@router.post(
    "", status_code=201, response_model=schemas.DeviceWithCredentials, responses=problems(409, 503)
)
async def register_device(
    body: schemas.DeviceCreate, caller: TenantAdmin, wired: Wired, response: Response
) -> Any:
    """Register a device and issue its MQTT credentials (the password is shown only here)."""
    registered = await wired.commands.register_device(caller.tenant_id, body, caller.actor)
    response.headers.update(etag(registered.device["version"]))
    response.headers["Location"] = f"/api/v1/devices/{body.device_id}"
    return with_credentials(wired, registered)


def tag_filters(tags: list[str] | None) -> dict[str, str]:
    filters = {}
    for tag in tags or []:
        match = TAG_FILTER.match(tag)
        if match is None or "\x00" in tag:
            raise InvalidError("query.tag", "expected key:value with a tag key of [A-Za-z0-9_.-]")
        filters[match[1]] = match[2]
    return filters


@router.get("", response_model=schemas.Page[schemas.Device], responses=problems())
async def list_devices(
    caller: Viewer,
    wired: Wired,
    tag: Annotated[
        list[str] | None,
        Query(description="key:value; repeat to require several", examples=["site:berlin"]),
    ] = None,
    status: Literal["active", "decommissioned"] | None = None,
    connectivity: Annotated[
        Literal["online", "stale", "offline"] | None,
        Query(description="Only devices with this connectivity (from last_seen)"),
    ] = None,
    search: Annotated[
        str | None,
        Query(max_length=64, description="Device id or name contains this (case-insensitive)"),
    ] = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> Any:
    """List the tenant's devices by id with their connectivity and latest values, optionally
    only those carrying every given tag, of a status or connectivity, or matching ``search``."""
    if search is not None and any(ord(c) < 32 for c in search):
        raise InvalidError("query.search", "must not contain control characters")
    items, next_cursor = await wired.queries.devices(
        caller.tenant_id,
        tag_filters(tag),
        status,
        limit,
        cursor,
        connectivity=connectivity,
        search=search,
    )
    return {"items": items, "next_cursor": next_cursor}


@router.get("/{device_id}", response_model=schemas.Device, responses=problems(404))
async def get_device(
    device_id: DeviceId, caller: Viewer, wired: Wired, response: Response, as_of: AsOf = None
) -> Any:
    """The device; with ``as_of``, as it was then (rebuilt from its events)."""
    if as_of is not None:
        row = await read_as_of(
            wired.queries.pool,
            "device",
            caller.tenant_id,
            device_id,
            as_of_instant(as_of),
            lambda q: q.device(caller.tenant_id, device_id),
        )
    else:
        row = await wired.queries.device(caller.tenant_id, device_id)
    response.headers.update(etag(row["version"]))
    return row


@router.patch("/{device_id}", response_model=schemas.Device, responses=problems(404, 409, 412))
async def update_device(
    device_id: DeviceId,
    body: schemas.DevicePatch,
    caller: TenantAdmin,
    wired: Wired,
    version: IfMatch,
    response: Response,
) -> Any:
    """Rename, retag or set attributes (a ``DeviceUpdated`` event); ``tags`` and
    ``attributes`` each replace every key."""
    changes = body.model_dump(include=body.model_fields_set)
    await wired.commands.update_device(caller.tenant_id, device_id, changes, version, caller.actor)
    row = await wired.queries.device(caller.tenant_id, device_id)
    response.headers.update(etag(row["version"]))
    return row


@router.delete(
    "/{device_id}", response_model=schemas.Device, responses=problems(404, 409, 412, 503)
)
async def decommission_device(
    device_id: DeviceId, caller: TenantAdmin, wired: Wired, version: IfMatch, response: Response
) -> Any:
    """Decommission: the device's credentials stop working and ingest refuses its telemetry."""
    row = await wired.commands.decommission(caller.tenant_id, device_id, version, caller.actor)
    response.headers.update(etag(row["version"]))
    return row


@router.post(
    "/{device_id}/rotate-credentials",
    response_model=schemas.DeviceWithCredentials,
    responses=problems(404, 409, 412, 503),
)
async def rotate_credentials(
    device_id: DeviceId, caller: TenantAdmin, wired: Wired, version: IfMatch, response: Response
) -> Any:
    """Issue new credentials; the old password stops working (the new one is shown only here)."""
    registered = await wired.commands.rotate_credentials(
        caller.tenant_id, device_id, version, caller.actor
    )
    response.headers.update(etag(registered.device["version"]))
    return with_credentials(wired, registered)


def event_out(event: RecordedEvent) -> dict[str, Any]:
    return {
        "event_id": str(event.event_id),
        "type": event.type,
        "version": event.version,
        "position": event.position,
        "data": event.data,
        "actor": event.metadata.get("actor"),
        "recorded_at": event.recorded_at,
    }


@router.get(
    "/{device_id}/events", response_model=schemas.Page[schemas.EventOut], responses=problems(404)
)
async def device_events(
    device_id: DeviceId, caller: Viewer, wired: Wired, limit: Limit = 100, cursor: Cursor = None
) -> Any:
    """The device's event history, oldest first."""
    await wired.queries.device(caller.tenant_id, device_id)
    events, next_cursor = await wired.queries.stream(
        stream_id("device", caller.tenant_id, device_id), caller.tenant_id, limit, cursor
    )
    return {"items": [event_out(e) for e in events], "next_cursor": next_cursor}


def _aware(moment: datetime | None) -> datetime | None:
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def _window(start: datetime | None, end: datetime | None) -> tuple[datetime, datetime]:
    try:
        end = _aware(end) or datetime.now(UTC)
        start = _aware(start) or end - timedelta(hours=24)
    except OverflowError:
        raise InvalidError("query.to", "out of range") from None
    if start >= end:
        raise InvalidError("query.from", "must be before to")
    if end - start > MAX_RANGE:
        raise InvalidError("query.from", "the window may span at most 400 days")
    return start, end


def _bucket_width(bucket: str, start: datetime, end: datetime) -> timedelta:
    match = BUCKET.match(bucket)
    if match is None:
        raise InvalidError("query.bucket", "expected a duration such as 30s, 5m, 1h or 1d")
    width = timedelta(seconds=int(match[1]) * UNIT_SECONDS[match[2]])
    if (end - start) / width > MAX_BUCKETS:
        raise InvalidError("query.bucket", f"at most {MAX_BUCKETS} buckets per request")
    return width


@router.get("/{device_id}/telemetry", response_model=schemas.Telemetry, responses=problems(404))
async def device_telemetry(
    device_id: DeviceId,
    caller: Viewer,
    wired: Wired,
    metric: Annotated[str | None, Query(pattern=METRIC_PATTERN)] = None,
    time_from: Annotated[
        schemas.Moment | None, Query(alias="from", description="default: to - 24h")
    ] = None,
    time_to: Annotated[schemas.Moment | None, Query(alias="to", description="default: now")] = None,
    bucket: Annotated[
        str | None,
        Query(
            max_length=16,
            examples=["5m"],
            description=("Aggregate into buckets of this width (min/max/avg/count of metric)"),
        ),
    ] = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> Any:
    """Raw readings (paginated), or with ``bucket`` one metric's min/max/avg/count per bucket."""
    await wired.queries.device(caller.tenant_id, device_id)
    start, end = _window(time_from, time_to)
    result: dict[str, Any] = {
        "device_id": device_id,
        "metric": metric,
        "bucket": bucket,
        "from": start,
        "to": end,
    }
    if bucket is None:
        readings, result["next_cursor"] = await wired.queries.readings(
            caller.tenant_id, device_id, metric, start, end, limit, cursor
        )
        return {**result, "readings": readings}
    if metric is None:
        raise InvalidError("query.metric", "required with bucket")
    width = _bucket_width(bucket, start, end)
    buckets = await wired.queries.buckets(caller.tenant_id, device_id, metric, start, end, width)
    return {**result, "buckets": buckets}
