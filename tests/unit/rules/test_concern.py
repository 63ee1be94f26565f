"""NEWS2 + concern cards: concern timing edges, severity/priority combinations, the Task and the
score Observation the cards offer, and the could-not-check paths."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fhir.resources.R4B.observation import Observation as R4BObservation
from fhir.resources.R4B.task import Task as R4BTask

from fhir_safety.cds.catalogue import CATALOGUE
from fhir_safety.cds.definitions.news2 import CODED_OBSERVATIONS, NEWS2_PREFETCH
from fhir_safety.config import News2Settings
from fhir_safety.domain import Finding, Severity
from fhir_safety.rules import concern
from fhir_safety.terminology import Terminology
from tests.unit.rules.news2_data import (
    NOW,
    PATIENT,
    escalation,
    full_set,
    patient,
    pregnancy,
    record,
)
from tests.unit.rules.news2_data import (
    concern as concern_obs,
)

SETTINGS = News2Settings()


def cards(
    resources: list[dict[str, Any]],
    terminology: Terminology,
    settings: News2Settings = SETTINGS,
    **kw: Any,
) -> list[Finding]:
    return concern.evaluate(record(resources, **kw), settings, terminology)


def by_rule(findings: list[Finding], prefix: str) -> list[Finding]:
    return [f for f in findings if f.rule_id.startswith(prefix)]


def escalation_card(findings: list[Finding]) -> Finding | None:
    found = by_rule(findings, "patient-concern.")
    assert len(found) <= 1
    return found[0] if found else None


def news2_card(findings: list[Finding]) -> Finding:
    found = by_rule(findings, "news2.")
    found = [f for f in found if not f.rule_id.endswith("could-not-check")]
    assert len(found) == 1
    return found[0]


def task_of(finding: Finding) -> dict[str, Any]:
    (suggestion,) = finding.suggestions
    (action,) = suggestion.actions
    assert action.type == "create"
    assert action.resource is not None
    return dict(action.resource)


# --- Concern timing --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("said", "escalates"),
    [
        (NOW - timedelta(hours=24), True),  # exactly 24 hours: in
        (NOW - timedelta(hours=24, seconds=1), False),  # a second older: out
        (NOW - timedelta(minutes=1), True),
        (NOW + timedelta(minutes=10), True),  # clock drift: a worry is never dropped
    ],
)
def test_evaluate_concern_window_edges(
    terminology: Terminology, said: Any, escalates: bool
) -> None:
    findings = cards([*full_set(), concern_obs(when=said.isoformat())], terminology)
    assert (escalation_card(findings) is not None) is escalates


def test_evaluate_concern_window_is_configurable(terminology: Terminology) -> None:
    said = (NOW - timedelta(hours=13)).isoformat()
    settings = News2Settings(concern_window_hours=12)
    assert (
        escalation_card(cards([*full_set(), concern_obs(when=said)], terminology, settings)) is None
    )


@pytest.mark.parametrize(
    ("level", "escalates"),
    [
        ("worried", True),
        ("worse", True),
        ("same", False),
        ("better", False),
        ("not-worried", False),
    ],
)
def test_evaluate_concern_levels(terminology: Terminology, level: str, escalates: bool) -> None:
    findings = cards([*full_set(), concern_obs(level)], terminology)
    assert (escalation_card(findings) is not None) is escalates


@pytest.mark.parametrize("status", ["entered-in-error", "cancelled"])
def test_evaluate_withdrawn_concern_ignored(terminology: Terminology, status: str) -> None:
    assert escalation_card(cards([*full_set(), concern_obs(status=status)], terminology)) is None


def test_evaluate_other_patients_concern_ignored(terminology: Terminology) -> None:
    other = concern_obs()
    other["subject"] = {"reference": "Patient/someone-else"}
    assert escalation_card(cards([*full_set(), other], terminology)) is None


# --- Severity and priority combinations -------------------------------------------------------

# (name, vital-sign set, extra resources, expected escalation severity, Task priority)
COMBINATIONS = [
    ("news2 0", {}, [], Severity.WARNING, "urgent"),
    ("news2 4 low", {"rr": 22, "pulse": 95, "temp": 38.5}, [], Severity.WARNING, "urgent"),
    ("news2 3 low-medium", {"pulse": 135}, [], Severity.WARNING, "urgent"),
    ("news2 5 medium", {"rr": 22, "spo2": 93, "pulse": 95}, [], Severity.CRITICAL, "stat"),
    ("news2 7 high", {"rr": 26, "spo2": 93, "pulse": 111}, [], Severity.CRITICAL, "stat"),
    (
        "incomplete, at least medium",
        {"rr": 26, "on_oxygen": True, "skip": ("temp",)},
        [],
        Severity.CRITICAL,
        "stat",
    ),
    (
        "incomplete, at least low-medium",
        {"rr": 26, "skip": ("temp",)},
        [],
        Severity.WARNING,
        "urgent",
    ),
    ("incomplete, nothing known", {"skip": ("temp", "pulse")}, [], Severity.WARNING, "urgent"),
    ("not applicable (pregnant)", {"rr": 26}, [pregnancy()], Severity.WARNING, "urgent"),
]


@pytest.mark.parametrize(
    ("vitals_kw", "extra", "severity", "priority"),
    [c[1:] for c in COMBINATIONS],
    ids=[c[0] for c in COMBINATIONS],
)
def test_evaluate_concern_severity_and_priority(
    terminology: Terminology,
    vitals_kw: dict[str, Any],
    extra: list[dict[str, Any]],
    severity: Severity,
    priority: str,
) -> None:
    findings = cards([patient(), *full_set(**vitals_kw), *extra, concern_obs()], terminology)
    card = escalation_card(findings)
    assert card is not None
    assert card.severity is severity
    task = task_of(card)
    assert task["priority"] == priority
    assert card.facts["priority"] == priority
    if severity is Severity.CRITICAL:
        assert "NEWS2" in card.summary


def test_evaluate_no_concern_no_escalation_card(terminology: Terminology) -> None:
    findings = cards(full_set(rr=26, spo2=93, pulse=111), terminology)
    assert escalation_card(findings) is None
    assert news2_card(findings).severity is Severity.CRITICAL


# --- The Task the card offers ------------------------------------------------------------------


def test_escalation_task_validates_and_follows_profile(terminology: Terminology) -> None:
    findings = cards(
        [*full_set(), concern_obs(oid="c-9", note="Not herself today")],
        terminology,
        context={"userId": "Practitioner/nurse-1", "patientId": PATIENT, "encounterId": "e-1"},
    )
    card = escalation_card(findings)
    assert card is not None
    task = task_of(card)
    R4BTask.model_validate(task)
    assert task["meta"]["profile"] == [concern.ESCALATION_TASK_PROFILE]
    assert task["status"] == "requested"
    assert task["intent"] == "order"
    assert task["code"]["coding"][0]["code"] == "marthas-rule-call"
    assert task["for"] == {"reference": f"Patient/{PATIENT}"}
    assert task["encounter"] == {"reference": "Encounter/e-1"}
    assert task["owner"] == {
        "reference": "CareTeam/critical-care-outreach",
        "display": "Critical care outreach team",
    }
    assert task["reasonReference"] == {"reference": "Observation/c-9"}
    assert task["requester"] == {"reference": "Practitioner/nurse-1"}
    assert task["authoredOn"] == NOW.isoformat()
    assert card.suggestions[0].is_recommended
    assert "Not herself today" in card.detail


def test_escalation_task_uses_configured_team_and_link(terminology: Terminology) -> None:
    settings = News2Settings(
        outreach_team_reference="HealthcareService/ccot",
        outreach_team_display="Outreach (bleep 2222)",
        outreach_link_url="https://trust.example.nhs.uk/call-for-concern",
    )
    card = escalation_card(cards([*full_set(), concern_obs()], terminology, settings))
    assert card is not None
    assert task_of(card)["owner"]["reference"] == "HealthcareService/ccot"
    assert [link.url for link in card.links] == [
        "https://trust.example.nhs.uk/call-for-concern",
        concern.CONCERN_SOURCE_URL,
    ]


def test_settings_refuse_an_outreach_owner_of_the_wrong_type() -> None:
    with pytest.raises(ValueError, match="outreach_team_reference"):
        News2Settings(outreach_team_reference="Practitioner/dr-1")


def test_evaluate_task_reasons_on_newest_unanswered_concern(terminology: Terminology) -> None:
    older = concern_obs(oid="c-old", when=(NOW - timedelta(hours=3)).isoformat())
    newer = concern_obs("worse", oid="c-new", when=(NOW - timedelta(hours=1)).isoformat())
    card = escalation_card(cards([*full_set(), older, newer], terminology))
    assert card is not None
    assert task_of(card)["reasonReference"] == {"reference": "Observation/c-new"}
    assert "c-old" in card.detail


# --- Existing requests ---------------------------------------------------------------------------


def test_evaluate_existing_task_for_concern_no_new_suggestion(terminology: Terminology) -> None:
    findings = cards([*full_set(), concern_obs(), escalation(status="accepted")], terminology)
    card = escalation_card(findings)
    assert card is not None
    assert card.severity is Severity.INFO
    assert card.suggestions == ()
    assert card.summary.endswith("(accepted)")


@pytest.mark.parametrize("status", ["cancelled", "rejected", "entered-in-error", "failed"])
def test_evaluate_withdrawn_task_offers_request_again(
    terminology: Terminology, status: str
) -> None:
    findings = cards([*full_set(), concern_obs(), escalation(status=status)], terminology)
    card = escalation_card(findings)
    assert card is not None
    assert card.suggestions


def test_evaluate_task_for_other_concern_still_offers(terminology: Terminology) -> None:
    findings = cards([*full_set(), concern_obs(oid="c-2"), escalation("c-1")], terminology)
    card = escalation_card(findings)
    assert card is not None
    assert task_of(card)["reasonReference"] == {"reference": "Observation/c-2"}


def test_evaluate_tasks_unavailable_still_offers_and_warns(terminology: Terminology) -> None:
    findings = cards([*full_set(), concern_obs()], terminology, unavailable={"Task": "HTTP 503"})
    card = escalation_card(findings)
    assert card is not None
    assert card.suggestions
    assert "could not be checked (HTTP 503)" in card.detail


# --- Who said it ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("performer", "level", "summary_start"),
    [
        ("Patient/p-1", "worse", "The patient says they are worse"),
        ("Patient/p-1", "worried", "The patient is worried"),
        ("RelatedPerson/daughter", "worse", "A family member says the patient is worse"),
        ("Practitioner/nurse-2", "worried", "A member of staff is worried"),
        (None, "worried", "Someone is worried"),
    ],
)
def test_evaluate_says_who_is_worried(
    terminology: Terminology, performer: str | None, level: str, summary_start: str
) -> None:
    card = escalation_card(
        cards([*full_set(), concern_obs(level, performer=performer)], terminology)
    )
    assert card is not None
    assert card.summary.startswith(summary_start)


# --- NEWS2 card ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("vitals_kw", "severity", "summary"),
    [
        ({}, Severity.INFO, "NEWS2 0 (low risk): continue routine monitoring"),
        (
            {"pulse": 95},
            Severity.INFO,
            "NEWS2 1 (low risk): a registered nurse to assess the patient",
        ),
        (
            {"pulse": 135},
            Severity.WARNING,
            "NEWS2 3 (low-medium risk, a 3 in one parameter): inform the medical team",
        ),
        (
            {"rr": 22, "spo2": 93, "pulse": 95},
            Severity.WARNING,
            "NEWS2 5 (medium risk): urgent response, inform the medical team now",
        ),
        (
            {"rr": 26, "spo2": 93, "pulse": 111},
            Severity.CRITICAL,
            "NEWS2 7 (high risk): emergency response, inform the medical team now",
        ),
        (
            {"skip": ("temp", "pulse")},
            Severity.WARNING,
            "NEWS2 not calculated: no current pulse, temperature; record a full set of "
            "observations",
        ),
        (
            {"rr": 26, "spo2": 90, "on_oxygen": True, "skip": ("temp",)},
            Severity.CRITICAL,
            "NEWS2 incomplete (no temperature) but at least 8: high risk, emergency response",
        ),
        (
            {"rr": 26, "skip": ("temp",)},
            Severity.WARNING,
            "NEWS2 incomplete (no temperature) but already low-medium risk: inform the medical "
            "team",
        ),
        (
            {"skip": ("rr", "spo2", "o2", "sbp", "pulse", "acvpu", "temp")},
            Severity.INFO,
            "NEWS2 not calculated: no vital signs recorded",
        ),
    ],
)
def test_evaluate_news2_card_headline(
    terminology: Terminology, vitals_kw: dict[str, Any], severity: Severity, summary: str
) -> None:
    card = news2_card(cards([patient(), *full_set(**vitals_kw)], terminology))
    assert (card.severity, card.summary) == (severity, summary)
    if card.facts["status"] != "scored":
        assert "low risk" not in card.summary
        assert card.suggestions == ()


def test_evaluate_news2_card_incomplete_detail_names_stale(terminology: Terminology) -> None:
    old = (NOW - timedelta(hours=13)).isoformat()
    resources = [*full_set(skip=("temp",)), *[r for r in full_set(when=old) if r["id"] == "temp"]]
    card = news2_card(cards(resources, terminology))
    assert card.facts["stale"] == ["temperature"]
    assert "older than 12 h" in card.detail
    assert "**not** a low score" in card.detail


@pytest.mark.parametrize(
    ("extra", "summary"),
    [
        ([patient("2012-05-05")], "NEWS2 not used: patient is under 16 (age 14); use a paediatric"),
        ([patient(), pregnancy()], "NEWS2 not used: patient is pregnant; use the obstetric"),
        ([patient("2012-05-05"), pregnancy()], "NEWS2 not used: patient is under 16 (age 14) and"),
    ],
)
def test_evaluate_news2_card_not_applicable(
    terminology: Terminology, extra: list[dict[str, Any]], summary: str
) -> None:
    card = news2_card(cards([*extra, *full_set(rr=26)], terminology))
    assert card.severity is Severity.INFO
    assert card.summary.startswith(summary)
    assert card.suggestions == ()


def test_evaluate_news2_card_offers_score_observation(terminology: Terminology) -> None:
    card = news2_card(cards([patient(), *full_set(rr=22)], terminology))
    (suggestion,) = card.suggestions
    resource = dict(suggestion.actions[0].resource or {})
    R4BObservation.model_validate(resource)
    assert resource["valueQuantity"]["value"] == 2
    assert suggestion.label == "Record NEWS2 2 in the patient's record"


def test_evaluate_news2_already_recorded_not_offered_again(terminology: Terminology) -> None:
    first = news2_card(cards(full_set(), terminology))
    recorded = dict(first.suggestions[0].actions[0].resource or {}) | {"id": "news2-1"}
    again = news2_card(cards([*full_set(), recorded], terminology))
    assert again.suggestions == ()
    assert "already recorded as Observation/news2-1" in again.detail


def test_evaluate_news2_card_mentions_missing_daily_question(terminology: Terminology) -> None:
    card = news2_card(cards(full_set(), terminology))
    assert "ask patients and families at least daily" in card.detail


def test_evaluate_observations_unavailable_could_not_check(terminology: Terminology) -> None:
    findings = cards([], terminology, unavailable={"Observation": "HTTP 500"})
    assert [(f.rule_id, f.severity) for f in findings] == [
        ("news2.could-not-check", Severity.WARNING)
    ]
    assert "HTTP 500" in findings[0].detail


def test_evaluate_some_observations_unavailable_keeps_news2_card(
    terminology: Terminology,
) -> None:
    findings = cards(
        [*full_set(rr=26), concern_obs()], terminology, unavailable={"Observation": "HTTP 500"}
    )
    assert next(f.rule_id for f in findings) == "news2.could-not-check"
    assert "newer readings may exist" in news2_card(findings).detail
    assert escalation_card(findings) is not None  # a worry that did arrive is never dropped


# --- The service's prefetch --------------------------------------------------------------------------


def test_coded_prefetch_codes_match_value_sets(terminology: Terminology) -> None:
    expansion = {
        code
        for value_set in ("inspired-oxygen", "acvpu-observation")
        for _, code, _ in terminology.expansion(value_set)
    }
    assert set(CODED_OBSERVATIONS) == expansion


def test_news2_service_registered_with_optional_prefetch() -> None:
    service = CATALOGUE.find("news2-concern", "patient-view")
    assert service.prefetch == NEWS2_PREFETCH
    assert not any(t.required for t in service.prefetch)


def _all_stale() -> list[dict[str, Any]]:
    return full_set(when=(NOW - timedelta(days=30)).isoformat())


def _encounter(status: str) -> dict[str, Any]:
    return {
        "resourceType": "Encounter",
        "id": "e-1",
        "status": status,
        "class": {"code": "IMP"},
        "subject": {"reference": f"Patient/{PATIENT}"},
    }


@pytest.mark.parametrize(
    ("extra", "unavailable", "severity"),
    [
        ([_encounter("in-progress")], {}, Severity.WARNING),  # observations overdue on the ward
        ([], {"Encounter": "HTTP 500"}, Severity.WARNING),  # cannot tell: stay safe
        ([], {}, Severity.INFO),  # no encounter in progress: an outpatient's old readings
        ([_encounter("finished")], {}, Severity.INFO),
    ],
)
def test_evaluate_all_readings_stale_warns_only_in_hospital(
    terminology: Terminology,
    extra: list[dict[str, Any]],
    unavailable: dict[str, str],
    severity: Severity,
) -> None:
    card = news2_card(cards([*_all_stale(), *extra], terminology, unavailable=unavailable))
    assert card.severity is severity
    assert card.facts["status"] == "incomplete"
    assert "low risk" not in card.summary
