from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from fleetpulse.provision_api import schemas
from fleetpulse.provision_api.api.deps import Wired

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=schemas.Health)
async def healthz() -> schemas.Health:
    """The process answers."""
    return schemas.Health(status="ok")


@router.get(
    "/readyz",
    response_model=schemas.Health,
    responses={503: {"model": schemas.Health, "description": "A dependency is unreachable"}},
)
async def readyz(wired: Wired) -> JSONResponse:
    """The database is reachable."""
    failing = await wired.readiness()
    if failing:
        return JSONResponse({"status": "unready", "failing": failing}, status_code=503)
    return JSONResponse({"status": "ready", "failing": []})
