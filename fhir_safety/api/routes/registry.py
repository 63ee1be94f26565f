"""``GET /fhir-safety/registry/valproate``: the valproate registry from the configured server.

``format=json`` (default: rows and counts for a dashboard), ``csv``, or ``fhir`` (a collection
Bundle with the List of patients and the MeasureReport). ``method``: Bulk Data ``$export`` when
the server offers it (``auto``, the configured default), ``export`` only, or paged ``search``. The FHIR server is the configured
default (``FHIR_SAFETY_FHIR_SERVER_URL``), never one named by the caller, so the endpoint
cannot be pointed at other hosts. The registry reads every patient on valproate: for large
populations use the CLI (``fhir-safety registry valproate``), which shows progress.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from fhir_safety.api.deps import Authenticated, StateDep
from fhir_safety.api.openapi import FHIR_ROUTE_ERRORS, errors
from fhir_safety.errors import DataUnavailableError
from fhir_safety.fhir.client import FhirClient
from fhir_safety.services import registry as valproate_registry

__all__ = ["router"]

router = APIRouter(tags=["Registry"])


@router.get(
    "/fhir-safety/registry/valproate",
    response_model=None,
    responses=errors(*FHIR_ROUTE_ERRORS),
)
async def read_valproate_registry(
    state: StateDep,
    _: Authenticated,
    format: Literal["json", "csv", "fhir"] = "json",
    method: Literal["auto", "export", "search"] | None = None,
) -> Response:
    """Patients on valproate who could become pregnant, by NCL action status, with counts."""
    settings = state.settings
    if not settings.fhir_server_url:
        raise DataUnavailableError(
            "no FHIR server is configured for the registry: set FHIR_SAFETY_FHIR_SERVER_URL"
        )
    client = FhirClient(
        state.http,
        settings.fhir_server_url,
        access_token=settings.fhir_server_token,
        max_response_bytes=settings.max_fhir_response_bytes,
        max_pages=100_000,
    )
    terminology = state.terminology
    now = state.clock()
    gathered = await valproate_registry.gather(
        client,
        terminology,
        settings,
        now,
        method=method or settings.bulk_export.registry_method,
    )
    built = valproate_registry.build_registry(
        gathered.patients,
        settings=settings,
        terminology=terminology,
        now=now,
        source=gathered.source,
    )
    if format == "csv":
        return Response(valproate_registry.registry_csv(built), media_type="text/csv")
    if format == "fhir":
        return JSONResponse(
            valproate_registry.registry_bundle(built), media_type="application/fhir+json"
        )
    return JSONResponse(valproate_registry.registry_json(built))
