"""A tiny in-memory FHIR R4 server for pytest-httpx: read, a few searches, transactions.

Enough of HAPI's behaviour for the incident service: server-assigned ids for POST entries,
``urn:uuid`` references rewritten inside the transaction, ``ifMatch`` version checks,
``meta.versionId`` and transaction-response locations.
"""

from __future__ import annotations

import copy
import json
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx

BASE = "http://fhir.test/fhir"


class FakeFhirServer:
    def __init__(self) -> None:
        self.store: dict[tuple[str, str], dict[str, Any]] = {}
        self.requests: list[httpx.Request] = []
        self.transactions: list[dict[str, Any]] = []
        self._next = 0

    def add(self, resource: dict[str, Any]) -> None:
        stored = copy.deepcopy(resource)
        stored.setdefault("meta", {})["versionId"] = "1"
        self.store[(resource["resourceType"], resource["id"])] = stored

    def of_type(self, resource_type: str) -> list[dict[str, Any]]:
        return [r for (t, _), r in self.store.items() if t == resource_type]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        url = urlsplit(str(request.url))
        path = url.path.removeprefix(urlsplit(BASE).path).strip("/")
        if request.method == "POST" and path == "":
            return self._transaction(json.loads(request.content))
        if request.method == "GET" and "/" in path:
            resource_type, resource_id = path.split("/", 1)
            found = self.store.get((resource_type, resource_id))
            if found is None:
                return httpx.Response(404, json=_outcome("not found"))
            return httpx.Response(200, json=found)
        if request.method == "GET":
            return httpx.Response(200, json=self._search(path, parse_qsl(url.query)))
        return httpx.Response(405, json=_outcome("not supported"))

    def _search(self, resource_type: str, params: list[tuple[str, str]]) -> dict[str, Any]:
        matches = [
            r for r in self.of_type(resource_type) if all(_matches(r, k, v) for k, v in params)
        ]
        return {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": len(matches),
            "entry": [{"resource": r, "search": {"mode": "match"}} for r in matches],
        }

    def _transaction(self, bundle: dict[str, Any]) -> httpx.Response:
        self.transactions.append(copy.deepcopy(bundle))
        if bundle.get("type") != "transaction":
            return httpx.Response(400, json=_outcome("not a transaction"))
        ids: dict[str, str] = {}
        for entry in bundle["entry"]:
            if entry["request"]["method"] == "POST":
                self._next += 1
                ids[entry["fullUrl"]] = f"{entry['resource']['resourceType']}/{self._next}"
            elif "fullUrl" in entry:
                ids[entry["fullUrl"]] = entry["request"]["url"]
        staged: list[tuple[str, str, dict[str, Any], str]] = []
        for entry in bundle["entry"]:
            resource = _rewrite(copy.deepcopy(entry["resource"]), ids)
            request = entry["request"]
            if request["method"] == "POST":
                resource_type, resource_id = ids[entry["fullUrl"]].split("/")
                version = "1"
            else:
                resource_type, resource_id = request["url"].split("/")
                current = self.store.get((resource_type, resource_id))
                if_match = request.get("ifMatch")
                current_version = (current or {}).get("meta", {}).get("versionId")
                if if_match and if_match != f'W/"{current_version}"':
                    return httpx.Response(412, json=_outcome("version conflict"))
                version = str(int(current_version or 0) + 1)
            resource["id"] = resource_id
            resource.setdefault("meta", {})["versionId"] = version
            staged.append((resource_type, resource_id, resource, version))
        for resource_type, resource_id, resource, _ in staged:
            self.store[(resource_type, resource_id)] = resource
        return httpx.Response(
            200,
            json={
                "resourceType": "Bundle",
                "type": "transaction-response",
                "entry": [
                    {"response": {"status": "201", "location": f"{t}/{i}/_history/{v}"}}
                    for t, i, _, v in staged
                ],
            },
        )


def _rewrite(value: Any, ids: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {
            k: (ids.get(v, v) if k == "reference" and isinstance(v, str) else _rewrite(v, ids))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_rewrite(v, ids) for v in value]
    return value


def _matches(resource: dict[str, Any], name: str, value: str) -> bool:
    if name == "focus":
        return (resource.get("focus") or {}).get("reference") == value
    if name == "patient":
        return (resource.get("for") or {}).get("reference") in {value, f"Patient/{value}"}
    if name == "subject":
        return (resource.get("subject") or {}).get("reference") in {value, f"Patient/{value}"}
    if name == "status":
        return resource.get("status") in value.split(",")
    if name == "code":
        system, _, code = value.partition("|")
        codings = (resource.get("code") or {}).get("coding", [])
        return any(
            c.get("system") == system and (not code or c.get("code") == code) for c in codings
        )
    raise AssertionError(f"the fake server does not support search parameter {name!r}")


def _outcome(text: str) -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "processing", "diagnostics": text}],
    }
