"""FHIR vital-sign Observations -> NEWS2 inputs, and a NEWS2 result -> FHIR (pure).

The NEWS2 engine (``rules/news2.py``) scores parsed readings. This module finds
those readings in a ``PatientRecord``: the latest *valid* reading of each
parameter, the documented SpO2 Scale 2 target, the patient's age and a current
pregnancy. It also writes the result back as FHIR: the NEWS2 score Observation
(profile ``news2-score``) and, when no score can be given, an OperationOutcome.
No I/O and no clock: time is ``record.now``, zone ``record.zone``.

Codes come from ``terminology/`` (ValueSets ``vital-*``, ``acvpu``,
``acvpu-observation``, ``inspired-oxygen``, ``news2-total-score``,
``news2-subscores``, ``pregnancy-current``). Where a value must be told apart
*within* a set (which ACVPU answer, air or oxygen, flow or FiO2) the single
concept is named below with its source; each is checked against its set.

Sources (tags of ``shared/reference/clinical.md`` §1):
- [S1][S3][S6] UK Core NEWS2 codes, the EarlyWarningTotalScore shape and example bundle.
- [S2][S13] UK Core ACVPU values; [S4] UK Core InspiredOxygen (air / on oxygen).
- [S7][S9] RCP NEWS2 Chart 1 and observation chart: Scale 2 only for a *prescribed*
  88-92% target "under the direction of a qualified clinician"; "if in doubt use Scale 1".
- [S10][S14] FHIR R4 vital-signs profiles: UCUM units ``/min``, ``%``, ``Cel``,
  ``mm[Hg]``; inhaled oxygen flow ``L/min`` and concentration ``%``.

Decisions that are ours (docs/news2.md "FHIR mapping"): which Observation
statuses count, that a wrong or non-UCUM unit makes a reading invalid (never
converted by guess; ``[degF]`` is converted because it is exact UCUM), that an
undated or date-only reading is not used, that equal-time readings resolve to
the more abnormal one, and how the Scale 2 target is recorded (a Goal).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from fhir_safety.config import News2Settings
from fhir_safety.domain import PROJECT_CANONICAL
from fhir_safety.fhir.resources import (
    CodeableConcept,
    Condition,
    Goal,
    Observation,
    Patient,
    Quantity,
    Reference,
)
from fhir_safety.record import PatientRecord
from fhir_safety.rules import news2
from fhir_safety.rules.common import local_date, parse_when
from fhir_safety.rules.news2 import (
    FUTURE_TOLERANCE,
    Band,
    Consciousness,
    News2Result,
    Number,
    Parameter,
    Reading,
    SpO2Scale,
    VitalSigns,
)
from fhir_safety.terminology import LOINC, SNOMED, Terminology

__all__ = [
    "NEWS2_SCORE_PROFILE",
    "UCUM",
    "News2Assessment",
    "News2Inputs",
    "NotUsed",
    "Scale2Decision",
    "age_in_years",
    "assess_record",
    "band_text",
    "current_pregnancy",
    "format_value",
    "missing_reason",
    "news2_inputs",
    "news2_observation",
    "no_score_outcome",
    "parameter_label",
    "read_vitals",
    "reading_of",
    "scale2_decision",
    "when",
]

UCUM = "http://unitsofmeasure.org"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
NEWS2_SCORE_PROFILE = f"{PROJECT_CANONICAL}/StructureDefinition/news2-score"

# FHIR R4 ObservationStatus: these carry a result. registered (no result yet), cancelled,
# entered-in-error and unknown do not, and are ignored.
USABLE_STATUSES = frozenset({"final", "amended", "corrected", "preliminary"})

# ValueSet ids (terminology/).
VS_RESPIRATORY_RATE = "vital-respiratory-rate"
VS_OXYGEN_SATURATION = "vital-oxygen-saturation"
VS_SYSTOLIC = "vital-systolic-bp"
VS_BP_PANEL = "vital-blood-pressure-panel"
VS_HEART_RATE = "vital-heart-rate"
VS_TEMPERATURE = "vital-body-temperature"
VS_INHALED_OXYGEN = "vital-inhaled-oxygen"
VS_INSPIRED_OXYGEN = "inspired-oxygen"
VS_ACVPU_OBSERVATION = "acvpu-observation"
VS_ACVPU = "acvpu"
VS_TOTAL = "news2-total-score"
VS_SUBSCORES = "news2-subscores"
VS_PREGNANCY = "pregnancy-current"

# Single concepts told apart within their sets.
# UK Core InspiredOxygen [S4]: the Observation.code says air or oxygen (value: flow, optional).
BREATHING_AIR = (SNOMED, "722742002")  # Breathing room air [S4][S12]
ON_OXYGEN = (SNOMED, "371825009")  # Patient on oxygen [S4]
# FHIR R4 pulse-oximetry components / LOINC [S14]: flow (L/min) and concentration (%).
INHALED_O2_FLOW = (LOINC, "3151-8")
INHALED_O2_CONCENTRATION = (LOINC, "3150-0")
# Room air is 21% oxygen: an inspired concentration above that is supplemental oxygen.
ROOM_AIR_FIO2_PERCENT = Decimal(21)
# UK Core ACVPU answers [S2][S13]; 130987000 "Acute confusion" is the C of ACVPU (new confusion).
ACVPU_LEVELS: Mapping[str, Consciousness] = {
    "248234008": Consciousness.ALERT,
    "130987000": Consciousness.NEW_CONFUSION,
    "300202002": Consciousness.VOICE,
    "450847001": Consciousness.PAIN,
    "422768004": Consciousness.UNRESPONSIVE,
}
# NEWS2 total and parameter-score concepts [S1][S3]; each is checked against its ValueSet.
TOTAL_SCORE_CODE = "1104051000000101"
SUBSCORE_CODES: Mapping[Parameter, str] = {
    Parameter.RESPIRATION_RATE: "1104301000000104",
    Parameter.AIR_OR_OXYGEN: "1104331000000105",
    Parameter.SYSTOLIC_BP: "1104341000000101",
    Parameter.PULSE: "1104351000000103",
    Parameter.CONSCIOUSNESS: "1104361000000100",
    Parameter.TEMPERATURE: "1104371000000107",
}
SPO2_SUBSCORE_CODES: Mapping[SpO2Scale, str] = {
    SpO2Scale.SCALE_1: "1104311000000102",
    SpO2Scale.SCALE_2: "1104321000000108",
}

# The documented Scale 2 target: RCP Chart 1 / observation chart, 88-92% [S7][S9].
SCALE_2_TARGET = (Decimal(88), Decimal(92))
# Goal.lifecycleStatus values that mean the target is in force (FHIR R4 GoalLifecycleStatus).
_GOAL_IN_FORCE = frozenset({"active", "accepted"})
# A Scale 2 decision is a clinician's [S9]: Goal.expressedBy must be one of these.
_CLINICIAN_TYPES = ("Practitioner", "PractitionerRole")

# FHIR R4 condition-clinical / condition-ver-status.
_CLINICAL_STATUS = "http://terminology.hl7.org/CodeSystem/condition-clinical"
_CURRENT_CLINICAL = frozenset({"active", "recurrence", "relapse"})
_NOT_TRUE = frozenset({"refuted", "entered-in-error"})

# UCUM units [S10]. Annotations in braces carry no meaning in UCUM, so {breaths}/min is /min.
_PER_MINUTE = re.compile(r"(1|\{[^{}]*\})?/min")
_UNITS: Mapping[Parameter, tuple[str, Callable[[str], bool]]] = {
    Parameter.RESPIRATION_RATE: ("/min", lambda c: _PER_MINUTE.fullmatch(c) is not None),
    Parameter.PULSE: ("/min", lambda c: _PER_MINUTE.fullmatch(c) is not None),
    Parameter.SPO2: ("%", lambda c: c == "%"),
    Parameter.SYSTOLIC_BP: ("mm[Hg]", lambda c: c == "mm[Hg]"),
    Parameter.TEMPERATURE: ("Cel", lambda c: c in {"Cel", "[degF]"}),
}
_FLOW_UNITS = frozenset({"L/min", "l/min"})  # UCUM: L and l are both the litre


@dataclass(frozen=True, slots=True)
class NotUsed:
    """A reading that was found but not used, and why (shown on the card)."""

    parameter: Parameter
    source: str
    taken_at: datetime | None
    reason: str


@dataclass(frozen=True, slots=True)
class Scale2Decision:
    """Whether a clinician documented an 88-92% target, and the card's note about it."""

    documented: bool
    source: str | None = None  # "Goal/123"
    note: str | None = None


