"""Reasonable adjustments over HTTP: discovery, card conformance, the FHIR-server fallback."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from pytest_httpx import HTTPXMock

from tests.conftest import EXAMPLES, load_example
from tests.unit.api.fhir_bundle_server import bundle_server
from tests.unit.api.test_conformance import assert_no_empty_elements, assert_valid_card

SERVICE = "/cds-services/reasonable-adjustments"
EXPECTED = json.loads(
    (EXAMPLES / "reasonable-adjustments" / "expected.json").read_text(encoding="utf-8")
)
WITH_CARDS = sorted(name for name, case in EXPECTED["examples"].items() if case["cards"])


def test_discovery_offers_reasonable_adjustments_on_patient_view(client: TestClient) -> None:
    services = client.get("/cds-services").json()["services"]
    [service] = [s for s in services if s["id"] == "reasonable-adjustments"]
    assert service["hook"] == "patient-view"
    assert set(service["prefetch"]) == {
        "patient",
        "flags",
        "conditions",
        "consents",
        "relatedPersons",
    }


@pytest.mark.parametrize("name", WITH_CARDS)
def test_reasonable_adjustments_example_cards_pass_the_card_checks(
    client: TestClient, name: str
) -> None:
    response = client.post(SERVICE, json=load_example(f"reasonable-adjustments/{name}"))
    assert response.status_code == 200
    body = response.json()
    for card in body["cards"]:
        assert_valid_card(card)
        assert card["source"]["topic"]["code"] == "reasonable-adjustments"
    assert_no_empty_elements(body)


def test_reasonable_adjustments_without_prefetch_reads_the_fhir_server(
    client: TestClient, httpx_mock: HTTPXMock
) -> None:
    data = load_example("reasonable-adjustments/fhir-data-ld-no-flag.bundle.json")
    httpx_mock.add_callback(bundle_server(data), is_reusable=True)
    response = client.post(
        SERVICE, json=load_example("reasonable-adjustments/patient-view-no-prefetch.json")
    )
    assert response.status_code == 200
    [card] = response.json()["cards"]
    expected = EXPECTED["examples"]["patient-view-ld-no-flag.json"]["cards"][0]
    assert (card["indicator"], card["summary"]) == (expected["indicator"], expected["summary"])
    assert [s["label"] for s in card["suggestions"]] == expected["suggestions"]
    assert "Ann Treacey (sister), phone 07700 900106" in card["detail"]
    paths = {r.url.path for r in httpx_mock.get_requests()}
    assert paths >= {"/fhir/Flag", "/fhir/Condition", "/fhir/Consent", "/fhir/RelatedPerson"}


def test_reasonable_adjustments_flag_search_failing_is_could_not_check(
    client: TestClient, httpx_mock: HTTPXMock
) -> None:
    data = load_example("reasonable-adjustments/fhir-data-ld-no-flag.bundle.json")
    httpx_mock.add_callback(bundle_server(data, failing=frozenset({"Flag"})), is_reusable=True)
    response = client.post(
        SERVICE, json=load_example("reasonable-adjustments/patient-view-no-prefetch.json")
    )
    assert response.status_code == 200
    [card] = response.json()["cards"]
    assert card["summary"] == "Could not check: Reasonable Adjustment Flag"
    assert card["indicator"] == "warning"


def test_reasonable_adjustments_consent_search_failing_offers_no_flag(
    client: TestClient, httpx_mock: HTTPXMock
) -> None:
    data = load_example("reasonable-adjustments/fhir-data-ld-no-flag.bundle.json")
    httpx_mock.add_callback(bundle_server(data, failing=frozenset({"Consent"})), is_reusable=True)
    response = client.post(
        SERVICE, json=load_example("reasonable-adjustments/patient-view-no-prefetch.json")
    )
    [card] = response.json()["cards"]
    assert card["indicator"] == "warning"
    assert "suggestions" not in card
    assert "check for a recorded dissent" in card["detail"]
