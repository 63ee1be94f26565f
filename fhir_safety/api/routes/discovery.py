"""GET /cds-services: what fhir-safety offers (CDS Hooks 2.0 Discovery)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from fhir_safety.api.deps import Authenticated, StateDep
from fhir_safety.api.openapi import errors
from fhir_safety.cds.models import DiscoveryResponse, dump

__all__ = ["router"]

router = APIRouter(tags=["CDS Hooks"])


@router.get("/cds-services", response_model=DiscoveryResponse, responses=errors(401))
async def read_services(state: StateDep, _: Authenticated) -> JSONResponse:
    """List every CDS service with its hook, prefetch templates and version."""
    services = [service.descriptor() for service in state.catalogue.services]
    return JSONResponse(dump(DiscoveryResponse(services=services)))