@dataclass(frozen=True, slots=True)
class News2Inputs:
    """Everything the engine needs, as read from the record, and what was left out."""

    vitals: VitalSigns
    not_used: tuple[NotUsed, ...]
    scale2: Scale2Decision
    age_years: int | None
    pregnant: bool
    pregnancy_source: str | None
    notes: tuple[str, ...]  # caveats: data that could not be checked
    observations_unavailable: str | None = None


@dataclass(frozen=True, slots=True)
class News2Assessment:
    inputs: News2Inputs
    result: News2Result

    @property
    def urgent_or_worse(self) -> bool:
        """NEWS2 >= 5, complete or guaranteed by an incomplete set (Chart 4 urgent threshold)."""
        band = self.result.band or self.result.minimum_band
        return band is not None and band.rank >= Band.MEDIUM.rank


# --- Reading the record ------------------------------------------------------------------


def assess_record(
    record: PatientRecord, settings: News2Settings, terminology: Terminology
) -> News2Assessment:
    """NEWS2 for the record's patient as at ``record.now``."""
    inputs = news2_inputs(record, settings, terminology)
    result = news2.assess(
        inputs.vitals,
        now=record.now,
        max_age=timedelta(hours=settings.max_vitals_age_hours),
        scale2_target_documented=inputs.scale2.documented,
        age_years=inputs.age_years,
        pregnant=inputs.pregnant,
    )
    return News2Assessment(inputs, result)


