"""FastAPI dependencies: the app state and the JWT check on every CDS endpoint."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from fhir_safety.api.app_state import AppState
from fhir_safety.services.auth import VerifiedClient

__all__ = ["Authenticated", "StateDep", "endpoint_url", "get_state"]


async def get_state(request: Request) -> AppState:
    # async: FastAPI would run a sync dependency in the threadpool, a hop per request.
    state: AppState = request.app.state.fhir_safety
    return state


StateDep = Annotated[AppState, Depends(get_state)]


def endpoint_url(request: Request, state: AppState) -> str:
    """This endpoint's URL as the EHR addresses it: the JWT ``aud`` must equal it exactly."""
    base = state.settings.public_base_url
    if base:
        return f"{base}{request.url.path}"
    return str(request.url.replace(query=None, fragment=None))


async def authenticate(request: Request, state: StateDep) -> VerifiedClient | None:
    """Verify the caller's JWT (CDS Hooks 2.0 "Trusting CDS Clients"); None when running open."""
    if state.verifier is None:
        return None
    return await state.verifier.verify(
        request.headers.get("authorization"), endpoint_url(request, state)
    )


Authenticated = Annotated[VerifiedClient | None, Depends(authenticate)]
