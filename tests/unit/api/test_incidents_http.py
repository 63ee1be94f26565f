"""The incident endpoints over HTTP, against an in-memory FHIR server (pytest-httpx)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pytest_httpx import HTTPXMock

from fhir_safety.api.app import create_app
from fhir_safety.api.routes import incidents
from fhir_safety.config import Settings, TrustedIssuer
from fhir_safety.terminology import Terminology
from tests.conftest import FIXED_NOW
from tests.unit.services.fake_fhir import BASE, FakeFhirServer

OPEN = {
    "patientId": "p1",
    "learningResponse": "psii",
    "event": "Unwitnessed fall on the ward",
    "occurred": "2026-11-20T02:00:00Z",
    "family": [{"name": "Jane Example", "relationship": "daughter"}],
    "lead": "Practitioner/lead",
    "leadName": "Dr Ada Lead",
}


def app_with_incidents(settings: Settings, terminology: Terminology) -> FastAPI:
    """The app, with the incidents router whether or not app.py includes it yet."""
    app = create_app(settings, terminology=terminology, clock=lambda: FIXED_NOW)
    if not any(getattr(route, "path", None) == "/incidents" for route in app.routes):
        app.include_router(incidents.router)
    return app


@pytest.fixture
def server(httpx_mock: HTTPXMock) -> FakeFhirServer:
    fake = FakeFhirServer()
    httpx_mock.add_callback(fake, is_reusable=True, is_optional=True)
    return fake


@pytest.fixture
def api(
    tmp_path: Path,
    terminology: Terminology,
    server: FakeFhirServer,  # noqa: ARG001 - install the fake FHIR server first
) -> Iterator[TestClient]:
    settings = Settings(
        feedback_database_url=f"sqlite:///{tmp_path / 'fb.sqlite3'}", fhir_server_url=BASE
    )
    with TestClient(app_with_incidents(settings, terminology)) as client:
        yield client


def open_one(api: TestClient) -> dict[str, Any]:
    response = api.post("/incidents", json=OPEN)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def test_post_incidents_opens_investigation(api: TestClient, server: FakeFhirServer) -> None:
    body = open_one(api)
    assert body["learningResponse"]["type"] == "psii"
    assert body["learningResponse"]["lead"] == "Dr Ada Lead"
    assert [s["state"] for s in body["steps"]] == ["pending"] * 6
    assert len(server.of_type("Task")) == 7


def test_post_step_records_it_and_get_reports_status(api: TestClient) -> None:
    incident_id = open_one(api)["incident"].removeprefix("AdverseEvent/")
    response = api.post(
        f"/incidents/{incident_id}/steps/first-contact",
        json={"note": "Phoned Jane and apologised", "medium": "PHONE"},
    )
    assert response.status_code == 200, response.text
    status = api.get(f"/incidents/{incident_id}").json()
    first = status["steps"][0]
    assert (first["step"], first["state"], first["doneOn"]) == (
        "first-contact",
        "done",
        "2026-11-26",
    )
    assert status["nextStep"] == "questions-recorded"
    listed = api.get("/incidents").json()["investigations"]
    assert [i["incident"] for i in listed] == [f"AdverseEvent/{incident_id}"]


def test_final_before_draft_is_a_400_with_operation_outcome(api: TestClient) -> None:
    incident_id = open_one(api)["incident"].removeprefix("AdverseEvent/")
    response = api.post(f"/incidents/{incident_id}/steps/final-shared", json={"note": "sent"})
    assert response.status_code == 400
    assert response.json()["resourceType"] == "OperationOutcome"
    assert "no surprises" in response.json()["issue"][0]["diagnostics"]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({**OPEN, "learningResponse": "rca"}, "not in learning-response-type"),
        ({**OPEN, "colour": "blue"}, "colour"),
        ({**OPEN, "patientId": "p 1"}, "patientId"),
        ({**OPEN, "incidentId": "missing"}, "no AdverseEvent/missing"),
    ],
)
def test_post_incidents_bad_bodies_are_400(
    api: TestClient, body: dict[str, Any], fragment: str
) -> None:
    response = api.post("/incidents", json=body)
    assert response.status_code == 400
    assert fragment in response.json()["issue"][0]["diagnostics"]


def test_unknown_outcome_is_400(api: TestClient) -> None:
    incident_id = open_one(api)["incident"].removeprefix("AdverseEvent/")
    response = api.post(
        f"/incidents/{incident_id}/steps/first-contact", json={"outcome": "lost", "note": "x"}
    )
    assert response.status_code == 400


def test_no_fhir_server_configured_is_412(tmp_path: Path, terminology: Terminology) -> None:
    settings = Settings(feedback_database_url=f"sqlite:///{tmp_path / 'fb.sqlite3'}")
    with TestClient(app_with_incidents(settings, terminology)) as client:
        response = client.get("/incidents")
    assert response.status_code == 412
    assert "fhir_server_url" in response.json()["issue"][0]["diagnostics"]


def test_incident_endpoints_need_the_jwt(tmp_path: Path, terminology: Terminology) -> None:
    jwks = tmp_path / "jwks.json"
    jwks.write_text('{"keys": []}')
    settings = Settings(
        feedback_database_url=f"sqlite:///{tmp_path / 'fb.sqlite3'}",
        fhir_server_url=BASE,
        issuers=[TrustedIssuer(iss="https://ehr.example.org", jwks_file=jwks)],
    )
    with TestClient(app_with_incidents(settings, terminology)) as client:
        for method, path in (
            ("GET", "/incidents"),
            ("GET", "/incidents/ae1"),
            ("POST", "/incidents"),
            ("POST", "/incidents/ae1/steps/first-contact"),
        ):
            response = client.request(method, path, json={})
            assert response.status_code == 401, path