def news2_inputs(
    record: PatientRecord, settings: News2Settings, terminology: Terminology
) -> News2Inputs:
    notes: list[str] = []
    patient_id = record.patient_id or None
    vitals, not_used = read_vitals(
        record.of_type(Observation),
        patient_id=patient_id,
        terminology=terminology,
        now=record.now,
        zone=record.zone,
    )
    if (why := record.why_unavailable("Goal")) is not None:
        scale2 = Scale2Decision(False, note=f"A Scale 2 target could not be checked ({why}).")
    else:
        scale2 = scale2_decision(
            record.of_type(Goal),
            patient_id=patient_id,
            terminology=terminology,
            now=record.now,
            zone=record.zone,
        )
    if (why := record.why_unavailable("Patient")) is not None:
        notes.append(f"Age could not be checked ({why}).")
    age = age_in_years(record.patient, record.now, record.zone)
    pregnancy_source: str | None = None
    if (why := record.why_unavailable("Condition")) is not None:
        notes.append(f"Pregnancy could not be checked ({why}); scored as not pregnant.")
    else:
        pregnancy_source, pregnancy_notes = current_pregnancy(
            record.of_type(Condition),
            patient_id=patient_id,
            terminology=terminology,
            now=record.now,
            zone=record.zone,
            lookback=timedelta(days=settings.pregnancy_lookback_days),
        )
        notes.extend(pregnancy_notes)
    return News2Inputs(
        vitals=vitals,
        not_used=not_used,
        scale2=scale2,
        age_years=age,
        pregnant=pregnancy_source is not None,
        pregnancy_source=pregnancy_source,
        notes=tuple(notes),
        observations_unavailable=record.why_unavailable("Observation"),
    )


@dataclass(frozen=True, slots=True)
class _Candidate:
    parameter: Parameter
    source: str
    taken_at: datetime | None
    value: Number | bool | Consciousness | None  # None when the reading is not usable
    problem: str | None = None


def read_vitals(
    observations: Iterable[Observation],
    *,
    patient_id: str | None,
    terminology: Terminology,
    now: datetime,
    zone: ZoneInfo,
) -> tuple[VitalSigns, tuple[NotUsed, ...]]:
    """The latest valid reading of each parameter, and the newer readings that were not used."""
    candidates: list[_Candidate] = []
    for observation in observations:
        if observation.status not in USABLE_STATUSES:
            continue
        if not _for_patient(observation.subject, patient_id):
            continue
        candidates.extend(_candidates(observation, terminology, zone, now))
    chosen: dict[Parameter, Reading[Any]] = {}
    not_used: list[NotUsed] = []
    for parameter in Parameter:
        mine = [c for c in candidates if c.parameter is parameter]
        reading = _latest_valid(mine)
        if reading is not None:
            chosen[parameter] = reading
        not_used.extend(_newer_problems(mine, reading))
    vitals = VitalSigns(
        respiration_rate=chosen.get(Parameter.RESPIRATION_RATE),
        spo2=chosen.get(Parameter.SPO2),
        on_oxygen=chosen.get(Parameter.AIR_OR_OXYGEN),
        systolic_bp=chosen.get(Parameter.SYSTOLIC_BP),
        pulse=chosen.get(Parameter.PULSE),
        consciousness=chosen.get(Parameter.CONSCIOUSNESS),
        temperature=chosen.get(Parameter.TEMPERATURE),
    )
    return vitals, tuple(not_used)


