"""FHIR builders for the NEWS2 mapping and concern tests (plain dicts, parsed like the service)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from fhir_safety.fhir.resources import Patient, Resource
from fhir_safety.record import PatientRecord
from fhir_safety.services.record import parse_resource

LONDON = ZoneInfo("Europe/London")
NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
PATIENT = "p-1"
SCT, LOINC, UCUM = "http://snomed.info/sct", "http://loinc.org", "http://unitsofmeasure.org"
# "Pregnant - planned (finding)", in ValueSet pregnancy-current.
PREGNANCY_CODE = "169565003"
CONCERN_SYSTEM = "https://fhir-safety.org/fhir/CodeSystem/patient-concern"
LEVEL_SYSTEM = "https://fhir-safety.org/fhir/CodeSystem/concern-level"
MARTHAS_RULE = "https://fhir-safety.org/fhir/CodeSystem/marthas-rule"

CODES: Mapping[str, list[dict[str, str]]] = {
    "rr": [{"system": LOINC, "code": "9279-1"}],
    "spo2": [{"system": LOINC, "code": "59408-5"}],
    "sbp": [{"system": LOINC, "code": "8480-6"}],
    "pulse": [{"system": LOINC, "code": "8867-4"}],
    "temp": [{"system": LOINC, "code": "8310-5"}],
}
UNITS = {"rr": "/min", "spo2": "%", "sbp": "mm[Hg]", "pulse": "/min", "temp": "Cel"}
ACVPU_CODES = {
    "alert": "248234008",
    "confusion": "130987000",
    "voice": "300202002",
    "pain": "450847001",
    "unresponsive": "422768004",
}


def at(minutes_ago: float = 30) -> str:
    return (NOW - timedelta(minutes=minutes_ago)).isoformat()


def quantity(
    kind: str,
    value: Any,
    *,
    oid: str | None = None,
    when: str | None = None,
    unit: str | None = None,
    system: str | None = UCUM,
    status: str = "final",
    subject: str = PATIENT,
) -> dict[str, Any]:
    q: dict[str, Any] = {"value": value, "code": unit or UNITS[kind]}
    if system is not None:
        q["system"] = system
    return {
        "resourceType": "Observation",
        "id": oid or kind,
        "status": status,
        "category": [{"coding": [{"code": "vital-signs"}]}],
        "code": {"coding": CODES[kind]},
        "subject": {"reference": f"Patient/{subject}"},
        "effectiveDateTime": when or at(),
        "valueQuantity": q,
    }


def oxygen(on: bool, *, oid: str = "o2", when: str | None = None) -> dict[str, Any]:
    """UK Core InspiredOxygen [S4]: the code says air or oxygen."""
    code = "371825009" if on else "722742002"
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "code": {"coding": [{"system": SCT, "code": code}]},
        "subject": {"reference": f"Patient/{PATIENT}"},
        "effectiveDateTime": when or at(),
    }


def acvpu(level: str = "alert", *, oid: str = "acvpu", when: str | None = None) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "code": {"coding": [{"system": SCT, "code": "1104441000000107"}]},
        "subject": {"reference": f"Patient/{PATIENT}"},
        "effectiveDateTime": when or at(),
        "valueCodeableConcept": {"coding": [{"system": SCT, "code": ACVPU_CODES[level]}]},
    }


def full_set(
    *,
    rr: Any = 16,
    spo2: Any = 97,
    on_oxygen: bool = False,
    sbp: Any = 120,
    pulse: Any = 70,
    level: str = "alert",
    temp: Any = 37.0,
    when: str | None = None,
    skip: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """A current set whose defaults all score 0."""
    found = [
        quantity("rr", rr, when=when),
        quantity("spo2", spo2, when=when),
        oxygen(on_oxygen, when=when),
        quantity("sbp", sbp, when=when),
        quantity("pulse", pulse, when=when),
        acvpu(level, when=when),
        quantity("temp", temp, when=when),
    ]
    return [r for r in found if r["id"] not in skip]


def patient(birth_date: str | None = "1950-01-01", pid: str = PATIENT) -> dict[str, Any]:
    resource: dict[str, Any] = {"resourceType": "Patient", "id": pid}
    if birth_date:
        resource["birthDate"] = birth_date
    return resource


def scale2_goal(
    *,
    low: Any = 88,
    high: Any = 92,
    status: str = "active",
    expressed_by: str | None = "Practitioner/dr-1",
    start: str | None = None,
    gid: str = "g-1",
) -> dict[str, Any]:
    goal: dict[str, Any] = {
        "resourceType": "Goal",
        "id": gid,
        "lifecycleStatus": status,
        "description": {"text": "Target SpO2 88-92%"},
        "subject": {"reference": f"Patient/{PATIENT}"},
        "target": [
            {
                "measure": {"coding": [{"system": LOINC, "code": "59408-5"}]},
                "detailRange": {
                    "low": {"value": low, "system": UCUM, "code": "%"},
                    "high": {"value": high, "system": UCUM, "code": "%"},
                },
            }
        ],
    }
    if expressed_by:
        goal["expressedBy"] = {"reference": expressed_by}
    if start:
        goal["startDate"] = start
    return goal


def pregnancy(
    *,
    cid: str = "preg-1",
    clinical: str | None = "active",
    verification: str | None = None,
    onset: str | None = None,
) -> dict[str, Any]:
    condition: dict[str, Any] = {
        "resourceType": "Condition",
        "id": cid,
        "code": {"coding": [{"system": SCT, "code": PREGNANCY_CODE}]},
        "subject": {"reference": f"Patient/{PATIENT}"},
    }
    if clinical:
        condition["clinicalStatus"] = {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                    "code": clinical,
                }
            ]
        }
    if verification:
        condition["verificationStatus"] = {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                    "code": verification,
                }
            ]
        }
    if onset:
        condition["onsetDateTime"] = onset
    return condition


def concern(
    level: str = "worried",
    *,
    oid: str = "c-1",
    when: str | None = None,
    performer: str | None = "RelatedPerson/daughter",
    display: str | None = None,
    status: str = "final",
    note: str | None = None,
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": oid,
        "status": status,
        "category": [{"coding": [{"code": "survey"}]}],
        "code": {"coding": [{"system": CONCERN_SYSTEM, "code": "concern-observation"}]},
        "subject": {"reference": f"Patient/{PATIENT}"},
        "effectiveDateTime": when or at(60),
        "valueCodeableConcept": {"coding": [{"system": LEVEL_SYSTEM, "code": level}]},
    }
    if performer:
        resource["performer"] = [
            {"reference": performer, **({"display": display} if display else {})}
        ]
    if note:
        resource["note"] = [{"text": note}]
    return resource


def escalation(
    concern_id: str = "c-1", *, status: str = "requested", tid: str = "t-1"
) -> dict[str, Any]:
    return {
        "resourceType": "Task",
        "id": tid,
        "status": status,
        "intent": "order",
        "priority": "urgent",
        "code": {"coding": [{"system": MARTHAS_RULE, "code": "marthas-rule-call"}]},
        "for": {"reference": f"Patient/{PATIENT}"},
        "owner": {"reference": "CareTeam/critical-care-outreach"},
        "reasonReference": {"reference": f"Observation/{concern_id}"},
    }


def record(
    resources: Sequence[Mapping[str, Any]],
    *,
    now: datetime = NOW,
    unavailable: Mapping[str, str] | None = None,
    context: Mapping[str, Any] | None = None,
) -> PatientRecord:
    parsed: dict[str, list[Resource]] = {}
    for index, raw in enumerate(resources):
        model = parse_resource(dict(raw), f"test[{index}]")
        assert model is not None, raw
        parsed.setdefault(model.resource_type, []).append(model)
    patients = [r for r in parsed.get("Patient", []) if isinstance(r, Patient)]
    return PatientRecord(
        hook="patient-view",
        context=context or {"userId": "Practitioner/nurse-1", "patientId": PATIENT},
        now=now,
        zone=LONDON,
        patient=patients[0] if patients else None,
        resources={kind: tuple(items) for kind, items in parsed.items()},
        unavailable=dict(unavailable or {}),
    )
