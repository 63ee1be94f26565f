"""Reasonable adjustments rule: triggers, silences, consent states, suggested resources."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fhir.resources.R4B.condition import Condition as R4BCondition
from fhir.resources.R4B.consent import Consent as R4BConsent
from fhir.resources.R4B.flag import Flag as R4BFlag

from fhir_safety.config import ReasonableAdjustmentsSettings
from fhir_safety.domain import Finding, Severity
from fhir_safety.fhir.resources import Patient, Resource
from fhir_safety.record import PatientRecord
from fhir_safety.rules import reasonable_adjustments as ra
from fhir_safety.services.record import parse_resource
from fhir_safety.terminology import Terminology

LONDON = ZoneInfo("Europe/London")
NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
PID = "p-1"
SCT = "http://snomed.info/sct"
NHSE = "https://fhir.nhs.uk/England"
NRAF = {"system": f"{NHSE}/CodeSystem/PatientFlagCategory", "code": "NRAF"}
CARER = ("1108151000000106", "Requires carer to be present at encounters")
EASY_READ = ("796161000000101", "Requires information in Easyread")
PAIN = ("1108141000000108", "Expresses pain atypically")


# -- builders ------------------------------------------------------------------------------------


def condition(
    code: str,
    *,
    cid: str = "c-ld",
    system: str = SCT,
    clinical: str | None = "active",
    verification: str | None = None,
    category: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Condition",
        "id": cid,
        "code": {"coding": [{"system": system, "code": code}]},
        "subject": {"reference": f"Patient/{PID}"},
    }
    if clinical:
        resource["clinicalStatus"] = {"coding": [{"code": clinical}]}
    if verification:
        resource["verificationStatus"] = {"coding": [{"code": verification}]}
    if category:
        resource["category"] = category
    return resource


def ld(**kw: Any) -> dict[str, Any]:
    return condition("110359009", **kw)  # Intellectual disability (disorder) [S30]


def autism(**kw: Any) -> dict[str, Any]:
    return condition("35919005", cid=kw.pop("cid", "c-autism"), **kw)  # ASD [S30]


def patient_flag(fid: str = "f-nraf", *, status: str = "active", **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Flag",
        "id": fid,
        "status": status,
        "code": {"coding": [NRAF]},
        "subject": {"reference": f"Patient/{PID}"},
        **extra,
    }


def programme_flag(
    code: tuple[str, str],
    fid: str = "f-adj",
    *,
    category: tuple[str, str] = ("001", "Communication support"),
    note: str | None = None,
    system: str = SCT,
    status: str = "active",
) -> dict[str, Any]:
    flag: dict[str, Any] = {
        "resourceType": "Flag",
        "id": fid,
        "status": status,
        "category": [
            {"coding": [NRAF]},
            {
                "coding": [
                    {
                        "system": f"{NHSE}/CodeSystem/RA-FlagCategory",
                        "code": category[0],
                        "display": category[1],
                    }
                ]
            },
        ],
        "code": {"coding": [{"system": system, "code": code[0], "display": code[1]}]},
        "subject": {"reference": f"Patient/{PID}"},
    }
    if note:
        flag["extension"] = [
            {
                "url": f"{NHSE}/StructureDefinition/Extension-FlagNotes",
                "valueAnnotation": {"text": note},
            }
        ]
    return flag


def local_flag(code: tuple[str, str], fid: str = "f-local") -> dict[str, Any]:
    return {
        "resourceType": "Flag",
        "id": fid,
        "status": "active",
        "code": {"coding": [{"system": SCT, "code": code[0], "display": code[1]}]},
        "subject": {"reference": f"Patient/{PID}"},
    }


def flag_condition(code: str = "5", cid: str = "c-impairment") -> dict[str, Any]:
    return condition(
        code,
        cid=cid,
        system=f"{NHSE}/CodeSystem/RA-ConditionCode",
        category=[{"coding": [NRAF]}],
    )


def consent(
    purpose: str | None,
    *,
    cid: str = "cons-1",
    status: str = "active",
    when: str | None = "2025-06-10",
    nraf: bool = True,
    provision_type: str | None = None,
    provenance_recorded: str | None = None,
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Consent",
        "id": cid,
        "status": status,
        "patient": {"reference": f"Patient/{PID}"},
        "policyRule": {
            "coding": [{"system": f"{NHSE}/CodeSystem/FlagProxyRole", "code": "001"}],
            "text": "Patient consent",
        },
    }
    if nraf:
        resource["category"] = [{"coding": [NRAF]}]
    provision: dict[str, Any] = {}
    if purpose:
        provision["purpose"] = [{"system": f"{NHSE}/CodeSystem/RA-ConsentPurpose", "code": purpose}]
    if provision_type:
        provision["type"] = provision_type
    if provision:
        resource["provision"] = provision
    if when:
        resource["dateTime"] = when
    if provenance_recorded:
        resource["contained"] = [
            {"resourceType": "Provenance", "id": "p", "recorded": provenance_recorded}
        ]
    return resource


def related_person(
    rid: str = "rp-1", *, name: str = "Jean Treacey", active: bool = True, **extra: Any
) -> dict[str, Any]:
    return {
        "resourceType": "RelatedPerson",
        "id": rid,
        "active": active,
        "patient": {"reference": f"Patient/{PID}"},
        "relationship": [{"coding": [{"code": "MTH", "display": "mother"}]}],
        "name": [{"text": name}],
        "telecom": [
            {"system": "email", "value": "jean@example.org"},
            {"system": "phone", "value": "07700 900101"},
        ],
        **extra,
    }


def record(
    resources: Sequence[dict[str, Any]],
    *,
    user: str = "Practitioner/u",
    unavailable: dict[str, str] | None = None,
    patient: dict[str, Any] | None = None,
) -> PatientRecord:
    by_type: dict[str, list[Resource]] = {}
    for index, raw in enumerate(resources):
        parsed = parse_resource(raw, f"test[{index}]")
        assert parsed is not None
        by_type.setdefault(parsed.resource_type, []).append(parsed)
    parsed_patient: Patient | None = None
    if patient is not None:
        parsed = parse_resource(patient, "patient")
        assert isinstance(parsed, Patient)
        parsed_patient = parsed
    return PatientRecord(
        hook="patient-view",
        context={"patientId": PID, "userId": user},
        now=NOW,
        zone=LONDON,
        patient=parsed_patient,
        resources={k: tuple(v) for k, v in by_type.items()},
        unavailable=unavailable or {},
    )


def evaluate(rec: PatientRecord, terminology: Terminology) -> list[Finding]:
    return ra.evaluate(rec, ReasonableAdjustmentsSettings(), terminology)


def one(rec: PatientRecord, terminology: Terminology) -> Finding:
    [finding] = evaluate(rec, terminology)
    assert len(finding.summary) < 140
    return finding


def created(finding: Finding, index: int = 0) -> list[dict[str, Any]]:
    return [dict(a.resource or {}) for a in finding.suggestions[index].actions]


# -- silences and the no-flag warning ------------------------------------------------------------


def test_reasonable_adjustments_nothing_recorded_is_silent(terminology: Terminology) -> None:
    assert evaluate(record([condition("38341003", cid="c-htn")]), terminology) == []


def test_reasonable_adjustments_learning_disability_without_flag_warns(
    terminology: Terminology,
) -> None:
    finding = one(record([ld(), related_person()]), terminology)
    assert finding.severity is Severity.WARNING
    assert finding.rule_id == "reasonable-adjustments.no-flag"
    assert finding.summary == "Learning disability recorded: no Reasonable Adjustment Flag"
    assert [s.label for s in finding.suggestions] == [
        "Patient agrees: record a Reasonable Adjustment Flag",
        "Best-interests decision (MCA 2005): record a Reasonable Adjustment Flag",
    ]
    assert finding.selection_behavior == "at-most-one"
    assert "Mental Capacity Act 2005" in finding.detail
    assert "Listen to the family's concerns" in finding.detail
    assert "Jean Treacey (mother), phone 07700 900101" in finding.detail


def test_reasonable_adjustments_autism_without_flag_warns(terminology: Terminology) -> None:
    assert one(record([autism()]), terminology).summary == (
        "Autism recorded: no Reasonable Adjustment Flag"
    )


def test_reasonable_adjustments_both_diagnoses_propose_both_impairments(
    terminology: Terminology,
) -> None:
    finding = one(record([ld(), autism()]), terminology)
    assert finding.summary.startswith("Learning disability and autism recorded")
    conditions = [r for r in created(finding) if r["resourceType"] == "Condition"]
    codes = [c["code"]["coding"][0]["code"] for c in conditions]
    assert codes == ["5", "9"]
    assert conditions[0]["evidence"] == [{"detail": [{"reference": "Condition/c-ld"}]}]
    assert conditions[1]["evidence"] == [{"detail": [{"reference": "Condition/c-autism"}]}]


@pytest.mark.parametrize(
    ("clinical", "verification", "warns"),
    [
        ("active", None, True),
        (None, None, True),
        ("recurrence", "confirmed", True),
        ("active", "unconfirmed", True),
        ("inactive", None, False),
        ("resolved", None, False),
        ("remission", None, False),
        ("active", "refuted", False),
        ("active", "entered-in-error", False),
        ("active", "provisional", False),
        ("active", "differential", False),
    ],
)
def test_reasonable_adjustments_diagnosis_status_decides(
    terminology: Terminology, clinical: str | None, verification: str | None, warns: bool
) -> None:
    findings = evaluate(record([ld(clinical=clinical, verification=verification)]), terminology)
    assert bool(findings) is warns


def test_reasonable_adjustments_patient_user_gets_no_suggestion(terminology: Terminology) -> None:
    finding = one(record([ld()], user="Patient/p-1"), terminology)
    assert finding.severity is Severity.WARNING
    assert finding.suggestions == ()


def test_reasonable_adjustments_consent_unreadable_offers_no_flag(
    terminology: Terminology,
) -> None:
    rec = record([ld()], unavailable={"Consent": "the FHIR server timed out"})
    finding = one(rec, terminology)
    assert finding.severity is Severity.WARNING
    assert finding.suggestions == ()
    assert "check for a recorded dissent" in finding.detail


def test_reasonable_adjustments_existing_consent_records_flag_only(
    terminology: Terminology,
) -> None:
    finding = one(record([ld(), consent("RACONSENT")]), terminology)
    [suggestion] = finding.suggestions
    assert suggestion.label == "Record the Reasonable Adjustment Flag (consent already recorded)"
    assert suggestion.is_recommended
    assert [r["resourceType"] for r in created(finding)] == ["Flag", "Condition"]


# -- a flag is recorded --------------------------------------------------------------------------


def test_reasonable_adjustments_flag_shows_adjustments_as_info(terminology: Terminology) -> None:
    rec = record(
        [
            patient_flag(),
            programme_flag(CARER, "f-1", note="Brother is main carer"),
            programme_flag(
                EASY_READ, "f-2", category=("004", "Requires specific information format")
            ),
            flag_condition(),
            autism(),
            consent("RACONSENT"),
            related_person(name="Tunde Okafor"),
        ]
    )
    finding = one(rec, terminology)
    assert finding.severity is Severity.INFO
    assert finding.rule_id == "reasonable-adjustments.flag"
    assert finding.summary == (
        "Reasonable adjustments: Requires carer to be present at encounters; "
        "Requires information in Easyread"
    )
    assert finding.suggestions == ()
    assert "_Brother is main carer_" in finding.detail
    assert "(Requires specific information format)" in finding.detail
    assert "Consent to share through the flag: given on 10 Jun 2025" in finding.detail
    assert "Tunde Okafor" in finding.detail
    assert "Listen to the family's concerns" in finding.detail
    assert set(finding.evidence) >= {
        "Flag/f-nraf",
        "Flag/f-1",
        "Flag/f-2",
        "Condition/c-impairment",
    }


def test_reasonable_adjustments_many_adjustments_summary_fits(terminology: Terminology) -> None:
    flags = [programme_flag(code, f"f-{i}") for i, code in enumerate([CARER, EASY_READ, PAIN] * 3)]
    finding = one(record([patient_flag(), *flags]), terminology)
    assert finding.summary.endswith("more)")
    assert len(finding.summary) < 140


def test_reasonable_adjustments_bespoke_code_shown_by_its_own_display(
    terminology: Terminology,
) -> None:
    # IG example RAFlagExample2: category 011 Bespoke, a code outside RA-FlagCode.
    bespoke = programme_flag(
        ("73618009", "Autistic spectrum disorder with isolated skills"),
        category=("011", "Bespoke Reasonable adjustments"),
        system="https://snomed.info/sct",
    )
    finding = one(record([patient_flag(), bespoke]), terminology)
    assert "Autistic spectrum disorder with isolated skills" in finding.summary


def test_reasonable_adjustments_patient_flag_alone_asks_what_is_needed(
    terminology: Terminology,
) -> None:
    finding = one(record([patient_flag(), ld(), consent("RACONSENT")]), terminology)
    assert finding.severity is Severity.INFO
    assert "no adjustments listed" in finding.summary


@pytest.mark.parametrize(
    "flag",
    [
        patient_flag(status="inactive"),
        patient_flag(status="entered-in-error"),
        patient_flag(period={"start": "2025-01-01", "end": "2026-11-25"}),
    ],
)
def test_reasonable_adjustments_flag_not_current_counts_as_none(
    terminology: Terminology, flag: dict[str, Any]
) -> None:
    assert one(record([flag, ld()]), terminology).rule_id == "reasonable-adjustments.no-flag"


def test_reasonable_adjustments_flag_ending_later_still_counts(terminology: Terminology) -> None:
    flag = patient_flag(period={"start": "2025-01-01", "end": "2026-11-27"})
    assert one(record([flag, ld()]), terminology).rule_id == "reasonable-adjustments.flag"


def test_reasonable_adjustments_flag_without_consent_says_so(terminology: Terminology) -> None:
    finding = one(record([patient_flag(), programme_flag(CARER)]), terminology)
    assert "No Reasonable Adjustment Flag consent was found" in finding.detail


def test_reasonable_adjustments_flag_with_consent_unreadable_says_so(
    terminology: Terminology,
) -> None:
    rec = record([patient_flag(), programme_flag(CARER)], unavailable={"Consent": "server error"})
    assert "Consent records could not be read (server error)" in one(rec, terminology).detail


def test_reasonable_adjustments_local_adjustment_only_is_info(terminology: Terminology) -> None:
    finding = one(record([local_flag(EASY_READ)]), terminology)
    assert finding.severity is Severity.INFO
    assert finding.rule_id == "reasonable-adjustments.local"
    assert finding.summary == (
        "Reasonable adjustments (local record): Requires information in Easyread"
    )
    assert "not on the national flag" in finding.detail


def test_reasonable_adjustments_local_flag_with_ld_still_warns(terminology: Terminology) -> None:
    finding = one(record([local_flag(EASY_READ), ld()]), terminology)
    assert finding.severity is Severity.WARNING
    assert "Requires information in Easyread" in finding.detail


def test_reasonable_adjustments_unrelated_flag_is_ignored(terminology: Terminology) -> None:
    assert evaluate(record([local_flag(("38341003", "Hypertension"))]), terminology) == []


# -- consent ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("resource", "state"),
    [
        (consent("RACONSENT"), "consent"),
        (consent("RACONSENT", status="inactive"), "revoked"),
        (consent("RACONSENT", status="rejected"), "dissent"),
        (consent("RADISSENT"), "dissent"),
        (consent("RADISSENT", status="inactive"), "dissent"),
        (consent("RAREVOKED"), "revoked"),
        (consent("RAREVOKED", status="inactive"), "revoked"),
        (consent("RACONSENT", status="entered-in-error"), "none"),
        (consent("RACONSENT", status="draft"), "none"),
        (consent("RACONSENT", status="proposed"), "none"),
        (consent(None, provision_type="deny"), "dissent"),
        (consent(None, provision_type="permit"), "consent"),
        (consent(None), "none"),
        (consent(None, nraf=False, provision_type="deny"), "none"),  # not an RA consent
        (consent("RADISSENT", nraf=False), "dissent"),  # the purpose alone marks it
    ],
)
def test_reasonable_adjustments_consent_state_table(resource: dict[str, Any], state: str) -> None:
    assert ra.consent_status(record([resource])).state == state


def test_reasonable_adjustments_consent_unavailable_is_unknown() -> None:
    assert ra.consent_status(record([], unavailable={"Consent": "x"})).state == "unknown"


@pytest.mark.parametrize(
    ("first", "second", "state"),
    [
        (("RADISSENT", "2025-01-01"), ("RACONSENT", "2026-01-01"), "consent"),  # changed mind
        (("RACONSENT", "2025-01-01"), ("RAREVOKED", "2026-01-01"), "revoked"),
        (("RACONSENT", "2026-01-01"), ("RADISSENT", "2026-01-01"), "dissent"),  # tie: restrictive
        (("RACONSENT", None), ("RADISSENT", None), "dissent"),
    ],
)
def test_reasonable_adjustments_latest_consent_decides(
    first: tuple[str, str | None], second: tuple[str, str | None], state: str
) -> None:
    resources = [
        consent(first[0], cid="a", when=first[1]),
        consent(second[0], cid="b", when=second[1]),
    ]
    assert ra.consent_status(record(resources)).state == state
    assert ra.consent_status(record(list(reversed(resources)))).state == state


def test_reasonable_adjustments_consent_time_from_contained_provenance() -> None:
    resources = [
        consent("RADISSENT", cid="a", when=None, provenance_recorded="2026-05-01T10:00:00Z"),
        consent("RACONSENT", cid="b", when=None, provenance_recorded="2024-05-01T10:00:00Z"),
    ]
    status = ra.consent_status(record(resources))
    assert (status.state, status.ref) == ("dissent", "Consent/a")


def test_reasonable_adjustments_revoked_with_records_left_offers_removal(
    terminology: Terminology,
) -> None:
    rec = record(
        [
            patient_flag(),
            programme_flag(EASY_READ, "f-2"),
            flag_condition(),
            ld(),
            consent("RAREVOKED", when="2026-10-02", status="inactive"),
        ]
    )
    finding = one(rec, terminology)
    assert finding.severity is Severity.WARNING
    assert finding.summary == (
        "Reasonable Adjustment Flag consent withdrawn: 3 flag records should be removed"
    )
    assert EASY_READ[1] not in finding.detail  # withdrawn content is not displayed
    assert "withdrawn on 02 Oct 2026" in finding.detail
    [suggestion] = finding.suggestions
    assert suggestion.label == "Remove the Reasonable Adjustment Flag records (consent withdrawn)"
    assert [(a.type, a.resource_id) for a in suggestion.actions] == [
        ("delete", "Flag/f-nraf"),
        ("delete", "Flag/f-2"),
        ("delete", "Condition/c-impairment"),
    ]


def test_reasonable_adjustments_dissent_with_records_left_warns(terminology: Terminology) -> None:
    finding = one(record([patient_flag(), consent("RADISSENT")]), terminology)
    assert finding.summary == (
        "Patient declined the Reasonable Adjustment Flag but 1 flag record exists"
    )
    assert finding.suggestions[0].label.endswith("(patient declined)")


def test_reasonable_adjustments_dissent_with_ld_honoured_without_suggestion(
    terminology: Terminology,
) -> None:
    finding = one(record([ld(), consent("RADISSENT"), related_person()]), terminology)
    assert finding.severity is Severity.INFO
    assert finding.summary == (
        "Patient declined the Reasonable Adjustment Flag: ask what adjustments are needed"
    )
    assert finding.suggestions == ()
    assert "Jean Treacey" in finding.detail


def test_reasonable_adjustments_revoked_with_ld_honoured_without_suggestion(
    terminology: Terminology,
) -> None:
    finding = one(record([autism(), consent("RAREVOKED")]), terminology)
    assert finding.summary.startswith("Reasonable Adjustment Flag consent withdrawn: ask")
    assert finding.suggestions == ()


def test_reasonable_adjustments_dissent_keeps_local_adjustments_visible(
    terminology: Terminology,
) -> None:
    finding = one(record([local_flag(CARER), consent("RADISSENT")]), terminology)
    assert CARER[1] in finding.detail


def test_reasonable_adjustments_dissent_alone_is_silent(terminology: Terminology) -> None:
    assert evaluate(record([consent("RADISSENT")]), terminology) == []


def test_reasonable_adjustments_removal_offered_to_clinicians_only(
    terminology: Terminology,
) -> None:
    rec = record([patient_flag(), consent("RAREVOKED")], user="RelatedPerson/rp-1")
    assert one(rec, terminology).suggestions == ()


# -- could not check -------------------------------------------------------------------------------


def test_reasonable_adjustments_flags_unavailable_is_could_not_check(
    terminology: Terminology,
) -> None:
    finding = one(record([ld()], unavailable={"Flag": "timed out"}), terminology)
    assert finding.rule_id == "reasonable-adjustments.could-not-check"
    assert finding.summary == "Could not check: Reasonable Adjustment Flag"


def test_reasonable_adjustments_conditions_unavailable_is_could_not_check(
    terminology: Terminology,
) -> None:
    finding = one(record([], unavailable={"Condition": "timed out"}), terminology)
    assert finding.rule_id == "reasonable-adjustments.could-not-check"


def test_reasonable_adjustments_conditions_unavailable_with_flag_notes_it(
    terminology: Terminology,
) -> None:
    rec = record([patient_flag(), programme_flag(CARER)], unavailable={"Condition": "timed out"})
    finding = one(rec, terminology)
    assert finding.rule_id == "reasonable-adjustments.flag"
    assert "Diagnoses: _could not be checked (timed out)_" in finding.detail


# -- family and carers -----------------------------------------------------------------------------


def test_reasonable_adjustments_contacts_from_related_person_and_patient_contact(
    terminology: Terminology,
) -> None:
    patient = {
        "resourceType": "Patient",
        "id": PID,
        "contact": [
            {"name": {"given": ["Jean"], "family": "Treacey"}},  # the same person: shown once
            {
                "relationship": [{"text": "support worker"}],
                "name": {"text": "Amir Khan"},
                "telecom": [{"system": "phone", "value": "0161 496 0000"}],
            },
            {"name": {"text": "Old Contact"}, "period": {"end": "2020-01-01"}},
        ],
    }
    rec = record(
        [ld(), related_person(), related_person("rp-2", name="Gone Away", active=False)],
        patient=patient,
    )
    detail = one(rec, terminology).detail
    assert detail.count("Jean Treacey") == 1
    assert "Amir Khan (support worker), phone 0161 496 0000" in detail
    assert "Gone Away" not in detail
    assert "Old Contact" not in detail


def test_reasonable_adjustments_no_contacts_asks_who_knows_the_patient(
    terminology: Terminology,
) -> None:
    assert "ask who knows the patient best" in one(record([ld()]), terminology).detail


def test_reasonable_adjustments_contacts_unavailable_says_so(terminology: Terminology) -> None:
    rec = record([ld()], unavailable={"RelatedPerson": "forbidden"})
    assert "_could not be read (forbidden)_" in one(rec, terminology).detail


# -- suggested resources ---------------------------------------------------------------------------


@pytest.mark.parametrize(("index", "rule"), [(0, "001"), (1, "002")])
def test_reasonable_adjustments_suggested_resources_are_valid_r4b(
    terminology: Terminology, index: int, rule: str
) -> None:
    finding = one(record([ld(), autism()]), terminology)
    consent_res, flag, *conditions = created(finding, index)
    R4BConsent.model_validate(consent_res)
    R4BFlag.model_validate(flag)
    for item in conditions:
        R4BCondition.model_validate(item)
    assert consent_res["meta"]["profile"] == [f"{NHSE}/StructureDefinition/FlagConsent"]
    assert consent_res["policyRule"]["coding"][0]["code"] == rule
    assert consent_res["provision"]["purpose"][0]["code"] == "RACONSENT"
    assert consent_res["patient"] == {"reference": f"Patient/{PID}"}
    assert consent_res["policy"][0]["uri"].endswith("data-security-review.pdf")
    assert flag["meta"]["profile"] == [f"{NHSE}/StructureDefinition/PatientFlag"]
    assert flag["code"]["coding"][0]["code"] == "NRAF"
    for item in conditions:
        assert item["meta"]["profile"] == [f"{NHSE}/StructureDefinition/FlagCondition"]
        assert item["category"][0]["coding"][0]["code"] == "NRAF"
    for resource in (consent_res, flag, *conditions):
        [provenance] = resource["contained"]
        assert provenance["recorded"] == "2026-11-26T09:00:00+00:00"
        assert provenance["agent"] == [
            {"who": {"reference": "Practitioner/u", "type": "Practitioner"}}
        ]
        assert provenance["target"] == [{"reference": "#"}]


def test_provenance_of_a_practitioner_role_user_names_a_practitioner(
    terminology: Terminology,
) -> None:
    # FlagProvenance.agent.who allows only Reference(Practitioner); the role is described.
    finding = one(record([ld()], user="PractitionerRole/r-1"), terminology)
    for resource in created(finding):
        [provenance] = resource["contained"]
        assert provenance["agent"] == [
            {
                "who": {
                    "type": "Practitioner",
                    "display": "The clinician acting in PractitionerRole/r-1",
                }
            }
        ]


# -- NHS England's Patient Flag IG (Beta) codes, as the Patient Flags Service writes them ----------

NRAF_BETA = {
    "system": f"{NHSE}/CodeSystem/England-FlagCategoryPatient",
    "code": "national-reasonable-adjustment-flag",
    "display": "National Reasonable Adjustment Flag",
}


def test_reasonable_adjustments_reads_patient_flag_beta_codes(terminology: Terminology) -> None:
    beta_flag = {**patient_flag(), "code": {"coding": [NRAF_BETA]}}
    adjustment: dict[str, Any] = {
        "resourceType": "Flag",
        "id": "f-beta",
        "status": "active",
        "category": [
            {"coding": [NRAF_BETA]},
            {
                "coding": [
                    {
                        "system": f"{NHSE}/CodeSystem/England-FlagCategoryRA",
                        "code": "communication-support",
                        "display": "Communication support",
                    }
                ]
            },
        ],
        "code": {"coding": [{"system": SCT, "code": CARER[0], "display": CARER[1]}]},
        "subject": {"reference": f"Patient/{PID}"},
        "extension": [
            {
                "url": f"{NHSE}/StructureDefinition/Extension-England-FlagNotes",
                "valueAnnotation": {"text": "Sister stays overnight"},
            }
        ],
    }
    impairment = condition(
        "learning",
        cid="c-beta",
        system=f"{NHSE}/CodeSystem/England-ConditionCodeRA",
        category=[{"coding": [NRAF_BETA]}],
    )
    finding = one(record([beta_flag, adjustment, impairment, ld()]), terminology)
    assert finding.rule_id == "reasonable-adjustments.flag"
    assert "Requires carer to be present" in finding.summary
    assert "(Communication support)" in finding.detail
    assert "_Sister stays overnight_" in finding.detail
    assert set(finding.evidence) >= {"Flag/f-nraf", "Flag/f-beta", "Condition/c-beta"}
    assert finding.suggestions == ()  # a flag exists: nothing to record