def _for_patient(subject: Reference | None, patient_id: str | None) -> bool:
    # Data gathered for one patient may omit subject; one naming someone else is never used.
    if subject is None or patient_id is None or subject.reference is None:
        return True
    return subject.target_id("Patient") == patient_id


def _candidates(
    observation: Observation, terminology: Terminology, zone: ZoneInfo, now: datetime
) -> list[_Candidate]:
    source = f"Observation/{observation.id}" if observation.id else "Observation (no id)"
    taken_at, time_problem = _taken_at(observation, zone, now)

    def candidate(parameter: Parameter, value: Any, problem: str | None) -> _Candidate:
        problem = time_problem or problem
        return _Candidate(parameter, source, taken_at, None if problem else value, problem)

    found: list[_Candidate] = []
    code = observation.code
    quantity_parameters = (
        (VS_RESPIRATORY_RATE, Parameter.RESPIRATION_RATE),
        (VS_OXYGEN_SATURATION, Parameter.SPO2),
        (VS_SYSTOLIC, Parameter.SYSTOLIC_BP),
        (VS_HEART_RATE, Parameter.PULSE),
        (VS_TEMPERATURE, Parameter.TEMPERATURE),
    )
    for value_set, parameter in quantity_parameters:
        if terminology.match(value_set, code):
            found.append(candidate(parameter, *_measurement(parameter, observation.value_quantity)))
    if terminology.match(VS_BP_PANEL, code):
        systolic = [c for c in observation.component if terminology.match(VS_SYSTOLIC, c.code)]
        if systolic:
            value, problem = _measurement(Parameter.SYSTOLIC_BP, systolic[0].value_quantity)
        else:
            value, problem = None, "blood pressure without a systolic component"
        found.append(candidate(Parameter.SYSTOLIC_BP, value, problem))
    if terminology.match(VS_ACVPU_OBSERVATION, code):
        found.append(candidate(Parameter.CONSCIOUSNESS, *_acvpu(observation, terminology)))
    oxygen = _air_or_oxygen(observation, terminology)
    if oxygen is not None:
        found.append(candidate(Parameter.AIR_OR_OXYGEN, *oxygen))
    return found


def _taken_at(
    observation: Observation, zone: ZoneInfo, now: datetime
) -> tuple[datetime | None, str | None]:
    period = observation.effective_period
    raw = (
        observation.effective_date_time
        or observation.effective_instant
        or (period.end or period.start if period else None)
    )
    if raw is None:
        return None, "no time recorded (effective[x] missing)"
    if "T" not in raw:
        return None, f"dated {raw} without a time of day"
    taken_at = parse_when(raw, zone)
    if taken_at is not None and taken_at - now > FUTURE_TOLERANCE:
        return taken_at, "dated in the future"
    return taken_at, None


def _measurement(
    parameter: Parameter, quantity: Quantity | None
) -> tuple[Number | None, str | None]:
    """A number in the chart's unit, or why there is none."""
    if quantity is None or quantity.value is None:
        return None, "no value"
    expected, accepts = _UNITS[parameter]
    unit = quantity.code or quantity.unit
    if quantity.system != UCUM or quantity.code is None or not accepts(quantity.code):
        where = "" if quantity.system == UCUM else " (not a UCUM code)"
        return None, f"unit {unit!r}{where} is not {expected}"
    value: Decimal = quantity.value
    if quantity.code == "[degF]":
        value = (value - 32) * 5 / 9  # exact UCUM conversion, kept as a Decimal
    if not _plausible(parameter, value):
        return None, f"{_format_number(value)} {expected} cannot be a measurement"
    return value, None


def _plausible(parameter: Parameter, value: Decimal) -> bool:
    # The engine's own range guards decide, so both layers agree on "impossible".
    scorers: Mapping[Parameter, Callable[[Decimal], int]] = {
        Parameter.RESPIRATION_RATE: news2.score_respiration_rate,
        Parameter.SPO2: lambda v: news2.score_spo2(v, SpO2Scale.SCALE_1, on_oxygen=False),
        Parameter.SYSTOLIC_BP: news2.score_systolic_bp,
        Parameter.PULSE: news2.score_pulse,
        Parameter.TEMPERATURE: news2.score_temperature,
    }
    try:
        scorers[parameter](value)
    except ValueError:
        return False
    return True


def _acvpu(
    observation: Observation, terminology: Terminology
) -> tuple[Consciousness | None, str | None]:
    answer = observation.value_codeable_concept
    match = terminology.match(VS_ACVPU, answer)
    if match is None or match.code is None:
        shown = _concept_text(answer) if answer else "no value"
        return None, f"answer {shown!r} is not an ACVPU level"
    level = ACVPU_LEVELS.get(match.code)
    if level is None:
        return None, f"ACVPU code {match.code} has no NEWS2 level"
    return level, None


