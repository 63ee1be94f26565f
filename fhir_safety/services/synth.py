"""A deterministic synthetic population for the valproate registry, dashboards and benchmarks.

``generate(patients=N, seed=S, as_of=D)`` gives the same resources for the same arguments on
every machine (``random.Random(seed)``, sorted code lists, no clock, no uuids). Each patient has
a Patient (NHS number in the 999 test range, with a valid check digit), an encounter with vital
signs, other medicines, and - for a share of them - valproate with a valproate scenario: a PPP
Flag in or out of date, a declined/not-needed/discontinued PPP, a pregnancy, a hysterectomy or
menopause, a learning disability.

The ground truth (``ground-truth.json``) records each patient's scenario and the NCL action
status the scenario is meant to produce, worked out here from the scenario alone (not by the
rules), so tests can check the registry against it independently.

``hospital=True`` (for the dashboards, issue #10) adds, from a second random stream so that every
resource above stays byte-identical: prescriber organisations on the valproate requests, and for
about one adult in eight a current inpatient stay on one of four wards (admission date, bed, an
expected discharge date or none, a discharge plan and "what matters to me" goals for some), a
NEWS2 set of vital signs (recent, stale or incomplete), patient and family concerns, and Martha's
Rule escalation Tasks. The hospital's Organizations and Locations travel with the first patient.

Codes: valproate products from the ``valproate-products`` ValueSet; SNOMED CT codes from
clinical.md (pregnancy 77386006, hysterectomy 236886002, menopause 289903006, LD register
416075005, ARAF 2078951000000106 [S23]); LOINC vital signs from clinical.md section 1.4; NEWS2
observation codes from clinical.md sections 1.3-1.4 (ACVPU 1104441000000107 and its answers,
breathing room air 722742002, on oxygen 371825009) [S1][S2][S4]; concern, concern-level and
Martha's Rule codes from the project CodeSystems (clinical.md section 2.2: no national code).
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Literal

from fhir_safety.domain import PROJECT_CANONICAL
from fhir_safety.rules.valproate import add_months
from fhir_safety.terminology import ATC, LOINC, SNOMED, Terminology

__all__ = [
    "HOSPITAL_WARDS",
    "PRESCRIBER_ORGANISATIONS",
    "SCENARIO_ACTIONS",
    "SyntheticPatient",
    "generate",
    "snapshot_time",
    "write_bundles",
    "write_ground_truth",
    "write_ndjson",
]

DEFAULT_AS_OF = date(2026, 11, 26)
PPP_SYSTEM = f"{PROJECT_CANONICAL}/CodeSystem/valproate-ppp-status"
PPP_PROFILE = f"{PROJECT_CANONICAL}/StructureDefinition/valproate-ppp-flag"
SPECIALIST_URL = f"{PROJECT_CANONICAL}/StructureDefinition/valproate-specialist"
ARAF_URL = f"{PROJECT_CANONICAL}/StructureDefinition/valproate-araf"
NHS_NUMBER = "https://fhir.nhs.uk/Id/nhs-number"
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
UCUM = "http://unitsofmeasure.org"

Scenario = Literal[
    "not-on-valproate",
    "stopped-valproate",
    "male",
    "over-age",
    "child",
    "no-ppp",
    "enrolled-current",
    "enrolled-due-soon",
    "enrolled-expired",
    "declined",
    "not-needed",
    "discontinued",
    "pregnant",
    "hysterectomy",
    "menopause",
]

# What each scenario should give (NCL action status [S23]); None = not in the registry cohort.
SCENARIO_ACTIONS: dict[str, str | None] = {
    "not-on-valproate": None,
    "stopped-valproate": None,
    "male": None,
    "over-age": None,
    "child": "No action required",
    "no-ppp": "Review or refer",
    "enrolled-current": "Consider expiry of ARAF",
    "enrolled-due-soon": "Consider expiry of ARAF",
    "enrolled-expired": "Review or refer",
    "declined": "Keep under review",
    "not-needed": "Keep under review",
    "discontinued": "Keep under review",
    "pregnant": "Review or refer",
    "hysterectomy": "No action required",
    "menopause": "No action required",
}
_COHORT_WEIGHTS: tuple[tuple[Scenario, int], ...] = (
    ("no-ppp", 20),
    ("enrolled-current", 25),
    ("enrolled-due-soon", 8),
    ("enrolled-expired", 12),
    ("declined", 5),
    ("not-needed", 4),
    ("discontinued", 4),
    ("pregnant", 5),
    ("hysterectomy", 5),
    ("menopause", 3),
)
_OTHER_MEDICINES = (
    "Levetiracetam 500mg tablets",
    "Lamotrigine 100mg tablets",
    "Sertraline 50mg tablets",
    "Paracetamol 500mg tablets",
    "Omeprazole 20mg gastro-resistant capsules",
    "Folic acid 5mg tablets",
    "Salbutamol 100micrograms/dose inhaler",
    "Atorvastatin 20mg tablets",
)
_VITALS = (  # clinical.md section 1.4 (LOINC, UCUM), with plausible ranges
    ("8867-4", "Heart rate", "/min", 55, 110),
    ("9279-1", "Respiratory rate", "/min", 12, 22),
    ("8310-5", "Body temperature", "Cel", 36.0, 38.2),
)
_GIVEN = ("Amira", "Beth", "Chloe", "Dana", "Ella", "Fatima", "Grace", "Hana", "Isla", "Jo")
_GIVEN_MALE = ("Adam", "Ben", "Callum", "Dev", "Ethan", "Finn", "George", "Harry", "Imran")
_FAMILY = ("Ahmed", "Brown", "Clarke", "Davies", "Evans", "Khan", "Patel", "Smith", "Taylor")


@dataclass
class SyntheticPatient:
    patient_id: str
    gender: str
    age: int
    scenario: Scenario
    learning_disability: bool
    resources: list[dict[str, Any]] = field(default_factory=list)
    stay: dict[str, Any] | None = None  # hospital=True: the inpatient stay's ground truth

    @property
    def expected_action(self) -> str | None:
        return SCENARIO_ACTIONS[self.scenario]

    def truth(self) -> dict[str, Any]:
        truth: dict[str, Any] = {
            "patient_id": self.patient_id,
            "gender": self.gender,
            "age": self.age,
            "scenario": self.scenario,
            "learning_disability": self.learning_disability,
            "expected_action": self.expected_action,
        }
        if self.stay is not None:
            truth["stay"] = self.stay
        return truth


def generate(
    *,
    patients: int,
    seed: int,
    terminology: Terminology,
    as_of: date = DEFAULT_AS_OF,
    valproate_rate: float = 0.2,
    hospital: bool = False,
) -> list[SyntheticPatient]:
    """``patients`` synthetic patients; the same arguments always give the same output.

    ``hospital=True`` adds inpatient stays, NEWS2 vitals, concerns, escalations and prescriber
    organisations (see the module docstring) without changing any other resource.
    """
    rng = random.Random(seed)
    products = _valproate_products(terminology)
    population = [
        _patient(rng, seed, index, as_of, valproate_rate, products) for index in range(patients)
    ]
    if hospital:
        _add_hospital(population, seed, as_of)
    return population


def _valproate_products(terminology: Terminology) -> list[tuple[str, str, str]]:
    rows = sorted(terminology.expansion("valproate-products"))
    # Prefer generic dm+d products (VMP-like displays) so the data looks like prescribing data.
    generic = [r for r in rows if r[0] == SNOMED and r[2].lower().startswith("sodium valproate")]
    return generic[:40] or [r for r in rows if r[0] in {SNOMED, ATC}][:40]


def _patient(
    rng: random.Random,
    seed: int,
    index: int,
    as_of: date,
    valproate_rate: float,
    products: Sequence[tuple[str, str, str]],
) -> SyntheticPatient:
    pid = f"synth-{seed}-{index:06d}"
    gender = rng.choices(["female", "male", "unknown", "other"], weights=[50, 48, 1, 1])[0]
    on_valproate = rng.random() < valproate_rate
    if on_valproate and gender != "male":
        age = rng.choices(
            [rng.randint(0, 6), rng.randint(7, 55), rng.randint(56, 85)], [5, 85, 10]
        )[0]
    else:
        age = rng.randint(0, 90)
    birth = _birth_date(rng, as_of, age)
    scenario = _scenario(rng, gender, age, on_valproate)
    learning_disability = on_valproate and rng.random() < 0.06
    person = SyntheticPatient(pid, gender, age, scenario, learning_disability)
    subject = {"reference": f"Patient/{pid}"}
    person.resources.append(_patient_resource(rng, pid, gender, birth))
    person.resources.extend(_encounter_and_vitals(rng, pid, subject, as_of))
    person.resources.extend(_other_medicines(rng, pid, subject, as_of))
    if scenario == "stopped-valproate":
        person.resources.append(
            _valproate_request(rng, pid, subject, as_of, products, status="stopped")
        )
    elif scenario != "not-on-valproate":
        person.resources.append(_valproate_request(rng, pid, subject, as_of, products))
        person.resources.extend(_scenario_resources(rng, pid, subject, as_of, scenario))
    if learning_disability:
        person.resources.append(
            _condition(
                pid,
                "ld",
                subject,
                "416075005",
                "On learning disability register",
                as_of - timedelta(days=rng.randint(400, 6000)),
            )
        )
    return person


def _scenario(rng: random.Random, gender: str, age: int, on_valproate: bool) -> Scenario:
    if not on_valproate:
        return "stopped-valproate" if rng.random() < 0.02 else "not-on-valproate"
    if gender == "male":
        return "male"
    if age > 55:
        return "over-age"
    if age < 7:
        return "child"
    names = [name for name, _ in _COHORT_WEIGHTS]
    weights = [weight for _, weight in _COHORT_WEIGHTS]
    chosen: Scenario = rng.choices(names, weights=weights)[0]
    if chosen == "menopause" and age < 45:
        return "no-ppp"
    if chosen == "pregnant" and age < 14:
        return "enrolled-current"
    return chosen


def _birth_date(rng: random.Random, as_of: date, age: int) -> date:
    """A birth date that makes the patient exactly ``age`` on ``as_of``."""
    latest = add_months(as_of, -12 * age)  # the most recent possible birthday
    earliest = add_months(as_of, -12 * (age + 1)) + timedelta(days=1)
    return earliest + timedelta(days=rng.randint(0, (latest - earliest).days))


def _nhs_number(rng: random.Random) -> str:
    """A number in the 999 test range with a valid modulus-11 check digit."""
    while True:
        digits = [9, 9, 9, *(rng.randint(0, 9) for _ in range(6))]
        remainder = sum(d * w for d, w in zip(digits, range(10, 1, -1), strict=True)) % 11
        check = 11 - remainder
        if check == 11:
            check = 0
        if check != 10:
            return "".join(map(str, digits)) + str(check)


def _patient_resource(rng: random.Random, pid: str, gender: str, birth: date) -> dict[str, Any]:
    given = rng.choice(_GIVEN_MALE if gender == "male" else _GIVEN)
    return {
        "resourceType": "Patient",
        "id": pid,
        "identifier": [{"system": NHS_NUMBER, "value": _nhs_number(rng)}],
        "name": [{"use": "official", "family": rng.choice(_FAMILY), "given": [given]}],
        "gender": gender,
        "birthDate": birth.isoformat(),
    }


def _encounter_and_vitals(
    rng: random.Random, pid: str, subject: dict[str, str], as_of: date
) -> list[dict[str, Any]]:
    day = as_of - timedelta(days=rng.randint(1, 365))
    when = f"{day.isoformat()}T{rng.randint(8, 17):02d}:{rng.choice([0, 15, 30, 45]):02d}:00Z"
    encounter = {
        "resourceType": "Encounter",
        "id": f"{pid}-enc",
        "status": "finished",
        "class": {"system": ACT_CODE, "code": "AMB", "display": "ambulatory"},
        "subject": subject,
        "period": {"start": when, "end": when},
    }
    out: list[dict[str, Any]] = [encounter]
    for code, display, unit, low, high in _VITALS:
        value: float = (
            round(rng.uniform(low, high), 1)
            if isinstance(low, float)
            else rng.randint(int(low), int(high))
        )
        out.append(
            {
                "resourceType": "Observation",
                "id": f"{pid}-obs-{code}",
                "status": "final",
                "category": [{"coding": [{"system": OBSERVATION_CATEGORY, "code": "vital-signs"}]}],
                "code": {"coding": [{"system": LOINC, "code": code, "display": display}]},
                "subject": subject,
                "encounter": {"reference": f"Encounter/{pid}-enc"},
                "effectiveDateTime": when,
                "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit},
            }
        )
    return out


def _other_medicines(
    rng: random.Random, pid: str, subject: dict[str, str], as_of: date
) -> list[dict[str, Any]]:
    chosen = rng.sample(_OTHER_MEDICINES, k=rng.randint(0, 2))
    return [
        {
            "resourceType": "MedicationRequest",
            "id": f"{pid}-med-{n}",
            "status": "active",
            "intent": "order",
            "medicationCodeableConcept": {"text": text},
            "subject": subject,
            "authoredOn": (as_of - timedelta(days=rng.randint(1, 300))).isoformat(),
        }
        for n, text in enumerate(sorted(chosen))
    ]


def _valproate_request(
    rng: random.Random,
    pid: str,
    subject: dict[str, str],
    as_of: date,
    products: Sequence[tuple[str, str, str]],
    *,
    status: str = "active",
) -> dict[str, Any]:
    if rng.random() < 0.1:  # some systems send text only
        medication: dict[str, Any] = {"text": rng.choice(["Epilim Chrono 500mg", "Depakote 250mg"])}
    else:
        system, code, display = rng.choice(products)
        medication = {"coding": [{"system": system, "code": code, "display": display}]}
    return {
        "resourceType": "MedicationRequest",
        "id": f"{pid}-valproate",
        "status": status,
        "intent": "order",
        "medicationCodeableConcept": medication,
        "subject": subject,
        "authoredOn": (as_of - timedelta(days=rng.randint(1, 150))).isoformat(),
        "dosageInstruction": [{"text": "500 mg twice a day"}],
    }


def _scenario_resources(
    rng: random.Random, pid: str, subject: dict[str, str], as_of: date, scenario: Scenario
) -> list[dict[str, Any]]:
    if scenario in {"enrolled-current", "pregnant"}:
        araf = as_of - timedelta(days=rng.randint(31, 330))
        out = [_flag(rng, pid, subject, "enrolled", araf), _araf_observation(pid, subject, araf)]
        if scenario == "pregnant":
            onset = as_of - timedelta(days=rng.randint(10, 200))
            out.append(
                _condition(pid, "preg", subject, "77386006", "Patient currently pregnant", onset)
            )
        return out
    if scenario == "enrolled-due-soon":
        araf = add_months(as_of + timedelta(days=rng.randint(0, 30)), -12)
        return [_flag(rng, pid, subject, "enrolled", araf), _araf_observation(pid, subject, araf)]
    if scenario == "enrolled-expired":
        araf = as_of - timedelta(days=rng.randint(367, 700))
        return [_flag(rng, pid, subject, "enrolled", araf)]
    if scenario in {"declined", "not-needed", "discontinued"}:
        return [_flag(rng, pid, subject, scenario, as_of - timedelta(days=rng.randint(1, 300)))]
    if scenario == "hysterectomy":
        when = as_of - timedelta(days=rng.randint(200, 5000))
        return [
            {
                "resourceType": "Procedure",
                "id": f"{pid}-hyst",
                "status": "completed",
                "code": {
                    "coding": [{"system": SNOMED, "code": "236886002", "display": "Hysterectomy"}]
                },
                "subject": subject,
                "performedDateTime": when.isoformat(),
            }
        ]
    if scenario == "menopause":
        when = as_of - timedelta(days=rng.randint(200, 3000))
        return [_condition(pid, "meno", subject, "289903006", "Menopause", when)]
    return []  # no-ppp, child


def _flag(
    rng: random.Random, pid: str, subject: dict[str, str], code: str, araf: date
) -> dict[str, Any]:
    specialists = ["Practitioner/synth-neurologist-1"]
    if rng.random() < 0.5:
        specialists.append("Practitioner/synth-psychiatrist-2")
    return {
        "resourceType": "Flag",
        "id": f"{pid}-ppp",
        "meta": {"profile": [PPP_PROFILE]},
        "extension": [{"url": ARAF_URL, "valueDate": araf.isoformat()}]
        + [{"url": SPECIALIST_URL, "valueReference": {"reference": s}} for s in specialists],
        "status": "active",
        "code": {"coding": [{"system": PPP_SYSTEM, "code": code}]},
        "subject": subject,
        "period": {"start": araf.isoformat(), "end": add_months(araf, 12).isoformat()},
    }


def _araf_observation(pid: str, subject: dict[str, str], araf: date) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": f"{pid}-araf",
        "status": "final",
        "code": {"coding": [{"system": SNOMED, "code": "2078951000000106"}]},
        "subject": subject,
        "effectiveDateTime": araf.isoformat(),
    }


def _condition(
    pid: str, suffix: str, subject: dict[str, str], code: str, display: str, onset: date
) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": f"{pid}-{suffix}",
        "clinicalStatus": {"coding": [{"system": CLINICAL, "code": "active"}]},
        "verificationStatus": {"coding": [{"system": VERIFICATION, "code": "confirmed"}]},
        "code": {"coding": [{"system": SNOMED, "code": code, "display": display}]},
        "subject": subject,
        "onsetDateTime": onset.isoformat(),
    }


# -- hospital (hospital=True): stays, NEWS2 vitals, concerns, escalations, prescribers -------------

LOCATION_PHYSICAL_TYPE = "http://terminology.hl7.org/CodeSystem/location-physical-type"
V3_ROLE_CODE = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
PLANNED_END_DATE_URL = (  # R5 Encounter.plannedEndDate as an R4 extension (rules/length_of_stay.py)
    "http://hl7.org/fhir/5.0/StructureDefinition/extension-Encounter.plannedEndDate"
)
CARE_PLAN_CATEGORY = f"{PROJECT_CANONICAL}/CodeSystem/care-plan-category"
WHAT_MATTERS = f"{PROJECT_CANONICAL}/CodeSystem/what-matters-to-me"
CONCERN_SYSTEM = f"{PROJECT_CANONICAL}/CodeSystem/patient-concern"
CONCERN_LEVEL = f"{PROJECT_CANONICAL}/CodeSystem/concern-level"
MARTHAS_RULE = f"{PROJECT_CANONICAL}/CodeSystem/marthas-rule"
CONCERN_PROFILE = f"{PROJECT_CANONICAL}/StructureDefinition/patient-concern"
ESCALATION_PROFILE = f"{PROJECT_CANONICAL}/StructureDefinition/escalation-task"
# The synthetic hospital: wards (Location ids, names) and prescribing organisations.
HOSPITAL_WARDS: tuple[tuple[str, str], ...] = (
    ("synth-ward-amu", "Acute Medical Unit"),
    ("synth-ward-10", "Ward 10 (Respiratory)"),
    ("synth-ward-12", "Ward 12 (Care of older people)"),
    ("synth-ward-21", "Ward 21 (General surgery)"),
)
PRESCRIBER_ORGANISATIONS: tuple[tuple[str, str], ...] = (
    ("synth-org-riverside", "Riverside Medical Practice"),
    ("synth-org-parkview", "Parkview Surgery"),
    ("synth-org-northgate", "Northgate Health Centre"),
    ("synth-org-neurology", "City Hospital Neurology"),
    ("synth-org-mental-health", "Community Mental Health Team"),
)
_INPATIENT_RATE = 0.12  # share of adults in hospital on the day
_INPATIENT_MIN_AGE = 18  # adult wards only
# The snapshot time of the synthetic population: 09:00 UTC on ``as_of`` (a morning board round).
SNAPSHOT_TIME = time(9, 0)
# ACVPU answers (clinical.md section 1.3 [S2][S13]).
_ACVPU = {
    "alert": ("248234008", "Mentally alert"),
    "new-confusion": ("130987000", "Acute confusion"),
    "voice": ("300202002", "Responds to voice"),
}
# FHIR R4 TaskStatus values a Martha's Rule call can be in; the first three are still open.
_TASK_STATUSES = ("requested", "accepted", "in-progress", "completed")


def snapshot_time(as_of: date) -> datetime:
    """The moment the synthetic population describes: 09:00 UTC on ``as_of``."""
    return datetime.combine(as_of, SNAPSHOT_TIME, tzinfo=UTC)


def _add_hospital(population: Sequence[SyntheticPatient], seed: int, as_of: date) -> None:
    """Add the hospital's data, drawing from its own stream so nothing else changes."""
    rng = random.Random(f"{seed}-hospital")
    now = snapshot_time(as_of)
    beds = dict.fromkeys((ward for ward, _ in HOSPITAL_WARDS), 0)
    if population:
        population[0].resources.extend(_hospital_directory())
    for person in population:
        subject = {"reference": f"Patient/{person.patient_id}"}
        for resource in person.resources:
            if resource["resourceType"] == "MedicationRequest" and resource["id"].endswith(
                "-valproate"
            ):
                org_id, name = rng.choice(PRESCRIBER_ORGANISATIONS)
                resource["requester"] = {"reference": f"Organization/{org_id}", "display": name}
        if person.age < _INPATIENT_MIN_AGE or rng.random() >= _INPATIENT_RATE:
            continue
        ward_id, ward_name = rng.choice(HOSPITAL_WARDS)
        beds[ward_id] += 1
        stay = _Stay(person.patient_id, subject, ward_id, ward_name, f"Bed {beds[ward_id]}", now)
        person.resources.extend(stay.build(rng))
        person.stay = stay.truth


