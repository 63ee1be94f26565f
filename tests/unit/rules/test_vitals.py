"""FHIR -> NEWS2 mapping: units, staleness, missing data, Scale 2, age, pregnancy; and FHIR out."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fhir.resources.R4B.observation import Observation as R4BObservation
from fhir.resources.R4B.operationoutcome import OperationOutcome as R4BOperationOutcome

from fhir_safety.config import News2Settings
from fhir_safety.fhir.resources import Observation
from fhir_safety.rules import vitals
from fhir_safety.rules.news2 import Band, Consciousness, Parameter, SpO2Scale
from fhir_safety.rules.vitals import News2Assessment
from fhir_safety.terminology import Terminology
from tests.conftest import EXAMPLES
from tests.unit.rules.news2_data import (
    LOINC,
    NOW,
    PATIENT,
    SCT,
    UCUM,
    acvpu,
    at,
    full_set,
    oxygen,
    patient,
    pregnancy,
    quantity,
    record,
    scale2_goal,
)

SETTINGS = News2Settings()


def assess(resources: list[dict[str, Any]], terminology: Terminology, **kw: Any) -> News2Assessment:
    return vitals.assess_record(record(resources, **kw), SETTINGS, terminology)


def read(resources: list[dict[str, Any]], terminology: Terminology) -> Any:
    parsed = [Observation.model_validate(r) for r in resources]
    return vitals.read_vitals(
        parsed, patient_id=PATIENT, terminology=terminology, now=NOW, zone=ZoneInfo("UTC")
    )


def with_replaced(kind: str, replacement: dict[str, Any], **set_kw: Any) -> list[dict[str, Any]]:
    return [*full_set(skip=(kind,), **set_kw), replacement]


# --- Complete sets and the UK Core example -------------------------------------------------


def test_assess_record_complete_normal_set_scores_zero_low(terminology: Terminology) -> None:
    result = assess([patient(), *full_set()], terminology).result
    assert (result.status, result.total, result.band) == ("scored", 0, Band.LOW)
    assert len(result.evidence) == 7


def test_assess_record_uk_core_example_reproduces_subscores(terminology: Terminology) -> None:
    bundle = json.loads((EXAMPLES / "news2/uk-core-news2-observations.json").read_text())
    resources = [e["resource"] for e in bundle["entry"]]
    result = vitals.assess_record(
        record(resources, context={"patientId": "p-2001"}), SETTINGS, terminology
    ).result
    # UK Core UKCore-Bundle-NEWS2Observations-Example [S3]: RR 2, pulse 1, SpO2 scale 1 2, air 0,
    # SBP 0, alert 0; its raw 37.5 C scores 0 on Chart 1 (the example says 1): total 5, medium.
    assert result.sub_scores == {
        Parameter.RESPIRATION_RATE: 2,
        Parameter.SPO2: 2,
        Parameter.AIR_OR_OXYGEN: 0,
        Parameter.SYSTOLIC_BP: 0,
        Parameter.PULSE: 1,
        Parameter.CONSCIOUSNESS: 0,
        Parameter.TEMPERATURE: 0,
    }
    assert (result.total, result.band) == (5, Band.MEDIUM)


# --- Units (UCUM) ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "value", "unit", "system", "used"),
    [
        ("rr", 16, "/min", UCUM, True),
        ("rr", 16, "{Breaths}/min", UCUM, True),  # UK Core example [S3]
        ("rr", 16, "1/min", UCUM, True),
        ("rr", 16, "breaths/min", UCUM, False),  # not UCUM syntax for per minute
        ("rr", 16, "/min", None, False),  # no system: not known to be UCUM
        ("rr", 16, "/min", "http://example.org/units", False),
        ("pulse", 70, "{beats}/min", UCUM, True),
        ("pulse", 70, "/h", UCUM, False),
        ("spo2", 97, "%", UCUM, True),
        ("spo2", 97, "percent", UCUM, False),
        ("sbp", 120, "mm[Hg]", UCUM, True),
        ("sbp", 120, "mmHg", UCUM, False),
        ("sbp", 16, "kPa", UCUM, False),
        ("temp", 37.0, "Cel", UCUM, True),
        ("temp", 98.6, "[degF]", UCUM, True),  # exact UCUM conversion
        ("temp", 37.0, "degC", UCUM, False),
        ("temp", 37.0, "K", UCUM, False),
    ],
)
def test_read_vitals_unit_check_decides_use(
    terminology: Terminology, kind: str, value: Any, unit: str, system: str | None, used: bool
) -> None:
    reading = quantity(kind, value, unit=unit, system=system)
    found, not_used = read([reading], terminology)
    parameter = {
        "rr": Parameter.RESPIRATION_RATE,
        "pulse": Parameter.PULSE,
        "spo2": Parameter.SPO2,
        "sbp": Parameter.SYSTOLIC_BP,
        "temp": Parameter.TEMPERATURE,
    }[kind]
    assert (vitals.reading_of(found, parameter) is not None) is used
    if not used:
        assert [n.parameter for n in not_used] == [parameter]
        assert "unit" in not_used[0].reason


def test_read_vitals_fahrenheit_converted_to_celsius(terminology: Terminology) -> None:
    found, _ = read([quantity("temp", 100.4, unit="[degF]")], terminology)
    assert found.temperature is not None
    assert found.temperature.value == Decimal(38)


def test_assess_record_wrong_unit_is_incomplete_not_scored(terminology: Terminology) -> None:
    wrong = quantity("temp", 98.6, unit="degF")  # °F written in a non-UCUM way
    assessment = assess(with_replaced("temp", wrong), terminology)
    result = assessment.result
    assert result.status == "incomplete"
    assert result.band is None
    assert result.total is None
    assert result.missing == (Parameter.TEMPERATURE,)
    why = vitals.missing_reason(
        assessment, Parameter.TEMPERATURE, max_age=timedelta(hours=12), zone=ZoneInfo("UTC")
    )
    assert "unit 'degF'" in why


def test_read_vitals_newer_wrong_unit_falls_back_to_older_valid(
    terminology: Terminology,
) -> None:
    older = quantity("sbp", 95, oid="bp-old", when=at(60))
    newer = quantity("sbp", 120, oid="bp-new", when=at(10), unit="mmHg")
    found, not_used = read([older, newer], terminology)
    assert found.systolic_bp is not None
    assert (found.systolic_bp.value, found.systolic_bp.source) == (95, "Observation/bp-old")
    assert [(n.source, n.parameter) for n in not_used] == [
        ("Observation/bp-new", Parameter.SYSTOLIC_BP)
    ]


def test_read_vitals_older_problem_is_not_reported(terminology: Terminology) -> None:
    older = quantity("sbp", 95, oid="bp-old", when=at(60), unit="mmHg")
    newer = quantity("sbp", 120, oid="bp-new", when=at(10))
    _, not_used = read([older, newer], terminology)
    assert not_used == ()


@pytest.mark.parametrize(
    ("kind", "value"),
    [("spo2", 101), ("spo2", -1), ("rr", -2), ("pulse", -5), ("temp", 98.6), ("temp", 5)],
)
def test_read_vitals_impossible_value_not_used(
    terminology: Terminology, kind: str, value: Any
) -> None:
    found, not_used = read([quantity(kind, value)], terminology)
    assert not_used
    assert "cannot be a measurement" in not_used[0].reason
    assert all(r is None for r in (found.spo2, found.respiration_rate, found.pulse))
    assert found.temperature is None


# --- Time: latest, stale, future, undated ------------------------------------------------------


def test_read_vitals_latest_reading_wins(terminology: Terminology) -> None:
    readings = [
        quantity("rr", 26, oid="rr-old", when=at(120)),
        quantity("rr", 18, oid="rr-new", when=at(5)),
    ]
    found, _ = read(readings, terminology)
    assert found.respiration_rate is not None
    assert found.respiration_rate.value == 18


def test_read_vitals_same_time_more_abnormal_wins(terminology: Terminology) -> None:
    when = at(5)
    readings = [
        quantity("rr", 16, oid="rr-a", when=when),
        quantity("rr", 26, oid="rr-b", when=when),
    ]
    for order in (readings, list(reversed(readings))):
        found, _ = read(order, terminology)
        assert found.respiration_rate is not None
        assert found.respiration_rate.value == 26


@pytest.mark.parametrize(
    ("age", "status"),
    [
        (timedelta(hours=12), "scored"),  # exactly the configured window: used
        (timedelta(hours=12, seconds=1), "incomplete"),  # a second older: stale
    ],
)
def test_assess_record_stale_edge(terminology: Terminology, age: timedelta, status: str) -> None:
    old = quantity("temp", 37.0, when=(NOW - age).isoformat())
    assessment = assess(with_replaced("temp", old), terminology)
    assert assessment.result.status == status
    if status == "incomplete":
        assert assessment.result.stale == (Parameter.TEMPERATURE,)
        why = vitals.missing_reason(
            assessment,
            Parameter.TEMPERATURE,
            max_age=timedelta(hours=12),
            zone=ZoneInfo("Europe/London"),
        )
        assert why == "last usable reading 25 Nov 20:59 is older than 12 h"


def test_assess_record_max_age_setting_is_used(terminology: Terminology) -> None:
    old = quantity("temp", 37.0, when=at(5 * 60))
    settings = News2Settings(max_vitals_age_hours=4)
    result = vitals.assess_record(record(with_replaced("temp", old)), settings, terminology).result
    assert result.stale == (Parameter.TEMPERATURE,)


@pytest.mark.parametrize(("minutes_ahead", "used"), [(4, True), (10, False)])
def test_read_vitals_future_dated_beyond_tolerance_not_used(
    terminology: Terminology, minutes_ahead: int, used: bool
) -> None:
    older = quantity("pulse", 70, oid="p-old", when=at(60))
    ahead = quantity(
        "pulse", 140, oid="p-ahead", when=(NOW + timedelta(minutes=minutes_ahead)).isoformat()
    )
    found, not_used = read([older, ahead], terminology)
    assert found.pulse is not None
    assert found.pulse.value == (140 if used else 70)
    assert bool(not_used) is not used
    if not used:
        assert not_used[0].reason == "dated in the future"


@pytest.mark.parametrize(
    ("effective", "used"),
    [
        ({"effectiveDateTime": "2026-11-26"}, False),  # no time of day
        ({}, False),
        ({"effectivePeriod": {"start": at(20), "end": at(19)}}, True),
        ({"effectiveInstant": at(20)}, True),
    ],
)
def test_read_vitals_effective_time_forms(
    terminology: Terminology, effective: dict[str, Any], used: bool
) -> None:
    reading = quantity("rr", 16)
    del reading["effectiveDateTime"]
    reading |= effective
    found, not_used = read([reading], terminology)
    assert (found.respiration_rate is not None) is used
    assert bool(not_used) is not used


@pytest.mark.parametrize(
    ("status", "used"),
    [
        ("final", True),
        ("amended", True),
        ("corrected", True),
        ("preliminary", True),
        ("entered-in-error", False),
        ("cancelled", False),
        ("registered", False),
    ],
)
def test_read_vitals_observation_status(terminology: Terminology, status: str, used: bool) -> None:
    found, not_used = read([quantity("rr", 16, status=status)], terminology)
    assert (found.respiration_rate is not None) is used
    assert not_used == ()  # a withdrawn reading is not a data problem to report


def test_read_vitals_other_patients_reading_ignored(terminology: Terminology) -> None:
    found, _ = read([quantity("rr", 30, subject="someone-else")], terminology)
    assert found.respiration_rate is None


# --- Missing parameters --------------------------------------------------------------------------


@pytest.mark.parametrize("missing", ["rr", "spo2", "o2", "sbp", "pulse", "acvpu", "temp"])
def test_assess_record_any_missing_parameter_is_incomplete_never_low(
    terminology: Terminology, missing: str
) -> None:
    result = assess(full_set(skip=(missing,)), terminology).result
    assert result.status == "incomplete"
    assert result.band is None
    assert result.total is None
    assert result.minimum_band is None  # the rest score 0: nothing guaranteed, and never "low"
    assert len(result.missing) == 1


def test_assess_record_incomplete_keeps_minimum_band(terminology: Terminology) -> None:
    resources = full_set(rr=26, spo2=90, on_oxygen=True, skip=("temp",))
    result = assess(resources, terminology).result
    assert (result.status, result.partial_total, result.minimum_band) == (
        "incomplete",
        8,
        Band.HIGH,
    )


# --- Blood pressure panel, ACVPU, air or oxygen ------------------------------------------------


def test_read_vitals_blood_pressure_panel_systolic_component(terminology: Terminology) -> None:
    panel = {
        "resourceType": "Observation",
        "id": "bp",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "85354-9"}]},
        "effectiveDateTime": at(),
        "component": [
            {
                "code": {"coding": [{"system": LOINC, "code": "8462-4"}]},
                "valueQuantity": {"value": 60, "system": UCUM, "code": "mm[Hg]"},
            },
            {
                "code": {"coding": [{"system": SCT, "code": "72313002"}]},
                "valueQuantity": {"value": 88, "system": UCUM, "code": "mm[Hg]"},
            },
        ],
    }
    found, _ = read([panel], terminology)
    assert found.systolic_bp is not None
    assert found.systolic_bp.value == 88


def test_read_vitals_blood_pressure_panel_without_systolic_not_used(
    terminology: Terminology,
) -> None:
    panel = {
        "resourceType": "Observation",
        "id": "bp",
        "status": "final",
        "code": {"coding": [{"system": SCT, "code": "75367002"}]},
        "effectiveDateTime": at(),
    }
    found, not_used = read([panel], terminology)
    assert found.systolic_bp is None
    assert not_used[0].reason == "blood pressure without a systolic component"


@pytest.mark.parametrize(
    ("level", "expected", "score"),
    [
        ("alert", Consciousness.ALERT, 0),
        ("confusion", Consciousness.NEW_CONFUSION, 3),  # 130987000: new confusion [S2][S13]
        ("voice", Consciousness.VOICE, 3),
        ("pain", Consciousness.PAIN, 3),
        ("unresponsive", Consciousness.UNRESPONSIVE, 3),
    ],
)
def test_assess_record_acvpu_levels(
    terminology: Terminology, level: str, expected: Consciousness, score: int
) -> None:
    assessment = assess(full_set(level=level), terminology)
    assert assessment.inputs.vitals.consciousness is not None
    assert assessment.inputs.vitals.consciousness.value is expected
    assert assessment.result.sub_scores[Parameter.CONSCIOUSNESS] == score


def test_read_vitals_acvpu_unknown_answer_not_used(terminology: Terminology) -> None:
    observation = acvpu()
    observation["valueCodeableConcept"] = {"text": "drowsy"}
    found, not_used = read([observation], terminology)
    assert found.consciousness is None
    assert "not an ACVPU level" in not_used[0].reason


def _inhaled(code: str, value: Any, unit: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": "o2",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "effectiveDateTime": at(),
        "valueQuantity": {"value": value, "system": UCUM, "code": unit},
    }


@pytest.mark.parametrize(
    ("resource", "on_oxygen"),
    [
        (oxygen(True), True),
        (oxygen(False), False),
        (_inhaled("3151-8", 2, "L/min"), True),
        (_inhaled("3151-8", 0, "L/min"), False),
        (_inhaled("3150-0", 21, "%"), False),
        (_inhaled("3150-0", 28, "%"), True),
    ],
)
def test_read_vitals_air_or_oxygen_sources(
    terminology: Terminology, resource: dict[str, Any], on_oxygen: bool
) -> None:
    found, _ = read([resource], terminology)
    assert found.on_oxygen is not None
    assert found.on_oxygen.value is on_oxygen


def test_read_vitals_air_or_oxygen_as_value(terminology: Terminology) -> None:
    resource = {
        "resourceType": "Observation",
        "id": "o2",
        "status": "final",
        "code": {"text": "Air or oxygen"},
        "effectiveDateTime": at(),
        "valueCodeableConcept": {"coding": [{"system": SCT, "code": "371825009"}]},
    }
    found, _ = read([resource], terminology)
    assert found.on_oxygen is not None
    assert found.on_oxygen.value is True


def test_read_vitals_oxygen_flow_wrong_unit_not_used(terminology: Terminology) -> None:
    found, not_used = read([_inhaled("3151-8", 2, "mL/s")], terminology)
    assert found.on_oxygen is None
    assert "is not L/min" in not_used[0].reason


def test_read_vitals_pulse_oximetry_component_gives_oxygen(terminology: Terminology) -> None:
    spo2 = quantity("spo2", 95)
    spo2["component"] = [
        {
            "code": {"coding": [{"system": LOINC, "code": "3151-8"}]},
            "valueQuantity": {"value": 4, "system": UCUM, "code": "L/min"},
        }
    ]
    found, _ = read([spo2], terminology)
    assert found.spo2 is not None
    assert found.on_oxygen is not None
    assert found.on_oxygen.value is True


# --- SpO2 Scale 2 ---------------------------------------------------------------------------------


def scale_of(goals: list[dict[str, Any]], terminology: Terminology, **kw: Any) -> News2Assessment:
    return assess([*full_set(spo2=89, on_oxygen=True), *goals], terminology, **kw)


def test_scale2_documented_goal_uses_scale_2(terminology: Terminology) -> None:
    assessment = scale_of([scale2_goal()], terminology)
    assert assessment.inputs.scale2.documented
    assert assessment.result.scale is SpO2Scale.SCALE_2
    assert assessment.result.sub_scores[Parameter.SPO2] == 0  # 88-92 on Scale 2
    assert assessment.result.total == 2  # oxygen still adds 2


def test_scale2_without_goal_uses_scale_1(terminology: Terminology) -> None:
    assessment = scale_of([], terminology)
    assert assessment.result.scale is SpO2Scale.SCALE_1
    assert assessment.result.sub_scores[Parameter.SPO2] == 3  # 89 <= 91 on Scale 1
    assert assessment.inputs.scale2.note is None


@pytest.mark.parametrize(
    ("goal", "reason"),
    [
        (scale2_goal(expressed_by=None), "not attributed to a clinician"),
        (scale2_goal(expressed_by="Patient/p-1"), "not attributed to a clinician"),
        (scale2_goal(status="proposed"), "status proposed"),
        (scale2_goal(status="cancelled"), "status cancelled"),
        (scale2_goal(start="2026-12-01"), "starts 2026-12-01"),
    ],
)
def test_scale2_target_found_but_unusable_reported_and_scale_1(
    terminology: Terminology, goal: dict[str, Any], reason: str
) -> None:
    assessment = scale_of([goal], terminology)
    assert assessment.result.scale is SpO2Scale.SCALE_1
    note = assessment.inputs.scale2.note
    assert note is not None
    assert reason in note
    assert "Scale 1 used" in note


def test_scale2_practitioner_role_counts_as_clinician(terminology: Terminology) -> None:
    goal = scale2_goal(expressed_by="PractitionerRole/resp-reg")
    assert scale_of([goal], terminology).result.scale is SpO2Scale.SCALE_2


@pytest.mark.parametrize(("low", "high"), [(88, 94), (86, 92), (94, 98)])
def test_scale2_other_target_ranges_are_not_scale_2(
    terminology: Terminology, low: int, high: int
) -> None:
    assessment = scale_of([scale2_goal(low=low, high=high)], terminology)
    assert assessment.result.scale is SpO2Scale.SCALE_1
    assert assessment.inputs.scale2.note is None


def test_scale2_goal_data_unavailable_says_so(terminology: Terminology) -> None:
    assessment = scale_of([], terminology, unavailable={"Goal": "the server timed out"})
    assert assessment.result.scale is SpO2Scale.SCALE_1
    assert assessment.inputs.scale2.note == (
        "A Scale 2 target could not be checked (the server timed out)."
    )


# --- Age and pregnancy ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("birth_date", "age", "status"),
    [
        ("2010-11-26", 16, "scored"),  # 16th birthday today: adult
        ("2010-11-27", 15, "not-applicable"),  # 16 tomorrow
        ("1950-01-01", 76, "scored"),
        (None, None, "scored"),  # unknown age: scored as an adult, with a caveat
    ],
)
def test_assess_record_age_edges(
    terminology: Terminology, birth_date: str | None, age: int | None, status: str
) -> None:
    assessment = assess([patient(birth_date), *full_set()], terminology)
    assert assessment.inputs.age_years == age
    assert assessment.result.status == status
    if age is None:
        assert assessment.result.reason is not None
        assert "Age unknown" in assessment.result.reason


@pytest.mark.parametrize(
    ("condition", "pregnant"),
    [
        (pregnancy(), True),
        (pregnancy(clinical=None), True),
        (pregnancy(clinical="resolved"), False),
        (pregnancy(verification="refuted"), False),
        (pregnancy(verification="entered-in-error"), False),
        (pregnancy(onset="2026-06-01"), True),
        (pregnancy(onset="2025-11-01"), False),  # over 42 weeks ago: not current
    ],
)
def test_assess_record_pregnancy(
    terminology: Terminology, condition: dict[str, Any], pregnant: bool
) -> None:
    assessment = assess([patient(), *full_set(), condition], terminology)
    assert assessment.inputs.pregnant is pregnant
    assert assessment.result.status == ("not-applicable" if pregnant else "scored")


def test_assess_record_old_pregnancy_is_reported(terminology: Terminology) -> None:
    assessment = assess([*full_set(), pregnancy(onset="2025-11-01")], terminology)
    assert any("more than 42 weeks ago" in note for note in assessment.inputs.notes)


def test_assess_record_conditions_unavailable_scored_with_note(terminology: Terminology) -> None:
    assessment = assess(full_set(), terminology, unavailable={"Condition": "HTTP 500"})
    assert assessment.result.status == "scored"
    assert "Pregnancy could not be checked (HTTP 500)" in assessment.inputs.notes[0]


# --- FHIR out -----------------------------------------------------------------------------------


def test_news2_observation_validates_and_follows_profile(terminology: Terminology) -> None:
    assessment = assess(full_set(rr=22, pulse=112, temp=38.5), terminology)
    resource = vitals.news2_observation(
        assessment, patient_id=PATIENT, now=NOW, terminology=terminology, encounter_id="e-1"
    )
    assert resource is not None
    R4BObservation.model_validate(resource)
    assert resource["meta"]["profile"] == [vitals.NEWS2_SCORE_PROFILE]
    assert resource["code"]["coding"][0]["code"] == "1104051000000101"
    assert resource["category"][0]["coding"][0]["code"] == "survey"
    assert resource["valueQuantity"] == {
        "value": 5,
        "unit": "score",
        "system": UCUM,
        "code": "{ScoreOf}",
    }
    components = resource["component"]
    assert len(components) == 7
    assert sum(c["valueQuantity"]["value"] for c in components) == 5  # profile invariant news2-2
    for component in components:
        coding = component["code"]["coding"][0]
        assert terminology.contains("news2-subscores", coding["system"], coding["code"])
        assert component["valueQuantity"]["code"] == "{ScoreOf}"
    assert {d["reference"] for d in resource["derivedFrom"]} == {
        f"Observation/{r}" for r in ("rr", "spo2", "o2", "sbp", "pulse", "acvpu", "temp")
    }
    assert resource["encounter"] == {"reference": "Encounter/e-1"}
    assert resource["effectiveDateTime"] == at()


def test_news2_observation_scale_2_uses_scale_2_code(terminology: Terminology) -> None:
    assessment = scale_of([scale2_goal()], terminology)
    resource = vitals.news2_observation(
        assessment, patient_id=PATIENT, now=NOW, terminology=terminology
    )
    assert resource is not None
    codes = {c["code"]["coding"][0]["code"] for c in resource["component"]}
    assert "1104321000000108" in codes
    assert "1104311000000102" not in codes


def test_news2_observation_none_when_incomplete(terminology: Terminology) -> None:
    assessment = assess(full_set(skip=("temp",)), terminology)
    assert (
        vitals.news2_observation(assessment, patient_id=PATIENT, now=NOW, terminology=terminology)
        is None
    )


def test_no_score_outcome_incomplete_names_missing_and_floor(terminology: Terminology) -> None:
    assessment = assess(full_set(rr=26, spo2=90, on_oxygen=True, skip=("temp",)), terminology)
    outcome = vitals.no_score_outcome(assessment, max_age=timedelta(hours=12), zone=ZoneInfo("UTC"))
    R4BOperationOutcome.model_validate(outcome)
    issues = outcome["issue"]
    assert issues[0]["code"] == "incomplete"
    assert issues[1]["diagnostics"] == "Temperature: no reading recorded"
    assert issues[-1]["severity"] == "warning"
    assert "at least high risk" in issues[-1]["diagnostics"]


def test_no_score_outcome_not_applicable(terminology: Terminology) -> None:
    assessment = assess([patient("2015-01-01"), *full_set()], terminology)
    outcome = vitals.no_score_outcome(assessment, max_age=timedelta(hours=12), zone=ZoneInfo("UTC"))
    R4BOperationOutcome.model_validate(outcome)
    assert outcome["issue"][0]["code"] == "business-rule"
    assert "under 16" in outcome["issue"][0]["diagnostics"]


def test_subscore_codes_are_in_the_value_set(terminology: Terminology) -> None:
    codes = [*vitals.SUBSCORE_CODES.values(), *vitals.SPO2_SUBSCORE_CODES.values()]
    assert all(terminology.contains("news2-subscores", SCT, c) for c in codes)
    assert len(set(codes)) == 8
    assert terminology.contains("news2-total-score", SCT, vitals.TOTAL_SCORE_CODE)
    assert all(terminology.contains("acvpu", SCT, c) for c in vitals.ACVPU_LEVELS)
    assert all(
        terminology.contains("inspired-oxygen", *code)
        for code in (vitals.BREATHING_AIR, vitals.ON_OXYGEN)
    )
    assert all(
        terminology.contains("vital-inhaled-oxygen", *code)
        for code in (vitals.INHALED_O2_FLOW, vitals.INHALED_O2_CONCENTRATION)
    )
