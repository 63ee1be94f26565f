"""Pelvic mesh rule: triggers, silences, referral states, regions, the suggested referral."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fhir.resources.R4B.organization import Organization as R4BOrganization
from fhir.resources.R4B.servicerequest import ServiceRequest as R4BServiceRequest

from fhir_safety.cds.definitions.pelvic_mesh import MESH_CENTRES, MESH_CENTRES_FILE
from fhir_safety.config import PelvicMeshSettings
from fhir_safety.domain import Finding, Severity
from fhir_safety.fhir.resources import Patient, Resource
from fhir_safety.record import PatientRecord
from fhir_safety.rules import pelvic_mesh
from fhir_safety.services.record import parse_resource
from fhir_safety.terminology import Terminology
from tests.conftest import load_example

LONDON = ZoneInfo("Europe/London")
NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
PID = "p-1"
SCT = "http://snomed.info/sct"
LOCAL = "https://fhir-safety.org/fhir/CodeSystem/pelvic-mesh-local"
SLING = "287775004"
SACROCOLPOPEXY = "737099004"


def procedure(
    code: str = SLING, *, status: str = "completed", prid: str = "proc-1"
) -> dict[str, Any]:
    return {
        "resourceType": "Procedure",
        "id": prid,
        "status": status,
        "code": {"coding": [{"system": SCT, "code": code}]},
        "subject": {"reference": f"Patient/{PID}"},
        "performedDateTime": "2014-03-11",
    }


def mesh_condition(
    code: str = "mesh-pain",
    *,
    cid: str = "c-mesh",
    clinical: str | None = "active",
    verification: str | None = None,
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Condition",
        "id": cid,
        "code": {"coding": [{"system": LOCAL, "code": code}]},
        "subject": {"reference": f"Patient/{PID}"},
    }
    if clinical:
        resource["clinicalStatus"] = {"coding": [{"code": clinical}]}
    if verification:
        resource["verificationStatus"] = {"coding": [{"code": verification}]}
    return resource


def referral(
    *,
    status: str = "active",
    intent: str = "order",
    performer: dict[str, Any] | None = None,
    reasons: Sequence[str] = ("Condition/c-mesh",),
    text: str | None = None,
    sid: str = "sr-1",
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "id": sid,
        "status": status,
        "intent": intent,
        "subject": {"reference": f"Patient/{PID}"},
        "reasonReference": [{"reference": r} for r in reasons],
    }
    if performer:
        resource["performer"] = [performer]
    if text:
        resource["code"] = {"text": text}
    return resource


def patient(**extra: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": PID, "gender": "female", **extra}


def record(
    resources: Sequence[dict[str, Any]],
    *,
    patient_resource: dict[str, Any] | None = None,
    user: str = "Practitioner/u",
    unavailable: dict[str, str] | None = None,
) -> PatientRecord:
    by_type: dict[str, list[Resource]] = {}
    for index, raw in enumerate(resources):
        parsed = parse_resource(raw, f"test[{index}]")
        assert parsed is not None
        by_type.setdefault(parsed.resource_type, []).append(parsed)
    parsed_patient: Patient | None = None
    if patient_resource is not None:
        parsed = parse_resource(patient_resource, "patient")
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


def evaluate(
    rec: PatientRecord, terminology: Terminology, settings: PelvicMeshSettings | None = None
) -> list[Finding]:
    return pelvic_mesh.evaluate(rec, settings or PelvicMeshSettings(), terminology, MESH_CENTRES)


def one(
    rec: PatientRecord, terminology: Terminology, settings: PelvicMeshSettings | None = None
) -> Finding:
    [finding] = evaluate(rec, terminology, settings)
    assert len(finding.summary) < 140
    return finding


NO_REFERRAL = "Pelvic mesh complication (local code): no referral to a specialist mesh centre"


# -- the centres (data/mesh-centres.json) ----------------------------------------------------------


def test_pelvic_mesh_data_holds_the_nine_centres_in_every_region() -> None:
    assert len(MESH_CENTRES) == 9
    assert len({c.id for c in MESH_CENTRES}) == 9
    assert {c.region for c in MESH_CENTRES} == set(pelvic_mesh.REGIONS)
    assert {c.name for c in MESH_CENTRES} >= {
        "North Bristol NHS Trust",
        "University Hospital Southampton NHS Foundation Trust",
        "Nottingham University Hospitals NHS Trust",
    }


def test_pelvic_mesh_data_organizations_are_valid_and_carry_no_unverified_ods_code() -> None:
    bundle = json.loads(MESH_CENTRES_FILE.read_text(encoding="utf-8"))
    for entry in bundle["entry"]:
        R4BOrganization.model_validate(entry["resource"])
        assert "identifier" not in entry["resource"]  # ODS codes UNVERIFIED (clinical.md §7)
        assert entry["request"] == {
            "method": "PUT",
            "url": f"Organization/{entry['resource']['id']}",
        }


def test_pelvic_mesh_example_bundle_centres_match_the_data() -> None:
    data = json.loads(MESH_CENTRES_FILE.read_text(encoding="utf-8"))
    example = load_example("pelvic-mesh/fhir-data-complication.bundle.json")
    shipped = [e["resource"] for e in data["entry"]]
    in_example = [
        e["resource"] for e in example["entry"] if e["resource"]["resourceType"] == "Organization"
    ]
    assert in_example == shipped


@pytest.mark.parametrize(
    ("bundle", "problem"),
    [
        ({"entry": []}, "holds no Organization"),
        ({"entry": [{"resource": {"resourceType": "Patient"}}]}, "not an Organization"),
        (
            {"entry": [{"resource": {"resourceType": "Organization", "id": "x", "name": "X"}}]},
            "needs one NHS England region",
        ),
        (
            {
                "entry": [
                    {
                        "resource": {
                            "resourceType": "Organization",
                            "id": "x",
                            "name": "X",
                            "extension": [
                                {"url": pelvic_mesh.REGION_EXTENSION_URL, "valueString": "Wales"}
                            ],
                        }
                    }
                ]
            },
            "needs one NHS England region",
        ),
    ],
)
def test_pelvic_mesh_centres_from_a_bad_bundle_fail_loudly(
    bundle: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        pelvic_mesh.centres_from_bundle(bundle)


# -- triggers and silences -------------------------------------------------------------------------


def test_pelvic_mesh_procedure_without_complication_is_silent(terminology: Terminology) -> None:
    assert evaluate(record([procedure()]), terminology) == []


def test_pelvic_mesh_history_without_complication_is_silent(terminology: Terminology) -> None:
    assert evaluate(record([mesh_condition("mesh-implant-history")]), terminology) == []


@pytest.mark.parametrize(
    "code", ["mesh-complication", "mesh-exposure", "mesh-erosion", "mesh-pain"]
)
def test_pelvic_mesh_each_complication_code_warns(terminology: Terminology, code: str) -> None:
    finding = one(record([procedure(), mesh_condition(code)]), terminology)
    assert finding.severity is Severity.WARNING
    assert finding.rule_id == "pelvic-mesh.no-referral"
    assert finding.summary == NO_REFERRAL
    assert f"matched by local code `{code}`" in finding.detail


def test_pelvic_mesh_complication_alone_implies_mesh(terminology: Terminology) -> None:
    finding = one(record([mesh_condition("mesh-exposure")]), terminology)
    assert "no mesh operation is coded" in finding.detail


@pytest.mark.parametrize(
    ("clinical", "verification", "warns"),
    [
        ("active", None, True),
        (None, None, True),
        ("relapse", "confirmed", True),
        ("resolved", None, False),
        ("inactive", None, False),
        ("remission", None, False),
        ("active", "refuted", False),
        ("active", "entered-in-error", False),
    ],
)
def test_pelvic_mesh_complication_status_decides(
    terminology: Terminology, clinical: str | None, verification: str | None, warns: bool
) -> None:
    rec = record([procedure(), mesh_condition(clinical=clinical, verification=verification)])
    assert bool(evaluate(rec, terminology)) is warns


def test_pelvic_mesh_sling_is_possible_mesh_sacrocolpopexy_is_not(
    terminology: Terminology,
) -> None:
    sling = one(record([procedure(SLING), mesh_condition()]), terminology)
    assert "possible mesh: a sling may be autologous" in sling.detail
    sacro = one(record([procedure(SACROCOLPOPEXY), mesh_condition()]), terminology)
    assert "possible mesh" not in sacro.detail
    assert "Abdominal hysterectomy with sacrocolpopexy using mesh" in sacro.detail


@pytest.mark.parametrize(
    ("status", "counted"),
    [
        ("completed", True),
        ("unknown", True),
        ("not-done", False),
        ("entered-in-error", False),
        ("preparation", False),
    ],
)
def test_pelvic_mesh_procedure_status_decides_whether_it_is_listed(
    terminology: Terminology, status: str, counted: bool
) -> None:
    finding = one(record([procedure(status=status), mesh_condition()]), terminology)
    assert ("Procedure/proc-1" in finding.detail) is counted


def test_pelvic_mesh_history_is_listed_as_the_mesh(terminology: Terminology) -> None:
    rec = record([mesh_condition("mesh-implant-history", cid="c-h"), mesh_condition()])
    finding = one(rec, terminology)
    assert "History of pelvic mesh implant (Condition/c-h)" in finding.detail
    assert "Condition/c-h" in finding.evidence


# -- referrals -------------------------------------------------------------------------------------

UCLH = {"reference": "Organization/mesh-centre-uclh"}


@pytest.mark.parametrize(
    ("request_", "outcome"),
    [
        (referral(performer=UCLH), "silent"),
        (referral(performer=UCLH, status="completed"), "silent"),
        (referral(performer=UCLH, status="on-hold"), "silent"),
        (referral(performer=UCLH, reasons=()), "silent"),  # our centre id is enough
        (referral(performer={"display": "Nottingham University Hospitals NHS Trust"}), "silent"),
        (
            referral(
                performer={"display": "London Complex Mesh Centre"}, reasons=(), text="Mesh removal"
            ),
            "silent",
        ),
        (referral(performer=UCLH, status="draft"), "pending"),
        (referral(performer=UCLH, status="unknown"), "pending"),
        (referral(performer=UCLH, intent="proposal"), "pending"),
        (referral(status="draft"), "pending"),  # about the mesh, no centre yet
        (referral(performer=UCLH, status="revoked"), "warn"),
        (referral(performer=UCLH, status="entered-in-error"), "warn"),
        (
            referral(
                performer={"display": "Nottingham University Hospitals NHS Trust"}, reasons=()
            ),
            "warn",
        ),
        (referral(performer={"display": "St Elsewhere Urogynaecology"}), "elsewhere"),
        (referral(performer={"display": "Cardiology"}, reasons=("Condition/other",)), "warn"),
    ],
)
def test_pelvic_mesh_referral_states(
    terminology: Terminology, request_: dict[str, Any], outcome: str
) -> None:
    findings = evaluate(record([procedure(), mesh_condition(), request_]), terminology)
    if outcome == "silent":
        assert findings == []
        return
    [finding] = findings
    if outcome == "pending":
        assert finding.summary == (
            "Pelvic mesh complication (local code): referral to a mesh centre not yet sent"
        )
        assert finding.suggestions == ()
        assert "ServiceRequest/sr-1" in finding.evidence
    else:
        assert finding.summary == NO_REFERRAL
        assert finding.suggestions
    if outcome == "elsewhere":
        assert "St Elsewhere Urogynaecology, which is not one of the specialist" in finding.detail


def test_pelvic_mesh_referral_reason_code_makes_it_a_mesh_referral(
    terminology: Terminology,
) -> None:
    request_ = referral(performer={"display": "Sheffield Teaching Hospitals NHS FT"}, reasons=())
    request_["reasonCode"] = [{"coding": [{"system": LOCAL, "code": "mesh-erosion"}]}]
    assert evaluate(record([mesh_condition(), request_]), terminology) == []


def test_pelvic_mesh_referrals_unavailable_warns_without_suggestion(
    terminology: Terminology,
) -> None:
    rec = record([mesh_condition()], unavailable={"ServiceRequest": "timed out"})
    finding = one(rec, terminology)
    assert finding.summary == (
        "Pelvic mesh complication (local code): mesh centre referral could not be checked"
    )
    assert finding.suggestions == ()


def test_pelvic_mesh_conditions_unavailable_is_could_not_check(terminology: Terminology) -> None:
    finding = one(record([procedure()], unavailable={"Condition": "timed out"}), terminology)
    assert finding.rule_id == "pelvic-mesh.could-not-check"
    assert finding.summary == "Could not check: pelvic mesh complications"


# -- region and suggestions ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "labels"),
    [
        ({"city": "London"}, ["University College London Hospitals NHS Foundation Trust"]),
        ({"city": "Bath", "state": "South West"}, ["North Bristol NHS Trust"]),
        ({"district": "south east"}, ["University Hospital Southampton NHS Foundation Trust"]),
        (
            {"state": "Midlands"},
            [
                "Nottingham University Hospitals NHS Trust",
                "University Hospitals of Leicester NHS Trust",
            ],
        ),
        ({"state": "North West"}, ["Manchester University NHS Foundation Trust"]),
        ({"state": "East of England"}, ["Cambridge University Hospitals NHS Foundation Trust"]),
        (
            {"state": "North East and Yorkshire"},
            [
                "Newcastle upon Tyne Hospitals NHS Foundation Trust",
                "Sheffield Teaching Hospitals NHS Foundation Trust",
            ],
        ),
        ({"city": "London", "use": "old"}, None),
        ({"city": "London", "period": {"end": "2025-01-01"}}, None),
        ({"city": "Leeds", "district": "West Yorkshire"}, None),  # not a region name
    ],
)
def test_pelvic_mesh_nearest_centres_by_region(
    terminology: Terminology, address: dict[str, Any], labels: list[str] | None
) -> None:
    rec = record([mesh_condition()], patient_resource=patient(address=[address]))
    finding = one(rec, terminology)
    if labels is None:
        assert [s.label for s in finding.suggestions] == [
            "Draft a referral to a specialist mesh centre (choose the centre)"
        ]
        assert "region is not recorded" in finding.detail
        return
    assert [
        s.label.removeprefix("Refer to ").split(" (mesh centre")[0] for s in finding.suggestions
    ] == labels
    assert [s.is_recommended for s in finding.suggestions] == [len(labels) == 1] * len(labels)
    assert "Nearest by NHS England region" in finding.detail


def test_pelvic_mesh_trust_region_used_when_address_names_none(terminology: Terminology) -> None:
    settings = PelvicMeshSettings(default_region="South East")
    finding = one(record([mesh_condition()]), terminology, settings)
    [suggestion] = finding.suggestions
    assert "University Hospital Southampton" in suggestion.label
    assert "this trust's region" in finding.detail


def test_pelvic_mesh_patient_address_beats_trust_region(terminology: Terminology) -> None:
    settings = PelvicMeshSettings(default_region="South East")
    rec = record([mesh_condition()], patient_resource=patient(address=[{"city": "London"}]))
    [suggestion] = one(rec, terminology, settings).suggestions
    assert "University College London Hospitals" in suggestion.label


def test_pelvic_mesh_every_centre_listed_in_the_detail(terminology: Terminology) -> None:
    detail = one(record([mesh_condition()]), terminology).detail
    for centre in MESH_CENTRES:
        assert f"| {centre.name} | {centre.region} |" in detail


def test_pelvic_mesh_non_clinician_gets_no_suggestion(terminology: Terminology) -> None:
    assert one(record([mesh_condition()], user="Patient/p-1"), terminology).suggestions == ()


def test_pelvic_mesh_suggested_referral_to_a_centre_is_valid_r4b(terminology: Terminology) -> None:
    rec = record(
        [procedure(), mesh_condition("mesh-implant-history", cid="c-h"), mesh_condition()],
        patient_resource=patient(address=[{"city": "London"}]),
    )
    [suggestion] = one(rec, terminology).suggestions
    [action] = suggestion.actions
    resource = dict(action.resource or {})
    R4BServiceRequest.model_validate(resource)
    assert resource["status"] == "draft"
    assert resource["intent"] == "order"
    assert resource["subject"] == {"reference": f"Patient/{PID}"}
    assert resource["performer"] == [
        {
            "reference": "Organization/mesh-centre-uclh",
            "display": "University College London Hospitals NHS Foundation Trust",
        }
    ]
    assert resource["reasonReference"] == [{"reference": "Condition/c-mesh"}]
    assert resource["supportingInfo"] == [
        {"reference": "Procedure/proc-1"},
        {"reference": "Condition/c-h"},
    ]
    assert resource["requester"] == {"reference": "Practitioner/u"}
    assert resource["authoredOn"] == "2026-11-26T09:00:00+00:00"


def test_pelvic_mesh_suggested_referral_without_region_has_no_performer(
    terminology: Terminology,
) -> None:
    [suggestion] = one(record([mesh_condition()]), terminology).suggestions
    resource = dict(suggestion.actions[0].resource or {})
    R4BServiceRequest.model_validate(resource)
    assert "performer" not in resource
    assert resource["performerType"] == {"text": "NHS England specialist mesh centre"}
    assert "supportingInfo" not in resource


def test_pelvic_mesh_our_own_suggestion_silences_the_card_once_sent(
    terminology: Terminology,
) -> None:
    rec = record([mesh_condition()], patient_resource=patient(address=[{"city": "London"}]))
    [suggestion] = one(rec, terminology).suggestions
    sent = dict(suggestion.actions[0].resource or {}) | {"id": "sr-new", "status": "active"}
    drafted = dict(suggestion.actions[0].resource or {}) | {"id": "sr-new"}
    assert evaluate(record([mesh_condition(), sent]), terminology) == []
    [pending] = evaluate(record([mesh_condition(), drafted]), terminology)
    assert pending.summary.endswith("referral to a mesh centre not yet sent")


def test_pelvic_mesh_patient_region_reader() -> None:
    rec = record([])
    home = parse_resource(patient(address=[{"state": "london"}]), "p")
    assert isinstance(home, Patient)
    assert pelvic_mesh.patient_region(home, rec) == (
        "London",
        "the patient's address (state 'london')",
    )
    assert pelvic_mesh.patient_region(None, rec) is None


def test_pelvic_mesh_patient_unreadable_says_region_unknown(terminology: Terminology) -> None:
    rec = record([mesh_condition()], unavailable={"Patient": "not found"})
    finding = one(rec, terminology)
    assert "The patient's record could not be read (not found)" in finding.detail
    assert [s.label for s in finding.suggestions] == [
        "Draft a referral to a specialist mesh centre (choose the centre)"
    ]
