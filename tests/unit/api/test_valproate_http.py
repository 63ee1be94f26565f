"""Valproate service over HTTP: discovery, card conformance, and the FHIR-server fallback."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from pytest_httpx import HTTPXMock

from tests.conftest import EXAMPLES, load_example
from tests.unit.api.test_conformance import assert_no_empty_elements, assert_valid_card

EXPECTED = json.loads((EXAMPLES / "valproate" / "expected.json").read_text(encoding="utf-8"))
WITH_CARDS = sorted(name for name, case in EXPECTED["examples"].items() if case["cards"])


def test_discovery_offers_valproate_on_three_hooks(client: TestClient) -> None:
    services = client.get("/cds-services").json()["services"]
    hooks = {s["hook"] for s in services if s["id"] == "valproate"}
    assert hooks == {"order-select", "order-sign", "patient-view"}
    valproate = next(s for s in services if s["id"] == "valproate")
    assert valproate["prefetch"]["patient"] == "Patient/{{context.patientId}}"


@pytest.mark.parametrize("name", WITH_CARDS)
def test_valproate_example_cards_pass_the_card_checks(client: TestClient, name: str) -> None:
    response = client.post("/cds-services/valproate", json=load_example(f"valproate/{name}"))
    assert response.status_code == 200
    body = response.json()
    for card in body["cards"]:
        assert_valid_card(card)
    assert_no_empty_elements(body)


def test_valproate_override_reasons_have_displays(client: TestClient) -> None:
    body = client.post(
        "/cds-services/valproate", json=load_example("valproate/order-sign-no-ppp.json")
    ).json()
    [card] = body["cards"]
    assert card["selectionBehavior"] == "any"
    codes = {reason["code"]: reason["display"] for reason in card["overrideReasons"]}
    assert codes["patient-ineligible"].startswith("Patient does not meet eligibility")
    assert card["source"]["topic"]["code"] == "valproate-ppp"


def test_valproate_wrong_hook_is_rejected(client: TestClient) -> None:
    request = load_example("valproate/order-sign-no-ppp.json") | {"hook": "encounter-start"}
    response = client.post("/cds-services/valproate", json=request)
    assert response.status_code >= 400


def _server(data: dict[str, Any]) -> Any:
    by_type: dict[str, list[dict[str, Any]]] = {}
    for entry in data["entry"]:
        resource = entry["resource"]
        by_type.setdefault(resource["resourceType"], []).append(resource)

    def respond(request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/fhir/")
        if "/" in path:
            kind, _, rid = path.partition("/")
            found = [r for r in by_type.get(kind, []) if r["id"] == rid]
            if not found:
                return httpx.Response(404, json={"resourceType": "OperationOutcome"})
            return httpx.Response(200, json=found[0])
        resources = by_type.get(path, [])
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


def test_valproate_without_prefetch_reads_the_fhir_server(
    client: TestClient, httpx_mock: HTTPXMock
) -> None:
    data = load_example("valproate/fhir-data-valproate.bundle.json")
    httpx_mock.add_callback(_server(data), is_reusable=True)
    response = client.post(
        "/cds-services/valproate", json=load_example("valproate/order-sign-no-prefetch.json")
    )
    assert response.status_code == 200
    [card] = response.json()["cards"]
    assert card["indicator"] == "critical"
    assert card["summary"].endswith("ARAF expired (review was due 1 Sep 2026)")
    observation_query = next(
        r for r in httpx_mock.get_requests() if r.url.path.endswith("/Observation")
    )
    assert observation_query.url.params["code:in"] == (
        "https://fhir-safety.org/fhir/ValueSet/valproate-araf"
    )


def test_valproate_flags_search_failing_is_could_not_check(
    client: TestClient, httpx_mock: HTTPXMock
) -> None:
    data = load_example("valproate/fhir-data-valproate.bundle.json")
    serve = _server(data)

    def respond(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/Flag"):
            return httpx.Response(500, json={"resourceType": "OperationOutcome"})
        response: httpx.Response = serve(request)
        return response

    httpx_mock.add_callback(respond, is_reusable=True)
    response = client.post(
        "/cds-services/valproate", json=load_example("valproate/order-sign-no-prefetch.json")
    )
    [card] = response.json()["cards"]
    assert card["summary"].startswith("Could not check: valproate Pregnancy Prevention Programme")
    assert card["indicator"] == "warning"
