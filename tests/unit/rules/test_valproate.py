"""Valproate rules: age bands, ARAF edges, Flag lifecycle, exclusions, medicines, gaps."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fhir.resources.R4B.servicerequest import ServiceRequest
from fhir.resources.R4B.task import Task

from fhir_safety.config import ValproateSettings
from fhir_safety.domain import Finding, Severity
from fhir_safety.fhir.resources import Patient, Resource
from fhir_safety.record import PatientRecord
from fhir_safety.rules import valproate
from fhir_safety.services.record import parse_resource
from fhir_safety.terminology import Terminology

LONDON = ZoneInfo("Europe/London")
NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)  # today = 26 Nov 2026 (GMT)
PID = "p-1"
SCT = "http://snomed.info/sct"
ATC = "http://www.whocc.no/atc"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
PPP_SYSTEM = "https://fhir-safety.org/fhir/CodeSystem/valproate-ppp-status"
EPILIM_CHRONO_500 = {"coding": [{"system": SCT, "code": "739111000001100"}]}
PARACETAMOL = {"coding": [{"system": SCT, "code": "322236009", "display": "Paracetamol 500mg"}]}
SETTINGS = ValproateSettings()


# -- builders ---------------------------------------------------------------------------------


def patient(gender: str | None = "female", birth: str | None = "1996-05-01") -> dict[str, Any]:
    resource: dict[str, Any] = {"resourceType": "Patient", "id": PID}
    if gender is not None:
        resource["gender"] = gender
    if birth is not None:
        resource["birthDate"] = birth
    return resource


def order(
    medication: dict[str, Any] | None = None, *, oid: str = "draft-1", **extra: Any
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "id": oid,
        "status": "draft",
        "intent": "order",
        "subject": {"reference": f"Patient/{PID}"},
        **extra,
    }
    if medication is not None:
        resource["medicationCodeableConcept"] = medication
    return resource


def earlier_request(status: str = "completed", rid: str = "mr-old") -> dict[str, Any]:
    return order(EPILIM_CHRONO_500, oid=rid, status=status, authoredOn="2025-01-10")


def statement(status: str = "active") -> dict[str, Any]:
    return {
        "resourceType": "MedicationStatement",
        "id": "ms-1",
        "status": status,
        "medicationCodeableConcept": {"text": "Sodium valproate 200mg gastro-resistant tablets"},
        "subject": {"reference": f"Patient/{PID}"},
    }


def flag(
    start: str | None = "2026-03-02",
    end: str | None = "auto",
    *,
    code: str = "enrolled",
    status: str = "active",
    specialists: Sequence[str] = ("Practitioner/neuro-1",),
    fid: str = "ppp-1",
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Flag",
        "id": fid,
        "status": status,
        "code": {"coding": [{"system": PPP_SYSTEM, "code": code}]},
        "subject": {"reference": f"Patient/{PID}"},
        "extension": [
            {
                "url": "https://fhir-safety.org/fhir/StructureDefinition/valproate-specialist",
                "valueReference": {"reference": ref},
            }
            for ref in specialists
        ],
    }
    period: dict[str, str] = {}
    if start is not None:
        period["start"] = start
        if end == "auto":
            period["end"] = valproate.add_months(date.fromisoformat(start), 12).isoformat()
    if end not in (None, "auto"):
        period["end"] = str(end)
    if period:
        resource["period"] = period
    return resource


def condition(
    code: str,
    *,
    cid: str = "c-1",
    onset: str | None = "2026-10-01",
    clinical: str | None = "active",
    verification: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Condition",
        "id": cid,
        "code": {"coding": [{"system": SCT, "code": code}]},
        "subject": {"reference": f"Patient/{PID}"},
        **extra,
    }
    if onset is not None:
        resource["onsetDateTime"] = onset
    if clinical is not None:
        resource["clinicalStatus"] = {"coding": [{"code": clinical}]}
    if verification is not None:
        resource["verificationStatus"] = {"coding": [{"code": verification}]}
    return resource


def procedure(code: str, *, status: str = "completed", pid: str = "proc-1") -> dict[str, Any]:
    return {
        "resourceType": "Procedure",
        "id": pid,
        "status": status,
        "code": {"coding": [{"system": SCT, "code": code}]},
        "subject": {"reference": f"Patient/{PID}"},
        "performedDateTime": "2015-06-01",
    }


def araf_observation(code: str, when: str, oid: str = "araf-obs") -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "code": {"coding": [{"system": SCT, "code": code}]},
        "subject": {"reference": f"Patient/{PID}"},
        "effectiveDateTime": when,
    }


def _parse(raw: dict[str, Any], where: str) -> Resource:
    parsed = parse_resource(raw, where)
    assert parsed is not None
    return parsed


def record(
    resources: Sequence[dict[str, Any]] = (),
    *,
    pat: dict[str, Any] | None = None,
    orders: Sequence[dict[str, Any]] = (),
    hook: str = "order-sign",
    unavailable: dict[str, str] | None = None,
    selections: list[str] | None = None,
    now: datetime = NOW,
) -> PatientRecord:
    by_type: dict[str, list[Resource]] = {}
    for index, raw in enumerate(resources):
        parsed = _parse(raw, f"test[{index}]")
        by_type.setdefault(parsed.resource_type, []).append(parsed)
    context: dict[str, Any] = {"patientId": PID, "userId": "Practitioner/dr-1"}
    if selections is not None:
        context["selections"] = selections
    subject = _parse(pat if pat is not None else patient(), "patient")
    assert isinstance(subject, Patient)
    return PatientRecord(
        hook=hook,
        context=context,
        now=now,
        zone=LONDON,
        patient=subject,
        resources={k: tuple(v) for k, v in by_type.items()},
        draft_orders=tuple(_parse(o, f"order[{i}]") for i, o in enumerate(orders)),
        unavailable=unavailable or {},
    )


def run(rec: PatientRecord, terminology: Terminology, **settings: Any) -> list[Finding]:
    return valproate.evaluate(rec, ValproateSettings(**settings), terminology)


def status(rec: PatientRecord, terminology: Terminology) -> list[Finding]:
    return valproate.evaluate_status(rec, SETTINGS, terminology)


def rule_ids(findings: Sequence[Finding]) -> list[str]:
    return [f.rule_id for f in findings]


CONTINUING = [earlier_request("active")]  # an earlier course, so no new-start card


# -- (a) could become pregnant, no current PPP ---------------------------------------------------


@pytest.mark.parametrize(
    ("birth", "age", "fires"),
    [
        ("2019-11-27", 6, False),  # 7th birthday tomorrow
        ("2019-11-26", 7, True),  # 7 today: lower edge of the band
        ("1971-11-27", 54, True),
        ("1971-11-26", 55, True),  # 55 today: upper edge (inclusive, NCL 0-55)
        ("1970-11-27", 55, True),  # 56th birthday tomorrow
        ("1970-11-26", 56, False),  # 56 today
    ],
)
def test_ppp_age_band_edges(terminology: Terminology, birth: str, age: int, fires: bool) -> None:
    rec = record(CONTINUING, pat=patient(birth=birth), orders=[order(EPILIM_CHRONO_500)])
    findings = run(rec, terminology)
    assert ("valproate.ppp-missing" in rule_ids(findings)) is fires
    assessment = valproate.assess(rec, SETTINGS, terminology)
    assert assessment.age == age


def test_ppp_age_band_is_configurable(terminology: Terminology) -> None:
    rec = record(CONTINUING, pat=patient(birth="2022-01-01"), orders=[order(EPILIM_CHRONO_500)])
    assert "valproate.ppp-missing" not in rule_ids(run(rec, terminology))
    assert "valproate.ppp-missing" in rule_ids(run(rec, terminology, ppp_min_age=0))


def test_ppp_missing_is_critical_with_referral_and_araf_task(terminology: Terminology) -> None:
    rec = record(CONTINUING, orders=[order(EPILIM_CHRONO_500)])
    [finding] = run(rec, terminology)
    assert finding.rule_id == "valproate.ppp-missing"
    assert finding.severity is Severity.CRITICAL
    assert finding.summary == (
        "Valproate for a patient who could become pregnant: no Pregnancy Prevention "
        "Programme recorded"
    )
    assert [s.label for s in finding.suggestions] == [
        "Refer for specialist valproate review",
        "Task: complete the Annual Risk Acknowledgement Form",
    ]
    assert finding.selection_behavior == "any"
    assert "Epilim Chrono 500 tablets" in finding.detail
    assert {link.url for link in finding.links} >= {valproate.MHRA_URL, valproate.PATIENT_GUIDE_URL}
    assert "patient-ineligible" in finding.override_reasons


def test_ppp_suggested_resources_are_valid_r4(terminology: Terminology) -> None:
    rec = record(CONTINUING, orders=[order(EPILIM_CHRONO_500)])
    [finding] = run(rec, terminology)
    referral, task = (s.actions[0].resource for s in finding.suggestions)
    assert referral is not None
    assert task is not None
    ServiceRequest.model_validate(dict(referral))
    Task.model_validate(dict(task))
    [coding] = referral["code"]["coding"]
    assert coding == {"system": SCT, "code": "1366381000000107"}  # display UNVERIFIED: not sent
    assert referral["subject"] == {"reference": f"Patient/{PID}"}
    assert referral["requester"] == {"reference": "Practitioner/dr-1"}
    assert task["code"]["coding"] == [{"system": SCT, "code": "2078951000000106"}]  # no display
    assert task["for"] == {"reference": f"Patient/{PID}"}


@pytest.mark.parametrize(
    ("araf", "fires"),
    [
        ("2025-11-27", False),  # 364 days ago
        ("2025-11-26", False),  # 365 days ago: review due today
        ("2025-11-25", True),  # 366 days ago: expired
    ],
)
def test_ppp_araf_day_edges(terminology: Terminology, araf: str, fires: bool) -> None:
    rec = record([*CONTINUING, flag(araf)], orders=[order(EPILIM_CHRONO_500)])
    findings = run(rec, terminology)
    assert ("valproate.ppp-missing" in rule_ids(findings)) is fires
    if fires:
        assert "ARAF expired (review was due 25 Nov 2026)" in findings[0].summary


def test_ppp_flag_with_period_end_passed_counts_as_none(terminology: Terminology) -> None:
    expired = flag("2026-01-10", "2026-11-25")  # ARAF recent, but its review date has passed
    findings = run(record([*CONTINUING, expired], orders=[order(EPILIM_CHRONO_500)]), terminology)
    assert rule_ids(findings) == ["valproate.ppp-missing"]


@pytest.mark.parametrize(
    ("flag_resource", "reason"),
    [
        (flag(status="inactive"), "PPP Flag no longer active"),
        (flag(status="entered-in-error"), "no Pregnancy Prevention Programme recorded"),
        (flag(code="declined"), "Pregnancy Prevention Programme declined"),
        (flag(code="discontinued"), "Pregnancy Prevention Programme discontinued"),
        (flag(start=None, end="2027-01-01"), "no current Annual Risk Acknowledgement Form"),
    ],
    ids=["inactive", "entered-in-error", "declined", "discontinued", "no-araf-date"],
)
def test_ppp_flag_that_is_not_a_current_ppp(
    terminology: Terminology, flag_resource: dict[str, Any], reason: str
) -> None:
    findings = run(
        record([*CONTINUING, flag_resource], orders=[order(EPILIM_CHRONO_500)]), terminology
    )
    [finding] = findings
    assert finding.summary.endswith(reason)


def test_ppp_active_in_date_flag_is_quiet(terminology: Terminology) -> None:
    assert run(record([*CONTINUING, flag()], orders=[order(EPILIM_CHRONO_500)]), terminology) == []


def test_ppp_not_needed_flag_is_quiet(terminology: Terminology) -> None:
    rec = record([*CONTINUING, flag(code="not-needed")], orders=[order(EPILIM_CHRONO_500)])
    assert run(rec, terminology) == []


def test_ppp_latest_active_flag_wins(terminology: Terminology) -> None:
    old = flag("2024-01-01", fid="old", status="inactive")
    rec = record(
        [*CONTINUING, old, flag("2026-06-01", fid="new")], orders=[order(EPILIM_CHRONO_500)]
    )
    assert run(rec, terminology) == []
    assert valproate.assess(rec, SETTINGS, terminology).ppp is not None


@pytest.mark.parametrize(
    "exclusion",
    [
        procedure("236886002"),  # hysterectomy
        procedure("116144002"),  # total abdominal hysterectomy with BSO
        procedure("29827000"),  # bilateral salpingo-oophorectomy group
        procedure("609275002"),  # laparoscopic bilateral oophorectomy
        condition("289903006", clinical=None),  # menopause
        condition("371036001", clinical="resolved"),  # surgical menopause, any clinical status
    ],
    ids=["hysterectomy", "tah-bso", "bso", "lap-bilateral-oophorectomy", "menopause", "surgical"],
)
def test_ppp_permanent_absence_of_pregnancy_risk_is_quiet(
    terminology: Terminology, exclusion: dict[str, Any]
) -> None:
    rec = record([*CONTINUING, exclusion], orders=[order(EPILIM_CHRONO_500)])
    assert run(rec, terminology) == []


@pytest.mark.parametrize(
    "not_an_exclusion",
    [
        procedure("236886002", status="not-done"),
        condition("289903006", verification="refuted"),
        condition("289903006", verification="entered-in-error"),
        condition("373717006"),  # premature menopause: pregnancy still possible
    ],
    ids=["not-done", "refuted", "entered-in-error", "premature-menopause"],
)
def test_ppp_exclusion_that_does_not_count(
    terminology: Terminology, not_an_exclusion: dict[str, Any]
) -> None:
    rec = record([*CONTINUING, not_an_exclusion], orders=[order(EPILIM_CHRONO_500)])
    assert rule_ids(run(rec, terminology)) == ["valproate.ppp-missing"]


@pytest.mark.parametrize(
    ("gender", "fires"),
    [("female", True), ("unknown", True), ("other", True), (None, True), ("male", False)],
)
def test_ppp_applies_to_everyone_not_male(
    terminology: Terminology, gender: str | None, fires: bool
) -> None:
    rec = record(CONTINUING, pat=patient(gender=gender), orders=[order(EPILIM_CHRONO_500)])
    assert ("valproate.ppp-missing" in rule_ids(run(rec, terminology))) is fires


def test_ppp_missing_birth_date_treated_as_could_become_pregnant(terminology: Terminology) -> None:
    rec = record(CONTINUING, pat=patient(birth=None), orders=[order(EPILIM_CHRONO_500)])
    [finding] = run(rec, terminology)
    assert finding.rule_id == "valproate.ppp-missing"
    assert "age unknown" in finding.detail


def test_ppp_learning_disability_is_said_with_easy_read(terminology: Terminology) -> None:
    rec = record(
        [*CONTINUING, condition("416075005", onset="2010-01-01")],
        orders=[order(EPILIM_CHRONO_500)],
    )
    [finding] = valproate.evaluate(
        rec,
        ValproateSettings(easy_read_url="https://trust.example.nhs.uk/valproate-easy-read"),
        terminology,
    )
    assert "Learning disability recorded" in finding.detail
    assert "https://trust.example.nhs.uk/valproate-easy-read" in {
        link.url for link in finding.links
    }


def test_ppp_coded_araf_without_flag_is_shown_but_card_stays(terminology: Terminology) -> None:
    araf = araf_observation("1366401000000107", "2026-05-01")
    [finding] = run(record([*CONTINUING, araf], orders=[order(EPILIM_CHRONO_500)]), terminology)
    assert finding.rule_id == "valproate.ppp-missing"
    assert "within the last year" in finding.detail


# -- (b) current pregnancy -----------------------------------------------------------------------


def test_pregnancy_is_critical_whatever_the_ppp_status(terminology: Terminology) -> None:
    rec = record(
        [*CONTINUING, flag(), condition("77386006", onset="2026-09-01")],
        orders=[order(EPILIM_CHRONO_500)],
    )
    [finding] = run(rec, terminology)
    assert finding.rule_id == "valproate.pregnancy"
    assert finding.severity is Severity.CRITICAL
    assert finding.summary.startswith("PREGNANT: valproate can seriously harm the baby")
    assert "Do not stop valproate abruptly" in finding.detail
    [suggestion] = finding.suggestions
    resource = suggestion.actions[0].resource
    assert resource is not None
    assert ServiceRequest.model_validate(dict(resource)).priority == "urgent"


@pytest.mark.parametrize(
    ("pregnancy", "pregnant"),
    [
        (condition("77386006", onset="2026-02-05"), True),  # 294 days ago
        (condition("77386006", onset="2026-02-04"), False),  # 295 days: cannot still be current
        (condition("77386006", onset=None), True),  # undated but active
        (condition("77386006", clinical="resolved"), False),
        (condition("77386006", abatementDateTime="2026-11-01"), False),
        (condition("77386006", verification="refuted"), False),
        (condition("77386006", onset="2026-12-01"), False),  # in the future
    ],
    ids=["294-days", "295-days", "undated", "resolved", "abated", "refuted", "future"],
)
def test_pregnancy_currency(
    terminology: Terminology, pregnancy: dict[str, Any], pregnant: bool
) -> None:
    rec = record([*CONTINUING, flag(), pregnancy], orders=[order(EPILIM_CHRONO_500)])
    assert (rule_ids(run(rec, terminology)) == ["valproate.pregnancy"]) is pregnant


def test_pregnancy_fires_outside_the_age_band_and_for_any_sex(terminology: Terminology) -> None:
    rec = record(
        [*CONTINUING, condition("72892002")],
        pat=patient(gender="male", birth="1965-01-01"),
        orders=[order(EPILIM_CHRONO_500)],
    )
    assert rule_ids(run(rec, terminology)) == ["valproate.pregnancy", "valproate.male-advice"]


# -- (c) new start under 55 without two specialists ----------------------------------------------


@pytest.mark.parametrize(
    ("birth", "fires"),
    [("1972-11-27", True), ("1971-11-27", True), ("1971-11-26", False), ("1960-01-01", False)],
    ids=["53", "54", "55-today", "66"],
)
def test_new_start_age_edges(terminology: Terminology, birth: str, fires: bool) -> None:
    rec = record([flag()], pat=patient(birth=birth), orders=[order(EPILIM_CHRONO_500)])
    assert ("valproate.two-specialist" in rule_ids(run(rec, terminology))) is fires


def test_new_start_warning_content(terminology: Terminology) -> None:
    [finding] = run(record([flag()], orders=[order(EPILIM_CHRONO_500)]), terminology)
    assert finding.rule_id == "valproate.two-specialist"
    assert finding.severity is Severity.WARNING
    assert "two specialists independently" in finding.detail
    task = finding.suggestions[0].actions[0].resource
    assert task is not None
    Task.model_validate(dict(task))


@pytest.mark.parametrize(
    "history",
    [
        [earlier_request("completed")],
        [earlier_request("stopped")],
        [earlier_request("active")],
        [statement("completed")],
    ],
    ids=["completed", "stopped", "active", "statement"],
)
def test_new_start_not_when_valproate_was_taken_before(
    terminology: Terminology, history: list[dict[str, Any]]
) -> None:
    rec = record([flag(), *history], orders=[order(EPILIM_CHRONO_500)])
    assert run(rec, terminology) == []


def test_new_start_ignores_the_draft_itself_and_errors(terminology: Terminology) -> None:
    saved_draft = order(EPILIM_CHRONO_500, oid="draft-1", status="draft")
    error = earlier_request("entered-in-error", rid="mr-error")
    rec = record([flag(), saved_draft, error], orders=[order(EPILIM_CHRONO_500)])
    assert rule_ids(run(rec, terminology)) == ["valproate.two-specialist"]


@pytest.mark.parametrize(
    ("resources", "recorded"),
    [
        ([flag(specialists=("Practitioner/a", "PractitionerRole/b"))], True),
        ([flag(specialists=("Practitioner/a", "Practitioner/a"))], False),  # same person twice
        ([flag(), araf_observation("2078951000000106", "2026-11-20")], True),  # 2024 form
        ([flag(), araf_observation("1366401000000107", "2026-11-20")], False),  # 2018 form
        ([flag(), araf_observation("2078951000000106", "2026-12-20")], False),  # future
    ],
    ids=["flag-two", "flag-same-twice", "araf-2024", "araf-2018", "araf-future"],
)
def test_new_start_two_specialist_decision_recorded(
    terminology: Terminology, resources: list[dict[str, Any]], recorded: bool
) -> None:
    rec = record(resources, orders=[order(EPILIM_CHRONO_500)])
    assert ("valproate.two-specialist" not in rule_ids(run(rec, terminology))) is recorded


def test_new_start_unknown_age_is_treated_as_under_55(terminology: Terminology) -> None:
    rec = record([flag()], pat=patient(birth=None), orders=[order(EPILIM_CHRONO_500)])
    [finding] = run(rec, terminology)
    assert finding.rule_id == "valproate.two-specialist"
    assert "age unknown" in finding.detail


def test_new_start_with_no_ppp_gives_both_cards(terminology: Terminology) -> None:
    findings = run(record(orders=[order(EPILIM_CHRONO_500)]), terminology)
    assert rule_ids(findings) == ["valproate.ppp-missing", "valproate.two-specialist"]


# -- (d) men -------------------------------------------------------------------------------------


def test_male_new_start_gets_two_specialist_warning_and_advice(terminology: Terminology) -> None:
    rec = record(pat=patient(gender="male", birth="1990-01-01"), orders=[order(EPILIM_CHRONO_500)])
    findings = run(rec, terminology)
    assert rule_ids(findings) == ["valproate.two-specialist", "valproate.male-advice"]
    advice = findings[1]
    assert advice.severity is Severity.INFO
    assert "3 months after stopping" in advice.detail
    assert "(starting)" in advice.detail


def test_male_continuing_gets_advice_only(terminology: Terminology) -> None:
    rec = record(CONTINUING, pat=patient(gender="male"), orders=[order(EPILIM_CHRONO_500)])
    [finding] = run(rec, terminology)
    assert finding.rule_id == "valproate.male-advice"
    assert "(continuing)" in finding.detail
    assert finding.facts["continuing"] is True


def test_male_any_age_gets_advice(terminology: Terminology) -> None:
    rec = record(
        CONTINUING,
        pat=patient(gender="male", birth="1950-01-01"),
        orders=[order(EPILIM_CHRONO_500)],
    )
    assert rule_ids(run(rec, terminology)) == ["valproate.male-advice"]


# -- medicines: codes, names, bundles -------------------------------------------------------------


@pytest.mark.parametrize(
    ("medication", "by_name"),
    [
        ({"coding": [{"system": ATC, "code": "N03AG01"}]}, False),
        ({"coding": [{"system": "https://dmd.nhs.uk", "code": "322956002"}]}, False),
        ({"text": "Epilim Chrono 500mg tablets"}, True),
        ({"coding": [{"system": RXNORM, "code": "40254"}]}, False),
        ({"coding": [{"system": RXNORM, "code": "1099870"}]}, False),
        (
            {"coding": [{"system": RXNORM, "code": "1099648", "display": "valproate sodium inj"}]},
            True,
        ),
        (
            {"coding": [{"system": SCT, "code": "99999911000001100", "display": "Dyzantil 200mg"}]},
            True,
        ),
    ],
    ids=[
        "atc",
        "dmd-system",
        "text-only",
        "rxnorm-ingredient",
        "rxnorm-clinical-drug",
        "rxnorm-unlisted-code-with-name",
        "unknown-snomed-with-name",
    ],
)
def test_medicine_recognised(
    terminology: Terminology, medication: dict[str, Any], by_name: bool
) -> None:
    [finding] = run(record(CONTINUING, orders=[order(medication)]), terminology)
    assert finding.rule_id == "valproate.ppp-missing"
    assert ("recognised by name, not by code" in finding.detail) is by_name


def test_medicine_known_code_of_another_drug_is_not_named_valproate(
    terminology: Terminology,
) -> None:
    # A SNOMED code we hold (estradiol 1 mg tablets) decides, whatever its display says.
    decoy = {"coding": [{"system": SCT, "code": "325545004", "display": "valproate?"}]}
    assert run(record(CONTINUING, orders=[order(decoy)]), terminology) == []


def test_medicine_without_name_or_known_code_could_not_check(terminology: Terminology) -> None:
    # RxNorm is held in part: an unlisted RxNorm code with no name cannot be told apart.
    rxnorm_only = {"coding": [{"system": RXNORM, "code": "1099648"}]}
    [finding] = run(record(CONTINUING, orders=[order(rxnorm_only)]), terminology)
    assert finding.rule_id == "valproate.medicine.could-not-check"
    assert "MedicationRequest/draft-1" in finding.detail


def test_medicine_contained_medication_reference(terminology: Terminology) -> None:
    draft = order(
        medicationReference={"reference": "#med"},
        contained=[{"resourceType": "Medication", "id": "med", "code": EPILIM_CHRONO_500}],
    )
    assert rule_ids(run(record(CONTINUING, orders=[draft]), terminology)) == [
        "valproate.ppp-missing"
    ]


def test_medicine_reference_to_medication_in_draft_bundle(terminology: Terminology) -> None:
    medication = {"resourceType": "Medication", "id": "m-1", "code": EPILIM_CHRONO_500}
    draft = order(medicationReference={"reference": "Medication/m-1"})
    assert rule_ids(run(record(CONTINUING, orders=[medication, draft]), terminology)) == [
        "valproate.ppp-missing"
    ]


def test_medicine_unresolvable_reference_could_not_check(terminology: Terminology) -> None:
    draft = order(medicationReference={"reference": "Medication/elsewhere"})
    assert rule_ids(run(record(CONTINUING, orders=[draft]), terminology)) == [
        "valproate.medicine.could-not-check"
    ]


def test_bundle_of_valproate_and_other_drugs(terminology: Terminology) -> None:
    orders = [
        order(PARACETAMOL, oid="para"),
        order(EPILIM_CHRONO_500, oid="valp"),
        order({"text": "Omeprazole 20mg capsules"}, oid="ome"),
    ]
    [finding] = run(record(CONTINUING, orders=orders), terminology)
    assert finding.rule_id == "valproate.ppp-missing"
    assert finding.evidence[0] == "MedicationRequest/valp"
    assert "Paracetamol" not in finding.detail


def test_no_valproate_no_cards(terminology: Terminology) -> None:
    orders = [order(PARACETAMOL), order({"text": "Lamotrigine 25mg tablets"}, oid="lam")]
    assert run(record(orders=orders), terminology) == []


def test_cancelled_draft_is_ignored(terminology: Terminology) -> None:
    rec = record(CONTINUING, orders=[order(EPILIM_CHRONO_500, status="cancelled")])
    assert run(rec, terminology) == []


def test_order_select_looks_only_at_the_selection(terminology: Terminology) -> None:
    orders = [order(EPILIM_CHRONO_500, oid="valp"), order(PARACETAMOL, oid="para")]
    selected_other = record(
        CONTINUING, orders=orders, hook="order-select", selections=["MedicationRequest/para"]
    )
    assert run(selected_other, terminology) == []
    selected = record(
        CONTINUING, orders=orders, hook="order-select", selections=["MedicationRequest/valp"]
    )
    assert rule_ids(run(selected, terminology)) == ["valproate.ppp-missing"]


# -- data that could not be had --------------------------------------------------------------------


def test_unavailable_flags_could_not_check_ppp(terminology: Terminology) -> None:
    rec = record(CONTINUING, orders=[order(EPILIM_CHRONO_500)], unavailable={"Flag": "timeout"})
    [finding] = run(rec, terminology)
    assert finding.rule_id == "valproate.ppp.could-not-check"
    assert finding.severity is Severity.WARNING
    assert "timeout" in finding.detail


def test_unavailable_conditions_could_not_check_pregnancy(terminology: Terminology) -> None:
    rec = record(
        CONTINUING, orders=[order(EPILIM_CHRONO_500)], unavailable={"Condition": "HTTP 500"}
    )
    findings = run(rec, terminology)
    assert rule_ids(findings) == ["valproate.pregnancy.could-not-check", "valproate.ppp-missing"]
    assert "Condition records could not be read" in findings[1].detail


def test_unavailable_patient_is_treated_as_could_become_pregnant(
    terminology: Terminology,
) -> None:
    rec = record(CONTINUING, orders=[order(EPILIM_CHRONO_500)], unavailable={"Patient": "404"})
    rec = PatientRecord(**{**{f: getattr(rec, f) for f in rec.__slots__}, "patient": None})
    [finding] = run(rec, terminology)
    assert finding.rule_id == "valproate.ppp-missing"
    assert "the Patient record could not be read: 404" in finding.detail


def test_unavailable_requests_could_not_check_new_start(terminology: Terminology) -> None:
    rec = record(
        [flag()], orders=[order(EPILIM_CHRONO_500)], unavailable={"MedicationRequest": "403"}
    )
    assert rule_ids(run(rec, terminology)) == ["valproate.two-specialist.could-not-check"]


def test_unavailable_statements_are_said_on_the_new_start_card(terminology: Terminology) -> None:
    rec = record(
        [flag()], orders=[order(EPILIM_CHRONO_500)], unavailable={"MedicationStatement": "403"}
    )
    [finding] = run(rec, terminology)
    assert finding.rule_id == "valproate.two-specialist"
    assert "MedicationStatements could not be read" in finding.detail


# -- patient-view ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("araf", "rule", "summary"),
    [
        (
            "2026-01-01",
            "valproate.status.enrolled",
            "Valproate PPP: enrolled, ARAF 1 Jan 2026, review due 1 Jan 2027",
        ),
        (
            "2025-12-27",
            "valproate.status.enrolled",
            "Valproate PPP: enrolled, ARAF 27 Dec 2025, review due 27 Dec 2026",
        ),  # due in 31 days
        (
            "2025-12-26",
            "valproate.status.araf-due",
            "Valproate PPP: annual review and ARAF due in 30 days (26 Dec 2026)",
        ),
        (
            "2025-11-27",
            "valproate.status.araf-due",
            "Valproate PPP: annual review and ARAF due in 1 day (27 Nov 2026)",
        ),
        (
            "2025-11-26",
            "valproate.status.araf-due",
            "Valproate PPP: annual review and ARAF due today (26 Nov 2026)",
        ),
        (
            "2025-11-25",
            "valproate.status.araf-overdue",
            "Valproate PPP: annual review and ARAF overdue since 25 Nov 2026",
        ),
    ],
)
def test_status_review_due_edges(
    terminology: Terminology, araf: str, rule: str, summary: str
) -> None:
    rec = record([earlier_request("active"), flag(araf)], hook="patient-view")
    [finding] = status(rec, terminology)
    assert finding.rule_id == rule
    assert finding.summary == summary
    expected = Severity.INFO if rule.endswith("enrolled") else Severity.WARNING
    assert finding.severity is expected


def test_status_no_ppp_is_warning_with_suggestions(terminology: Terminology) -> None:
    [finding] = status(record([earlier_request("active")], hook="patient-view"), terminology)
    assert finding.rule_id == "valproate.status.no-ppp"
    assert finding.severity is Severity.WARNING
    assert len(finding.suggestions) == 2
    assert "Review or refer" in finding.detail


def test_status_declined_is_keep_under_review(terminology: Terminology) -> None:
    rec = record([earlier_request("active"), flag(code="declined")], hook="patient-view")
    [finding] = status(rec, terminology)
    assert finding.summary == "Valproate PPP: declined since 2 Mar 2026: keep under review"
    assert finding.severity is Severity.INFO


@pytest.mark.parametrize(
    "resources",
    [
        [],  # not on valproate
        [earlier_request("completed")],  # stopped course
        [earlier_request("active"), procedure("236886002")],  # no pregnancy risk
    ],
    ids=["none", "completed", "hysterectomy"],
)
def test_status_quiet(terminology: Terminology, resources: list[dict[str, Any]]) -> None:
    assert status(record(resources, hook="patient-view"), terminology) == []


def test_status_quiet_for_men(terminology: Terminology) -> None:
    rec = record([earlier_request("active")], pat=patient(gender="male"), hook="patient-view")
    assert status(rec, terminology) == []


def test_status_statement_counts_as_on_valproate(terminology: Terminology) -> None:
    [finding] = status(record([statement("active"), flag()], hook="patient-view"), terminology)
    assert finding.rule_id == "valproate.status.enrolled"


def test_status_pregnant_on_valproate_is_critical(terminology: Terminology) -> None:
    rec = record([earlier_request("active"), flag(), condition("77386006")], hook="patient-view")
    assert rule_ids(status(rec, terminology)) == ["valproate.pregnancy"]


def test_status_unavailable_requests_could_not_check(terminology: Terminology) -> None:
    rec = record(hook="patient-view", unavailable={"MedicationRequest": "timeout"})
    assert rule_ids(status(rec, terminology)) == ["valproate.status.could-not-check"]


def test_status_unavailable_flags_could_not_check(terminology: Terminology) -> None:
    rec = record([earlier_request("active")], hook="patient-view", unavailable={"Flag": "x"})
    assert rule_ids(status(rec, terminology)) == ["valproate.status.could-not-check"]


# -- NCL action status and helpers ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("resources", "birth", "expected"),
    [
        ([condition("77386006"), procedure("236886002")], "1996-01-01", "Review or refer"),
        ([], "2021-01-01", "No action required"),
        ([procedure("236886002")], "1996-01-01", "No action required"),
        ([flag(code="declined")], "1996-01-01", "Keep under review"),
        ([flag(code="not-needed")], "1996-01-01", "Keep under review"),
        ([], "1996-01-01", "Review or refer"),
        ([flag()], "1996-01-01", "Consider expiry of ARAF"),
        ([flag("2025-11-01")], "1996-01-01", "Review or refer"),  # expired
        (
            [flag("2025-11-01"), araf_observation("2078951000000106", "2026-06-01")],
            "1996-01-01",
            "Consider expiry of ARAF",
        ),  # enrolled, and a coded ARAF within the year
    ],
    ids=[
        "pregnant",
        "age-5",
        "hysterectomy",
        "declined",
        "not-needed",
        "no-ppp",
        "enrolled",
        "expired",
        "coded-araf",
    ],
)
def test_action_status_follows_ncl(
    terminology: Terminology, resources: list[dict[str, Any]], birth: str, expected: str
) -> None:
    rec = record(resources, pat=patient(birth=birth), hook="patient-view")
    assert valproate.action_status(valproate.assess(rec, SETTINGS, terminology)) == expected


@pytest.mark.parametrize(
    ("day", "months", "expected"),
    [
        (date(2024, 2, 29), 12, date(2025, 2, 28)),
        (date(2025, 1, 31), 1, date(2025, 2, 28)),
        (date(2026, 11, 26), -12, date(2025, 11, 26)),
        (date(2025, 12, 15), 1, date(2026, 1, 15)),
    ],
)
def test_add_months(day: date, months: int, expected: date) -> None:
    assert valproate.add_months(day, months) == expected


def test_ages_follow_the_trust_calendar(terminology: Terminology) -> None:
    # 23:30 UTC on 25 June is 00:30 on 26 June in London: the 7th birthday has come.
    late = datetime(2026, 6, 25, 23, 30, tzinfo=UTC)
    rec = record(
        CONTINUING, pat=patient(birth="2019-06-26"), orders=[order(EPILIM_CHRONO_500)], now=late
    )
    assert valproate.assess(rec, SETTINGS, terminology).age == 7


def test_summaries_fit_a_card(terminology: Terminology) -> None:
    cases = [
        record(orders=[order(EPILIM_CHRONO_500)], pat=patient(gender="male")),
        record([condition("77386006")], orders=[order(EPILIM_CHRONO_500)]),
        record([flag("2020-01-01")], orders=[order({"text": "valproate " * 40})]),
    ]
    for rec in cases:
        assert all(len(f.summary) < 140 for f in run(rec, terminology))
