"""Rest-hook receiver: HAPI notifies ``/subscriptions/notify`` (authenticated by a shared secret)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

from fhir_safety.api.body import read_model
from fhir_safety.api.deps import StateDep
from fhir_safety.api.openapi import errors
from fhir_safety.errors import InvalidRequestError
from fhir_safety.services.subscriptions import SECRET_HEADER

__all__ = ["router"]

router = APIRouter(tags=["Subscriptions"])


@router.post("/subscriptions/notify", responses=errors(400, 401, 413))
async def notify_ping(request: Request, state: StateDep) -> JSONResponse:
    """A notification without payload (or a resource POSTed to the endpoint itself)."""
    state.receiver.check_secret(request.headers.get(SECRET_HEADER))
    body = await request.body()
    resource = await _resource(request, state) if body else None
    state.metrics.notifications.labels(resource["resourceType"] if resource else "ping").inc()
    await state.receiver.deliver(resource)
    return JSONResponse({"received": True})


@router.put("/subscriptions/notify/{resource_type}/{resource_id}", responses=errors(400, 401, 413))
async def notify_resource(
    resource_type: str, resource_id: str, request: Request, state: StateDep
) -> JSONResponse:
    """HAPI's rest-hook with a payload PUTs the resource to ``{endpoint}/{type}/{id}``."""
    state.receiver.check_secret(request.headers.get(SECRET_HEADER))
    resource = await _resource(request, state)
    if resource.get("resourceType") != resource_type or resource.get("id") != resource_id:
        raise InvalidRequestError("the notified resource does not match the URL")
    state.metrics.notifications.labels(resource_type).inc()
    await state.receiver.deliver(resource)
    return JSONResponse({"received": True})


class NotifiedResource(BaseModel):
    """Any FHIR resource: only ``resourceType`` is required here; handlers parse the rest."""

    model_config = ConfigDict(extra="allow")
    resourceType: str  # noqa: N815 - the FHIR element name


async def _resource(request: Request, state: StateDep) -> dict[str, Any]:
    parsed = await read_model(request, NotifiedResource, state.settings.max_body_bytes)
    return parsed.model_dump()
