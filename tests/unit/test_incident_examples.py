"""examples/incidents: every resource is valid R4, and the FHIR-server data gives the same card."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from fhir.resources.R4B import get_fhir_model_class

from tests.conftest import EXAMPLES, load_example

FOLDER = EXAMPLES / "incidents"
DATA = FOLDER / "fhir-data-open-investigation.bundle.json"


def resources_in(value: Any) -> list[dict[str, Any]]:
    found = []
    if isinstance(value, dict):
        if value.get("resourceType") not in {None, "Bundle", "OperationOutcome"}:
            found.append(value)
        for item in value.values():
            found += resources_in(item)
    elif isinstance(value, list):
        for item in value:
            found += resources_in(item)
    return found


@pytest.mark.parametrize("path", sorted(FOLDER.glob("*.json")), ids=lambda p: p.name)
def test_example_resources_are_valid_r4(path: Path) -> None:
    if path.name == "expected.json":
        return
    for resource in resources_in(json.loads(path.read_text(encoding="utf-8"))):
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)


def test_server_data_gives_the_card_of_the_prefetch_example(client: TestClient) -> None:
    """What the service would fetch from the server holding the bundle: the same card."""
    bundle = json.loads(DATA.read_text(encoding="utf-8"))
    resources = [e["resource"] for e in bundle["entry"]]

    def searchset(kind: str) -> dict[str, Any]:
        return {
            "resourceType": "Bundle",
            "type": "searchset",
            "entry": [{"resource": r} for r in resources if r["resourceType"] == kind],
        }

    request = load_example("incidents/patient-view-no-prefetch.json")
    request.pop("fhirServer")
    request["prefetch"] = {"incidents": searchset("AdverseEvent"), "tasks": searchset("Task")}
    cards = client.post("/cds-services/incident-family-partnership", json=request).json()["cards"]
    expected = json.loads((FOLDER / "expected.json").read_text(encoding="utf-8"))
    [card] = expected["examples"]["patient-view-open-psii.json"]["cards"]
    assert [(c["indicator"], c["summary"]) for c in cards] == [(card["indicator"], card["summary"])]
