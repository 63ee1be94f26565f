"""news2-concern over HTTP (cards, the no-prefetch path) and the $news2 operation and CLI."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from fhir.resources.R4B.observation import Observation as R4BObservation
from fhir.resources.R4B.operationoutcome import OperationOutcome as R4BOperationOutcome
from fhir.resources.R4B.task import Task as R4BTask

from fhir_safety.api.app import create_app
from fhir_safety.api.routes import news2 as news2_routes
from fhir_safety.cli import EXIT_INPUT, EXIT_UNAVAILABLE, main
from fhir_safety.config import Settings
from fhir_safety.terminology import Terminology
from tests.conftest import EXAMPLES, FIXED_NOW, load_example
from tests.unit.api.test_conformance import assert_no_empty_elements, assert_valid_card

SERVER = "http://localhost:8080/fhir"
NEWS2_EXAMPLES = sorted(
    p.name for p in (EXAMPLES / "news2").glob("patient-view-*.json") if "no-prefetch" not in p.name
)
UK_CORE = "news2/uk-core-news2-observations.json"


def with_news2_routes(app: FastAPI) -> FastAPI:
    """The $news2 router, until the lead adds it in create_app (then this is a no-op)."""
    paths = {getattr(route, "path", None) for route in app.routes}
    if "/fhir-safety/$news2" not in paths:
        app.include_router(news2_routes.router)
    return app


def fhir_server() -> httpx.MockTransport:
    """A FHIR server holding examples/news2/fhir-data-news2.bundle.json (searches by patient)."""
    bundle = load_example("news2/fhir-data-news2.bundle.json")
    resources = [e["resource"] for e in bundle["entry"]]

    def handle(request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/fhir/")
        if "/" in path:
            kind, rid = path.split("/", 1)
            found = [r for r in resources if (r["resourceType"], r["id"]) == (kind, rid)]
            if not found:
                return httpx.Response(404, json={"resourceType": "OperationOutcome", "issue": []})
            return httpx.Response(200, json=found[0])
        query = parse_qs(request.url.query.decode())
        patient = query["patient"][0]
        matches = [
            r
            for r in resources
            if r["resourceType"] == path
            and (r.get("subject") or r.get("for") or {}).get("reference") == f"Patient/{patient}"
            and _matches(r, query)
        ]
        entries = [{"resource": r, "search": {"mode": "match"}} for r in matches]
        return httpx.Response(
            200, json={"resourceType": "Bundle", "type": "searchset", "entry": entries}
        )

    return httpx.MockTransport(handle)


def _matches(resource: dict[str, Any], query: dict[str, list[str]]) -> bool:
    if "category" in query:
        codes = {c.get("code") for cc in resource.get("category", []) for c in cc["coding"]}
        return query["category"][0] in codes
    if "code" in query:
        wanted = {v.split("|")[-1] for v in query["code"][0].split(",")}
        return bool(wanted & {c.get("code") for c in resource["code"]["coding"]})
    return True


@pytest.fixture
def app_client(tmp_path: Path, terminology: Terminology) -> Iterator[TestClient]:
    settings = Settings(
        feedback_database_url=f"sqlite:///{tmp_path / 'fb.sqlite3'}", fhir_server_url=SERVER
    )
    app = create_app(
        settings, terminology=terminology, clock=lambda: FIXED_NOW, transport=fhir_server()
    )
    with TestClient(with_news2_routes(app)) as client:
        yield client


@pytest.fixture
def serverless(tmp_path: Path, terminology: Terminology) -> Iterator[TestClient]:
    settings = Settings(feedback_database_url=f"sqlite:///{tmp_path / 'fb.sqlite3'}")
    app = create_app(settings, terminology=terminology, clock=lambda: FIXED_NOW)
    with TestClient(with_news2_routes(app)) as client:
        yield client


# --- Cards ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NEWS2_EXAMPLES)
def test_news2_example_cards_conform(app_client: TestClient, name: str) -> None:
    response = app_client.post("/cds-services/news2-concern", json=load_example(f"news2/{name}"))
    assert response.status_code == 200
    body = response.json()
    assert_no_empty_elements(body)
    for card in body["cards"]:
        assert_valid_card(card)
        for suggestion in card.get("suggestions", []):
            for action in suggestion["actions"]:
                resource = action["resource"]
                if resource["resourceType"] == "Task":
                    R4BTask.model_validate(resource)
                else:
                    R4BObservation.model_validate(resource)


def test_news2_no_prefetch_reads_fhir_server(app_client: TestClient) -> None:
    request = load_example("news2/patient-view-no-prefetch.json")
    response = app_client.post("/cds-services/news2-concern", json=request)
    assert response.status_code == 200
    summaries = [(c["indicator"], c["summary"]) for c in response.json()["cards"]]
    assert summaries == [
        (
            "critical",
            "A family member is worried and NEWS2 6: request an outreach review now "
            "(Martha's Rule)",
        ),
        ("warning", "NEWS2 6 (medium risk): urgent response, inform the medical team now"),
    ]


def test_news2_discovery_lists_service(app_client: TestClient) -> None:
    services = app_client.get("/cds-services").json()["services"]
    (news2,) = [s for s in services if s["id"] == "news2-concern"]
    assert news2["hook"] == "patient-view"
    assert set(news2["prefetch"]) == {
        "patient",
        "vitalSigns",
        "surveys",
        "oxygenAndAcvpu",
        "goals",
        "conditions",
        "encounters",
        "escalations",
    }


# --- $news2 ------------------------------------------------------------------------------------


def test_news2_operation_bundle_returns_score_observation(serverless: TestClient) -> None:
    response = serverless.post("/fhir-safety/$news2", json=load_example(UK_CORE))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/fhir+json")
    observation = response.json()
    R4BObservation.model_validate(observation)
    assert observation["valueQuantity"]["value"] == 5
    assert observation["subject"] == {"reference": "Patient/p-2001"}
    assert len(observation["derivedFrom"]) == 7


def test_news2_operation_incomplete_returns_operation_outcome(serverless: TestClient) -> None:
    bundle = load_example(UK_CORE)
    bundle["entry"] = [e for e in bundle["entry"] if "Core body temperature" not in json.dumps(e)]
    response = serverless.post("/fhir-safety/$news2", json=bundle)
    assert response.status_code == 200
    outcome = response.json()
    R4BOperationOutcome.model_validate(outcome)
    assert outcome["issue"][0]["code"] == "incomplete"
    assert "Temperature: no reading recorded" in [i.get("diagnostics") for i in outcome["issue"]]


def test_news2_operation_for_patient_with_bundle(serverless: TestClient) -> None:
    response = serverless.post("/fhir-safety/Patient/p-2001/$news2", json=load_example(UK_CORE))
    assert response.status_code == 200
    assert response.json()["resourceType"] == "Observation"


def test_news2_operation_refuses_another_patients_data(serverless: TestClient) -> None:
    response = serverless.post("/fhir-safety/Patient/p-9/$news2", json=load_example(UK_CORE))
    assert response.status_code == 400
    assert "not Patient/p-9" in response.json()["issue"][0]["diagnostics"]


def test_news2_operation_refuses_mixed_patients(serverless: TestClient) -> None:
    bundle = load_example(UK_CORE)
    other = copy.deepcopy(bundle["entry"][1])
    other["resource"]["id"] = "other"
    other["resource"]["subject"] = {"reference": "Patient/p-9"}
    bundle["entry"].append(other)
    response = serverless.post("/fhir-safety/$news2", json=bundle)
    assert response.status_code == 400
    assert "2 patients" in response.json()["issue"][0]["diagnostics"]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"resourceType": "Observation", "status": "final"}, 400),
        ({"resourceType": "Bundle", "entry": "x"}, 400),
        ({"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "Observation"}}]}, 422),
    ],
)
def test_news2_operation_rejects_unusable_bodies(
    serverless: TestClient, body: dict[str, Any], status: int
) -> None:
    response = serverless.post("/fhir-safety/$news2", json=body)
    assert response.status_code == status
    assert response.json()["resourceType"] == "OperationOutcome"


def test_news2_operation_for_patient_without_body_or_server_is_412(
    serverless: TestClient,
) -> None:
    response = serverless.post("/fhir-safety/Patient/p-2008/$news2")
    assert response.status_code == 412
    assert "FHIR_SAFETY_FHIR_SERVER_URL" in response.json()["issue"][0]["diagnostics"]


def test_news2_operation_for_patient_reads_fhir_server(app_client: TestClient) -> None:
    response = app_client.post("/fhir-safety/Patient/p-2008/$news2")
    assert response.status_code == 200
    observation = response.json()
    R4BObservation.model_validate(observation)
    assert observation["valueQuantity"]["value"] == 6


# --- CLI ----------------------------------------------------------------------------------------


def test_cli_news2_prints_observation(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FHIR_SAFETY_FEEDBACK_DATABASE_URL", f"sqlite:///{tmp_path / 'f.sqlite3'}")
    code = main(["news2", str(EXAMPLES / UK_CORE), "--now", "2026-11-26T09:00:00Z"])
    assert code == 0
    assert json.loads(capsys.readouterr().out)["valueQuantity"]["value"] == 5


def test_cli_news2_incomplete_exits_unavailable(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "bundle.json"
    bundle = load_example(UK_CORE)
    # A day later every reading is stale.
    path.write_text(json.dumps(bundle))
    code = main(["news2", str(path), "--now", "2026-11-27T09:00:00Z"])
    assert code == EXIT_UNAVAILABLE
    outcome = json.loads(capsys.readouterr().out)
    assert outcome["resourceType"] == "OperationOutcome"
    assert "older than 12 h" in json.dumps(outcome)


def test_cli_news2_unreadable_file_exits_input(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text("{not json")
    assert main(["news2", str(path)]) == EXIT_INPUT
