"""HRT joint items over HTTP: discovery, card conformance, R4B suggestions, $hrt-check, prefetch."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from fhir.resources.R4B.medicationrequest import MedicationRequest as R4BMedicationRequest
from fhir.resources.R4B.operationoutcome import OperationOutcome
from pytest_httpx import HTTPXMock

from fhir_safety.api.app import create_app
from fhir_safety.api.routes import hrt_check
from fhir_safety.cds.definitions.hrt import PREFETCH, SERVICES
from fhir_safety.cds.hooks import hook_spec
from fhir_safety.cds.prefetch import PrefetchTemplate, check_template, render_template
from fhir_safety.config import Settings
from fhir_safety.terminology import Terminology
from tests.conftest import EXAMPLES, FIXED_NOW, load_example
from tests.unit.api.test_conformance import assert_no_empty_elements, assert_valid_card

SERVICE = "hrt-joint-items"
HRT_EXAMPLES = sorted(
    p.name
    for p in (EXAMPLES / "hrt").glob("*.json")
    if p.name not in {"expected.json", "patient-view-no-prefetch.json"}
    and not p.name.endswith(".bundle.json")
)
OPERATION = "/fhir-safety/MedicationRequest/$hrt-check"
SCT = "http://snomed.info/sct"


@pytest.fixture
def op_client(settings: Settings, terminology: Terminology) -> Iterator[TestClient]:
    """The app with the $hrt-check route (the lead adds it to create_app; here it is added)."""
    app = create_app(settings, terminology=terminology, clock=lambda: FIXED_NOW)
    app.include_router(hrt_check.router)
    with TestClient(app) as test_client:
        yield test_client


def test_hrt_discovery_offers_the_service_on_four_hooks(client: TestClient) -> None:
    services = client.get("/cds-services").json()["services"]
    hooks = {s["hook"] for s in services if s["id"] == SERVICE}
    assert hooks == {"order-select", "order-sign", "order-dispatch", "patient-view"}


@pytest.mark.parametrize("name", HRT_EXAMPLES)
def test_hrt_example_cards_conform_and_suggestions_are_valid_r4b(
    client: TestClient, name: str
) -> None:
    response = client.post(f"/cds-services/{SERVICE}", json=load_example(f"hrt/{name}"))
    assert response.status_code == 200
    body = response.json()
    for card in body["cards"]:  # "cards": [] is the one empty element CDS Hooks allows
        assert_no_empty_elements(card)
        assert_valid_card(card)
        for suggestion in card.get("suggestions", []):
            for action in suggestion["actions"]:
                R4BMedicationRequest.model_validate(action["resource"])


def test_hrt_examples_cover_every_product_class() -> None:
    expected = json.loads((EXAMPLES / "hrt" / "expected.json").read_text(encoding="utf-8"))
    names = " ".join(expected["examples"])
    for product_class in ("oral", "patch", "gel", "spray", "implant", "vaginal", "combined"):
        assert product_class in names


def test_hrt_templates_stay_in_the_restricted_subset() -> None:
    for service in SERVICES:
        spec = hook_spec(service.hook)
        assert [p for t in service.prefetch for p in check_template(spec, t)] == []


def test_hrt_dispatched_orders_token_renders_references_not_ids() -> None:
    """Why order-dispatch reads the patient's MedicationRequests instead of an _id search."""
    context = {
        "patientId": "p-1",
        "dispatchedOrders": ["MedicationRequest/a", "MedicationRequest/b"],
        "performer": "Organization/x",
    }
    by_id = PrefetchTemplate("orders", "MedicationRequest?_id={{context.dispatchedOrders}}")
    assert check_template(hook_spec("order-dispatch"), by_id) == []  # allowed, but...
    assert render_template(by_id, context) == (
        "MedicationRequest?_id=MedicationRequest/a,MedicationRequest/b"  # ...not ids
    )
    medications = next(t for t in PREFETCH if t.key == "medications")
    assert render_template(medications, context) == "MedicationRequest?patient=p-1"


def test_hrt_patient_view_without_prefetch_reads_the_fhir_server(
    client: TestClient, httpx_mock: HTTPXMock
) -> None:
    request = load_example("hrt/patient-view-no-prefetch.json")
    bundle = json.loads(
        (EXAMPLES / "hrt" / "fhir-data-progestogen-stopped.bundle.json").read_text(encoding="utf-8")
    )
    resources = [entry["resource"] for entry in bundle["entry"]]
    base = request["fhirServer"]
    patient_id = request["context"]["patientId"]
    httpx_mock.add_response(
        url=f"{base}/Patient/{patient_id}",
        json=next(r for r in resources if r["resourceType"] == "Patient"),
    )
    for template in PREFETCH:
        if template.is_read:
            continue
        kind = template.resource_type
        matches = [r for r in resources if r["resourceType"] == kind]
        httpx_mock.add_response(
            url=f"{base}/{kind}?patient={patient_id}",
            json={
                "resourceType": "Bundle",
                "type": "searchset",
                "entry": [{"resource": r, "search": {"mode": "match"}} for r in matches],
            },
        )
    response = client.post(f"/cds-services/{SERVICE}", json=request)
    assert response.status_code == 200
    [card] = response.json()["cards"]
    assert card["indicator"] == "warning"
    assert "no progestogen since Utrogestan 100mg capsules stopped" in card["summary"]


def test_hrt_without_data_gives_could_not_check(client: TestClient) -> None:
    request = load_example("hrt/patient-view-no-prefetch.json")
    request.pop("fhirServer")
    response = client.post(f"/cds-services/{SERVICE}", json=request)
    assert response.status_code == 200
    [card] = response.json()["cards"]
    assert card["summary"].startswith("Could not check:")


