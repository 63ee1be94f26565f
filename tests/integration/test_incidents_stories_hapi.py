"""Incident investigations with the family, and patient-story signals, end to end on real HAPI.

Driven through the CLI, as a patient-safety team would use it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from fhir_safety.cli import main
from tests.conftest import REPO

pytestmark = pytest.mark.integration

PROFILE = "https://fhir-safety.org/fhir/StructureDefinition/"


def run_json(args: list[str], capsys: pytest.CaptureFixture[str]) -> Any:
    assert main([*args, "--json"]) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def errors_of(base: str, resource: dict[str, Any], profile: str) -> list[dict[str, Any]]:
    outcome = httpx.post(
        f"{base}/{resource['resourceType']}/$validate",
        params={"profile": PROFILE + profile},
        json=resource,
        timeout=120,
    ).json()
    return [i for i in outcome.get("issue", []) if i["severity"] in {"error", "fatal"}]


def test_investigation_with_the_family_on_hapi(
    loaded_hapi: str, capsys: pytest.CaptureFixture[str]
) -> None:
    opened = run_json(
        [
            "incident",
            "open",
            "--fhir-server",
            loaded_hapi,
            "--patient",
            "p-1001",
            "--learning-response",
            "psii",
            "--event",
            "Fall from bed at night, hip fracture",
            "--occurred",
            "2026-11-20T02:00:00Z",
            "--family-name",
            "Sam Example",
            "--relationship",
            "daughter",
            "--due",
            "2027-02-18",
        ],
        capsys,
    )
    incident_id = opened["incident"].split("/")[-1]
    assert opened["nextStep"] == "first-contact"
    recorded = run_json(
        [
            "incident",
            "record",
            incident_id,
            "first-contact",
            "--fhir-server",
            loaded_hapi,
            "--note",
            "Phoned Sam; explained what happened and who will keep in touch",
            "--medium",
            "PHONE",
            "--when",
            "2026-11-21T10:00:00Z",
        ],
        capsys,
    )
    done = {s["step"]: s for s in recorded["steps"]}
    assert done["first-contact"]["doneOn"] == "2026-11-21"
    assert done["first-contact"]["communications"]
    # "No surprises": the final report cannot be shared before the draft.
    assert (
        main(["incident", "record", incident_id, "final-shared", "--fhir-server", loaded_hapi]) != 0
    )
    status = run_json(["incident", "status", incident_id, "--fhir-server", loaded_hapi], capsys)
    assert status["learningResponse"]["open"] is True
    event = httpx.get(f"{loaded_hapi}/AdverseEvent/{incident_id}", timeout=30).json()
    assert errors_of(loaded_hapi, event, "safety-incident") == []
    tasks = httpx.get(
        f"{loaded_hapi}/Task", params={"focus": f"AdverseEvent/{incident_id}"}, timeout=30
    ).json()
    engagement = [
        e["resource"]
        for e in tasks.get("entry", [])
        if any(
            p.endswith("family-engagement-task")
            for p in e["resource"].get("meta", {}).get("profile", [])
        )
    ]
    assert engagement
    assert all(errors_of(loaded_hapi, task, "family-engagement-task") == [] for task in engagement)


def test_story_signals_reach_hapi(
    loaded_hapi: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    labelled = REPO / "tests" / "data" / "stories" / "labelled.json"
    assert (
        main(
            [
                "stories",
                "classify",
                str(labelled),
                "--fhir-server",
                loaded_hapi,
                "--out",
                str(tmp_path),
                "--now",
                "2026-11-26T09:00:00Z",
            ]
        )
        == 0
    )
    capsys.readouterr()
    bundle = json.loads((tmp_path / "bundle.json").read_text(encoding="utf-8"))
    issues = [
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "DetectedIssue"
    ]
    assert issues
    for issue in issues[:20]:
        stored = httpx.get(f"{loaded_hapi}/DetectedIssue/{issue['id']}", timeout=30)
        assert stored.status_code == 200
        # The transaction resolved the story's urn:uuid into its Communication's id.
        evidence = stored.json()["evidence"]
        assert [e["code"] for e in evidence] == [e["code"] for e in issue["evidence"]]
        assert all(
            d["reference"].startswith("Communication/") for e in evidence for d in e["detail"]
        )
