"""fhir-safety against the real HAPI FHIR server: load, fetch, parity, subscriptions, outages."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest
from fastapi.testclient import TestClient

from fhir_safety.api.app import create_app
from fhir_safety.cds.catalogue import CATALOGUE
from fhir_safety.cds.prefetch import render_template
from fhir_safety.cli import main as cli_main
from fhir_safety.config import Settings
from fhir_safety.fhir.client import FhirClient
from fhir_safety.services.subscriptions import register_subscription
from fhir_safety.terminology import Terminology
from tests.conftest import EXAMPLES, FIXED_NOW, load_example
from tests.integration.service_harness import TcpProxy, scenario_from_example, serve_in_thread

pytestmark = pytest.mark.integration


def _cases() -> list[tuple[str, str]]:
    """(example path under examples/, service id) for every example that carries prefetch."""
    cases = []
    for expected_file in sorted(EXAMPLES.glob("*/expected.json")):
        expected = json.loads(expected_file.read_text(encoding="utf-8"))
        for name, case in expected["examples"].items():
            path = f"{expected_file.parent.name}/{name}"
            if load_example(path).get("prefetch"):
                cases.append((path, case["service"]))
    return cases


def simplify(cards: list[dict[str, Any]]) -> list[tuple[str, str, tuple[str, ...]]]:
    return [
        (c["indicator"], c["summary"], tuple(s["label"] for s in c.get("suggestions", [])))
        for c in cards
    ]


@pytest.fixture
def app_client(tmp_path: Path, terminology: Terminology) -> Iterator[TestClient]:
    settings = Settings(
        feedback_database_url=f"sqlite:///{tmp_path / 'fb.sqlite3'}", request_deadline_seconds=3.0
    )
    with TestClient(
        create_app(settings, terminology=terminology, clock=lambda: FIXED_NOW)
    ) as client:
        yield client


def put_transaction(base_url: str, resources: list[dict[str, Any]]) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": r,
                "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"},
            }
            for r in resources
        ],
    }
    response = httpx.post(base_url, json=bundle, timeout=60)
    assert response.status_code == 200, response.text


def ehr_style_prefetch(base_url: str, service_id: str, request: dict[str, Any]) -> dict[str, Any]:
    """What an EHR would send: the service's own templates, run against the server."""
    service = CATALOGUE.find(service_id, request["hook"])
    prefetch: dict[str, Any] = {}
    for template in service.prefetch:
        query = render_template(template, request["context"])
        if query is None:
            continue
        response = httpx.get(f"{base_url}/{query}", timeout=30)
        assert response.status_code in {200, 404}, response.text
        body = response.json()
        empty = response.status_code == 404 or (
            body.get("resourceType") == "Bundle" and not body.get("entry")
        )
        prefetch[template.key] = None if empty else body  # CDS Hooks: null when no data
    return prefetch


def test_load_is_idempotent_and_data_is_readable(loaded_hapi: str) -> None:
    assert cli_main(["load", "--fhir-server", loaded_hapi]) == 0  # a second load changes nothing
    encounter = httpx.get(f"{loaded_hapi}/Encounter/enc-1", timeout=30).json()
    assert encounter["period"]["start"] == "2026-11-05T14:30:00Z"
    versions = httpx.get(f"{loaded_hapi}/Encounter/enc-1/_history", timeout=30).json()
    assert versions["total"] == 1  # PUT of an identical resource makes no new version


def test_load_unreachable_server_fails_clearly(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["load", "--fhir-server", "http://127.0.0.1:9/fhir"]) == 4
    assert "127.0.0.1:9" in capsys.readouterr().err


def test_long_stay_without_prefetch_fetches_from_hapi(
    loaded_hapi: str, app_client: TestClient
) -> None:
    with_prefetch = app_client.post(
        "/cds-services/long-stay",
        json=load_example("long-stay/patient-view-super-stranded-no-plan.json"),
    )
    without = load_example("long-stay/patient-view-no-prefetch.json") | {"fhirServer": loaded_hapi}
    from_server = app_client.post("/cds-services/long-stay", json=without)
    assert from_server.status_code == 200, from_server.text
    assert simplify(from_server.json()["cards"]) == simplify(with_prefetch.json()["cards"])
    assert simplify(from_server.json()["cards"])[0][0] == "warning"


@pytest.mark.parametrize(("example", "service_id"), _cases(), ids=[c[0] for c in _cases()])
def test_prefetch_and_server_give_the_same_cards(
    loaded_hapi: str, app_client: TestClient, example: str, service_id: str
) -> None:
    prefix = "s" + uuid.uuid5(uuid.NAMESPACE_URL, example).hex[:10]
    request, resources = scenario_from_example(load_example(example), prefix)
    put_transaction(loaded_hapi, resources)
    request["fhirServer"] = loaded_hapi
    from_server = app_client.post(f"/cds-services/{service_id}", json=request)
    ehr_request = request | {"prefetch": ehr_style_prefetch(loaded_hapi, service_id, request)}
    from_prefetch = app_client.post(f"/cds-services/{service_id}", json=ehr_request)
    assert from_server.status_code == from_prefetch.status_code == 200, from_server.text
    assert simplify(from_server.json()["cards"]) == simplify(from_prefetch.json()["cards"])
    expected = json.loads((EXAMPLES / example.split("/")[0] / "expected.json").read_text())
    wanted = expected["examples"][example.split("/", 1)[1]]["cards"]
    assert [(c[0], c[1]) for c in simplify(from_server.json()["cards"])] == [
        (c["indicator"], c["summary"]) for c in wanted
    ]


