"""A tiny FHIR server over one transaction Bundle, for pytest-httpx (read and patient search)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

__all__ = ["bundle_server"]


def bundle_server(
    bundle: dict[str, Any], *, failing: frozenset[str] = frozenset()
) -> Callable[[httpx.Request], httpx.Response]:
    """Answer ``GET [base]/Type/id`` and ``GET [base]/Type?patient=...`` from ``bundle``.

    Resource types in ``failing`` answer 500 with an OperationOutcome.
    """
    by_type: dict[str, list[dict[str, Any]]] = {}
    for entry in bundle["entry"]:
        resource = entry["resource"]
        by_type.setdefault(resource["resourceType"], []).append(resource)

    def respond(request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/fhir/")
        kind, _, rid = path.partition("/")
        if kind in failing:
            return httpx.Response(500, json={"resourceType": "OperationOutcome"})
        if rid:
            found = [r for r in by_type.get(kind, []) if r["id"] == rid]
            if not found:
                return httpx.Response(404, json={"resourceType": "OperationOutcome"})
            return httpx.Response(200, json=found[0])
        patient = request.url.params.get("patient")
        resources = [r for r in by_type.get(kind, []) if _is_about(r, patient)]
        return httpx.Response(
            200,
            json={
                "resourceType": "Bundle",
                "type": "searchset",
                "total": len(resources),
                "entry": [{"resource": r, "search": {"mode": "match"}} for r in resources],
            },
        )

    return respond


def _is_about(resource: dict[str, Any], patient: str | None) -> bool:
    if patient is None:
        return True
    for key in ("subject", "patient"):
        reference = (resource.get(key) or {}).get("reference", "")
        if reference.split("/")[-1] == patient.split("/")[-1]:
            return True
    return False
