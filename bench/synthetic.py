"""Synthetic patients and hook requests for the benchmarks, for ANY service in the catalogue.

One patient's record is generated once (deterministically, coded from ``terminology/``), then
each service gets a request built from its own prefetch templates: a read template gets the
resource, a search template a searchset Bundle of the patient's resources of that type that
match the query's simple filters (``category``, ``code``, ``code:in``, ``status``, ``_id``), so
every key is present and holds what a FHIR server would return. Order hooks get a
``draftOrders`` Bundle with two MedicationRequests (one valproate, one estradiol) and matching
``selections`` / ``dispatchedOrders``.

A typical record (``scale=1``): 1 inpatient Encounter (in progress, 10 days), 30
MedicationRequests, 120 vital-sign Observations (20 NEWS2 sets: respiratory rate, SpO2, blood
pressure panel, pulse, temperature, ACVPU) plus the latest air-or-oxygen Observation and one
ARAF Observation, 15 Conditions, 5 Procedures, 3 Flags, and one or two of every other type a
template may ask for. ``scale=10`` is the large record (10x every count). Types no generator
knows (a service added later) get minimal valid resources built from the narrow model's
required fields, so the benchmark never needs editing when a service is added.

Codes come from ``Terminology.expansion(...)``; the "other" medicines, conditions and
procedures carry SNOMED CT codes outside every value set (checked with ``is_known_code``), which
is what most of a real record looks like to our rules.
"""

from __future__ import annotations

import random
import types
import typing
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, unquote

from pydantic import BaseModel

from fhir_safety.cds.hooks import ContextField, hook_spec
from fhir_safety.cds.prefetch import PrefetchTemplate, render_template
from fhir_safety.cds.service import ServiceDefinition
from fhir_safety.errors import TerminologyError
from fhir_safety.services.record import MODELS
from fhir_safety.terminology import SNOMED, Terminology

__all__ = [
    "DRAFT_ESTRADIOL_ID",
    "DRAFT_VALPROATE_ID",
    "ENCOUNTER_ID",
    "NOW",
    "PATIENT_ID",
    "PatientData",
    "build_request",
    "draft_orders",
    "hook_context",
    "make_patient",
    "matches_query",
    "prefetch_for",
    "transaction_bundle",
]

NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
PATIENT_ID = "bench-patient"
ENCOUNTER_ID = "bench-encounter-0"
DRAFT_VALPROATE_ID = "bench-draft-valproate"
DRAFT_ESTRADIOL_ID = "bench-draft-estradiol"
USER_ID = "Practitioner/bench-clinician"
PERFORMER_ID = "Practitioner/bench-pharmacist"

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CONDITION_VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
RELATIONSHIP = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"

# Medicines, conditions and procedures outside every fhir-safety value set: the bulk of a real
# record. The codes only need to take the "coded, not a member" path of Terminology.match;
# make_patient checks that none is a code we hold.
OTHER_MEDICINES = (
    ("322236009", "Paracetamol 500mg tablets"),
    ("900000001000001101", "Amlodipine 5mg tablets"),
    ("900000002000001102", "Atorvastatin 20mg tablets"),
    ("900000003000001103", "Ramipril 2.5mg capsules"),
    ("900000004000001104", "Metformin 500mg tablets"),
    ("900000005000001105", "Omeprazole 20mg gastro-resistant capsules"),
    ("900000006000001106", "Enoxaparin 40mg/0.4ml solution for injection pre-filled syringes"),
    ("900000007000001107", "Levetiracetam 500mg tablets"),
    ("900000008000001108", "Lamotrigine 100mg tablets"),
    ("900000009000001109", "Sertraline 50mg tablets"),
    ("900000010000001105", "Bisoprolol 2.5mg tablets"),
    ("900000011000001106", "Furosemide 40mg tablets"),
    ("900000012000001107", "Senna 7.5mg tablets"),
    ("900000013000001108", "Macrogol compound oral powder sachets"),
    ("900000014000001109", "Morphine 10mg/5ml oral solution"),
    ("900000015000001104", "Ondansetron 4mg tablets"),
    ("900000016000001100", "Co-amoxiclav 500mg/125mg tablets"),
    ("900000017000001101", "Salbutamol 100micrograms/dose inhaler CFC free"),
    ("900000018000001102", "Adcal-D3 chewable tablets"),
    ("900000019000001103", "Thiamine 100mg tablets"),
    ("900000020000001109", "Folic acid 5mg tablets"),
)
TEXT_ONLY_MEDICINES = (
    "Paracetamol 1g IV infusion (ward stock)",
    "Lansoprazole 30mg orodispersible",
)
OTHER_CONDITIONS = (
    ("38341003", "Hypertensive disorder"),
    ("44054006", "Type 2 diabetes mellitus"),
    ("195967001", "Asthma"),
    ("13645005", "Chronic obstructive lung disease"),
    ("49436004", "Atrial fibrillation"),
    ("84757009", "Epilepsy"),
    ("35489007", "Depressive disorder"),
    ("396275006", "Osteoarthritis"),
    ("84114007", "Heart failure"),
    ("40930008", "Hypothyroidism"),
    ("197480006", "Anxiety disorder"),
    ("709044004", "Chronic kidney disease"),
    ("22298006", "Myocardial infarction"),
)
OTHER_PROCEDURES = (
    ("80146002", "Appendicectomy"),
    ("38102005", "Cholecystectomy"),
    ("11466000", "Caesarean section"),
    ("73761001", "Colonoscopy"),
    ("232717009", "Coronary artery bypass grafting"),
)