def test_suggested_discharge_plan_validates_on_hapi(
    loaded_hapi: str, app_client: TestClient
) -> None:
    card = app_client.post(
        "/cds-services/long-stay",
        json=load_example("long-stay/patient-view-super-stranded-no-plan.json"),
    ).json()["cards"][0]
    plan = card["suggestions"][0]["actions"][0]["resource"]
    profile = "https://fhir-safety.org/fhir/StructureDefinition/discharge-plan"
    known = httpx.get(f"{loaded_hapi}/StructureDefinition?url={profile}", timeout=30).json()
    url = f"{loaded_hapi}/CarePlan/$validate" + (
        f"?profile={profile}" if known.get("total") else ""
    )
    outcome = httpx.post(url, json=plan, timeout=60).json()
    errors = [i for i in outcome.get("issue", []) if i["severity"] in {"error", "fatal"}]
    assert errors == [], errors


def test_subscription_notification_reaches_the_receiver(
    loaded_hapi: str, tmp_path: Path, terminology: Terminology
) -> None:
    settings = Settings(
        feedback_database_url=f"sqlite:///{tmp_path / 'fb.sqlite3'}", subscription_secret="s3cret"
    )
    app = create_app(settings, terminology=terminology)
    code = f"fs-test-{uuid.uuid4().hex[:8]}"
    with serve_in_thread(app) as service_url:
        endpoint = f"{service_url}/subscriptions/notify"

        async def subscribe() -> dict[str, Any]:
            async with httpx.AsyncClient(timeout=30) as http:
                return await register_subscription(
                    FhirClient(http, loaded_hapi), f"Observation?code={code}", endpoint, "s3cret"
                )

        subscription = asyncio.run(subscribe())
        assert subscription["status"] == "active"
        observation = {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": "https://example.org/test", "code": code}]},
            "subject": {"reference": "Patient/p-1001"},
        }
        created = httpx.post(f"{loaded_hapi}/Observation", json=observation, timeout=30)
        assert created.status_code == 201, created.text
        deadline = time.monotonic() + 30
        while app.state.fhir_safety.receiver.received["Observation"] < 1:
            assert time.monotonic() < deadline, "no notification within 30 s"
            time.sleep(0.25)
        metrics = httpx.get(f"{service_url}/metrics", timeout=10).text
        assert (
            'fhir_safety_subscription_notifications_total{resource_type="Observation"}' in metrics
        )
        httpx.delete(f"{loaded_hapi}/Subscription/{subscription['id']}", timeout=30)


def test_subscription_receiver_refuses_a_wrong_secret(
    tmp_path: Path, terminology: Terminology
) -> None:
    settings = Settings(
        feedback_database_url=f"sqlite:///{tmp_path / 'fb.sqlite3'}", subscription_secret="right"
    )
    with TestClient(create_app(settings, terminology=terminology)) as client:
        response = client.put(
            "/subscriptions/notify/Observation/o1",
            json={"resourceType": "Observation", "id": "o1"},
            headers={"X-Fhir-Safety-Secret": "wrong"},
        )
    assert response.status_code == 401


@pytest.fixture
def proxy(loaded_hapi: str) -> Iterator[tuple[TcpProxy, str]]:
    target = urlparse(loaded_hapi)
    tcp = TcpProxy(target.hostname or "127.0.0.1", target.port or 80)
    try:
        yield tcp, f"http://127.0.0.1:{tcp.port}{target.path}"
    finally:
        tcp.close()


@pytest.mark.parametrize("mode", ["refuse", "stall"])
def test_hapi_going_away_mid_test_gives_412_within_the_deadline(
    proxy: tuple[TcpProxy, str], app_client: TestClient, mode: str
) -> None:
    tcp, via_proxy = proxy
    request = load_example("long-stay/patient-view-no-prefetch.json") | {"fhirServer": via_proxy}
    assert app_client.post("/cds-services/long-stay", json=request).status_code == 200
    tcp.cut(mode)  # HAPI is now unreachable (refused) or hangs (stalled)
    started = time.monotonic()
    response = app_client.post("/cds-services/long-stay", json=request)
    elapsed = time.monotonic() - started
    assert response.status_code == 412
    assert response.json()["resourceType"] == "OperationOutcome"
    assert elapsed < 3.0 + 1.0  # the request deadline (3 s) plus scheduling slack


def test_optional_data_lost_mid_test_gives_a_could_not_check_card(
    proxy: tuple[TcpProxy, str], app_client: TestClient
) -> None:
    tcp, via_proxy = proxy
    request = load_example("long-stay/patient-view-super-stranded-no-plan.json")
    del request["prefetch"]["carePlans"]  # this key must now come from the server...
    request["fhirServer"] = via_proxy
    tcp.cut("stall")  # ...which has stopped answering
    response = app_client.post("/cds-services/long-stay", json=request)
    assert response.status_code == 200
    [card] = response.json()["cards"]
    assert card["summary"].endswith("discharge plan could not be checked")
    assert card["indicator"] == "warning"


def test_every_no_prefetch_example_ships_its_data() -> None:
    examples = list(EXAMPLES.rglob("*no-prefetch*.json"))
    assert examples
    for path in examples:
        assert list(path.parent.glob("*.bundle.json")), f"{path} has no data bundle to load"
