"""The RA Flag, Conditions and Consent we suggest, against NHS England's RA profiles on HAPI.

NHS England's STU1 Reasonable Adjustments profiles (FlagConsent exists only there) cannot be
installed from any registry our machines reach, so profiles/nhs-england-ra/ holds a
transcription under NHS England's canonical URLs (its README says how it was made and how to
swap in the official package). `fhir-safety load` puts it on HAPI with the rest; these tests
check that what the card suggests validates, and that the profiles really bite: each broken
variant fails with the error its rule gives.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from fhir_safety.config import Settings
from fhir_safety.record import PatientRecord
from fhir_safety.rules import reasonable_adjustments as ra
from fhir_safety.services.record import parse_resource
from fhir_safety.terminology import Terminology
from tests.integration.fhir_loading import NHS_ENGLAND_RA, error_messages

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
NHSE = "https://fhir.nhs.uk/England/StructureDefinition"
EXAMPLES = NHS_ENGLAND_RA / "examples"
SNOMED = "http://snomed.info/sct"


def _diagnosis(cid: str, code: str, display: str) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": cid,
        "clinicalStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                    "code": "active",
                }
            ]
        },
        "code": {"coding": [{"system": SNOMED, "code": code, "display": display}]},
        "subject": {"reference": "Patient/p-ra"},
    }


def _suggested(terminology: Terminology, user: str) -> list[dict[str, Any]]:
    """Every resource of every suggestion for a patient with learning disability and autism."""
    conditions = [
        _diagnosis("c-ld", "110359009", "Intellectual disability (disorder)"),
        _diagnosis("c-asd", "35919005", "Pervasive developmental disorder (disorder)"),
    ]
    record = PatientRecord(
        hook="patient-view",
        context={"patientId": "p-ra", "userId": user},
        now=NOW,
        zone=ZoneInfo("Europe/London"),
        patient=None,
        resources={"Condition": tuple(parse_resource(c, "c") for c in conditions)},  # type: ignore[misc]
        unavailable={},
    )
    [finding] = ra.evaluate(record, Settings().reasonable_adjustments, terminology)
    resources = [
        dict(action.resource)
        for suggestion in finding.suggestions
        for action in suggestion.actions
        if action.resource is not None
    ]
    assert {r["resourceType"] for r in resources} == {"Flag", "Condition", "Consent"}
    return resources


def _validate(base: str, http: httpx.Client, resource: dict[str, Any]) -> list[str]:
    (profile,) = resource["meta"]["profile"]
    assert profile.startswith(NHSE)
    response = http.post(
        f"{base}/{resource['resourceType']}/$validate",
        params={"profile": profile},
        json=resource,
        headers={"Accept": "application/fhir+json"},
    )
    return error_messages(response.json())


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=300.0) as client:
        yield client


@pytest.mark.parametrize("user", ["Practitioner/u-1", "PractitionerRole/r-1"])
def test_every_suggested_ra_resource_is_valid_against_nhs_englands_profile(
    loaded_hapi: str, http: httpx.Client, terminology: Terminology, user: str
) -> None:
    for resource in _suggested(terminology, user):
        assert _validate(loaded_hapi, http, resource) == [], resource["resourceType"]


def _of(kind: str) -> Callable[[list[dict[str, Any]]], dict[str, Any]]:
    return lambda resources: copy.deepcopy(next(r for r in resources if r["resourceType"] == kind))


def _drop(path: str) -> Callable[[dict[str, Any]], None]:
    def mutate(resource: dict[str, Any]) -> None:
        *parents, leaf = path.split(".")
        node = resource
        for key in parents:
            node = node[key]
        del node[leaf]

    return mutate


def _set_flag_code(resource: dict[str, Any]) -> None:
    resource["code"]["coding"][0]["code"] = "NRAFX"


def _drop_nraf_category(resource: dict[str, Any]) -> None:
    resource["category"] = resource["category"][1:]


def _role_as_who(resource: dict[str, Any]) -> None:
    resource["contained"][0]["agent"][0]["who"] = {
        "reference": "PractitionerRole/r-1",
        "type": "PractitionerRole",
    }


BROKEN = [
    ("Flag", _drop("contained"), "Slice 'Flag.contained:provenance': a matching slice is required"),
    ("Flag", _set_flag_code, "NRAFX"),
    ("Flag", _role_as_who, "is not a valid Target for this element"),
    ("Condition", _drop_nraf_category, "Condition.category:patientFlag"),
    ("Condition", _drop("code"), "Condition.code: minimum required = 1"),
    ("Consent", _drop("policyRule"), "Consent.policyRule: minimum required = 1"),
    ("Consent", _drop("provision.purpose"), "Consent.provision.purpose: minimum required = 1"),
    ("Consent", _drop("policy"), "Consent.policy: minimum required = 1"),
]


@pytest.mark.parametrize(
    ("kind", "mutate", "expected"),
    BROKEN,
    ids=[f"{kind}-{expected[:40]}" for kind, _, expected in BROKEN],
)
def test_nhs_england_profiles_reject_what_their_rules_forbid(
    loaded_hapi: str,
    http: httpx.Client,
    terminology: Terminology,
    kind: str,
    mutate: Callable[[dict[str, Any]], None],
    expected: str,
) -> None:
    resource = _of(kind)(_suggested(terminology, "Practitioner/u-1"))
    mutate(resource)
    errors = _validate(loaded_hapi, http, resource)
    assert any(expected in message for message in errors), errors


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*-valid.json")), ids=lambda p: p.name)
def test_shipped_ra_examples_are_valid(loaded_hapi: str, http: httpx.Client, path: Path) -> None:
    resource = json.loads(path.read_text(encoding="utf-8"))
    assert _validate(loaded_hapi, http, resource) == []