# Flat resource counts at scale 1 (Observations are built in NEWS2 sets, see _observations).
_COUNTS = {
    "Encounter": 1,
    "MedicationRequest": 30,
    "Condition": 15,
    "Procedure": 5,
    "Flag": 3,
    "CarePlan": 1,
    "Goal": 1,
    "MedicationStatement": 2,
    "Device": 1,
    "AdverseEvent": 1,
    "Task": 2,
    "ServiceRequest": 2,
    "Consent": 1,
    "RelatedPerson": 1,
}
VITAL_SETS = 20  # x 6 Observations = 120 at scale 1


@dataclass
class PatientData:
    """One synthetic patient's resources by type (FHIR JSON), and the scale they were made at."""

    patient_id: str
    scale: int
    now: datetime = NOW
    resources: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        return {kind: len(items) for kind, items in sorted(self.resources.items())}

    def of_type(self, resource_type: str) -> list[dict[str, Any]]:
        return self.resources.get(resource_type, [])


@dataclass(frozen=True)
class _Ctx:
    """What every resource builder needs: the subject reference, the clock, codes, randomness."""

    subject: dict[str, str]
    now: datetime
    codes: _Codes
    rng: random.Random


class _Codes:
    """Codings picked deterministically from the loaded value sets (None when a set is absent)."""

    def __init__(self, terminology: Terminology, rng: random.Random) -> None:
        self._terminology = terminology
        self._rng = rng

    def pick(self, value_set: str, *, prefer: str | None = None) -> dict[str, str] | None:
        try:
            rows = self._terminology.expansion(value_set)
        except TerminologyError:
            return None
        if not rows:
            return None
        preferred = [r for r in rows if prefer and prefer.lower() in r[2].lower()]
        system, code, display = self._rng.choice(preferred or list(rows))
        return {"system": system, "code": code, "display": display}

    def all(self, value_set: str) -> list[dict[str, str]]:
        try:
            rows = self._terminology.expansion(value_set)
        except TerminologyError:
            return []
        return [{"system": s, "code": c, "display": d} for s, c, d in rows]

    def concept(
        self, value_set: str, *, prefer: str | None = None, fallback: str
    ) -> dict[str, Any]:
        coding = self.pick(value_set, prefer=prefer)
        if coding is None:
            return {"text": fallback}
        return {"coding": [coding], "text": coding["display"]}


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _day(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d")


def _snomed(code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": SNOMED, "code": code, "display": display}], "text": display}


def make_patient(
    terminology: Terminology,
    *,
    scale: int = 1,
    patient_id: str = PATIENT_ID,
    seed: int = 11,
    now: datetime = NOW,
) -> PatientData:
    """A deterministic synthetic inpatient; ``scale`` multiplies every count."""
    for code, _ in (*OTHER_MEDICINES, *OTHER_CONDITIONS, *OTHER_PROCEDURES):
        if terminology.is_known_code(SNOMED, code):
            raise ValueError(f"synthetic 'other' code {code} is in a fhir-safety value set")
    rng = random.Random(seed)
    codes = _Codes(terminology, rng)
    subject = {"reference": f"Patient/{patient_id}"}
    data = PatientData(patient_id=patient_id, scale=scale, now=now)
    data.resources["Patient"] = [_patient(patient_id)]
    ctx = _Ctx(subject=subject, now=now, codes=codes, rng=rng)
    builders = {
        "Encounter": _encounter,
        "MedicationRequest": _medication_request,
        "Condition": _condition,
        "Procedure": _procedure,
        "Flag": _flag,
        "CarePlan": _care_plan,
        "Goal": _goal,
        "MedicationStatement": _medication_statement,
        "Device": _device,
        "AdverseEvent": _adverse_event,
        "Task": _task,
        "ServiceRequest": _service_request,
        "Consent": _consent,
        "RelatedPerson": _related_person,
    }
    for kind, per_scale in _COUNTS.items():
        builder = builders[kind]
        data.resources[kind] = [builder(index, ctx) for index in range(per_scale * scale)]
    data.resources["Observation"] = _observations(scale, ctx)
    return data


def _patient(patient_id: str) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": patient_id,
        "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9990000011"}],
        "name": [{"use": "official", "family": "Bench", "given": ["Morgan"]}],
        "gender": "female",
        "birthDate": "1978-03-14",  # 48 on NOW: could become pregnant, may be on HRT
        "address": [{"use": "home", "city": "Leeds", "postalCode": "LS1 4AP", "country": "GB"}],
        "contact": [
            {
                "relationship": [{"coding": [{"system": RELATIONSHIP, "code": "SIS"}]}],
                "name": {"text": "Alex Bench"},
                "telecom": [{"system": "phone", "value": "0113 496 0000", "use": "mobile"}],
            }
        ],
    }


