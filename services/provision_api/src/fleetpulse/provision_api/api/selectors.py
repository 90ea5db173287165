"""``POST /api/v1/rules/selector-preview``: how many devices a rule's selector would match."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from fleetpulse.provision_api import schemas
from fleetpulse.provision_api.api.deps import Viewer, Wired, problems

selectors = APIRouter(prefix="/rules", tags=["rules"])


@selectors.post("/selector-preview", response_model=schemas.SelectorMatches, responses=problems())
async def preview_selector(body: schemas.SelectorPreview, caller: Viewer, wired: Wired) -> Any:
    """The number of active devices carrying every tag of ``device_selector.tags``."""
    count = await wired.queries.count_devices(caller.tenant_id, dict(body.device_selector.tags))
    return {"matched_devices": count}
