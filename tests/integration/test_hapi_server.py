"""The HAPI FHIR R4 server from docker/hapi does what fhir-safety relies on.

Runs against ``hapi_base_url`` (the jar started once per session, or ``$FHIR_SERVER_URL``).
Every test makes its own uniquely named data, so tests do not depend on each other or on
what else is stored on the server.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.integration

FHIR_JSON = "application/fhir+json"
SUBSCRIPTION_ACTIVE_TIMEOUT_S = 60.0
DELIVERY_TIMEOUT_S = 30.0
BULK_EXPORT_TIMEOUT_S = 60.0


@pytest.fixture
def fhir(hapi_base_url: str) -> Iterator[httpx.Client]:
    headers = {"Accept": FHIR_JSON, "Content-Type": FHIR_JSON}
    with httpx.Client(base_url=hapi_base_url, headers=headers, timeout=60.0) as client:
        yield client


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def _errors(outcome: dict[str, Any]) -> list[str]:
    return [
        issue.get("diagnostics", "")
        for issue in outcome.get("issue", [])
        if issue.get("severity") in {"error", "fatal"}
    ]


def _link(bundle: dict[str, Any], relation: str) -> str | None:
    for link in bundle.get("link", []):
        if link.get("relation") == relation:
            url: str = link["url"]
            return url
    return None


def test_metadata_is_an_r4_capability_statement(fhir: httpx.Client) -> None:
    response = fhir.get("/metadata")

    assert response.status_code == httpx.codes.OK
    capabilities = response.json()
    assert capabilities["resourceType"] == "CapabilityStatement"
    assert capabilities["fhirVersion"] == "4.0.1"
    resource_types = {r["type"] for r in capabilities["rest"][0]["resource"]}
    assert {"Patient", "Observation", "Subscription", "StructureDefinition"} <= resource_types


def test_create_read_and_search_pages_with_next_links(
    fhir: httpx.Client, hapi_base_url: str
) -> None:
    family = _unique("Family").replace("-", "")
    created_ids = []
    for year in range(1990, 1995):
        patient = {
            "resourceType": "Patient",
            "name": [{"family": family, "given": [f"Born{year}"]}],
            "birthDate": f"{year}-01-01",
        }
        response = fhir.post("/Patient", json=patient)
        assert response.status_code == httpx.codes.CREATED, response.text
        created_ids.append(response.json()["id"])

    read = fhir.get(f"/Patient/{created_ids[0]}")
    assert read.status_code == httpx.codes.OK
    assert read.json()["name"][0]["family"] == family

    params = {"family": family, "_count": "2", "_sort": "-birthdate"}
    page = fhir.get("/Patient", params=params).json()
    assert page["type"] == "searchset"
    next_url = _link(page, "next")
    assert next_url is not None
    assert next_url.startswith(hapi_base_url)
    birth_dates = [e["resource"]["birthDate"] for e in page["entry"]]
    while next_url is not None:
        page = fhir.get(next_url).json()
        birth_dates += [e["resource"]["birthDate"] for e in page.get("entry", [])]
        next_url = _link(page, "next")
    assert birth_dates == [f"{year}-01-01" for year in range(1994, 1989, -1)]

    recent = fhir.get("/Patient", params={"family": family, "_lastUpdated": "gt2020-01-01"}).json()
    assert len(recent["entry"]) == 5
    future = fhir.get("/Patient", params={"family": family, "_lastUpdated": "gt2999-01-01"}).json()
    assert future.get("entry", []) == []


def test_transaction_with_client_assigned_ids_and_dangling_references(
    fhir: httpx.Client,
) -> None:
    patient_id = _unique("pat")
    numeric_id = str(uuid.uuid4().int % 10**12)
    observation_id = _unique("obs")
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                # References a Patient later in the Bundle and a Practitioner that is never loaded.
                "resource": {
                    "resourceType": "Observation",
                    "id": observation_id,
                    "status": "final",
                    "code": {"text": "heart rate"},
                    "subject": {"reference": f"Patient/{patient_id}"},
                    "performer": [{"reference": f"Practitioner/{_unique('never-loaded')}"}],
                },
                "request": {"method": "PUT", "url": f"Observation/{observation_id}"},
            },
            {
                "resource": {"resourceType": "Patient", "id": patient_id},
                "request": {"method": "PUT", "url": f"Patient/{patient_id}"},
            },
            {
                "resource": {"resourceType": "Patient", "id": numeric_id},
                "request": {"method": "PUT", "url": f"Patient/{numeric_id}"},
            },
        ],
    }

    response = fhir.post("", json=bundle)

    assert response.status_code == httpx.codes.OK, response.text
    result = response.json()
    assert result["type"] == "transaction-response"
    assert [e["response"]["status"] for e in result["entry"]] == ["201 Created"] * 3
    assert fhir.get(f"/Patient/{numeric_id}").status_code == httpx.codes.OK
    found = fhir.get(
        "/Observation",
        params={"subject": f"Patient/{patient_id}", "_include": "Observation:subject"},
    ).json()
    assert sorted(e["resource"]["id"] for e in found["entry"]) == sorted(
        [observation_id, patient_id]
    )


def test_validate_uses_a_profile_uploaded_to_the_server(fhir: httpx.Client) -> None:
    profile_id = _unique("observation-with-note")
    profile_url = f"http://example.org/fhir-safety/StructureDefinition/{profile_id}"
    profile = {
        "resourceType": "StructureDefinition",
        "id": profile_id,
        "url": profile_url,
        "name": "ObservationWithNote",
        "status": "active",
        "fhirVersion": "4.0.1",
        "kind": "resource",
        "abstract": False,
        "type": "Observation",
        "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Observation",
        "derivation": "constraint",
        "differential": {
            "element": [
                {"id": "Observation", "path": "Observation"},
                {"id": "Observation.note", "path": "Observation.note", "min": 1},
            ]
        },
    }
    assert fhir.put(f"/StructureDefinition/{profile_id}", json=profile).status_code in {200, 201}
    observation: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
    }

    without_note = fhir.post(
        "/Observation/$validate", params={"profile": profile_url}, json=observation
    )
    with_note = fhir.post(
        "/Observation/$validate",
        params={"profile": profile_url},
        json={**observation, "note": [{"text": "checked at the bedside"}]},
    )

    # HAPI answers 200 (or 412 when it rejects) with an OperationOutcome either way.
    assert without_note.status_code in {200, 412}
    errors = _errors(without_note.json())
    assert any("Observation.note" in e and profile_id in e for e in errors), errors
    assert with_note.status_code == httpx.codes.OK
    assert _errors(with_note.json()) == []


def test_expand_and_validate_code_on_uploaded_terminology(fhir: httpx.Client) -> None:
    suffix = uuid.uuid4().hex[:12]
    system = f"http://example.org/fhir-safety/CodeSystem/cs-{suffix}"
    value_set_url = f"http://example.org/fhir-safety/ValueSet/vs-{suffix}"
    code_system = {
        "resourceType": "CodeSystem",
        "id": f"cs-{suffix}",
        "url": system,
        "status": "active",
        "content": "complete",
        "concept": [
            {"code": "red", "display": "Red"},
            {"code": "amber", "display": "Amber"},
            {"code": "green", "display": "Green"},
        ],
    }
    value_set = {
        "resourceType": "ValueSet",
        "id": f"vs-{suffix}",
        "url": value_set_url,
        "status": "active",
        "compose": {"include": [{"system": system}]},
    }
    assert fhir.put(f"/CodeSystem/cs-{suffix}", json=code_system).status_code == 201
    assert fhir.put(f"/ValueSet/vs-{suffix}", json=value_set).status_code == 201

    expansion = fhir.get(f"/ValueSet/vs-{suffix}/$expand")
    by_url = fhir.get("/ValueSet/$expand", params={"url": value_set_url})
    known = fhir.get(
        "/ValueSet/$validate-code", params={"url": value_set_url, "system": system, "code": "amber"}
    )
    unknown = fhir.get(
        "/ValueSet/$validate-code", params={"url": value_set_url, "system": system, "code": "blue"}
    )
    in_code_system = fhir.get("/CodeSystem/$validate-code", params={"url": system, "code": "red"})

    assert expansion.status_code == httpx.codes.OK, expansion.text
    codes = {c["code"] for c in expansion.json()["expansion"]["contains"]}
    assert codes == {"red", "amber", "green"}
    assert {c["code"] for c in by_url.json()["expansion"]["contains"]} == codes
    assert _parameter(known.json(), "result") is True
    assert _parameter(unknown.json(), "result") is False
    assert _parameter(in_code_system.json(), "result") is True


def _parameter(parameters: dict[str, Any], name: str) -> Any:
    for parameter in parameters.get("parameter", []):
        if parameter["name"] == name:
            return next(v for k, v in parameter.items() if k.startswith("value"))
    return None


@dataclass
class _Delivery:
    method: str
    path: str
    body: bytes


@dataclass
class _HookReceiver:
    """A tiny HTTP endpoint on 127.0.0.1 that records what HAPI delivers to it."""

    deliveries: list[_Delivery] = field(default_factory=list)
    received: threading.Event = field(default_factory=threading.Event)


@pytest.fixture
def hook_receiver() -> Iterator[tuple[_HookReceiver, str]]:
    receiver = _HookReceiver()

    class Handler(BaseHTTPRequestHandler):
        def _record(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            receiver.deliveries.append(_Delivery(self.command, self.path, body))
            receiver.received.set()
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_POST = do_PUT = _record  # noqa: N815 - http.server's naming

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver, f"http://127.0.0.1:{server.server_address[1]}/hook"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_rest_hook_subscription_activates_and_delivers(
    fhir: httpx.Client, hook_receiver: tuple[_HookReceiver, str]
) -> None:
    receiver, endpoint = hook_receiver
    code = _unique("x")
    subscription = {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "fhir-safety integration test",
        "criteria": f"Observation?code={code}",
        "channel": {"type": "rest-hook", "endpoint": endpoint, "payload": FHIR_JSON},
    }
    created = fhir.post("/Subscription", json=subscription)
    assert created.status_code == httpx.codes.CREATED, created.text
    subscription_id = created.json()["id"]
    try:
        status = created.json()["status"]
        deadline = time.monotonic() + SUBSCRIPTION_ACTIVE_TIMEOUT_S
        while status != "active" and time.monotonic() < deadline:
            time.sleep(0.5)
            status = fhir.get(f"/Subscription/{subscription_id}").json()["status"]
        assert status == "active"

        observation = {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": "http://example.org/fhir-safety", "code": code}]},
        }
        stored = fhir.post("/Observation", json=observation)
        assert stored.status_code == httpx.codes.CREATED
        observation_id = stored.json()["id"]

        assert receiver.received.wait(DELIVERY_TIMEOUT_S), "no rest-hook delivery"
        delivery = receiver.deliveries[0]
        assert delivery.method in {"POST", "PUT"}
        assert delivery.path.startswith("/hook")
        assert observation_id.encode() in delivery.body
    finally:
        fhir.delete(f"/Subscription/{subscription_id}")


def test_cors_preflight_allows_browser_origins(fhir: httpx.Client) -> None:
    origin = "http://localhost:3000"
    preflight = fhir.options(
        "/Patient",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    simple = fhir.get("/metadata", headers={"Origin": origin})

    assert preflight.status_code == httpx.codes.OK
    assert preflight.headers["Access-Control-Allow-Origin"] in {origin, "*"}
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    assert simple.headers["Access-Control-Allow-Origin"] in {origin, "*"}


def test_bulk_data_export_produces_ndjson(fhir: httpx.Client) -> None:
    family = _unique("Export").replace("-", "")
    created = fhir.post("/Patient", json={"resourceType": "Patient", "name": [{"family": family}]})
    assert created.status_code == httpx.codes.CREATED

    kickoff = fhir.get(
        "/$export",
        params={"_type": "Patient", "_typeFilter": f"Patient?family={family}"},
        headers={"Prefer": "respond-async"},
    )
    assert kickoff.status_code == httpx.codes.ACCEPTED, kickoff.text
    status_url = kickoff.headers["Content-Location"]
    deadline = time.monotonic() + BULK_EXPORT_TIMEOUT_S
    status = fhir.get(status_url)
    while status.status_code == httpx.codes.ACCEPTED and time.monotonic() < deadline:
        time.sleep(1.0)
        status = fhir.get(status_url)

    assert status.status_code == httpx.codes.OK, status.text
    outputs = status.json()["output"]
    assert [o["type"] for o in outputs] == ["Patient"]
    ndjson = fhir.get(outputs[0]["url"], headers={"Accept": "application/fhir+ndjson"})
    lines = [line for line in ndjson.text.splitlines() if line.strip()]
    assert len(lines) == 1
    assert family in lines[0]