def _air_or_oxygen(
    observation: Observation, terminology: Terminology
) -> tuple[bool | None, str | None] | None:
    """(on oxygen?, problem) when this Observation says air or oxygen; None when it does not."""
    coded = terminology.match(VS_INSPIRED_OXYGEN, observation.code)
    if coded is None:
        coded = terminology.match(VS_INSPIRED_OXYGEN, observation.value_codeable_concept)
    if coded is not None:
        return (coded.system, coded.code) == ON_OXYGEN, None
    if terminology.match(VS_INHALED_OXYGEN, observation.code):
        return _inhaled_oxygen(observation.code, observation.value_quantity)
    for component in observation.component:
        if terminology.match(VS_INHALED_OXYGEN, component.code):
            return _inhaled_oxygen(component.code, component.value_quantity)
    return None


def _inhaled_oxygen(
    code: CodeableConcept, quantity: Quantity | None
) -> tuple[bool | None, str | None]:
    """Flow > 0 L/min or FiO2 > 21% is supplemental oxygen; 0 L/min or 21% is air."""
    codes = {(c.system, c.code) for c in code.coding}
    if quantity is None or quantity.value is None:
        return None, "no value"
    value = quantity.value
    if INHALED_O2_FLOW in codes:
        if quantity.system != UCUM or quantity.code not in _FLOW_UNITS:
            return None, f"unit {quantity.code or quantity.unit!r} is not L/min"
        if value < 0:
            return None, f"{_format_number(value)} L/min cannot be a measurement"
        return value > 0, None
    if quantity.system != UCUM or quantity.code != "%":
        return None, f"unit {quantity.code or quantity.unit!r} is not %"
    if not 0 <= value <= 100:
        return None, f"{_format_number(value)} % cannot be a measurement"
    return value > ROOM_AIR_FIO2_PERCENT, None


def _latest_valid(candidates: Sequence[_Candidate]) -> Reading[Any] | None:
    valid = [c for c in candidates if c.value is not None and c.taken_at is not None]
    if not valid:
        return None
    # Latest first; at the same time the more abnormal reading wins (never under-score), then
    # the source, so the choice does not depend on the order the server sent them in.
    best = max(valid, key=lambda c: (c.taken_at, _abnormality(c), c.source))
    assert best.taken_at is not None
    return Reading(value=best.value, taken_at=best.taken_at, source=best.source)


def _abnormality(candidate: _Candidate) -> int:
    value = candidate.value
    if isinstance(value, bool):
        return news2.score_air_or_oxygen(value)
    if isinstance(value, Consciousness):
        return news2.score_consciousness(value)
    if not isinstance(value, int | Decimal):
        return 0
    scorers: Mapping[Parameter, Callable[[Number], int]] = {
        Parameter.RESPIRATION_RATE: news2.score_respiration_rate,
        Parameter.SPO2: lambda v: news2.score_spo2(v, SpO2Scale.SCALE_1, on_oxygen=False),
        Parameter.SYSTOLIC_BP: news2.score_systolic_bp,
        Parameter.PULSE: news2.score_pulse,
        Parameter.TEMPERATURE: news2.score_temperature,
    }
    return scorers[candidate.parameter](value)


def _newer_problems(
    candidates: Sequence[_Candidate], reading: Reading[Any] | None
) -> list[NotUsed]:
    """Unusable readings worth telling the clinician about: those newer than the one used."""
    problems = []
    for c in candidates:
        if c.problem is None:
            continue
        if reading is not None and (c.taken_at is None or c.taken_at <= reading.taken_at):
            continue
        problems.append(NotUsed(c.parameter, c.source, c.taken_at, c.problem))
    return problems


# --- Scale 2, age and pregnancy ----------------------------------------------------------


