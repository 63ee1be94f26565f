"""Feedback: POST /cds-services/{id}/feedback, and the alert-fatigue summary."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from fhir_safety.api.body import read_model
from fhir_safety.api.deps import Authenticated, StateDep
from fhir_safety.api.openapi import errors
from fhir_safety.cds.models import FeedbackItem, FeedbackRequest
from fhir_safety.errors import UnknownServiceError
from fhir_safety.services.feedback_store import FeedbackEntry, RuleSummary

__all__ = ["router"]

router = APIRouter(tags=["Feedback"])


class FeedbackReceipt(BaseModel):
    received: int
    stored: int


class OverrideReasonCount(BaseModel):
    reason: str
    count: int


class RuleFeedback(BaseModel):
    service: str
    rule: str
    shown: int
    accepted: int
    overridden: int
    noFeedback: int  # noqa: N815 - JSON field name
    overrideReasons: list[OverrideReasonCount]  # noqa: N815 - JSON field name


class FeedbackSummary(BaseModel):
    rules: list[RuleFeedback]


_FEEDBACK_SCHEMA = FeedbackRequest.model_json_schema(by_alias=True)


@router.post(
    "/cds-services/{service_id}/feedback",
    response_model=FeedbackReceipt,
    responses=errors(400, 401, 404, 413, 503),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _FEEDBACK_SCHEMA}},
        }
    },
)
async def create_feedback(
    service_id: str, request: Request, state: StateDep, _: Authenticated
) -> JSONResponse:
    """Store what the clinician did with cards; the same feedback twice is stored once."""
    if not state.catalogue.exists(service_id):
        raise UnknownServiceError(f"no CDS service {service_id!r}", location="id")
    body = await read_model(request, FeedbackRequest, state.settings.max_body_bytes)
    entries = [to_entry(service_id, item) for item in body.feedback]
    stored = await run_in_threadpool(state.store.record_feedback, entries)
    for entry in entries:
        state.metrics.feedback.labels(service_id, entry.outcome).inc()
    return JSONResponse({"received": len(entries), "stored": stored})


@router.get("/feedback/summary", response_model=FeedbackSummary, responses=errors(401, 503))
async def read_feedback_summary(
    state: StateDep, _: Authenticated, service: str | None = None
) -> JSONResponse:
    """Per service and rule: cards shown, accepted, overridden, and override reasons."""
    rows = await run_in_threadpool(state.store.summary, service)
    return JSONResponse({"rules": [summary_row(row) for row in rows]})


def to_entry(service_id: str, item: FeedbackItem) -> FeedbackEntry:
    reason = item.override_reason.reason if item.override_reason else None
    return FeedbackEntry(
        card_uuid=item.card,
        service_id=service_id,
        outcome=item.outcome,
        outcome_timestamp=item.outcome_timestamp,
        accepted_suggestions=tuple(s.id for s in item.accepted_suggestions or ()),
        override_reason_system=reason.system if reason else None,
        override_reason_code=reason.code if reason else None,
        override_reason_display=reason.display if reason else None,
        user_comment=item.override_reason.user_comment if item.override_reason else None,
    )


def summary_row(row: RuleSummary) -> dict[str, Any]:
    return {
        "service": row.service_id,
        "rule": row.rule_id,
        "shown": row.shown,
        "accepted": row.accepted,
        "overridden": row.overridden,
        "noFeedback": row.no_feedback,
        "overrideReasons": [{"reason": code, "count": n} for code, n in row.override_reasons],
    }
