"""Dependencies shared by the routers: the wired services, the caller, If-Match, pagination.

No ``from __future__ import annotations`` here: FastAPI must see the closures' real annotations.
"""

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Header, Query, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from fleetpulse.provision_api.auth import AuthenticationError, Principal, TokenVerifier
from fleetpulse.provision_api.pagination import MAX_LIMIT
from fleetpulse.provision_api.problems import MEDIA_TYPE, ProblemError
from fleetpulse.provision_api.queries import Queries
from fleetpulse.provision_api.ratelimit import RateLimiter
from fleetpulse.provision_api.service import Commands

bearer = HTTPBearer(
    auto_error=False,
    bearerFormat="JWT",
    description="Access token from the Keycloak realm fleetpulse",
)


@dataclass(slots=True)
class Services:
    commands: Commands
    queries: Queries
    verifier: TokenVerifier
    provision_limiter: RateLimiter
    mqtt_host: str
    mqtt_port: int
    readiness: Callable[[], Awaitable[list[str]]]
    stream_poll_s: float = 1.0
    #: Set when the API shuts down: open event streams end so the server can stop.
    stopping: asyncio.Event = field(default_factory=asyncio.Event)


def services(request: Request) -> Services:
    wired: Services = request.app.state.services
    return wired


Wired = Annotated[Services, Depends(services)]


async def principal(
    wired: Wired,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise AuthenticationError("missing bearer token")
    return await wired.verifier.verify(credentials.credentials)


@dataclass(frozen=True, slots=True)
class Caller:
    principal: Principal
    tenant_id: str

    @property
    def actor(self) -> str:
        return f"user:{self.principal.subject}"


def role(required: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency: the caller, who must hold ``required`` (or a role implying it)."""

    async def check(caller: Annotated[Principal, Depends(principal)]) -> Principal:
        if not caller.may(required):
            raise ProblemError(403, "Forbidden", f"this needs the {required} role")
        return caller

    return check


def tenant_role(required: str) -> Callable[..., Awaitable[Caller]]:
    """A dependency: the caller and their tenant (from the token's ``tenant_id`` claim)."""
    checked = role(required)

    async def check(caller: Annotated[Principal, Depends(checked)]) -> Caller:
        if caller.tenant_id is None:
            raise AuthenticationError("token has no tenant_id claim")
        return Caller(caller, caller.tenant_id)

    return check


Viewer = Annotated[Caller, Depends(tenant_role("viewer"))]
Operator = Annotated[Caller, Depends(tenant_role("operator"))]
TenantAdmin = Annotated[Caller, Depends(tenant_role("tenant-admin"))]
PlatformAdmin = Annotated[Principal, Depends(role("platform-admin"))]


def if_match(
    value: Annotated[
        str | None,
        Header(
            alias="If-Match",
            description=(
                'The version from the resource\'s ETag, e.g. "3"; 412 if it is no longer current'
            ),
            max_length=64,
        ),
    ] = None,
) -> int | None:
    if value is None or value.strip() == "*":
        return None
    raw = value.strip().removeprefix("W/").strip('"')
    if not raw.isascii() or not raw.isdigit() or len(raw) > 9:
        raise ProblemError(412, "Precondition Failed", "If-Match does not name a current version")
    return int(raw)


IfMatch = Annotated[int | None, Depends(if_match)]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Page size (at most 500)")]
Cursor = Annotated[
    str | None, Query(max_length=1024, description="next_cursor of the previous page")
]


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the problem documents an operation may answer with."""
    titles = {
        400: "Bad request",
        401: "Missing or invalid bearer token",
        403: "The caller lacks the role",
        404: "No such resource in the caller's tenant",
        409: "Conflicts with the current state",
        412: "If-Match names a stale version",
        422: "Validation error naming the field",
        429: "Too many attempts",
        503: "A dependency is unavailable",
    }
    ref = {"$ref": "#/components/schemas/Problem"}
    return {
        s: {"description": titles[s], "content": {MEDIA_TYPE: {"schema": ref}}}
        for s in (401, 403, 422, *statuses)
    }


def etag(version: int) -> dict[str, str]:
    return {"ETag": f'"{version}"'}