def scale2_decision(
    goals: Iterable[Goal],
    *,
    patient_id: str | None,
    terminology: Terminology,
    now: datetime,
    zone: ZoneInfo,
) -> Scale2Decision:
    """Scale 2 only for an in-force Goal, set by a clinician, targeting SpO2 88-92% [S7][S9].

    How the target is recorded (our decision, docs/news2.md): a ``Goal`` with
    ``lifecycleStatus`` active or accepted, ``expressedBy`` a Practitioner or
    PractitionerRole, and a ``target`` whose ``measure`` is in ValueSet
    ``vital-oxygen-saturation`` and whose ``detailRange`` is 88 to 92 ``%`` (UCUM).
    A target found but not usable is reported, and Scale 1 is used ("if in doubt use
    Scale 1" [S9]).
    """
    rejected: list[str] = []
    for goal in sorted(goals, key=lambda g: g.id or ""):
        if not _for_patient(goal.subject, patient_id) or not _targets_scale_2(goal, terminology):
            continue
        source = f"Goal/{goal.id}" if goal.id else "a Goal"
        problem = _goal_problem(goal, now, zone)
        if problem is None:
            note = f"SpO2 scored on Scale 2: target 88-92% documented in {source}."
            return Scale2Decision(True, source, note)
        rejected.append(f"{source} ({problem})")
    if rejected:
        return Scale2Decision(
            False,
            note=(
                f"An 88-92% SpO2 target was found but not used: {'; '.join(rejected)}. "
                "Scale 1 used: Scale 2 needs a target documented by a clinician (RCP)."
            ),
        )
    return Scale2Decision(False)


def _targets_scale_2(goal: Goal, terminology: Terminology) -> bool:
    low, high = SCALE_2_TARGET
    for target in goal.target:
        measured = terminology.match(VS_OXYGEN_SATURATION, target.measure)
        bounds = target.detail_range
        if measured is None or bounds is None or bounds.low is None or bounds.high is None:
            continue
        if all(
            q.value is not None and q.system == UCUM and q.code == "%"
            for q in (bounds.low, bounds.high)
        ) and (bounds.low.value, bounds.high.value) == (low, high):
            return True
    return False


def _goal_problem(goal: Goal, now: datetime, zone: ZoneInfo) -> str | None:
    if goal.lifecycle_status not in _GOAL_IN_FORCE:
        return f"status {goal.lifecycle_status}"
    expressed_by = goal.expressed_by
    if expressed_by is None or not any(
        expressed_by.target_id(kind) is not None for kind in _CLINICIAN_TYPES
    ):
        return "not attributed to a clinician (Goal.expressedBy)"
    start = parse_when(goal.start_date, zone)
    if start is not None and local_date(start, zone) > local_date(now, zone):
        return f"starts {goal.start_date}"
    return None


def age_in_years(patient: Patient | None, now: datetime, zone: ZoneInfo) -> int | None:
    """Completed years on the trust's calendar; a partial birth date counts from its start."""
    if patient is None or not patient.birth_date:
        return None
    born = parse_when(patient.birth_date, zone)
    if born is None:
        return None
    birthday, today = local_date(born, zone), local_date(now, zone)
    years = today.year - birthday.year - ((today.month, today.day) < (birthday.month, birthday.day))
    return max(years, 0)


def current_pregnancy(
    conditions: Iterable[Condition],
    *,
    patient_id: str | None,
    terminology: Terminology,
    now: datetime,
    zone: ZoneInfo,
    lookback: timedelta,
) -> tuple[str | None, tuple[str, ...]]:
    """The Condition showing a current pregnancy (or None), and notes on ones set aside."""
    notes: list[str] = []
    for condition in sorted(conditions, key=lambda c: c.id or ""):
        if not _for_patient(condition.subject, patient_id):
            continue
        if terminology.match(VS_PREGNANCY, condition.code) is None:
            continue
        if not _condition_current(condition):
            continue
        source = f"Condition/{condition.id}" if condition.id else "a Condition"
        dated = parse_when(condition.onset_date_time or condition.recorded_date, zone)
        if dated is not None and now - dated > lookback:
            notes.append(
                f"{source} records a pregnancy on {local_date(dated, zone):%d %b %Y}, more than "
                f"{lookback.days // 7} weeks ago, and is still active: not treated as current; "
                "please update the record."
            )
            continue
        return source, tuple(notes)
    return None, tuple(notes)


def _condition_current(condition: Condition) -> bool:
    if condition.abatement_date_time:
        return False
    verification = condition.verification_status
    if verification is not None and any(c.code in _NOT_TRUE for c in verification.coding):
        return False
    clinical = condition.clinical_status
    if clinical is None or not clinical.coding:
        return True  # a pregnancy finding without a status is taken as current
    return any(
        c.code in _CURRENT_CLINICAL for c in clinical.coding if c.system in {_CLINICAL_STATUS, None}
    )


# --- Writing FHIR --------------------------------------------------------------------------