def _hospital_directory() -> list[dict[str, Any]]:
    wards = [
        {
            "resourceType": "Location",
            "id": ward_id,
            "status": "active",
            "name": name,
            "mode": "instance",
            "physicalType": {
                "coding": [{"system": LOCATION_PHYSICAL_TYPE, "code": "wa", "display": "Ward"}]
            },
        }
        for ward_id, name in HOSPITAL_WARDS
    ]
    organisations = [
        {"resourceType": "Organization", "id": org_id, "active": True, "name": name}
        for org_id, name in PRESCRIBER_ORGANISATIONS
    ]
    return wards + organisations


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class _Stay:
    """One current inpatient stay and everything recorded during it."""

    pid: str
    subject: dict[str, str]
    ward_id: str
    ward_name: str
    bed: str
    now: datetime
    truth: dict[str, Any] = field(default_factory=dict)

    @property
    def encounter_ref(self) -> dict[str, str]:
        return {"reference": f"Encounter/{self.pid}-stay"}

    def build(self, rng: random.Random) -> list[dict[str, Any]]:
        days = rng.choices(
            [rng.randint(0, 6), rng.randint(7, 20), rng.randint(21, 70)], [55, 30, 15]
        )[0]
        admitted_day = self.now.date() - timedelta(days=days)
        admitted = datetime.combine(
            admitted_day, time(rng.randint(0, 8), 15 * rng.randint(0, 3)), tzinfo=UTC
        )
        edd: date | None = None
        edd_on = "none"
        if rng.random() < 0.55:
            edd = self.now.date() + timedelta(days=rng.randint(-4, 12))
            edd_on = rng.choice(["encounter", "plan"])
        out = [self._encounter(admitted, edd if edd_on == "encounter" else None)]
        plan_shared = rng.random() < 0.6
        has_plan = edd_on == "plan" or rng.random() < 0.25
        if has_plan:
            out.append(
                self._discharge_plan(admitted, edd if edd_on == "plan" else None, plan_shared)
            )
        else:
            plan_shared = False
        goals = rng.random() < 0.4
        if goals:
            out.append(self._what_matters(rng))
        vitals, vitals_kind, unwell = self._vitals(rng)
        out.extend(vitals)
        concern, level, escalation = self._concern(rng, unwell)
        out.extend(concern)
        said = next(
            (r["effectiveDateTime"] for r in concern if r["resourceType"] == "Observation"), None
        )
        self.truth = {
            "encounter": f"{self.pid}-stay",
            "ward": self.ward_id,
            "bed": self.bed,
            "admitted": _utc(admitted),
            "days": days,
            "expected_discharge": edd.isoformat() if edd else None,
            "discharge_plan": edd_on == "plan" or any(r["resourceType"] == "CarePlan" for r in out),
            "plan_shared": plan_shared,
            "goals": goals,
            "vitals": vitals_kind,
            "concern": level,
            "concern_at": said,
            "escalation": escalation,
        }
        return out

    def _encounter(self, admitted: datetime, edd: date | None) -> dict[str, Any]:
        encounter: dict[str, Any] = {
            "resourceType": "Encounter",
            "id": f"{self.pid}-stay",
            "status": "in-progress",
            "class": {"system": ACT_CODE, "code": "IMP", "display": "inpatient encounter"},
            "subject": self.subject,
            "period": {"start": _utc(admitted)},
            "location": [
                {
                    "location": {
                        "reference": f"Location/{self.ward_id}",
                        "display": self.ward_name,
                    },
                    "status": "active",
                    "physicalType": {"coding": [{"system": LOCATION_PHYSICAL_TYPE, "code": "wa"}]},
                },
                {
                    "location": {"display": self.bed},
                    "status": "active",
                    "physicalType": {"coding": [{"system": LOCATION_PHYSICAL_TYPE, "code": "bd"}]},
                },
            ],
        }
        if edd is not None:
            encounter["extension"] = [{"url": PLANNED_END_DATE_URL, "valueDate": edd.isoformat()}]
        return encounter

    def _discharge_plan(self, admitted: datetime, edd: date | None, shared: bool) -> dict[str, Any]:
        period = {"start": admitted.date().isoformat()}
        if edd is not None:
            period["end"] = edd.isoformat()
        plan: dict[str, Any] = {
            "resourceType": "CarePlan",
            "id": f"{self.pid}-discharge",
            "status": "active",
            "intent": "plan",
            "category": [
                {
                    "coding": [
                        {
                            "system": CARE_PLAN_CATEGORY,
                            "code": "discharge-plan",
                            "display": "Discharge plan",
                        }
                    ]
                }
            ],
            "title": "Discharge plan",
            "subject": self.subject,
            "encounter": self.encounter_ref,
            "period": period,
        }
        if shared:
            plan["contributor"] = [self.subject]
        return plan

    def _what_matters(self, rng: random.Random) -> dict[str, Any]:
        wish = rng.choice(
            [
                "To be home for my grandson's birthday",
                "To walk to the shops again",
                "To get back to my allotment",
                "To sleep in my own bed",
            ]
        )
        return {
            "resourceType": "Goal",
            "id": f"{self.pid}-what-matters",
            "lifecycleStatus": "active",
            "category": [
                {
                    "coding": [
                        {
                            "system": WHAT_MATTERS,
                            "code": "what-matters-to-me",
                            "display": "What matters to me",
                        }
                    ]
                }
            ],
            "description": {"text": wish},
            "subject": self.subject,
            "expressedBy": self.subject,
        }

    def _vitals(self, rng: random.Random) -> tuple[list[dict[str, Any]], str, bool]:
        """A NEWS2 set: recent (most), stale (over 12 h), incomplete, or none at all."""
        kind = rng.choices(["recent", "stale", "incomplete", "none"], [80, 8, 8, 4])[0]
        health = rng.choices(["well", "unwell", "very-unwell"], [66, 24, 10])[0]
        values: dict[str, Any] = {
            "rr": rng.randint(12, 20),
            "spo2": rng.randint(96, 99),
            "oxygen": False,
            "sbp": rng.randint(112, 165),
            "pulse": rng.randint(55, 90),
            "acvpu": "alert",
            "temp": round(rng.uniform(36.2, 37.8), 1),
        }
        abnormal = {
            "rr": rng.randint(21, 28),
            "spo2": rng.randint(89, 95),
            "oxygen": True,
            "sbp": rng.randint(86, 108),
            "pulse": rng.randint(95, 135),
            "acvpu": rng.choice(["new-confusion", "voice"]),
            "temp": round(rng.uniform(38.1, 39.4), 1),
        }
        count = {"well": 0, "unwell": rng.randint(1, 2), "very-unwell": rng.randint(3, 4)}[health]
        for name in rng.sample(sorted(values), k=count):
            values[name] = abnormal[name]
        minutes = rng.randint(13 * 60, 20 * 60) if kind == "stale" else rng.randint(5, 11 * 60)
        if kind == "incomplete":
            del values[rng.choice(["temp", "acvpu", "sbp"])]
        if kind == "none":
            return [], kind, health != "well"
        taken = _utc(self.now - timedelta(minutes=minutes))
        return self._observations(values, taken), kind, health != "well"

    def _observations(self, values: dict[str, Any], taken: str) -> list[dict[str, Any]]:
        out = []
        vital = {"coding": [{"system": OBSERVATION_CATEGORY, "code": "vital-signs"}]}
        survey = {"coding": [{"system": OBSERVATION_CATEGORY, "code": "survey"}]}

        def observation(suffix: str, code: list[dict[str, str]], **rest: Any) -> dict[str, Any]:
            category = rest.pop("category", vital)
            return {
                "resourceType": "Observation",
                "id": f"{self.pid}-news2-{suffix}",
                "status": "final",
                "category": [category],
                "code": {"coding": code},
                "subject": self.subject,
                "encounter": self.encounter_ref,
                "effectiveDateTime": taken,
                **rest,
            }

        def quantity(value: float, unit: str, code: str) -> dict[str, Any]:
            return {"value": value, "unit": unit, "system": UCUM, "code": code}

        if "rr" in values:
            out.append(
                observation(
                    "rr",
                    [
                        {"system": SNOMED, "code": "86290005", "display": "Respiratory rate"},
                        {"system": LOINC, "code": "9279-1", "display": "Respiratory rate"},
                    ],
                    valueQuantity=quantity(values["rr"], "breaths/minute", "/min"),
                )
            )
        if "spo2" in values:
            out.append(
                observation(
                    "spo2",
                    [
                        {
                            "system": LOINC,
                            "code": "59408-5",
                            "display": "Oxygen saturation in Arterial blood by Pulse oximetry",
                        },
                        {
                            "system": LOINC,
                            "code": "2708-6",
                            "display": "Oxygen saturation in Arterial blood",
                        },
                    ],
                    valueQuantity=quantity(values["spo2"], "%", "%"),
                )
            )
        if "oxygen" in values:
            code, display = (
                ("371825009", "Patient on oxygen")
                if values["oxygen"]
                else ("722742002", "Breathing room air")
            )
            out.append(observation("o2", [{"system": SNOMED, "code": code, "display": display}]))
        if "sbp" in values:
            out.append(
                observation(
                    "bp",
                    [
                        {
                            "system": LOINC,
                            "code": "85354-9",
                            "display": "Blood pressure panel with all children optional",
                        }
                    ],
                    component=[
                        {
                            "code": {
                                "coding": [
                                    {
                                        "system": LOINC,
                                        "code": "8480-6",
                                        "display": "Systolic blood pressure",
                                    }
                                ]
                            },
                            "valueQuantity": quantity(values["sbp"], "mmHg", "mm[Hg]"),
                        }
                    ],
                )
            )
        if "pulse" in values:
            out.append(
                observation(
                    "pulse",
                    [{"system": LOINC, "code": "8867-4", "display": "Heart rate"}],
                    valueQuantity=quantity(values["pulse"], "beats/minute", "/min"),
                )
            )
        if "acvpu" in values:
            answer, display = _ACVPU[values["acvpu"]]
            out.append(
                observation(
                    "acvpu",
                    [
                        {
                            "system": SNOMED,
                            "code": "1104441000000107",
                            "display": "ACVPU (Alert Confusion Voice Pain Unresponsive) scale score",
                        }
                    ],
                    category=survey,
                    valueCodeableConcept={
                        "coding": [{"system": SNOMED, "code": answer, "display": display}]
                    },
                )
            )
        if "temp" in values:
            out.append(
                observation(
                    "temp",
                    [{"system": LOINC, "code": "8310-5", "display": "Body temperature"}],
                    valueQuantity=quantity(values["temp"], "Cel", "Cel"),
                )
            )
        return out

    def _concern(
        self, rng: random.Random, unwell: bool
    ) -> tuple[list[dict[str, Any]], str | None, str | None]:
        """Most days nobody is asked on the record; some answers are worried or worse."""
        if rng.random() >= (0.5 if unwell else 0.25):
            return [], None, None
        level = rng.choices(["better", "same", "worse", "worried"], [25, 30, 20, 25])[0]
        hours = rng.uniform(0.5, 23.5) if rng.random() < 0.8 else rng.uniform(26, 60)
        said = self.now - timedelta(minutes=round(hours * 60))
        by_family = rng.random() < 0.6
        out: list[dict[str, Any]] = []
        if by_family:
            person = {
                "resourceType": "RelatedPerson",
                "id": f"{self.pid}-family",
                "patient": self.subject,
                "relationship": [
                    {
                        "coding": [
                            {"system": V3_ROLE_CODE, "code": "FAMMEMB", "display": "family member"}
                        ]
                    }
                ],
            }
            out.append(person)
            performer = {"reference": f"RelatedPerson/{self.pid}-family", "display": "Family"}
            who = "family-concern"
        else:
            performer = self.subject | {"display": "The patient"}
            who = "patient-concern"
        displays = {
            "better": "Better",
            "same": "About the same",
            "worse": "Worse",
            "worried": "Worried",
        }
        concern_id = f"{self.pid}-concern"
        out.append(
            {
                "resourceType": "Observation",
                "id": concern_id,
                "meta": {"profile": [CONCERN_PROFILE]},
                "status": "final",
                "category": [{"coding": [{"system": OBSERVATION_CATEGORY, "code": "survey"}]}],
                "code": {
                    "coding": [
                        {"system": CONCERN_SYSTEM, "code": "concern-observation"},
                        {"system": CONCERN_SYSTEM, "code": who},
                    ]
                },
                "subject": self.subject,
                "encounter": self.encounter_ref,
                "effectiveDateTime": _utc(said),
                "performer": [performer],
                "valueCodeableConcept": {
                    "coding": [{"system": CONCERN_LEVEL, "code": level, "display": displays[level]}]
                },
            }
        )
        status: str | None = None
        if level in {"worse", "worried"} and rng.random() < 0.7:
            status = rng.choices(_TASK_STATUSES, [40, 25, 20, 15])[0]
            out.append(
                {
                    "resourceType": "Task",
                    "id": f"{self.pid}-escalation",
                    "meta": {"profile": [ESCALATION_PROFILE]},
                    "status": status,
                    "intent": "order",
                    "priority": "stat" if unwell else "urgent",
                    "code": {
                        "coding": [
                            {
                                "system": MARTHAS_RULE,
                                "code": "marthas-rule-call",
                                "display": "Martha's Rule call for rapid review",
                            }
                        ]
                    },
                    "for": self.subject,
                    "encounter": self.encounter_ref,
                    "authoredOn": _utc(min(said + timedelta(minutes=10), self.now)),
                    "requester": performer,
                    "owner": {
                        "reference": "CareTeam/critical-care-outreach",
                        "display": "Critical care outreach team",
                    },
                    "reasonReference": {"reference": f"Observation/{concern_id}"},
                }
            )
        return out, level, status


