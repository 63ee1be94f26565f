"""Incident investigations with the family as partners (services/incidents.py).

``POST /incidents`` opens one, ``POST /incidents/{id}/steps/{step}`` records an engagement step,
``GET /incidents/{id}`` reports where it stands and ``GET /incidents`` lists the open ones. All
work on the configured FHIR server (``fhir_server_url``) and need the same JWT as the CDS
endpoints.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from fhir_safety.api.body import read_model
from fhir_safety.api.deps import Authenticated, StateDep
from fhir_safety.api.openapi import FHIR_ROUTE_ERRORS, errors
from fhir_safety.errors import DataUnavailableError
from fhir_safety.fhir.client import FhirClient
from fhir_safety.services.incidents import (
    FamilyMember,
    IncidentService,
    NewInvestigation,
    StepRecord,
    parse_step_outcome,
    status_json,
)

__all__ = ["router"]

router = APIRouter(tags=["Incidents"])


class _Body(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class FamilyMemberBody(_Body):
    reference: str | None = Field(default=None, pattern=r"^RelatedPerson/[A-Za-z0-9\-.]{1,64}$")
    name: str | None = Field(default=None, max_length=200)
    relationship: str | None = Field(default=None, max_length=100)
    relationship_code: str | None = Field(default=None, pattern=r"^[A-Z]{2,12}$")
    phone: str | None = Field(default=None, max_length=50)
    email: str | None = Field(default=None, max_length=200)


class OpenInvestigationBody(_Body):
    patient_id: str = Field(pattern=r"^[A-Za-z0-9\-.]{1,64}$")
    learning_response: str = Field(max_length=64)
    event: str | None = Field(default=None, max_length=2000)
    occurred: str | None = None
    incident_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9\-.]{1,64}$")
    encounter_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9\-.]{1,64}$")
    family: list[FamilyMemberBody] = Field(default=[], max_length=20)
    lead: str | None = Field(default=None, max_length=200)
    lead_name: str | None = Field(default=None, max_length=200)
    due: str | None = Field(default=None, pattern=r"^\d{4}-\d{2}-\d{2}$")


class StepBody(_Body):
    outcome: str = "done"
    note: str | None = Field(default=None, max_length=10_000)
    when: datetime | None = None
    medium: str | None = None
    recipient: str | None = Field(default=None, pattern=r"^RelatedPerson/[A-Za-z0-9\-.]{1,64}$")
    sender: str | None = Field(default=None, max_length=200)
    questions: list[str] = Field(default=[], max_length=50)
    document: str | None = Field(default=None, max_length=200)
    due: str | None = Field(default=None, pattern=r"^\d{4}-\d{2}-\d{2}$")


@router.post("/incidents", status_code=201, responses=errors(*FHIR_ROUTE_ERRORS))
async def create_investigation(request: Request, state: StateDep, _: Authenticated) -> JSONResponse:
    """Open an investigation: incident, learning response and the family-engagement plan."""
    body = await read_model(request, OpenInvestigationBody, state.settings.max_body_bytes)
    status = await _service(state).open_investigation(
        NewInvestigation(
            patient_id=body.patient_id,
            learning_response=body.learning_response,
            event=body.event,
            occurred=body.occurred,
            incident_id=body.incident_id,
            encounter_id=body.encounter_id,
            family=tuple(FamilyMember(**m.model_dump()) for m in body.family),
            lead=body.lead,
            lead_name=body.lead_name,
            due=body.due,
        )
    )
    return JSONResponse(status_json(status), status_code=201)


@router.post("/incidents/{incident_id}/steps/{step}", responses=errors(*FHIR_ROUTE_ERRORS))
async def record_step(
    incident_id: str, step: str, request: Request, state: StateDep, _: Authenticated
) -> JSONResponse:
    """Record an engagement step as done (with the Communication), declined, paused or moved."""
    body = await read_model(request, StepBody, state.settings.max_body_bytes)
    status = await _service(state).record_step(
        incident_id,
        StepRecord(
            step=step,
            outcome=parse_step_outcome(body.outcome),
            note=body.note,
            when=body.when,
            medium=body.medium,
            recipient=body.recipient,
            sender=body.sender,
            questions=tuple(body.questions),
            document=body.document,
            due=body.due,
        ),
    )
    return JSONResponse(status_json(status))


@router.get("/incidents/{incident_id}", responses=errors(*FHIR_ROUTE_ERRORS))
async def read_engagement_status(
    incident_id: str, state: StateDep, _: Authenticated
) -> JSONResponse:
    """Where the learning response and each family-engagement step stand; what is overdue."""
    status = await _service(state).engagement_status(incident_id)
    return JSONResponse(status_json(status))


@router.get("/incidents", responses=errors(*FHIR_ROUTE_ERRORS))
async def read_open_investigations(state: StateDep, _: Authenticated) -> JSONResponse:
    """Every open investigation on the FHIR server, with its engagement status."""
    statuses = await _service(state).open_investigations()
    return JSONResponse({"investigations": [status_json(s) for s in statuses]})


def _service(state: StateDep) -> IncidentService:
    settings = state.settings
    if settings.fhir_server_url is None:
        raise DataUnavailableError(
            "no FHIR server is configured for incident investigations (fhir_server_url)"
        )
    client = FhirClient(
        state.http,
        settings.fhir_server_url,
        access_token=settings.fhir_server_token,
        max_response_bytes=settings.max_fhir_response_bytes,
        max_pages=settings.max_fhir_pages,
    )
    return IncidentService(
        client,
        settings.incidents,
        state.terminology,
        zone=ZoneInfo(settings.timezone),
        clock=state.clock,
    )
