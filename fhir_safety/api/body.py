"""Reading request bodies: size cap, JSON, then a wire model, with our own errors.

We parse bodies ourselves (rather than letting FastAPI do it) so that every
failure is one of our errors and gets an OperationOutcome with a location.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError

from fhir_safety.errors import InvalidRequestError, MalformedJsonError, PayloadTooLargeError

__all__ = ["read_model"]

M = TypeVar("M", bound=BaseModel)


async def read_model(request: Request, model: type[M], max_bytes: int) -> M:
    data = await _read_json(request, max_bytes)
    if not isinstance(data, dict):
        raise InvalidRequestError("the body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        location = ".".join(str(part) for part in first["loc"]) or None
        raise InvalidRequestError(
            f"{location or 'body'}: {first['msg']}", location=location
        ) from exc


async def _read_json(request: Request, max_bytes: int) -> Any:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise PayloadTooLargeError(f"the body is over {max_bytes} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise PayloadTooLargeError(f"the body is over {max_bytes} bytes")
        chunks.append(chunk)
    try:
        return json.loads(b"".join(chunks))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MalformedJsonError(f"the body is not valid JSON: {exc}") from exc