def _encounter(index: int, ctx: _Ctx) -> dict[str, Any]:
    current = index == 0
    start = ctx.now - timedelta(days=10) if current else ctx.now - timedelta(days=60 + 45 * index)
    period = {"start": _iso(start)}
    if not current:
        period["end"] = _iso(start + timedelta(days=ctx.rng.randint(1, 6)))
    return {
        "resourceType": "Encounter",
        "id": ENCOUNTER_ID if current else f"bench-encounter-{index}",
        "status": "in-progress" if current else "finished",
        "class": {"system": ACT_CODE, "code": "IMP", "display": "inpatient encounter"},
        "subject": ctx.subject,
        "period": period,
        "serviceProvider": {"display": "Bench Teaching Hospitals NHS Trust"},
        "location": [{"location": {"display": "Ward 7"}, "status": "active"}],
    }


# (value set, status, months ago, prefer) per slot; slots 7-8 text only; the rest "other".
_MEDICATION_SLOTS: tuple[tuple[str, str, int, str | None], ...] = (
    ("valproate-products", "active", 3, "Sodium valproate"),
    ("hrt-oestrogen-systemic", "active", 2, "Estradiol"),
    ("hrt-oestrogen-systemic", "stopped", 14, None),
    ("progestogens-endometrial", "active", 2, None),
    ("progestogens-endometrial", "stopped", 14, None),
    ("hrt-combined", "completed", 30, None),
    ("vaginal-oestrogen-low-dose", "active", 6, None),
)


def _medication_request(index: int, ctx: _Ctx) -> dict[str, Any]:
    slot = index % 30
    authored = ctx.now - timedelta(days=ctx.rng.randint(1, 20))
    status = "active" if ctx.rng.random() < 0.7 else "stopped"
    concept: dict[str, Any]
    if slot < len(_MEDICATION_SLOTS):
        value_set, status, months, prefer = _MEDICATION_SLOTS[slot]
        authored = ctx.now - timedelta(days=30 * months + ctx.rng.randint(0, 9))
        concept = ctx.codes.concept(value_set, prefer=prefer, fallback=value_set)
    elif slot < len(_MEDICATION_SLOTS) + len(TEXT_ONLY_MEDICINES):
        concept = {"text": TEXT_ONLY_MEDICINES[slot - len(_MEDICATION_SLOTS)]}
    else:
        concept = _snomed(*OTHER_MEDICINES[slot % len(OTHER_MEDICINES)])
    return {
        "resourceType": "MedicationRequest",
        "id": f"bench-mr-{index}",
        "status": status,
        "intent": "order",
        "medicationCodeableConcept": concept,
        "subject": ctx.subject,
        "encounter": {"reference": f"Encounter/{ENCOUNTER_ID}"},
        "authoredOn": _iso(authored),
        "requester": {"display": "Dr A Prescriber"},
        "dosageInstruction": [
            {"text": "One to be taken daily", "timing": {"code": {"text": "OD"}}}
        ],
    }


