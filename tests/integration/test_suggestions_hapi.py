"""Every resource a card suggestion creates or updates validates against its profile on HAPI."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from fhir_safety.api.app import create_app
from fhir_safety.config import Settings
from fhir_safety.terminology import Terminology
from tests.conftest import EXAMPLES, FIXED_NOW, load_example

pytestmark = pytest.mark.integration


def _examples_with_suggestions() -> list[tuple[str, str]]:
    cases = []
    for expected_file in sorted(EXAMPLES.glob("*/expected.json")):
        expected = json.loads(expected_file.read_text(encoding="utf-8"))
        for name, case in expected["examples"].items():
            if any(card.get("suggestions") for card in case["cards"]):
                cases.append((f"{expected_file.parent.name}/{name}", case["service"]))
    return cases


CASES = _examples_with_suggestions()


@pytest.fixture(scope="module")
def client(
    tmp_path_factory: pytest.TempPathFactory, terminology: Terminology
) -> Iterator[TestClient]:
    db = tmp_path_factory.mktemp("fb") / "fb.sqlite3"
    settings = Settings(feedback_database_url=f"sqlite:///{db}")
    with TestClient(create_app(settings, terminology=terminology, clock=lambda: FIXED_NOW)) as c:
        yield c


def suggested_resources(cards: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        action["resource"]
        for card in cards
        for suggestion in card.get("suggestions", [])
        for action in suggestion.get("actions", [])
        if action["type"] in {"create", "update"}
    ]


@pytest.mark.parametrize(("example", "service_id"), CASES, ids=[c[0] for c in CASES])
def test_suggested_resources_validate_against_their_profiles(
    loaded_hapi: str, client: TestClient, example: str, service_id: str
) -> None:
    cards = client.post(f"/cds-services/{service_id}", json=load_example(example)).json()["cards"]
    assert any(card.get("suggestions") for card in cards)
    resources = suggested_resources(cards)  # delete-only suggestions carry no resource
    for resource in resources:
        # Validated against the profiles it claims: ours, or NHS England's RA profiles
        # (profiles/nhs-england-ra/, loaded with the rest before the first $validate).
        outcome = httpx.post(
            f"{loaded_hapi}/{resource['resourceType']}/$validate", json=resource, timeout=120
        ).json()
        errors = [i for i in outcome.get("issue", []) if i["severity"] in {"error", "fatal"}]
        assert errors == [], f"{example}: {resource['resourceType']}: {errors}"


def test_every_project_profile_is_loaded(loaded_hapi: str) -> None:
    for path in sorted(Path(EXAMPLES.parent / "profiles").glob("StructureDefinition-*.json")):
        url = json.loads(path.read_text(encoding="utf-8"))["url"]
        found = httpx.get(
            f"{loaded_hapi}/StructureDefinition", params={"url": url}, timeout=30
        ).json()
        assert found.get("total", len(found.get("entry", []))) >= 1, url
