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

Codes: valproate products from the ``valproate-products`` ValueSet; SNOMED CT codes from
clinical.md (pregnancy 77386006, hysterectomy 236886002, menopause 289903006, LD register
416075005, ARAF 2078951000000106 [S23]); LOINC vital signs from clinical.md section 1.4.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Literal

from fhir_safety.domain import PROJECT_CANONICAL
from fhir_safety.rules.valproate import add_months
from fhir_safety.terminology import ATC, LOINC, SNOMED, Terminology

__all__ = [
    "SCENARIO_ACTIONS",
    "SyntheticPatient",
    "generate",
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

    @property
    def expected_action(self) -> str | None:
        return SCENARIO_ACTIONS[self.scenario]

    def truth(self) -> dict[str, Any]:
        return {
            "patient_id": self.patient_id,
            "gender": self.gender,
            "age": self.age,
            "scenario": self.scenario,
            "learning_disability": self.learning_disability,
            "expected_action": self.expected_action,
        }


def generate(
    *,
    patients: int,
    seed: int,
    terminology: Terminology,
    as_of: date = DEFAULT_AS_OF,
    valproate_rate: float = 0.2,
) -> list[SyntheticPatient]:
    """``patients`` synthetic patients; the same arguments always give the same output."""
    rng = random.Random(seed)
    products = _valproate_products(terminology)
    return [
        _patient(rng, seed, index, as_of, valproate_rate, products) for index in range(patients)
    ]


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