def _condition(index: int, ctx: _Ctx) -> dict[str, Any]:
    slot = index % 15
    if slot == 0:
        concept = ctx.codes.concept("learning-disability", fallback="Learning disability")
    elif slot == 1:
        concept = ctx.codes.concept("autism", fallback="Autism")
    else:
        concept = _snomed(*OTHER_CONDITIONS[slot % len(OTHER_CONDITIONS)])
    resolved = ctx.rng.random() < 0.2
    return {
        "resourceType": "Condition",
        "id": f"bench-condition-{index}",
        "clinicalStatus": {
            "coding": [{"system": CONDITION_CLINICAL, "code": "resolved" if resolved else "active"}]
        },
        "verificationStatus": {"coding": [{"system": CONDITION_VERIFICATION, "code": "confirmed"}]},
        "category": [{"coding": [{"system": CONDITION_CATEGORY, "code": "problem-list-item"}]}],
        "code": concept,
        "subject": ctx.subject,
        "onsetDateTime": _day(ctx.now - timedelta(days=ctx.rng.randint(100, 8000))),
        "recordedDate": _day(ctx.now - timedelta(days=ctx.rng.randint(10, 90))),
    }


def _procedure(index: int, ctx: _Ctx) -> dict[str, Any]:
    code, display = OTHER_PROCEDURES[index % len(OTHER_PROCEDURES)]
    return {
        "resourceType": "Procedure",
        "id": f"bench-procedure-{index}",
        "status": "completed",
        "code": _snomed(code, display),
        "subject": ctx.subject,
        "performedDateTime": _day(ctx.now - timedelta(days=ctx.rng.randint(200, 6000))),
    }


def _flag(index: int, ctx: _Ctx) -> dict[str, Any]:
    slot = index % 3
    if slot == 0:
        concept = ctx.codes.concept(
            "valproate-ppp-status", prefer="Enrolled", fallback="PPP enrolled"
        )
        period = {
            "start": _day(ctx.now - timedelta(days=200 + index)),
            "end": _day(ctx.now + timedelta(days=165)),
        }
    elif slot == 1:
        concept = ctx.codes.concept(
            "reasonable-adjustment-flag-codes", fallback="Reasonable adjustment"
        )
        period = {"start": _day(ctx.now - timedelta(days=400 + index))}
    else:
        concept = {"text": "Falls risk: assist with mobilising"}
        period = {"start": _day(ctx.now - timedelta(days=9))}
    return {
        "resourceType": "Flag",
        "id": f"bench-flag-{index}",
        "status": "active",
        "category": [{"text": "Clinical"}],
        "code": concept,
        "subject": ctx.subject,
        "period": period,
    }


def _care_plan(index: int, ctx: _Ctx) -> dict[str, Any]:
    return {
        "resourceType": "CarePlan",
        "id": f"bench-careplan-{index}",
        "status": "active",
        "intent": "plan",
        "category": [{"text": "Falls prevention"}],
        "subject": ctx.subject,
        "title": "Falls prevention plan",
        "period": {"start": _iso(ctx.now - timedelta(days=9))},
    }


def _goal(index: int, ctx: _Ctx) -> dict[str, Any]:
    return {
        "resourceType": "Goal",
        "id": f"bench-goal-{index}",
        "lifecycleStatus": "active",
        "description": {"text": "Walk to the ward day room with one assistant"},
        "subject": ctx.subject,
        "startDate": _day(ctx.now - timedelta(days=8)),
    }


