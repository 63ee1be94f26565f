"""Pelvic mesh over HTTP: discovery, card conformance, the FHIR-server fallback."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from pytest_httpx import HTTPXMock

from tests.conftest import EXAMPLES, load_example
from tests.unit.api.fhir_bundle_server import bundle_server
from tests.unit.api.test_conformance import assert_no_empty_elements, assert_valid_card

SERVICE = "/cds-services/pelvic-mesh"
EXPECTED = json.loads((EXAMPLES / "pelvic-mesh" / "expected.json").read_text(encoding="utf-8"))
WITH_CARDS = sorted(name for name, case in EXPECTED["examples"].items() if case["cards"])


def test_discovery_offers_pelvic_mesh_on_patient_view(client: TestClient) -> None:
    services = client.get("/cds-services").json()["services"]
    [service] = [s for s in services if s["id"] == "pelvic-mesh"]
    assert service["hook"] == "patient-view"
    assert set(service["prefetch"]) == {"patient", "conditions", "procedures", "serviceRequests"}


@pytest.mark.parametrize("name", WITH_CARDS)
def test_pelvic_mesh_example_cards_pass_the_card_checks(client: TestClient, name: str) -> None:
    response = client.post(SERVICE, json=load_example(f"pelvic-mesh/{name}"))
    assert response.status_code == 200
    body = response.json()
    for card in body["cards"]:
        assert_valid_card(card)
        assert card["source"]["topic"]["code"] == "pelvic-mesh"
        assert "matched by local code" in card["detail"]
    assert_no_empty_elements(body)


def test_pelvic_mesh_without_prefetch_reads_the_fhir_server(
    client: TestClient, httpx_mock: HTTPXMock
) -> None:
    data = load_example("pelvic-mesh/fhir-data-complication.bundle.json")
    httpx_mock.add_callback(bundle_server(data), is_reusable=True)
    response = client.post(SERVICE, json=load_example("pelvic-mesh/patient-view-no-prefetch.json"))
    assert response.status_code == 200
    [card] = response.json()["cards"]
    assert card["indicator"] == "warning"
    assert card["summary"] == (
        "Pelvic mesh complication (local code): no referral to a specialist mesh centre"
    )
    assert [s["label"] for s in card["suggestions"]] == [
        "Refer to North Bristol NHS Trust (mesh centre, South West)"
    ]
    resource = card["suggestions"][0]["actions"][0]["resource"]
    assert resource["performer"][0]["reference"] == "Organization/mesh-centre-north-bristol"


def test_pelvic_mesh_condition_search_failing_is_could_not_check(
    client: TestClient, httpx_mock: HTTPXMock
) -> None:
    data = load_example("pelvic-mesh/fhir-data-complication.bundle.json")
    httpx_mock.add_callback(bundle_server(data, failing=frozenset({"Condition"})), is_reusable=True)
    response = client.post(SERVICE, json=load_example("pelvic-mesh/patient-view-no-prefetch.json"))
    [card] = response.json()["cards"]
    assert card["summary"] == "Could not check: pelvic mesh complications"
