"""Our prefetch templates stay within the CDS Hooks 2.0 restricted subset."""

from __future__ import annotations

import pytest

from fhir_safety.cds.catalogue import CATALOGUE
from fhir_safety.cds.hooks import HOOKS
from fhir_safety.cds.prefetch import PrefetchTemplate, check_template, render_template


@pytest.mark.parametrize(
    "service", CATALOGUE.services, ids=[f"{s.id}@{s.hook}" for s in CATALOGUE.services]
)
def test_catalogue_templates_are_within_the_subset(service: object) -> None:
    for template in service.prefetch:  # type: ignore[attr-defined]
        assert check_template(HOOKS[service.hook], template) == []  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("query", "problem"),
    [
        ("Encounter?patient={{context.draftOrders.id}}", "not a root-level prefetch token"),
        ("Encounter?patient={{context.selections}}", "not a root-level prefetch token"),
        ("Observation?_include=Observation:subject", "outside the restricted query subset"),
        ("Observation?date=yesterday", "needs an eq/lt/gt/ge/le prefix"),
        ("$everything", "neither a read nor a type search"),
        ("Patient?name", "outside the restricted query subset"),
    ],
)
def test_templates_outside_the_subset_are_flagged(query: str, problem: str) -> None:
    problems = check_template(HOOKS["order-select"], PrefetchTemplate("k", query))
    assert any(problem in p for p in problems), problems


def test_user_tokens_are_allowed_where_the_hook_has_a_user() -> None:
    template = PrefetchTemplate("me", "Practitioner/{{userPractitionerId}}")
    assert check_template(HOOKS["patient-view"], template) == []
    assert check_template(HOOKS["order-dispatch"], template) != []  # no userId in order-dispatch


def test_render_fills_tokens_and_escapes_values() -> None:
    template = PrefetchTemplate("e", "Encounter?patient={{context.patientId}}&status=in-progress")
    assert (
        render_template(template, {"patientId": "p 1"})
        == "Encounter?patient=p%201&status=in-progress"
    )


def test_render_absent_optional_token_gives_none() -> None:
    template = PrefetchTemplate("e", "Encounter/{{context.encounterId}}")
    assert render_template(template, {"patientId": "p-1"}) is None


def test_render_user_practitioner_id() -> None:
    template = PrefetchTemplate("me", "Practitioner/{{userPractitionerId}}")
    assert render_template(template, {"userId": "Practitioner/abc"}) == "Practitioner/abc"
    assert render_template(template, {"userId": "PractitionerRole/abc"}) is None


def test_render_list_token_is_a_comma_list() -> None:
    template = PrefetchTemplate("o", "MedicationRequest?_id={{context.dispatchedOrders}}")
    context = {"dispatchedOrders": ["MedicationRequest/a", "MedicationRequest/b"]}
    assert (
        render_template(template, context)
        == "MedicationRequest?_id=MedicationRequest/a,MedicationRequest/b"
    )
