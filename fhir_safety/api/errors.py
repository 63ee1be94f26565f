"""The one place where errors become HTTP responses, each with an OperationOutcome.

CDS Hooks 3.0 recommends an OperationOutcome body on non-2xx answers; 2.0
clients ignore it. A 401 carries no detail (CDS Hooks security: the reason
stays in our log).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from fhir_safety import errors

__all__ = ["install_error_handlers", "operation_outcome"]

log = logging.getLogger(__name__)

# (status, OperationOutcome issue code), most specific class first.
_STATUS: tuple[tuple[type[errors.FhirSafetyError], int, str], ...] = (
    (errors.MalformedJsonError, 400, "structure"),
    (errors.InvalidRequestError, 400, "invalid"),
    (errors.HookMismatchError, 400, "not-supported"),
    (errors.ContextError, 422, "required"),
    (errors.InvalidResourceError, 422, "invalid"),
    (errors.PayloadTooLargeError, 413, "too-costly"),
    (errors.UnknownServiceError, 404, "not-found"),
    (errors.AuthenticationError, 401, "login"),
    (errors.DataUnavailableError, 412, "incomplete"),
    (errors.FhirError, 502, "transient"),
    (errors.StoreError, 503, "transient"),
)


def operation_outcome(
    code: str, diagnostics: str | None, location: str | None = None
) -> dict[str, Any]:
    issue: dict[str, Any] = {"severity": "error", "code": code}
    if diagnostics:
        issue["diagnostics"] = diagnostics
    if location:
        issue["expression"] = [location]
    return {"resourceType": "OperationOutcome", "issue": [issue]}


def _status_for(error: errors.FhirSafetyError) -> tuple[int, str]:
    for kind, status, code in _STATUS:
        if isinstance(error, kind):
            return status, code
    return 500, "exception"


async def _handle_fhir_safety_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, errors.FhirSafetyError)
    status, code = _status_for(error)
    if status == 401:
        log.warning("authentication refused", extra={"fields": {"reason": error.message}})
        # RFC 6750 §3: a 401 names the scheme; CDS Hooks: and nothing more.
        return JSONResponse(
            operation_outcome(code, None), status_code=401, headers={"WWW-Authenticate": "Bearer"}
        )
    level = logging.ERROR if status >= 500 else logging.INFO
    log.log(level, "request refused", extra={"fields": {"status": status, "path": _route(request)}})
    body = operation_outcome(code, error.message, error.location)
    return JSONResponse(body, status_code=status, media_type="application/fhir+json")


async def _handle_http_exception(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, StarletteHTTPException)
    code = "not-found" if error.status_code == 404 else "invalid"
    return JSONResponse(
        operation_outcome(code, str(error.detail)),
        status_code=error.status_code,
        headers=getattr(error, "headers", None),
    )


async def _handle_validation_error(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    first = error.errors()[0] if error.errors() else {"loc": (), "msg": "invalid request"}
    location = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
    return JSONResponse(
        operation_outcome("invalid", str(first.get("msg")), location or None), status_code=400
    )


async def _handle_unexpected(request: Request, _: Exception) -> JSONResponse:
    log.exception("unexpected error", extra={"fields": {"path": _route(request)}})
    return JSONResponse(operation_outcome("exception", "internal error"), status_code=500)


def _route(request: Request) -> str:
    """The matched route's template for the log, never the raw path: paths carry patient ids
    (``/fhir-safety/Patient/{patient_id}/$news2``)."""
    path = getattr(request.scope.get("route"), "path", None)
    return path if isinstance(path, str) else "(no route)"


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(errors.FhirSafetyError, _handle_fhir_safety_error)
    app.add_exception_handler(StarletteHTTPException, _handle_http_exception)
    app.add_exception_handler(RequestValidationError, _handle_validation_error)
    app.add_exception_handler(Exception, _handle_unexpected)
