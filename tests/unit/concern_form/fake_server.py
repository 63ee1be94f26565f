"""An in-memory FHIR server for the concern form tests (pytest-httpx callback).

Reads, the few searches the form makes (Encounter by patient and status, Subscription by
status, the NEWS2 queries by patient), transactions of PUT entries and plain PUTs. It records
every write so a test can say exactly what reached the server.
"""

from __future__ import annotations

import copy
import json
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx

BASE = "http://fhir.test/fhir"
SECRET = "concern-form-test-secret-0123456789abcdef"


def patient(pid: str = "p-1", **fields: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Patient",
        "id": pid,
        "birthDate": "1950-01-01",
        "name": [
            {"use": "official", "family": "Mills", "given": ["Martha", "Jane"]},
        ],
    }
    return resource | fields


def encounter(pid: str = "p-1", eid: str = "enc-1", status: str = "in-progress") -> dict[str, Any]:
    return {
        "resourceType": "Encounter",
        "id": eid,
        "status": status,
        "class": {"code": "IMP"},
        "subject": {"reference": f"Patient/{pid}"},
    }


def subscription(
    criteria: str = "Observation?code=concern-observation",
    endpoint: str = "http://cds.test/subscriptions/notify",
    status: str = "active",
) -> dict[str, Any]:
    return {
        "resourceType": "Subscription",
        "id": "sub-1",
        "status": status,
        "criteria": criteria,
        "reason": "test",
        "channel": {"type": "rest-hook", "endpoint": endpoint},
    }


class FakeFhir:
    def __init__(self, *resources: dict[str, Any]) -> None:
        self.store: dict[tuple[str, str], dict[str, Any]] = {}
        self.writes: list[dict[str, Any]] = []  # every resource written, in order
        self.transactions: list[dict[str, Any]] = []
        self.fail_writes = False
        for resource in resources:
            self.add(resource)

    def add(self, resource: dict[str, Any]) -> None:
        self.store[(resource["resourceType"], resource["id"])] = copy.deepcopy(resource)

    def of_type(self, resource_type: str) -> list[dict[str, Any]]:
        return [r for (t, _), r in self.store.items() if t == resource_type]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        url = urlsplit(str(request.url))
        path = url.path.removeprefix("/fhir").strip("/")
        if request.method in {"POST", "PUT"} and self.fail_writes:
            return httpx.Response(503, json=_outcome("down"))
        if request.method == "POST" and path == "":
            bundle = json.loads(request.content)
            self.transactions.append(bundle)
            for entry in bundle["entry"]:
                self._put(entry["resource"])
            return httpx.Response(
                200, json={"resourceType": "Bundle", "type": "transaction-response"}
            )
        if request.method == "PUT":
            body = json.loads(request.content)
            self._put(body)
            return httpx.Response(201, json=body)
        if "/" in path:
            found = self.store.get(tuple(path.split("/", 1)))  # type: ignore[arg-type]
            if found is None:
                return httpx.Response(404, json=_outcome("not found"))
            return httpx.Response(200, json=found)
        params = parse_qsl(url.query)
        matches = [r for r in self.of_type(path) if all(_matches(r, k, v) for k, v in params)]
        return httpx.Response(
            200,
            json={
                "resourceType": "Bundle",
                "type": "searchset",
                "entry": [{"resource": r, "search": {"mode": "match"}} for r in matches],
            },
        )

    def _put(self, resource: dict[str, Any]) -> None:
        self.writes.append(resource)
        self.add(resource)


def _matches(resource: dict[str, Any], key: str, value: str) -> bool:
    if key.startswith("_"):
        return True
    if key == "patient":
        ref = (resource.get("subject") or resource.get("for") or {}).get("reference", "")
        return ref == f"Patient/{value}"
    if key == "status":
        return resource.get("status") == value
    if key == "category":
        codes = {c.get("code") for cc in resource.get("category", []) for c in cc.get("coding", [])}
        return value in codes
    if key == "code":
        codes = {c.get("code") for c in (resource.get("code") or {}).get("coding", [])}
        return bool(set(value.split(",")) & codes)
    return True


def _outcome(text: str) -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "processing", "diagnostics": text}],
    }