def _medication_statement(index: int, ctx: _Ctx) -> dict[str, Any]:
    code, display = OTHER_MEDICINES[(index * 7) % len(OTHER_MEDICINES)]
    return {
        "resourceType": "MedicationStatement",
        "id": f"bench-ms-{index}",
        "status": "active",
        "medicationCodeableConcept": _snomed(code, display),
        "subject": ctx.subject,
        "effectiveDateTime": _day(ctx.now - timedelta(days=ctx.rng.randint(30, 700))),
        "dateAsserted": _day(ctx.now - timedelta(days=9)),
    }


def _device(index: int, ctx: _Ctx) -> dict[str, Any]:
    return {
        "resourceType": "Device",
        "id": f"bench-device-{index}",
        "status": "active",
        "type": ctx.codes.concept("lng-ius-52mg", fallback="Levonorgestrel intrauterine system"),
        "patient": ctx.subject,
    }


def _adverse_event(index: int, ctx: _Ctx) -> dict[str, Any]:
    return {
        "resourceType": "AdverseEvent",
        "id": f"bench-incident-{index}",
        "actuality": "actual",
        "event": {"text": "Fall on the ward with head injury"},
        "subject": ctx.subject,
        "date": _iso(ctx.now - timedelta(days=6 + index)),
        "recordedDate": _iso(ctx.now - timedelta(days=6 + index)),
    }


def _task(index: int, ctx: _Ctx) -> dict[str, Any]:
    incident = index // 2
    response_id = f"bench-task-{incident * 2}"
    task: dict[str, Any] = {
        "resourceType": "Task",
        "id": f"bench-task-{index}",
        "status": "in-progress",
        "intent": "order",
        "for": ctx.subject,
        "authoredOn": _iso(ctx.now - timedelta(days=5)),
        "owner": {"display": "Patient safety team"},
    }
    if index % 2 == 0:
        task["code"] = ctx.codes.concept("learning-response-type", fallback="Learning response")
        task["focus"] = {"reference": f"AdverseEvent/bench-incident-{incident}"}
    else:
        task["code"] = ctx.codes.concept("family-engagement-step", fallback="Engagement step")
        task["partOf"] = [{"reference": f"Task/{response_id}"}]
        task["status"] = "completed"
    return task


def _service_request(index: int, ctx: _Ctx) -> dict[str, Any]:
    return {
        "resourceType": "ServiceRequest",
        "id": f"bench-sr-{index}",
        "status": "active",
        "intent": "order",
        "code": {"text": "Physiotherapy assessment"},
        "subject": ctx.subject,
        "authoredOn": _iso(ctx.now - timedelta(days=3)),
    }


def _consent(index: int, ctx: _Ctx) -> dict[str, Any]:
    return {
        "resourceType": "Consent",
        "id": f"bench-consent-{index}",
        "status": "active",
        "scope": {"text": "Sharing reasonable adjustments"},
        "category": [{"text": "Information sharing"}],
        "patient": ctx.subject,
        "dateTime": _iso(ctx.now - timedelta(days=400)),
        "provision": {"type": "permit"},
    }


def _related_person(index: int, ctx: _Ctx) -> dict[str, Any]:
    return {
        "resourceType": "RelatedPerson",
        "id": f"bench-related-{index}",
        "active": True,
        "patient": ctx.subject,
        "relationship": [{"coding": [{"system": RELATIONSHIP, "code": "SIS"}], "text": "Sister"}],
        "name": [{"text": "Alex Bench"}],
        "telecom": [{"system": "phone", "value": "0113 496 0000"}],
    }


def _coding_from(codes: _Codes, value_set: str, system: str) -> list[dict[str, str]]:
    return [c for c in codes.all(value_set) if c["system"] == system][:1]


