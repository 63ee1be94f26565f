"""POST /cds-services/{id}: answer one hook call with cards."""

from __future__ import annotations

import asyncio
import logging
import time

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from fhir_safety.api.body import read_model
from fhir_safety.api.deps import Authenticated, StateDep
from fhir_safety.api.openapi import errors
from fhir_safety.cds.models import CdsRequest, CdsResponse, dump
from fhir_safety.errors import DataUnavailableError, StoreError, UnknownServiceError
from fhir_safety.services.evaluate import Evaluation, issued_cards

__all__ = ["router"]

log = logging.getLogger(__name__)
router = APIRouter(tags=["CDS Hooks"])

_REQUEST_SCHEMA = CdsRequest.model_json_schema(by_alias=True)


@router.post(
    "/cds-services/{service_id}",
    response_model=CdsResponse,
    responses=errors(400, 401, 404, 412, 413, 422),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _REQUEST_SCHEMA}},
        }
    },
)
async def call_service(
    service_id: str, request: Request, state: StateDep, _: Authenticated
) -> JSONResponse:
    """Run a CDS service for one hook call and return its cards."""
    if not state.catalogue.exists(service_id):
        raise UnknownServiceError(f"no CDS service {service_id!r}", location="id")
    started = time.perf_counter()
    status = "error"
    cds_request = await read_model(request, CdsRequest, state.settings.max_body_bytes)
    try:
        evaluation = await _evaluate_within_deadline(state, service_id, cds_request)
        status = "ok"
    finally:
        state.metrics.latency.labels(service_id, cds_request.hook, status).observe(
            time.perf_counter() - started
        )
    await _remember_cards(state, evaluation)
    return JSONResponse(dump(evaluation.response))


async def _evaluate_within_deadline(
    state: StateDep, service_id: str, cds_request: CdsRequest
) -> Evaluation:
    deadline = state.settings.request_deadline_seconds
    try:
        async with asyncio.timeout(deadline):
            return await state.evaluator.evaluate(service_id, cds_request)
    except TimeoutError as exc:
        raise DataUnavailableError(
            f"the data this service needs could not be gathered within {deadline:.1f} s"
        ) from exc


async def _remember_cards(state: StateDep, evaluation: Evaluation) -> None:
    """Record issued cards for feedback; a store failure must not cost the clinician the cards."""
    try:
        await run_in_threadpool(state.store.record_cards, issued_cards(evaluation, state.clock()))
    except StoreError:
        log.exception("could not record issued cards")
