"""Provisioning profiles (tenant-admin) and claim-based device provisioning (no bearer token)."""

from __future__ import annotations

import logging
import math
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response

from fleetpulse.common.contracts.constants import ID_PATTERN
from fleetpulse.provision_api import schemas
from fleetpulse.provision_api.api.deps import (
    Cursor,
    IfMatch,
    Limit,
    TenantAdmin,
    Wired,
    etag,
    problems,
)
from fleetpulse.provision_api.api.devices import with_credentials
from fleetpulse.provision_api.domain import DomainError, UnauthenticatedError
from fleetpulse.provision_api.problems import MEDIA_TYPE, ProblemError

log = logging.getLogger(__name__)
profiles = APIRouter(prefix="/provisioning-profiles", tags=["provisioning"])
claims = APIRouter(tags=["provisioning"])
ProfileId = Annotated[str, Path(pattern=ID_PATTERN)]


@profiles.post("", status_code=201, response_model=schemas.ProfileCreated, responses=problems())
async def create_profile(
    body: schemas.ProfileIn, caller: TenantAdmin, wired: Wired, response: Response
) -> Any:
    """Create a fleet provisioning profile; its ``provision_secret`` is shown only here."""
    row, secret = await wired.commands.create_profile(caller.tenant_id, body, caller.actor)
    response.headers.update(etag(row["version"]))
    return {**row, "provision_secret": secret}


@profiles.get("", response_model=schemas.Page[schemas.Profile], responses=problems())
async def list_profiles(
    caller: TenantAdmin, wired: Wired, limit: Limit = 100, cursor: Cursor = None
) -> Any:
    items, next_cursor = await wired.queries.profiles(caller.tenant_id, limit, cursor)
    return {"items": items, "next_cursor": next_cursor}


@profiles.get("/{profile_id}", response_model=schemas.Profile, responses=problems(404))
async def get_profile(
    profile_id: ProfileId, caller: TenantAdmin, wired: Wired, response: Response
) -> Any:
    row = await wired.queries.profile(caller.tenant_id, profile_id)
    response.headers.update(etag(row["version"]))
    return row


@profiles.delete("/{profile_id}", response_model=schemas.Profile, responses=problems(404, 409, 412))
async def revoke_profile(
    profile_id: ProfileId, caller: TenantAdmin, wired: Wired, version: IfMatch, response: Response
) -> Any:
    """Revoke the profile: no further device can claim with it."""
    row = await wired.commands.revoke_profile(caller.tenant_id, profile_id, version, caller.actor)
    response.headers.update(etag(row["version"]))
    return row


def _claim_problems() -> dict[int | str, dict[str, Any]]:
    documented = problems(409, 429, 503)
    documented.pop(403)
    ref = {"$ref": "#/components/schemas/Problem"}
    documented[403] = {
        "description": "Profile revoked, expired or full",
        "content": {MEDIA_TYPE: {"schema": ref}},
    }
    documented[401] = {
        "description": "Wrong provisioning key or secret",
        "content": {MEDIA_TYPE: {"schema": ref}},
    }
    return documented


@claims.post(
    "/provision",
    status_code=201,
    response_model=schemas.DeviceWithCredentials,
    responses=_claim_problems(),
    openapi_extra={"security": []},
)
async def provision(body: schemas.ProvisionIn, request: Request, wired: Wired) -> Any:
    """Register a device by claim with a profile's key and secret (no bearer token).

    Rate limited per source address. Returns the device's broker credentials once.
    """
    source = request.client.host if request.client else "unknown"
    await _rate_limit(wired, source)
    profile = await wired.queries.profile_by_key(body.provision_key)
    try:
        if profile is None:
            raise UnauthenticatedError("wrong provisioning key or secret")
        registered = await wired.commands.claim(body, profile)
    except DomainError as exc:
        # Never log the secret: only which key was tried, from where, and why it failed.
        log.warning(
            "provisioning claim refused",
            extra={
                "provision_key": body.provision_key[:64],
                "source": source,
                "device_id": body.device_id,
                "reason": str(exc),
            },
        )
        raise
    log.info(
        "device provisioned by claim",
        extra={
            "tenant_id": registered.device["tenant_id"],
            "device_id": body.device_id,
            "profile_id": profile["profile_id"],
        },
    )
    return with_credentials(wired, registered)


async def _rate_limit(wired: Wired, source: str) -> None:
    """Per client address (the right-most untrusted X-Forwarded-For hop: edge.ForwardedSource),
    counted in the database so the limit holds across API replicas."""
    wait_s = await wired.provision_limiter.take(source)
    if wait_s > 0:
        raise ProblemError(
            429,
            "Too Many Requests",
            "too many provisioning attempts from this source",
            headers={"Retry-After": str(max(1, math.ceil(wait_s)))},
        )
