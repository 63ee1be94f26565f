"""``$news2``: POST /fhir-safety/$news2 (a Bundle) and POST /fhir-safety/Patient/{id}/$news2.

The answer is ``200`` with the NEWS2 score Observation (profile news2-score), or ``200``
with an OperationOutcome saying why no score could be given (incomplete set, not
applicable): like ``$validate``, "no score" is the operation's result, not a failure.
Failures (not a Bundle, data about another patient, no FHIR server, the server down)
are our errors, mapped in ``api/errors.py``.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

from fhir_safety.api.body import read_model
from fhir_safety.api.deps import Authenticated, StateDep
from fhir_safety.api.openapi import FHIR_ROUTE_ERRORS, errors
from fhir_safety.errors import DataUnavailableError
from fhir_safety.fhir.client import FhirClient
from fhir_safety.services.news2_operation import (
    News2Answer,
    news2_for_patient,
    news2_from_bundle,
)

__all__ = ["router"]

router = APIRouter(tags=["NEWS2"])

FHIR_JSON = "application/fhir+json"


class _Resource(BaseModel):
    """Any FHIR resource: only ``resourceType`` is checked here; the service reads the rest."""

    model_config = ConfigDict(extra="allow")
    resourceType: str  # noqa: N815 - the FHIR element name


@router.post("/fhir-safety/$news2", responses=errors(*FHIR_ROUTE_ERRORS))
async def calculate_news2(request: Request, state: StateDep, _: Authenticated) -> JSONResponse:
    """NEWS2 from a Bundle of the patient's Observations (and Patient, Goals, Conditions)."""
    body = await read_model(request, _Resource, state.settings.max_body_bytes)
    answer = news2_from_bundle(
        body.model_dump(),
        patient_id=None,
        now=state.clock(),
        settings=state.settings,
        terminology=state.terminology,
    )
    return _respond(answer)


@router.post("/fhir-safety/Patient/{patient_id}/$news2", responses=errors(*FHIR_ROUTE_ERRORS))
async def calculate_patient_news2(
    patient_id: str, request: Request, state: StateDep, _: Authenticated
) -> JSONResponse:
    """NEWS2 for one patient: from the Bundle sent, or else from the configured FHIR server."""
    settings = state.settings
    terminology = state.terminology
    if await request.body():
        body = await read_model(request, _Resource, settings.max_body_bytes)
        answer = news2_from_bundle(
            body.model_dump(),
            patient_id=patient_id,
            now=state.clock(),
            settings=settings,
            terminology=terminology,
        )
        return _respond(answer)
    if not settings.fhir_server_url:
        raise DataUnavailableError(
            "no FHIR server is configured to read the patient's observations: "
            "send a Bundle, or set FHIR_SAFETY_FHIR_SERVER_URL"
        )
    client = FhirClient(
        state.http,
        settings.fhir_server_url,
        access_token=settings.fhir_server_token,
        max_response_bytes=settings.max_fhir_response_bytes,
        max_pages=settings.max_fhir_pages,
    )
    answer = await news2_for_patient(
        patient_id, client=client, now=state.clock(), settings=settings, terminology=terminology
    )
    return _respond(answer)


def _respond(answer: News2Answer) -> JSONResponse:
    return JSONResponse(answer.resource, media_type=FHIR_JSON)