# -- writing --------------------------------------------------------------------------------------


def _all_resources(population: Sequence[SyntheticPatient]) -> Iterator[dict[str, Any]]:
    for person in population:
        yield from person.resources


def write_ndjson(population: Sequence[SyntheticPatient], directory: Path) -> list[Path]:
    """Bulk Data layout: one ``<Type>.ndjson`` per resource type."""
    directory.mkdir(parents=True, exist_ok=True)
    by_type: dict[str, list[str]] = {}
    for resource in _all_resources(population):
        by_type.setdefault(resource["resourceType"], []).append(
            json.dumps(resource, separators=(",", ":"), sort_keys=True)
        )
    paths = []
    for kind in sorted(by_type):
        path = directory / f"{kind}.ndjson"
        path.write_text("\n".join(by_type[kind]) + "\n", encoding="utf-8")
        paths.append(path)
    return paths


def write_bundles(
    population: Sequence[SyntheticPatient], directory: Path, *, patients_per_bundle: int = 100
) -> list[Path]:
    """Transaction Bundles of PUTs (idempotent: loading twice gives the same server state)."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for number, start in enumerate(range(0, len(population), patients_per_bundle), start=1):
        chunk = population[start : start + patients_per_bundle]
        bundle = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {
                    "fullUrl": f"{r['resourceType']}/{r['id']}",
                    "resource": r,
                    "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"},
                }
                for r in _all_resources(chunk)
            ],
        }
        path = directory / f"synth-bundle-{number:05d}.json"
        path.write_text(json.dumps(bundle, sort_keys=True) + "\n", encoding="utf-8")
        paths.append(path)
    return paths


def write_ground_truth(
    population: Sequence[SyntheticPatient], directory: Path, *, seed: int, as_of: date
) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "ground-truth.json"
    truth = {
        "seed": seed,
        "as_of": as_of.isoformat(),
        "patients": [person.truth() for person in population],
    }
    path.write_text(json.dumps(truth, indent=1) + "\n", encoding="utf-8")
    return path
