from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from fleetpulse.provision_api import schemas
from fleetpulse.provision_api.api.deps import Cursor, Limit, PlatformAdmin, Wired, problems
from fleetpulse.provision_api.service import actor_of

router = APIRouter(prefix="/tenants", tags=["tenants"])


@router.post("", status_code=201, response_model=schemas.Tenant, responses=problems(409))
async def create_tenant(
    body: schemas.TenantCreate, caller: PlatformAdmin, wired: Wired, response: Response
) -> Any:
    """Create a tenant (platform-admin)."""
    row = await wired.commands.create_tenant(body, actor_of(caller))
    response.headers["Location"] = f"/api/v1/tenants/{row['tenant_id']}"
    return row


@router.get("", response_model=schemas.Page[schemas.Tenant], responses=problems())
async def list_tenants(
    caller: PlatformAdmin, wired: Wired, limit: Limit = 100, cursor: Cursor = None
) -> Any:
    """List tenants (platform-admin)."""
    items, next_cursor = await wired.queries.tenants(limit, cursor)
    return {"items": items, "next_cursor": next_cursor}
