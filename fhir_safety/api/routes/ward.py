"""Ward data and long stays as JSON (issue #7 item 6, issue #10); the dashboards' router too.

* ``GET /fhir-safety/wards``: wards with inpatients now (inpatients, stranded, super-stranded).
* ``GET /fhir-safety/wards/{ward_id}``: a ward's inpatients with their NEWS2 (score and band, or
  why there is none: incomplete, stale, not applicable), the patient and family concerns of the
  last ``news2.concern_window_hours`` and the open Martha's Rule escalations. ``_unassigned``
  lists inpatients whose Encounter names no ward.
* ``GET /fhir-safety/long-stays``: every inpatient's length of stay and discharge planning
  (``format=csv`` for a spreadsheet; ``ward`` to filter).

The population is the configured one (``dashboards.population_source``: the FHIR server, or the
NDJSON folder), never a server named by the caller. Same authentication as the CDS endpoints.
The numbers are the ward board's and the long-stay page's: both call ``services.population``.
This router also carries the dashboards' pages (``fhir_safety.web.api.routes``), so the app
includes one router for both.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query
from fastapi.responses import JSONResponse, Response

from fhir_safety.api.app_state import AppState
from fhir_safety.api.deps import Authenticated, StateDep
from fhir_safety.api.openapi import errors
from fhir_safety.services import population as pop
from fhir_safety.web.api import routes as dashboards

__all__ = ["router"]

router = APIRouter(tags=["Wards"])

# A Location id (FHIR id syntax) or the pseudo-ward of inpatients with no ward.
WARD_ID = r"^([A-Za-z0-9\-.]{1,64}|_unassigned)$"
# 412: the configured population cannot be read (no server, no NDJSON folder); 502: its FHIR
# server failed. A ward with nobody in it is an empty list, not a 404.
_RESPONSES = errors(400, 401, 412, 502)


@router.get("/fhir-safety/wards", response_model=None, responses=_RESPONSES)
async def read_wards(state: StateDep, _: Authenticated) -> JSONResponse:
    """Wards with inpatients now, with their stranded and super-stranded counts."""
    population = await _population(state)
    wards = await population.wards()
    return JSONResponse(
        {
            "as_of": population.as_of.isoformat(),
            "source": population.source.describe(),
            "wards": [ward.as_dict() for ward in wards],
        }
    )


@router.get("/fhir-safety/wards/{ward_id}", response_model=None, responses=_RESPONSES)
async def read_ward(
    state: StateDep, _: Authenticated, ward_id: Annotated[str, Path(pattern=WARD_ID)]
) -> JSONResponse:
    """A ward's inpatients: NEWS2 band, concerns in the last 24 h, open escalations."""
    population = await _population(state)
    board = await population.ward_board(ward_id)
    return JSONResponse(board.as_json())


@router.get(
    "/fhir-safety/long-stays",
    response_model=None,
    responses={
        200: {
            "description": "The long-stay list: JSON, or CSV with format=csv",
            "content": {"application/json": {}, "text/csv": {"schema": {"type": "string"}}},
        },
        **_RESPONSES,
    },
)
async def read_long_stays(
    state: StateDep,
    _: Authenticated,
    ward: Annotated[str | None, Query(pattern=WARD_ID)] = None,
    format: Literal["json", "csv"] = "json",
) -> Response:
    """Inpatients with length of stay, stranded/super-stranded, expected discharge date."""
    population = await _population(state)
    stays = (await population.long_stays()).select(ward=ward)
    if format == "csv":
        return Response(stays.csv(), media_type="text/csv")
    return JSONResponse(stays.as_json())


async def _population(state: AppState) -> pop.Population:
    return await pop.open_population(
        state.settings, state.terminology, http=state.http, now=state.clock()
    )


router.include_router(dashboards.router)