def _observations(scale: int, ctx: _Ctx) -> list[dict[str, Any]]:
    vital_signs = [{"coding": [{"system": OBSERVATION_CATEGORY, "code": "vital-signs"}]}]
    survey = [{"coding": [{"system": OBSERVATION_CATEGORY, "code": "survey"}]}]

    def code(value_set: str, fallback: str) -> dict[str, Any]:
        coding = _coding_from(ctx.codes, value_set, SNOMED) + _coding_from(
            ctx.codes, value_set, LOINC
        )
        return {"coding": coding} if coding else {"text": fallback}

    def quantity(value: float, unit: str, ucum: str) -> dict[str, Any]:
        return {"value": value, "unit": unit, "system": UCUM, "code": ucum}

    rr = code("vital-respiratory-rate", "Respiratory rate")
    spo2 = code("vital-oxygen-saturation", "Oxygen saturation")
    bp = code("vital-blood-pressure-panel", "Blood pressure")
    systolic = code("vital-systolic-bp", "Systolic blood pressure")
    diastolic = {
        "coding": [{"system": LOINC, "code": "8462-4", "display": "Diastolic blood pressure"}]
    }
    pulse = code("vital-heart-rate", "Heart rate")
    temperature = code("vital-body-temperature", "Body temperature")
    acvpu = code("acvpu-observation", "ACVPU")
    alert = ctx.codes.concept("acvpu", prefer="alert", fallback="Alert")
    out: list[dict[str, Any]] = []
    for number in range(VITAL_SETS * scale):
        when = _iso(ctx.now - timedelta(hours=4 * number, minutes=30))
        base = {"resourceType": "Observation", "status": "final", "subject": ctx.subject}

        def obs(kind: str, **fields: Any) -> dict[str, Any]:
            return {**base, "id": f"bench-obs-{number}-{kind}", "effectiveDateTime": when, **fields}  # noqa: B023

        out += [
            obs(
                "rr",
                category=vital_signs,
                code=rr,
                valueQuantity=quantity(ctx.rng.randint(14, 18), "breaths/minute", "/min"),
            ),
            obs(
                "spo2",
                category=vital_signs,
                code=spo2,
                valueQuantity=quantity(ctx.rng.randint(95, 98), "%", "%"),
            ),
            obs(
                "bp",
                category=vital_signs,
                code=bp,
                component=[
                    {
                        "code": systolic,
                        "valueQuantity": quantity(ctx.rng.randint(115, 135), "mmHg", "mm[Hg]"),
                    },
                    {
                        "code": diastolic,
                        "valueQuantity": quantity(ctx.rng.randint(68, 84), "mmHg", "mm[Hg]"),
                    },
                ],
            ),
            obs(
                "pulse",
                category=vital_signs,
                code=pulse,
                valueQuantity=quantity(ctx.rng.randint(68, 88), "beats/minute", "/min"),
            ),
            obs(
                "temp",
                category=vital_signs,
                code=temperature,
                valueQuantity=quantity(round(ctx.rng.uniform(36.5, 37.3), 1), "Cel", "Cel"),
            ),
            obs("acvpu", category=survey, code=acvpu, valueCodeableConcept=alert),
        ]
    for number in range(scale):
        when = _iso(ctx.now - timedelta(hours=4 * number, minutes=30))
        air = ctx.codes.concept("inspired-oxygen", prefer="room air", fallback="Breathing room air")
        araf = ctx.codes.concept("valproate-araf", prefer="2024", fallback="Valproate ARAF")
        out += [
            {
                "resourceType": "Observation",
                "id": f"bench-obs-{number}-air",
                "status": "final",
                "code": air,
                "subject": ctx.subject,
                "effectiveDateTime": when,
            },
            {
                "resourceType": "Observation",
                "id": f"bench-obs-{number}-araf",
                "status": "final",
                "code": araf,
                "subject": ctx.subject,
                "effectiveDateTime": _iso(ctx.now - timedelta(days=200 + number)),
            },
        ]
    return out


# -- draft orders and requests ---------------------------------------------------------------


def draft_orders(
    terminology: Terminology, patient_id: str = PATIENT_ID, now: datetime = NOW
) -> list[dict[str, Any]]:
    """Two draft MedicationRequests: a valproate product and a systemic estradiol."""
    codes = _Codes(terminology, random.Random(5))
    subject = {"reference": f"Patient/{patient_id}"}
    orders = []
    for order_id, value_set, prefer in (
        (DRAFT_VALPROATE_ID, "valproate-products", "Sodium valproate"),
        (DRAFT_ESTRADIOL_ID, "hrt-oestrogen-systemic", "Estradiol"),
    ):
        orders.append(
            {
                "resourceType": "MedicationRequest",
                "id": order_id,
                "status": "draft",
                "intent": "order",
                "medicationCodeableConcept": codes.concept(
                    value_set, prefer=prefer, fallback=prefer or value_set
                ),
                "subject": subject,
                "authoredOn": _iso(now),
                "dosageInstruction": [{"text": "One to be taken twice a day"}],
            }
        )
    return orders


