"""Rules, integrations and routes: create, list, get, replace (If-Match), delete."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Response

from fleetpulse.common.contracts.constants import ID_PATTERN
from fleetpulse.provision_api import schemas
from fleetpulse.provision_api.api.deps import (
    Cursor,
    IfMatch,
    Limit,
    TenantAdmin,
    Viewer,
    Wired,
    etag,
    problems,
)
from fleetpulse.provision_api.history import AsOf, as_of_instant, read_as_of
from fleetpulse.provision_api.queries import rule_view

rules = APIRouter(prefix="/rules", tags=["rules"])
integrations = APIRouter(prefix="/integrations", tags=["integrations"])
routes = APIRouter(prefix="/routes", tags=["routes"])

RuleId = Annotated[str, Path(pattern=ID_PATTERN)]
IntegrationId = Annotated[str, Path(pattern=ID_PATTERN)]
RouteId = Annotated[str, Path(pattern=ID_PATTERN)]


def _page(result: tuple[list[dict[str, Any]], str | None]) -> dict[str, Any]:
    return {"items": result[0], "next_cursor": result[1]}


def _tagged(response: Response, row: dict[str, Any], location: str | None = None) -> dict[str, Any]:
    response.headers.update(etag(row["version"]))
    if location is not None:
        response.headers["Location"] = location
    return row


# --- rules -----------------------------------------------------------------------------------


@rules.post("", status_code=201, response_model=schemas.Rule, responses=problems())
async def create_rule(
    body: schemas.RuleIn, caller: TenantAdmin, wired: Wired, response: Response
) -> Any:
    row = rule_view(await wired.commands.create_rule(caller.tenant_id, body, caller.actor))
    return _tagged(response, row, f"/api/v1/rules/{row['rule_id']}")


@rules.get("", response_model=schemas.Page[schemas.Rule], responses=problems())
async def list_rules(
    caller: Viewer, wired: Wired, limit: Limit = 100, cursor: Cursor = None
) -> Any:
    return _page(await wired.queries.rules(caller.tenant_id, limit, cursor))


@rules.get("/{rule_id}", response_model=schemas.Rule, responses=problems(404))
async def get_rule(
    rule_id: RuleId, caller: Viewer, wired: Wired, response: Response, as_of: AsOf = None
) -> Any:
    """The rule; with ``as_of``, as it was then (rebuilt from its events)."""
    if as_of is not None:
        row = await read_as_of(
            wired.queries.pool,
            "rule",
            caller.tenant_id,
            rule_id,
            as_of_instant(as_of),
            lambda q: q.rule(caller.tenant_id, rule_id),
        )
        return _tagged(response, row)
    return _tagged(response, await wired.queries.rule(caller.tenant_id, rule_id))


@rules.put("/{rule_id}", response_model=schemas.Rule, responses=problems(404, 412))
async def replace_rule(
    rule_id: RuleId,
    body: schemas.RuleIn,
    caller: TenantAdmin,
    wired: Wired,
    version: IfMatch,
    response: Response,
) -> Any:
    row = await wired.commands.update_rule(caller.tenant_id, rule_id, body, version, caller.actor)
    return _tagged(response, rule_view(row))


@rules.delete("/{rule_id}", status_code=204, responses=problems(404, 412))
async def delete_rule(
    rule_id: RuleId, caller: TenantAdmin, wired: Wired, version: IfMatch
) -> Response:
    await wired.commands.delete_rule(caller.tenant_id, rule_id, version, caller.actor)
    return Response(status_code=204)


# --- integrations ----------------------------------------------------------------------------


@integrations.post(
    "", status_code=201, response_model=schemas.IntegrationCreated, responses=problems()
)
async def create_integration(
    body: schemas.IntegrationIn, caller: TenantAdmin, wired: Wired, response: Response
) -> Any:
    """Create an integration; a webhook's ``whsec_`` signing secret is in this response only."""
    row, secret = await wired.commands.create_integration(caller.tenant_id, body, caller.actor)
    _tagged(response, row, f"/api/v1/integrations/{row['integration_id']}")
    return {**row, "secret": secret}


@integrations.get("", response_model=schemas.Page[schemas.Integration], responses=problems())
async def list_integrations(
    caller: Viewer, wired: Wired, limit: Limit = 100, cursor: Cursor = None
) -> Any:
    return _page(await wired.queries.integrations(caller.tenant_id, limit, cursor))


@integrations.get("/{integration_id}", response_model=schemas.Integration, responses=problems(404))
async def get_integration(
    integration_id: IntegrationId, caller: Viewer, wired: Wired, response: Response
) -> Any:
    return _tagged(response, await wired.queries.integration(caller.tenant_id, integration_id))


@integrations.put(
    "/{integration_id}", response_model=schemas.Integration, responses=problems(404, 412)
)
async def replace_integration(
    integration_id: IntegrationId,
    body: schemas.IntegrationIn,
    caller: TenantAdmin,
    wired: Wired,
    version: IfMatch,
    response: Response,
) -> Any:
    """Replace name and configuration (the kind cannot change; the secret is kept)."""
    row = await wired.commands.update_integration(
        caller.tenant_id, integration_id, body, version, caller.actor
    )
    return _tagged(response, row)


@integrations.delete(
    "/{integration_id}", response_model=schemas.Integration, responses=problems(404, 409, 412)
)
async def disable_integration(
    integration_id: IntegrationId,
    caller: TenantAdmin,
    wired: Wired,
    version: IfMatch,
    response: Response,
) -> Any:
    """Disable the integration (deliveries stop; its history stays)."""
    row = await wired.commands.disable_integration(
        caller.tenant_id, integration_id, version, caller.actor
    )
    return _tagged(response, row)


# --- routes ----------------------------------------------------------------------------------


@routes.post("", status_code=201, response_model=schemas.Route, responses=problems())
async def create_route(
    body: schemas.RouteIn, caller: TenantAdmin, wired: Wired, response: Response
) -> Any:
    row = await wired.commands.create_route(caller.tenant_id, body, caller.actor)
    return _tagged(response, row, f"/api/v1/routes/{row['route_id']}")


@routes.get("", response_model=schemas.Page[schemas.Route], responses=problems())
async def list_routes(
    caller: Viewer, wired: Wired, limit: Limit = 100, cursor: Cursor = None
) -> Any:
    return _page(await wired.queries.routes(caller.tenant_id, limit, cursor))


@routes.get("/{route_id}", response_model=schemas.Route, responses=problems(404))
async def get_route(route_id: RouteId, caller: Viewer, wired: Wired, response: Response) -> Any:
    return _tagged(response, await wired.queries.route(caller.tenant_id, route_id))


@routes.put("/{route_id}", response_model=schemas.Route, responses=problems(404, 412))
async def replace_route(
    route_id: RouteId,
    body: schemas.RouteIn,
    caller: TenantAdmin,
    wired: Wired,
    version: IfMatch,
    response: Response,
) -> Any:
    row = await wired.commands.update_route(caller.tenant_id, route_id, body, version, caller.actor)
    return _tagged(response, row)


@routes.delete("/{route_id}", status_code=204, responses=problems(404, 412))
async def delete_route(
    route_id: RouteId, caller: TenantAdmin, wired: Wired, version: IfMatch
) -> Response:
    await wired.commands.delete_route(caller.tenant_id, route_id, version, caller.actor)
    return Response(status_code=204)
