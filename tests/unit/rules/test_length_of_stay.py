"""Long-stay rule: band edges, time zones, discharge planning, could-not-check."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from fhir_safety.config import LongStaySettings
from fhir_safety.domain import Severity
from fhir_safety.fhir.resources import Resource
from fhir_safety.record import PatientRecord
from fhir_safety.rules import length_of_stay
from fhir_safety.services.record import parse_resource
from fhir_safety.terminology import Terminology

LONDON = ZoneInfo("Europe/London")
NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
PATIENT = "p-1"
DISCHARGE_PLAN = {
    "coding": [
        {
            "system": "https://fhir-safety.org/fhir/CodeSystem/care-plan-category",
            "code": "discharge-plan",
        }
    ]
}


def encounter(
    start: str | None,
    *,
    cls: str = "IMP",
    status: str = "in-progress",
    eid: str = "e-1",
    **extra: Any,
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Encounter",
        "id": eid,
        "status": status,
        "class": {"code": cls},
        "subject": {"reference": f"Patient/{PATIENT}"},
        **extra,
    }
    if start is not None:
        resource["period"] = {"start": start}
    return resource


def care_plan(
    end: str | None = None, *, shared: bool = True, status: str = "active"
) -> dict[str, Any]:
    plan: dict[str, Any] = {
        "resourceType": "CarePlan",
        "id": "cp-1",
        "status": status,
        "intent": "plan",
        "category": [DISCHARGE_PLAN],
        "subject": {"reference": f"Patient/{PATIENT}"},
    }
    if end:
        plan["period"] = {"start": "2026-11-01", "end": end}
    if shared:
        plan["contributor"] = [{"reference": f"Patient/{PATIENT}"}]
    return plan


def record(
    resources: Sequence[dict[str, Any]],
    *,
    now: datetime = NOW,
    zone: ZoneInfo = LONDON,
    hook: str = "patient-view",
    encounter_id: str | None = None,
    unavailable: dict[str, str] | None = None,
) -> PatientRecord:
    by_type: dict[str, list[Resource]] = {}
    for index, raw in enumerate(resources):
        parsed = parse_resource(raw, f"test[{index}]")
        assert parsed is not None
        by_type.setdefault(parsed.resource_type, []).append(parsed)
    context: dict[str, Any] = {"patientId": PATIENT, "userId": "Practitioner/u"}
    if encounter_id:
        context["encounterId"] = encounter_id
    return PatientRecord(
        hook=hook,
        context=context,
        now=now,
        zone=zone,
        patient=None,
        resources={k: tuple(v) for k, v in by_type.items()},
        unavailable=unavailable or {},
    )


def evaluate(rec: PatientRecord, terminology: Terminology) -> list[Any]:
    return length_of_stay.evaluate(rec, LongStaySettings(), terminology)


@pytest.mark.parametrize(
    ("start", "expected_rule", "expected_day"),
    [
        ("2026-11-20T09:00:00Z", None, None),  # 6 days: no card
        ("2026-11-19T09:00:00Z", "long-stay.stranded", 8),  # 7 days: stranded
        ("2026-11-06T09:00:00Z", "long-stay.stranded", 21),  # 20 days: still stranded
        ("2026-11-05T09:00:00Z", "long-stay.super-stranded", 22),  # 21 days: super-stranded
    ],
)
def test_long_stay_band_edges(
    terminology: Terminology, start: str, expected_rule: str | None, expected_day: int | None
) -> None:
    findings = evaluate(record([encounter(start)]), terminology)
    if expected_rule is None:
        assert findings == []
        return
    [finding] = findings
    assert finding.rule_id == expected_rule
    assert finding.summary.startswith(f"Day {expected_day} in hospital")
    assert finding.severity is Severity.WARNING  # no plan recorded


def test_long_stay_counts_days_on_the_local_calendar_not_utc(terminology: Terminology) -> None:
    # 23:30 UTC on 12 June is 00:30 on 13 June in London (BST): admission day is the 13th.
    now = datetime(2026, 6, 19, 12, 0, tzinfo=UTC)
    late_evening_utc = encounter("2026-06-12T23:30:00Z")
    assert evaluate(record([late_evening_utc], now=now), terminology) == []  # 6 local days
    same_instant_offset = encounter("2026-06-13T00:30:00+01:00")
    assert evaluate(record([same_instant_offset], now=now), terminology) == []
    in_utc_zone = evaluate(record([late_evening_utc], now=now, zone=ZoneInfo("UTC")), terminology)
    assert [f.rule_id for f in in_utc_zone] == ["long-stay.stranded"]  # 7 UTC days


def test_long_stay_day_boundary_is_local_midnight(terminology: Terminology) -> None:
    start = encounter("2026-11-19T23:59:00Z")  # GMT: local = UTC in November
    just_before = datetime(2026, 11, 25, 23, 59, 59, tzinfo=UTC)
    at_midnight = datetime(2026, 11, 26, 0, 0, tzinfo=UTC)
    assert evaluate(record([start], now=just_before), terminology) == []
    assert len(evaluate(record([start], now=at_midnight), terminology)) == 1


def test_long_stay_date_only_start_means_local_midnight(terminology: Terminology) -> None:
    [finding] = evaluate(record([encounter("2026-11-19")]), terminology)
    assert finding.facts["days"] == 7


@pytest.mark.parametrize(
    "resource",
    [
        encounter("2026-10-01T09:00:00Z", cls="AMB"),  # outpatient
        encounter("2026-10-01T09:00:00Z", status="finished"),  # finished
        encounter("2026-10-01T09:00:00Z", cls="EMER"),  # emergency, not inpatient
    ],
    ids=["outpatient", "finished", "emergency"],
)
def test_long_stay_no_card_for_non_inpatient_or_finished(
    terminology: Terminology, resource: dict[str, Any]
) -> None:
    assert evaluate(record([resource]), terminology) == []


def test_long_stay_missing_admission_date_says_could_not_check(terminology: Terminology) -> None:
    [finding] = evaluate(record([encounter(None)]), terminology)
    assert finding.rule_id == "long-stay.could-not-check"
    assert finding.severity is Severity.WARNING
    assert "no admission date" in finding.detail


def test_long_stay_future_admission_date_says_could_not_check(terminology: Terminology) -> None:
    [finding] = evaluate(record([encounter("2026-12-01T09:00:00Z")]), terminology)
    assert finding.rule_id == "long-stay.could-not-check"


def test_long_stay_plan_with_future_discharge_date_is_info(terminology: Terminology) -> None:
    [finding] = evaluate(
        record([encounter("2026-11-17T09:00:00Z"), care_plan("2026-11-30")]), terminology
    )
    assert finding.severity is Severity.INFO
    assert finding.summary == "Day 10 in hospital (stranded): expected discharge 30 Nov 2026"
    assert finding.suggestions == ()
    assert "shared with the patient: yes" in finding.detail


def test_long_stay_plan_not_shared_with_patient_is_said(terminology: Terminology) -> None:
    [finding] = evaluate(
        record([encounter("2026-11-17T09:00:00Z"), care_plan("2026-11-30", shared=False)]),
        terminology,
    )
    assert "shared with the patient: **no**" in finding.detail


def test_long_stay_planned_end_extension_in_past_is_warning(terminology: Terminology) -> None:
    extension = [
        {"url": length_of_stay.PLANNED_END_DATE_URL, "valueDateTime": "2026-11-22T12:00:00Z"}
    ]
    [finding] = evaluate(
        record([encounter("2026-11-10T08:00:00Z", extension=extension)]), terminology
    )
    assert finding.severity is Severity.WARNING
    assert "22 Nov 2026 has passed" in finding.summary


def test_long_stay_discharge_date_today_is_not_passed(terminology: Terminology) -> None:
    [finding] = evaluate(
        record([encounter("2026-11-10T08:00:00Z"), care_plan("2026-11-26")]), terminology
    )
    assert finding.severity is Severity.INFO


def test_long_stay_plan_without_discharge_category_does_not_count(terminology: Terminology) -> None:
    other = care_plan("2026-11-30") | {"category": [{"text": "Diabetes plan"}]}
    [finding] = evaluate(record([encounter("2026-11-10T08:00:00Z"), other]), terminology)
    assert finding.summary.endswith("no expected discharge date")


def test_long_stay_unavailable_care_plans_never_read_as_no_plan(terminology: Terminology) -> None:
    rec = record(
        [encounter("2026-11-01T08:00:00Z")],
        unavailable={"CarePlan": "the FHIR server did not answer"},
    )
    [finding] = evaluate(rec, terminology)
    assert finding.severity is Severity.WARNING
    assert finding.summary.endswith("discharge plan could not be checked")
    assert "could not be checked" in finding.detail
    assert finding.suggestions == ()  # do not propose a second plan when we cannot see the first


def test_long_stay_super_stranded_card_has_risk_framing_and_plan_suggestion(
    terminology: Terminology,
) -> None:
    [finding] = evaluate(record([encounter("2026-11-05T14:30:00Z")]), terminology)
    assert finding.summary == "Day 22 in hospital (super-stranded): no expected discharge date"
    assert "123,000 micromorts" in finding.detail
    assert "not verified" in finding.detail  # the 12.3% is UNVERIFIED (clinical.md §5)
    [suggestion] = finding.suggestions
    [action] = suggestion.actions
    assert action.type == "create"
    plan = action.resource
    assert plan is not None
    assert plan["resourceType"] == "CarePlan"
    assert plan["status"] == "draft"
    assert plan["subject"] == {"reference": f"Patient/{PATIENT}"}
    assert plan["contributor"] == [{"reference": f"Patient/{PATIENT}"}]
    assert plan["encounter"] == {"reference": "Encounter/e-1"}


def test_long_stay_goal_in_patients_words_is_reported(terminology: Terminology) -> None:
    goal = {
        "resourceType": "Goal",
        "id": "g-1",
        "lifecycleStatus": "active",
        "description": {"text": "Home for my granddaughter's birthday"},
        "subject": {"reference": f"Patient/{PATIENT}"},
        "expressedBy": {"reference": f"Patient/{PATIENT}"},
    }
    [finding] = evaluate(record([encounter("2026-11-10T08:00:00Z"), goal]), terminology)
    assert "goals in their words): yes" in finding.detail


def test_long_stay_only_context_encounter_is_assessed(terminology: Terminology) -> None:
    stays = [encounter("2026-11-01T08:00:00Z", eid="a"), encounter("2026-11-02T08:00:00Z", eid="b")]
    assert len(evaluate(record(stays), terminology)) == 2
    [finding] = evaluate(record(stays, encounter_id="b"), terminology)
    assert finding.evidence[0] == "Encounter/b"


def test_long_stay_discharge_hook_counts_a_finished_encounter(terminology: Terminology) -> None:
    finished = encounter("2026-11-01T08:00:00Z", status="finished")
    rec = record([finished], hook="encounter-discharge", encounter_id="e-1")
    assert len(evaluate(rec, terminology)) == 1


def test_long_stay_thresholds_are_configurable(terminology: Terminology) -> None:
    rec = record([encounter("2026-11-21T09:00:00Z")])  # 5 days
    findings = length_of_stay.evaluate(
        rec, LongStaySettings(stranded_days=5, super_stranded_days=10), terminology
    )
    assert [f.rule_id for f in findings] == ["long-stay.stranded"]


def test_long_stay_summaries_fit_a_card(terminology: Terminology) -> None:
    findings = evaluate(record([encounter("2020-01-01T00:00:00Z")]), terminology)
    assert all(len(f.summary) < 140 for f in findings)