def _order_references(orders: Sequence[Mapping[str, Any]]) -> list[str]:
    return [f"{o['resourceType']}/{o['id']}" for o in orders]


def _context_value(
    spec_field: ContextField, data: PatientData, orders: Sequence[Mapping[str, Any]]
) -> Any:
    name = spec_field.name
    if name == "patientId":
        return data.patient_id
    if name == "encounterId":
        return ENCOUNTER_ID
    if name == "userId":
        return USER_ID
    if name == "performer":
        return PERFORMER_ID
    if spec_field.kind == "bundle":
        return {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"resource": dict(order)} for order in orders],
        }
    if spec_field.kind == "reference-list":
        return _order_references(orders)
    if spec_field.kind == "reference":
        kind = spec_field.types[0] if spec_field.types else "Practitioner"
        return f"{kind}/bench-{name.lower()}"
    if spec_field.kind == "resource-list":
        return []
    return f"bench-{name.lower()}"


def hook_context(
    hook: str, data: PatientData, orders: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """Every context field of the hook (required and optional) with a value that passes its check."""
    spec = hook_spec(hook)
    return {
        f.name: _context_value(f, data, orders) for f in spec.fields if f.kind != "resource-list"
    }


_TOKEN_FIELDS = {"category", "code", "status", "_id", "clinical-status", "intent"}


def matches_query(resource: Mapping[str, Any], query: str, terminology: Terminology) -> bool:
    """Does a resource satisfy the simple token filters of a (rendered) search query?

    ``category``, ``code`` (``[system|]code`` lists), ``code:in`` (a project ValueSet url),
    ``status`` and ``_id`` are applied; reference, date, ``_count``/``_sort`` and unknown
    parameters are not (every resource here belongs to the one patient).
    """
    _, _, params = query.partition("?")
    for name, raw in parse_qsl(params, keep_blank_values=True):
        value = unquote(raw)
        if name == "_id":
            ok = resource.get("id") in value.split(",")
        elif name == "status":
            ok = resource.get("status") in value.split(",")
        elif name in {"category", "code"}:
            ok = _any_token(_codings(resource.get(name)), value.split(","))
        elif name == "code:in":
            ok = _in_value_set(_codings(resource.get("code")), value, terminology)
        else:
            continue
        if not ok:
            return False
    return True


def _codings(element: Any) -> list[Mapping[str, Any]]:
    concepts = element if isinstance(element, list) else [element]
    return [
        c for concept in concepts if isinstance(concept, dict) for c in concept.get("coding") or []
    ]


def _any_token(codings: Iterable[Mapping[str, Any]], tokens: Sequence[str]) -> bool:
    for coding in codings:
        for token in tokens:
            system, bar, code = token.rpartition("|")
            if coding.get("code") == code and (not bar or coding.get("system") == system):
                return True
    return False


def _in_value_set(codings: Iterable[Mapping[str, Any]], url: str, terminology: Terminology) -> bool:
    value_set = url.rstrip("/").rsplit("/", 1)[-1]
    if value_set not in terminology.value_set_ids():
        return True  # a set we cannot evaluate: do not filter
    return any(terminology.contains(value_set, c.get("system"), c.get("code")) for c in codings)


def _searchset(resources: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources),
        "entry": [
            {
                "fullUrl": f"{r['resourceType']}/{r['id']}",
                "resource": r,
                "search": {"mode": "match"},
            }
            for r in resources
        ],
    }


def _resources_for(data: PatientData, resource_type: str) -> list[dict[str, Any]]:
    found = data.of_type(resource_type)
    if found or resource_type not in MODELS:
        return found
    # A type no generator knows (a newer service): minimal resources from the narrow model.
    count = max(1, data.scale)
    made = [
        minimal_resource(resource_type, f"bench-{resource_type.lower()}-{i}", data.patient_id)
        for i in range(count)
    ]
    data.resources[resource_type] = made
    return made


