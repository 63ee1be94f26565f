"""A small FHIR server over a synthetic population, for pytest-httpx (read and searches).

Answers ``GET [base]/Type/id`` and ``GET [base]/Type?...`` with the search parameters the
population loader and the registry use: ``patient``, ``status``, ``category``, ``code`` and
``code:in`` (the ARAF ValueSet). Resource types in ``failing`` answer 503.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import httpx

from fhir_safety.services import registry

__all__ = ["BASE", "population_server"]

BASE = "http://fhir.test/fhir"
_ARAF_CODES = frozenset({"2078951000000106", "1366401000000107"})


def population_server(
    resources: Iterable[dict[str, Any]], *, failing: frozenset[str] = frozenset()
) -> Callable[[httpx.Request], httpx.Response]:
    by_type: dict[str, list[dict[str, Any]]] = {}
    for resource in resources:
        by_type.setdefault(resource["resourceType"], []).append(resource)

    def respond(request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/fhir/")
        kind, _, rid = path.partition("/")
        if kind in failing:
            return httpx.Response(503, json={"resourceType": "OperationOutcome"})
        if rid:
            found = [r for r in by_type.get(kind, []) if r["id"] == rid]
            if not found:
                return httpx.Response(404, json={"resourceType": "OperationOutcome"})
            return httpx.Response(200, json=found[0])
        params = request.url.params
        found = [r for r in by_type.get(kind, []) if _matches(r, params)]
        return httpx.Response(
            200,
            json={
                "resourceType": "Bundle",
                "type": "searchset",
                "entry": [{"resource": r, "search": {"mode": "match"}} for r in found],
            },
        )

    return respond


def _matches(resource: dict[str, Any], params: httpx.QueryParams) -> bool:
    if "patient" in params:
        wanted = f"Patient/{params['patient']}"
        refs = [(resource.get(k) or {}).get("reference") for k in ("subject", "patient", "for")]
        if wanted not in refs:
            return False
    if "status" in params and resource.get("status") not in params["status"].split(","):
        return False
    if "category" in params:
        codes = {c.get("code") for cat in resource.get("category", []) for c in cat["coding"]}
        if params["category"] not in codes:
            return False
    codes = {c.get("code") for c in (resource.get("code") or {}).get("coding", [])}
    if "code" in params and not codes & set(params["code"].split(",")):
        return False
    if "code:in" in params:
        assert params["code:in"] == registry.ARAF_VALUE_SET_URL
        if not codes & _ARAF_CODES:
            return False
    return True