# -- $hrt-check -------------------------------------------------------------------------------


def order(mid: str, code: str, display: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "id": mid,
        "status": "active",
        "intent": "order",
        "medicationCodeableConcept": {
            "coding": [{"system": SCT, "code": code, "display": display}]
        },
        "subject": {"reference": "Patient/p-9"},
        **extra,
    }


ESTRADIOL = ("325546003", "Estradiol 2mg tablets")
UTROGESTAN = ("11758911000001105", "Utrogestan 100mg capsules (Besins Healthcare (UK) Ltd)")
GROUP = {"system": "urn:ietf:rfc:3986", "value": "urn:uuid:0d6a2f55-8a41-4c7e-9f1b-3c2e5d7a9b10"}
PATIENT = {"resourceType": "Patient", "id": "p-9", "gender": "female", "birthDate": "1970-01-01"}


def bundle(*resources: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": r} for r in resources],
    }


def check(client: TestClient, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post(OPERATION, json=body)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    outcome: dict[str, Any] = response.json()
    OperationOutcome.model_validate(outcome)
    return outcome


def test_hrt_check_unopposed_bundle_is_an_error_issue(op_client: TestClient) -> None:
    outcome = check(op_client, bundle(PATIENT, order("oe-1", *ESTRADIOL)))
    [issue] = outcome["issue"]
    assert issue["severity"] == "error"
    assert issue["code"] == "business-rule"
    assert issue["details"]["coding"][0]["code"] == "hrt-unopposed-oestrogen"
    assert "without a progestogen" in issue["details"]["text"]


def test_hrt_check_joint_item_gives_the_label_wording(op_client: TestClient) -> None:
    body = bundle(
        PATIENT,
        order("oe-1", *ESTRADIOL, groupIdentifier=GROUP),
        order("pg-1", *UTROGESTAN, groupIdentifier=GROUP),
    )
    [issue] = check(op_client, body)["issue"]
    assert issue["severity"] == "information"
    assert issue["details"]["text"].startswith(
        "Label: Use with your progestogen (Utrogestan 100mg capsules) to protect the lining of "
        "your womb."
    )


def test_hrt_check_not_joined_warns(op_client: TestClient) -> None:
    body = bundle(PATIENT, order("oe-1", *ESTRADIOL), order("pg-1", *UTROGESTAN))
    severities = [i["severity"] for i in check(op_client, body)["issue"]]
    assert severities == ["warning", "information"]


def test_hrt_check_nothing_to_report(op_client: TestClient) -> None:
    hysterectomy = {
        "resourceType": "Procedure",
        "id": "h-1",
        "status": "completed",
        "code": {"coding": [{"system": SCT, "code": "116140006"}]},
        "subject": {"reference": "Patient/p-9"},
    }
    [issue] = check(op_client, bundle(PATIENT, order("oe-1", *ESTRADIOL), hysterectomy))["issue"]
    assert issue["severity"] == "information"
    assert issue["details"]["text"] == "No HRT safety issue found for the dispensed items"


def test_hrt_check_lone_request_without_server_could_not_check(op_client: TestClient) -> None:
    lone = order("oe-1", *ESTRADIOL)
    lone.pop("id")
    [issue] = check(op_client, lone)["issue"]
    assert (issue["severity"], issue["code"]) == ("warning", "incomplete")
    assert issue["details"]["text"].startswith("Could not check:")


def test_hrt_check_lone_request_reads_the_fhir_server(
    settings: Settings, terminology: Terminology, httpx_mock: HTTPXMock
) -> None:
    base = "http://fhir.test/fhir"
    configured = settings.model_copy(update={"fhir_server_url": base})
    app = create_app(configured, terminology=terminology, clock=lambda: FIXED_NOW)
    app.include_router(hrt_check.router)
    httpx_mock.add_response(url=f"{base}/Patient/p-9", json=PATIENT)
    progestogen = order("pg-1", *UTROGESTAN, groupIdentifier=GROUP)
    for kind, found in (
        ("MedicationRequest", [progestogen]),
        ("MedicationStatement", []),
        ("Procedure", []),
        ("Condition", []),
        ("Device", []),
    ):
        httpx_mock.add_response(
            url=f"{base}/{kind}?patient=p-9",
            json={
                "resourceType": "Bundle",
                "type": "searchset",
                "entry": [{"resource": r} for r in found],
            },
        )
    with TestClient(app) as test_client:
        outcome = check(test_client, order("oe-1", *ESTRADIOL, groupIdentifier=GROUP))
    [issue] = outcome["issue"]
    assert issue["details"]["text"].startswith("Label: Use with your progestogen")


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        (PATIENT, 400, "MedicationRequest or a Bundle"),
        (bundle(PATIENT), 400, "no MedicationRequest"),
        ({"resourceType": "Bundle", "entry": [{"fullUrl": "x"}]}, 400, "has no resource"),
        ({k: v for k, v in order("oe-1", *ESTRADIOL).items() if k != "subject"}, 400, "subject"),
        (
            bundle(
                order("a", *ESTRADIOL),
                {**order("b", *ESTRADIOL), "subject": {"reference": "Patient/other"}},
            ),
            400,
            "more than one patient",
        ),
        ({k: v for k, v in order("oe-1", *ESTRADIOL).items() if k != "status"}, 422, "status"),
        ([1, 2], 400, "JSON object"),
    ],
)
def test_hrt_check_rejects_bad_input(
    op_client: TestClient, body: Any, status: int, fragment: str
) -> None:
    response = op_client.post(OPERATION, json=body)
    assert response.status_code == status
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert fragment in outcome["issue"][0]["diagnostics"]