_PARAMETER_LABELS: Mapping[Parameter, str] = {
    Parameter.RESPIRATION_RATE: "Respiration rate",
    Parameter.SPO2: "SpO2",
    Parameter.AIR_OR_OXYGEN: "Air or oxygen",
    Parameter.SYSTOLIC_BP: "Systolic BP",
    Parameter.PULSE: "Pulse",
    Parameter.CONSCIOUSNESS: "Consciousness (ACVPU)",
    Parameter.TEMPERATURE: "Temperature",
}
_BAND_TEXT: Mapping[Band, str] = {
    Band.LOW: "Low clinical risk",
    Band.LOW_MEDIUM: "Low-medium clinical risk: a score of 3 in a single parameter",
    Band.MEDIUM: "Medium clinical risk: urgent response threshold",
    Band.HIGH: "High clinical risk: emergency response threshold",
}


def parameter_label(parameter: Parameter) -> str:
    return _PARAMETER_LABELS[parameter]


def band_text(band: Band) -> str:
    return _BAND_TEXT[band]


def news2_observation(
    assessment: News2Assessment,
    *,
    patient_id: str,
    now: datetime,
    terminology: Terminology,
    encounter_id: str | None = None,
) -> dict[str, Any] | None:
    """The score as a ``news2-score`` Observation; None unless the set was scored."""
    result = assessment.result
    if result.status != "scored" or result.total is None or result.band is None:
        return None
    taken = [r.taken_at for r in _readings(assessment.inputs.vitals)]
    observation: dict[str, Any] = {
        "resourceType": "Observation",
        "meta": {"profile": [NEWS2_SCORE_PROFILE]},
        "status": "final",
        "category": [
            {"coding": [{"system": OBSERVATION_CATEGORY, "code": "survey", "display": "Survey"}]}
        ],
        "code": {
            "coding": [_snomed(VS_TOTAL, TOTAL_SCORE_CODE, terminology)],
            "text": "NEWS2 total score",
        },
        "subject": {"reference": f"Patient/{patient_id}"},
    }
    if encounter_id:
        observation["encounter"] = {"reference": f"Encounter/{encounter_id}"}
    observation |= {
        "effectiveDateTime": max(taken).isoformat(),
        "issued": now.isoformat(),
        "valueQuantity": _score(result.total),
        "interpretation": [{"text": _BAND_TEXT[result.band]}],
    }
    notes = [f"SpO2 Scale {int(result.scale)}."]
    if assessment.inputs.scale2.note:
        notes.append(assessment.inputs.scale2.note)
    notes.extend(assessment.inputs.notes)
    if result.reason:
        notes.append(result.reason)
    observation["note"] = [{"text": " ".join(notes)}]
    if result.evidence:
        observation["derivedFrom"] = [{"reference": ref} for ref in result.evidence]
    observation["component"] = [
        {
            "code": {
                "coding": [_snomed(VS_SUBSCORES, _subscore_code(p, result.scale), terminology)]
            },
            "valueQuantity": _score(score),
        }
        for p in Parameter
        if (score := result.sub_scores.get(p)) is not None
    ]
    return observation


def _subscore_code(parameter: Parameter, scale: SpO2Scale) -> str:
    if parameter is Parameter.SPO2:
        return SPO2_SUBSCORE_CODES[scale]
    return SUBSCORE_CODES[parameter]


def _snomed(value_set: str, code: str, terminology: Terminology) -> dict[str, str]:
    if not terminology.contains(value_set, SNOMED, code):
        raise ValueError(f"SNOMED {code} is not in ValueSet {value_set}")  # a programming error
    return {"system": SNOMED, "code": code, "display": terminology.display(SNOMED, code) or code}


def _score(value: int) -> dict[str, Any]:
    # UK Core EarlyWarningTotalScore example: UCUM {ScoreOf} [S3][S6].
    return {"value": value, "unit": "score", "system": UCUM, "code": "{ScoreOf}"}


def _readings(vitals: VitalSigns) -> list[Reading[Any]]:
    readings: list[Reading[Any] | None] = [
        vitals.respiration_rate,
        vitals.spo2,
        vitals.on_oxygen,
        vitals.systolic_bp,
        vitals.pulse,
        vitals.consciousness,
        vitals.temperature,
    ]
    return [r for r in readings if r is not None]