def prefetch_for(
    templates: Sequence[PrefetchTemplate],
    context: Mapping[str, Any],
    data: PatientData,
    terminology: Terminology,
    *,
    extra: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
) -> dict[str, Any]:
    """Every key filled as a FHIR server would answer its rendered query."""
    prefetch: dict[str, Any] = {}
    for template in templates:
        query = render_template(template, context)
        if query is None:
            continue  # a token the context lacks: the client cannot run it either
        resources = [
            *_resources_for(data, template.resource_type),
            *(extra or {}).get(template.resource_type, ()),
        ]
        if template.is_read:
            wanted = query.partition("/")[2]
            hit = next((r for r in resources if r.get("id") == wanted), None)
            prefetch[template.key] = hit
        else:
            prefetch[template.key] = _searchset(
                [r for r in resources if matches_query(r, query, terminology)]
            )
    return prefetch


def build_request(
    service: ServiceDefinition,
    data: PatientData,
    terminology: Terminology,
    *,
    with_prefetch: bool = True,
    fhir_server: str | None = None,
) -> dict[str, Any]:
    """A CDS Hooks request for ``service`` about ``data``'s patient."""
    orders = draft_orders(terminology, data.patient_id, data.now)
    context = hook_context(service.hook, data, orders)
    request: dict[str, Any] = {
        "hook": service.hook,
        "hookInstance": str(uuid.uuid5(uuid.NAMESPACE_URL, f"bench/{service.id}/{service.hook}")),
        "context": context,
    }
    if fhir_server is not None:
        request["fhirServer"] = fhir_server
    if with_prefetch:
        # order-dispatch: the dispatched orders are signed orders on the server.
        dispatched = hook_spec(service.hook).field("dispatchedOrders") is not None
        extra: dict[str, list[dict[str, Any]]] = {}
        if dispatched:
            for order in orders:
                extra.setdefault(order["resourceType"], []).append({**order, "status": "active"})
        request["prefetch"] = prefetch_for(
            service.prefetch, context, data, terminology, extra=extra
        )
    return request


def transaction_bundle(data: PatientData) -> dict[str, Any]:
    """A transaction Bundle with a PUT per resource (for loading a FHIR server)."""
    entries = []
    for kind in sorted(data.resources, key=lambda k: (k != "Patient", k)):
        for resource in data.resources[kind]:
            entries.append(
                {
                    "fullUrl": f"{kind}/{resource['id']}",
                    "resource": resource,
                    "request": {"method": "PUT", "url": f"{kind}/{resource['id']}"},
                }
            )
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


# -- minimal resources for types without a generator -----------------------------------------


def minimal_resource(resource_type: str, resource_id: str, patient_id: str) -> dict[str, Any]:
    """A resource with only the narrow model's required fields, filled with plausible values."""
    model = MODELS[resource_type]
    body = _required_fields(model, patient_id)
    body.update({"resourceType": resource_type, "id": resource_id})
    for name in ("subject", "patient", "for"):
        alias = _alias_of(model, name)
        if alias is not None and alias not in body:
            body[alias] = {"reference": f"Patient/{patient_id}"}
    model.model_validate(body)  # fails loudly if a guess is wrong
    return body


def _alias_of(model: type[BaseModel], alias: str) -> str | None:
    for name, info in model.model_fields.items():
        if (info.alias or name) == alias:
            return alias
    return None


def _required_fields(model: type[BaseModel], patient_id: str) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        if not info.is_required() or name == "resource_type":
            continue
        body[info.alias or name] = _value_for(info.annotation, name, patient_id)
    return body


def _value_for(annotation: Any, name: str, patient_id: str) -> Any:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Literal:
        return args[0]
    if origin in (typing.Union, types.UnionType):
        return _value_for(next(a for a in args if a is not type(None)), name, patient_id)
    if origin is typing.Annotated:
        return _value_for(args[0], name, patient_id)
    if origin in (list, tuple):
        return []
    if origin is dict:
        return {}
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        if annotation.__name__ == "Reference":
            return {"reference": f"Patient/{patient_id}"}
        if annotation.__name__ == "CodeableConcept":
            return {"text": f"bench {name}"}
        return _required_fields(annotation, patient_id)
    if annotation is bool:
        return False
    if annotation in (int, float):
        return 0
    if name in {"status"}:
        return "active"
    if name in {"intent"}:
        return "order"
    return "unknown"
