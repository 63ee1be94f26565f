"""``GET /fhir-safety/registry/valproate`` (router in api/routes/registry.py)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pytest_httpx import HTTPXMock

from fhir_safety.api.app import create_app
from fhir_safety.api.routes import registry as registry_routes
from fhir_safety.config import Settings
from fhir_safety.services import registry, synth
from fhir_safety.terminology import Terminology
from tests.conftest import FIXED_NOW
from tests.unit.services.test_registry import _serve

BASE = "http://fhir.test/fhir"


def _client(settings: Settings, terminology: Terminology) -> TestClient:
    app = create_app(settings, terminology=terminology, clock=lambda: FIXED_NOW)
    if not any(getattr(r, "path", "") == "/fhir-safety/registry/valproate" for r in app.routes):
        app.include_router(registry_routes.router)  # until app.py registers it
    return TestClient(app)


@pytest.fixture
def registry_client(tmp_path: Path, terminology: Terminology) -> Iterator[TestClient]:
    settings = Settings(
        feedback_database_url=f"sqlite:///{tmp_path / 'f.sqlite3'}", fhir_server_url=BASE
    )
    with _client(settings, terminology) as client:
        yield client


def test_registry_endpoint_counts(
    registry_client: TestClient, terminology: Terminology, httpx_mock: HTTPXMock
) -> None:
    population = synth.generate(patients=150, seed=21, terminology=terminology, valproate_rate=0.5)
    httpx_mock.add_callback(_serve(population), is_reusable=True)
    body = registry_client.get("/fhir-safety/registry/valproate").json()
    expected = Counter(p.expected_action for p in population if p.expected_action)
    assert body["counts"] == {s: expected.get(s, 0) for s in registry.ACTION_ORDER}
    assert body["generated"] == FIXED_NOW.isoformat()


@pytest.mark.parametrize(("fmt", "media"), [("csv", "text/csv"), ("fhir", "application/fhir+json")])
def test_registry_endpoint_formats(
    registry_client: TestClient,
    terminology: Terminology,
    httpx_mock: HTTPXMock,
    fmt: str,
    media: str,
) -> None:
    population = synth.generate(patients=40, seed=22, terminology=terminology, valproate_rate=0.5)
    httpx_mock.add_callback(_serve(population), is_reusable=True)
    response = registry_client.get(f"/fhir-safety/registry/valproate?format={fmt}")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(media)


def test_registry_endpoint_without_server_is_412(tmp_path: Path, terminology: Terminology) -> None:
    settings = Settings(feedback_database_url=f"sqlite:///{tmp_path / 'f.sqlite3'}")
    with _client(settings, terminology) as client:
        response = client.get("/fhir-safety/registry/valproate")
    assert response.status_code == 412
    assert response.json()["resourceType"] == "OperationOutcome"