def no_score_outcome(
    assessment: News2Assessment, *, max_age: timedelta, zone: ZoneInfo
) -> dict[str, Any]:
    """An OperationOutcome saying why no NEWS2 was given (incomplete or not applicable)."""
    result = assessment.result
    if result.status == "not-applicable":
        issues = [
            {
                "severity": "error",
                "code": "business-rule",
                "details": {"text": "NEWS2 not applicable"},
                "diagnostics": result.reason or "NEWS2 is not applicable to this patient.",
            }
        ]
        return {"resourceType": "OperationOutcome", "issue": issues}
    issues = [
        {
            "severity": "error",
            "code": "incomplete",
            "details": {"text": "NEWS2 not calculated: incomplete set"},
            "diagnostics": result.reason or "Incomplete set, NEWS2 not calculated.",
        }
    ]
    for parameter in result.missing:
        issues.append(
            {
                "severity": "error",
                "code": "incomplete",
                "details": {"text": parameter_label(parameter)},
                "diagnostics": f"{parameter_label(parameter)}: "
                + missing_reason(assessment, parameter, max_age=max_age, zone=zone),
            }
        )
    if result.minimum_band is not None and result.response is not None:
        issues.append(
            {
                "severity": "warning",
                "code": "informational",
                "details": {"text": f"At least {result.minimum_band} risk"},
                "diagnostics": (
                    f"The available parameters already score {result.partial_total}: at least "
                    f"{result.minimum_band} risk. {result.response.monitoring}. "
                    f"{result.response.action}"
                ),
            }
        )
    return {"resourceType": "OperationOutcome", "issue": issues}


def missing_reason(
    assessment: News2Assessment, parameter: Parameter, *, max_age: timedelta, zone: ZoneInfo
) -> str:
    """Why a parameter has no sub-score, in words for the card."""
    result, vitals = assessment.result, assessment.inputs.vitals
    reading = _reading_of(vitals, parameter)
    parts: list[str] = []
    problems = [n for n in assessment.inputs.not_used if n.parameter is parameter]
    if problems:
        latest = max(problems, key=lambda n: (n.taken_at is not None, n.taken_at or 0, n.source))
        parts.append(f"latest reading not used: {latest.reason} ({latest.source})")
    if parameter in result.stale and reading is not None:
        hours = int(max_age.total_seconds() // 3600)
        parts.append(f"last usable reading {when(reading.taken_at, zone)} is older than {hours} h")
    elif parameter is Parameter.SPO2 and reading is not None and parameter not in result.invalid:
        parts.append("SpO2 of 93% or more on Scale 2 cannot be scored without air or oxygen")
    if parts:
        return "; ".join(parts)
    return "no reading recorded"


def _reading_of(vitals: VitalSigns, parameter: Parameter) -> Reading[Any] | None:
    fields: Mapping[Parameter, Reading[Any] | None] = {
        Parameter.RESPIRATION_RATE: vitals.respiration_rate,
        Parameter.SPO2: vitals.spo2,
        Parameter.AIR_OR_OXYGEN: vitals.on_oxygen,
        Parameter.SYSTOLIC_BP: vitals.systolic_bp,
        Parameter.PULSE: vitals.pulse,
        Parameter.CONSCIOUSNESS: vitals.consciousness,
        Parameter.TEMPERATURE: vitals.temperature,
    }
    return fields[parameter]


def reading_of(vitals: VitalSigns, parameter: Parameter) -> Reading[Any] | None:
    return _reading_of(vitals, parameter)


def format_value(parameter: Parameter, value: object) -> str:
    """A reading as the chart writes it: "21 /min", "93 %", "oxygen", "alert"."""
    if parameter is Parameter.AIR_OR_OXYGEN:
        return "oxygen" if value else "air"
    if isinstance(value, Consciousness):
        return value.value.replace("-", " ")
    if not isinstance(value, int | Decimal):
        return str(value)
    if parameter is Parameter.TEMPERATURE and Decimal(value) == round(Decimal(value), 1):
        return f"{Decimal(value):.1f} °C"  # the chart writes temperature to one decimal place
    units = {
        Parameter.RESPIRATION_RATE: "/min",
        Parameter.SPO2: "%",
        Parameter.SYSTOLIC_BP: "mmHg",
        Parameter.PULSE: "/min",
        Parameter.TEMPERATURE: "°C",
    }
    return f"{_format_number(value)} {units[parameter]}"


def _format_number(value: Number) -> str:
    if isinstance(value, int) or not value.is_finite():
        return str(value)
    # Two places at most: a converted °F is exact but long.
    return format(round(value, 2).normalize(), "f")


def when(moment: datetime, zone: ZoneInfo) -> str:
    """A time as the ward reads it: "26 Nov 08:40" on the trust's clock."""
    return f"{moment.astimezone(zone):%d %b %H:%M}"


def _concept_text(concept: CodeableConcept) -> str:
    if concept.text:
        return concept.text
    for coding in concept.coding:
        if coding.display or coding.code:
            return coding.display or coding.code or ""
    return "uncoded"
