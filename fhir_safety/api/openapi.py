"""OpenAPI documentation of the error answers every route can give (OperationOutcome bodies)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

__all__ = ["ERRORS", "FHIR_ROUTE_ERRORS", "OperationOutcomeBody", "errors"]


class OutcomeIssue(BaseModel):
    severity: Literal["fatal", "error", "warning", "information"]
    code: str
    diagnostics: str | None = None
    expression: list[str] | None = None


class OperationOutcomeBody(BaseModel):
    resourceType: Literal["OperationOutcome"]  # noqa: N815 - the FHIR element name
    issue: list[OutcomeIssue]


_DESCRIPTIONS = {
    400: "Malformed JSON, not a CDS Hooks request, or a hook the service does not answer",
    401: "JWT missing or not acceptable (no detail is given)",
    404: "No such CDS service or resource",
    409: "The resource changed on the FHIR server meanwhile (version conflict)",
    412: "Data the service requires could be had neither from prefetch nor from the FHIR server",
    413: "Request body over the configured size",
    422: "Hook context or a FHIR resource in the request is invalid",
    502: "The FHIR server answered with an error",
    503: "The service's database is unavailable",
}

_OUTCOME_REF = {"schema": {"$ref": "#/components/schemas/OperationOutcomeBody"}}

ERRORS: dict[int | str, dict[str, Any]] = {
    status: {
        "model": OperationOutcomeBody,
        "description": text,
        # FHIR's media type; 401 answers say application/json (no detail either way).
        "content": {"application/fhir+json": _OUTCOME_REF},
    }
    for status, text in _DESCRIPTIONS.items()
}


# What a route that reads or writes the FHIR server on the caller's behalf can answer.
FHIR_ROUTE_ERRORS = (400, 401, 404, 409, 412, 413, 422, 502)


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The documented error responses of one route."""
    return {status: ERRORS[status] for status in statuses}
