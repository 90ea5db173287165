"""The FastAPI application: routers under /api/v1, problem documents, OpenAPI at /openapi.json."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi

from fleetpulse.provision_api import problems
from fleetpulse.provision_api.api import (
    alerts,
    catalog,
    devices,
    health,
    preview,
    provisioning,
    selectors,
    silences,
    stream,
    tenants,
)
from fleetpulse.provision_api.api.deps import Services
from fleetpulse.provision_api.edge import (
    ContainErrors,
    ForwardedSource,
    RequestLimits,
    TrustedProxies,
)

BASE_PATH = "/api/v1"
DESCRIPTION = """FleetPulse HTTP API.

Authenticate with `Authorization: Bearer <JWT>` from the Keycloak realm `fleetpulse` (RS256;
tenant from the `tenant_id` claim, roles from `realm_access.roles`: viewer, operator,
tenant-admin, platform-admin). Errors are `application/problem+json`. Lists are paginated with
`limit` (at most 500) and the opaque `next_cursor`. Updates take `If-Match` with the version from
the `ETag`; a stale version answers 412.
"""


@dataclass(frozen=True, slots=True)
class EdgeLimits:
    """What the edge middleware enforces (see :mod:`fleetpulse.provision_api.edge`)."""

    forwarded_allow_ips: str = "127.0.0.1"
    max_body_bytes: int = 1024 * 1024
    max_in_flight_per_source: int = 64
    route_limits: Mapping[str, int] = field(default_factory=dict)


def create_app(
    services: Services,
    edge: EdgeLimits | None = None,
    *,
    cors_origins: Sequence[str] = (),
) -> FastAPI:
    """The app behind its edge limits; ``cors_origins`` (FLEETPULSE_CORS_ORIGINS) may call it
    from a browser."""
    app = FastAPI(
        title="FleetPulse API",
        version="1.0.0",
        description=DESCRIPTION,
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.services = services
    problems.install(app)
    api = APIRouter(prefix=BASE_PATH)
    for router in (
        tenants.router,
        devices.router,
        preview.router,  # before catalog.rules: /rules/preview is not a rule id
        selectors.selectors,
        catalog.rules,
        catalog.integrations,
        catalog.routes,
        alerts.alerts,
        alerts.deliveries,
        alerts.quarantine,
        provisioning.profiles,
        provisioning.claims,
        stream.events,
        silences.silences,
        silences.inhibit_rules,
    ):
        api.include_router(router)
    app.include_router(api)
    app.include_router(health.router)
    if cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(cors_origins),
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "If-Match", "Last-Event-ID"],
            expose_headers=["ETag", "Location", "Retry-After"],
            max_age=600,
        )
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    _install_edge(app, edge or EdgeLimits())
    return app


def _install_edge(app: FastAPI, edge: EdgeLimits) -> None:
    """Last added runs first: the source is known, then sizes are bounded, then errors contained."""
    app.add_middleware(ContainErrors)
    app.add_middleware(
        RequestLimits,
        max_body_bytes=edge.max_body_bytes,
        max_in_flight_per_source=edge.max_in_flight_per_source,
        route_limits=edge.route_limits,
    )
    app.add_middleware(ForwardedSource, trusted=TrustedProxies.parse(edge.forwarded_allow_ips))


def _openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        problem = problems.Problem.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(problem.pop("$defs", {}))
        components["Problem"] = problem
        app.openapi_schema = schema
    return app.openapi_schema
