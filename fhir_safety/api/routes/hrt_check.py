"""POST /fhir-safety/MedicationRequest/$hrt-check: the HRT pharmacy check as a FHIR operation."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

from fhir_safety.api.body import read_model
from fhir_safety.api.deps import Authenticated, StateDep
from fhir_safety.api.openapi import FHIR_ROUTE_ERRORS, errors
from fhir_safety.services.hrt_check import run_hrt_check

__all__ = ["router"]

router = APIRouter(tags=["FHIR operations"])


class FhirBody(BaseModel):
    """Any FHIR resource: only ``resourceType`` is checked here, the rest by the service."""

    model_config = ConfigDict(extra="allow")

    resourceType: str  # noqa: N815 (FHIR's own name, kept for the JSON body)


@router.post(
    "/fhir-safety/MedicationRequest/$hrt-check",
    response_class=JSONResponse,
    responses=errors(*FHIR_ROUTE_ERRORS),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/fhir+json": {"schema": {"type": "object"}}},
        }
    },
)
async def check_hrt(request: Request, state: StateDep, _: Authenticated) -> JSONResponse:
    """Check a MedicationRequest (or a Bundle) being dispensed; answer an OperationOutcome."""
    body = await read_model(request, FhirBody, state.settings.max_body_bytes)
    outcome = await run_hrt_check(
        body.model_dump(), settings=state.settings, http=state.http, clock=state.clock
    )
    return JSONResponse(outcome, media_type="application/fhir+json")
