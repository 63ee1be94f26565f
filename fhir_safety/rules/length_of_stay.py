"""Long-stay harm: stranded (7+ days) and super-stranded (21+ days) inpatients.

Pure: reads a ``PatientRecord`` and the clock passed in it; no I/O.

Sources (shared/reference/clinical.md §5):
- super-stranded = in hospital 21 days or more: NHS Improvement long-stay
  programme (HSJ, "three weeks or more") [S38]; harms of prolonged stay
  (deconditioning, falls, delirium, infection): NHS Improvement, *Guide to
  reducing long hospital stays*, June 2018, §1 [S39].
- stranded = 7 days or more: in common NHS use, primary source UNVERIFIED
  (clinical.md §5): the card says so.
- 12.3% mortality for unplanned adult admissions of 21+ days (Dr Foster) and the
  micromort comparisons are the seed programme's own figures; the 12.3% is
  UNVERIFIED (no primary source found) and the card says so. Micromort
  definition: one-in-a-million chance of death (Howard) [S41].
- Expected discharge date: R4 Encounter has none; the R5 cross-version extension
  ``Encounter.plannedEndDate`` [S42] (URL by analogy with plannedStartDate,
  UNVERIFIED) or a discharge CarePlan's ``period.end``.

Days are counted as calendar days on the trust's wall clock (admission day =
day 1, the NHS "length of stay in days" convention: discharge date minus
admission date), so a stay crosses a day boundary at local midnight, not UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from fhir_safety.config import LongStaySettings
from fhir_safety.domain import (
    PROJECT_CANONICAL,
    Action,
    CardLink,
    Finding,
    Severity,
    Suggestion,
    Topic,
)
from fhir_safety.fhir.resources import CarePlan, Encounter, Goal
from fhir_safety.record import PatientRecord
from fhir_safety.rules.common import could_not_check, local_date, parse_when
from fhir_safety.terminology import Terminology

__all__ = ["PLANNED_END_DATE_URL", "RULE_ID", "StayAssessment", "assess_stay", "evaluate"]

RULE_ID = "long-stay"
TOPIC = Topic("long-stay", "Long hospital stay")
SOURCE_LABEL = "NHS Improvement: Guide to reducing long hospital stays (2018)"
SOURCE_URL = (
    "https://vdocuments.site/guide-to-reducing-long-hospital-stays-"
    "unnecessarily-prolonged-stays-in-hospital.html"
)  # [S39]: the copy we could retrieve; NHS Improvement's own site is retired

# HL7 v3 ActCode inpatient encounter classes (R4 Encounter.class, v3-ActEncounterCode).
INPATIENT_CLASSES = frozenset({"IMP", "ACUTE", "NONAC"})
# R5 Encounter.plannedEndDate as an R4 cross-version extension [S42] (UNVERIFIED URL).
PLANNED_END_DATE_URL = (
    "http://hl7.org/fhir/5.0/StructureDefinition/extension-Encounter.plannedEndDate"
)
DISCHARGE_PLAN_VALUE_SET = "discharge-care-plan-category"
WHAT_MATTERS_SYSTEM = f"{PROJECT_CANONICAL}/CodeSystem/what-matters-to-me"
DISCHARGE_PLAN_SYSTEM = f"{PROJECT_CANONICAL}/CodeSystem/care-plan-category"
DISCHARGE_PLAN_PROFILE = f"{PROJECT_CANONICAL}/StructureDefinition/discharge-plan"

# Seed programme figures (see module docstring: the 12.3% is UNVERIFIED).
MORTALITY_21_DAYS_PERCENT = 12.3
MICROMORT_COMPARISONS = (
    ("travelling 230 miles by car", 1),
    ("a skydiving jump", 8),
    ("giving birth", 80),
    ("climbing Everest", 37_932),
)


@dataclass(frozen=True, slots=True)
class StayAssessment:
    """How long a stay has lasted and what discharge planning exists."""

    encounter_ref: str
    days: int  # completed calendar days since admission
    band: str  # "short" | "stranded" | "super-stranded"
    expected_discharge: date | None
    plan_ref: str | None
    plan_shared_with_patient: bool
    goals_recorded: bool

    @property
    def day_number(self) -> int:
        return self.days + 1


def evaluate(
    record: PatientRecord, settings: LongStaySettings, terminology: Terminology
) -> list[Finding]:
    findings: list[Finding] = []
    for encounter in _inpatient_stays(record):
        findings.extend(_evaluate_stay(record, encounter, settings, terminology))
    return findings


def _inpatient_stays(record: PatientRecord) -> list[Encounter]:
    """In-progress inpatient encounters; only the context encounter when one is given."""
    # At discharge the EHR may already have finished the encounter it names.
    statuses = (
        {"in-progress", "finished"} if record.hook == "encounter-discharge" else {"in-progress"}
    )
    stays = [
        e
        for e in record.of_type(Encounter)
        if e.status in statuses and e.class_ is not None and e.class_.code in INPATIENT_CLASSES
    ]
    if record.encounter_id is not None:
        stays = [e for e in stays if e.id == record.encounter_id]
    return stays


def _evaluate_stay(
    record: PatientRecord,
    encounter: Encounter,
    settings: LongStaySettings,
    terminology: Terminology,
) -> list[Finding]:
    start = parse_when(encounter.period.start if encounter.period else None, record.zone)
    encounter_ref = f"Encounter/{encounter.id}"
    if start is None or start > record.now:
        problem = "no admission date" if start is None else "an admission date in the future"
        return [
            could_not_check(
                rule_id=RULE_ID,
                check="length of stay",
                reason=f"{encounter_ref} has {problem}",
                source_label=SOURCE_LABEL,
                source_url=SOURCE_URL,
            )
        ]
    days = (local_date(record.now, record.zone) - local_date(start, record.zone)).days
    assessment = assess_stay(record, encounter, days, settings, terminology)
    if assessment.band == "short":
        return []
    return [_finding(record, assessment)]


def assess_stay(
    record: PatientRecord,
    encounter: Encounter,
    days: int,
    settings: LongStaySettings,
    terminology: Terminology,
) -> StayAssessment:
    if days >= settings.super_stranded_days:
        band = "super-stranded"
    elif days >= settings.stranded_days:
        band = "stranded"
    else:
        band = "short"
    plan = _discharge_plan(record, terminology)
    plan_end = parse_when(plan.period.end if plan and plan.period else None, record.zone)
    planned_end = _planned_end_date(record, encounter)
    expected = planned_end or (local_date(plan_end, record.zone) if plan_end else None)
    return StayAssessment(
        encounter_ref=f"Encounter/{encounter.id}",
        days=days,
        band=band,
        expected_discharge=expected,
        plan_ref=f"CarePlan/{plan.id}" if plan else None,
        plan_shared_with_patient=plan is not None and _includes_patient(plan, record.patient_id),
        goals_recorded=_what_matters_goals(record),
    )


def _planned_end_date(record: PatientRecord, encounter: Encounter) -> date | None:
    for extension in encounter.extension:
        if extension.url == PLANNED_END_DATE_URL:
            when = parse_when(extension.value_date_time or extension.value_date, record.zone)
            if when is not None:
                return local_date(when, record.zone)
    return None


def _discharge_plan(record: PatientRecord, terminology: Terminology) -> CarePlan | None:
    plans = [
        plan
        for plan in record.of_type(CarePlan)
        if plan.status in {"draft", "active", "on-hold"}
        and any(terminology.match(DISCHARGE_PLAN_VALUE_SET, c) for c in plan.category)
    ]
    # Prefer an active plan with an end date: that is the one the ward works to.
    plans.sort(key=lambda p: (p.status != "active", p.period is None or p.period.end is None))
    return plans[0] if plans else None


def _includes_patient(plan: CarePlan, patient_id: str) -> bool:
    return any(ref.target_id("Patient") == patient_id for ref in plan.contributor)


def _what_matters_goals(record: PatientRecord) -> bool:
    """An active goal in the patient's own words: "what matters to me" (source UNVERIFIED)."""
    for goal in record.of_type(Goal):
        if goal.lifecycle_status not in {"proposed", "planned", "accepted", "active"}:
            continue
        coded = any(
            coding.system == WHAT_MATTERS_SYSTEM for c in goal.category for coding in c.coding
        )
        expressed_by_patient = (
            goal.expressed_by is not None
            and goal.expressed_by.target_id("Patient") == record.patient_id
        )
        if coded or expressed_by_patient:
            return True
    return False


def _finding(record: PatientRecord, stay: StayAssessment) -> Finding:
    careplan_gap = record.why_unavailable("CarePlan")
    label = f"Day {stay.day_number} in hospital ({stay.band})"
    if careplan_gap is not None:
        summary = f"{label}: discharge plan could not be checked"
        severity = Severity.WARNING
    elif stay.expected_discharge is None:
        summary = f"{label}: no expected discharge date"
        severity = Severity.WARNING
    elif stay.expected_discharge < local_date(record.now, record.zone):
        summary = f"{label}: expected discharge date {stay.expected_discharge:%d %b %Y} has passed"
        severity = Severity.WARNING
    else:
        summary = f"{label}: expected discharge {stay.expected_discharge:%d %b %Y}"
        severity = Severity.INFO
    suggestions = () if stay.plan_ref or careplan_gap else (_create_plan(record, stay),)
    return Finding(
        rule_id=f"{RULE_ID}.{stay.band}",
        severity=severity,
        summary=summary,
        detail=_detail(stay, careplan_gap),
        topic=TOPIC,
        source_label=SOURCE_LABEL,
        source_url=SOURCE_URL,
        suggestions=suggestions,
        links=(
            CardLink(
                "BMJ: super-stranded patients and long stays (2019)",
                "https://www.bmj.com/content/367/bmj.l5870",
            ),
        ),
        override_reasons=("action-completed", "need-more-info", "cds-not-applicable"),
        evidence=tuple(ref for ref in (stay.encounter_ref, stay.plan_ref) if ref),
        facts={"days": stay.days, "band": stay.band},
    )


def _detail(stay: StayAssessment, careplan_gap: str | None) -> str:
    lines = [
        f"**Day {stay.day_number}** of this admission ({stay.days} days completed): "
        f"**{stay.band}**.",
        "",
        "Each day in hospital adds risk: deconditioning, falls, delirium and hospital-acquired "
        "infection (NHS Improvement, *Guide to reducing long hospital stays*, 2018). "
        "A timely discharge for one patient can help four others.",
        "",
        "Discharge planning:",
    ]
    if careplan_gap is not None:
        lines.append(f"- Discharge plan: **could not be checked** ({careplan_gap}).")
    else:
        edd = f"{stay.expected_discharge:%d %b %Y}" if stay.expected_discharge else "**none**"
        shared = "yes" if stay.plan_shared_with_patient else "**no**"
        lines.append(f"- Expected discharge date: {edd}")
        lines.append(f"- Discharge plan shared with the patient: {shared}")
    goals = "yes" if stay.goals_recorded else "**none recorded**"
    lines.append(f"- What matters to the patient (goals in their words): {goals}")
    if stay.band == "super-stranded":
        lines += ["", _risk_framing()]
    if stay.band == "stranded":
        lines += [
            "",
            "_'Stranded' (7+ days) is the threshold in common NHS use; its primary source is "
            "not verified by fhir-safety._",
        ]
    return "\n".join(lines)


def _risk_framing() -> str:
    micromorts = round(MORTALITY_21_DAYS_PERCENT / 100 * 1_000_000)
    comparisons = "; ".join(f"{what}: {value:,}" for what, value in MICROMORT_COMPARISONS)
    return (
        f"Unplanned adult admissions lasting 21+ days carry {MORTALITY_21_DAYS_PERCENT}% "
        f"mortality, about **{micromorts:,} micromorts** (one micromort = a one-in-a-million "
        f"chance of death). For comparison, in micromorts: {comparisons}. "
        "_These are the NHS long-stay programme's own figures (Dr Foster); fhir-safety has "
        "not verified the primary source of the 12.3%._"
    )


def _create_plan(record: PatientRecord, stay: StayAssessment) -> Suggestion:
    patient = {"reference": f"Patient/{record.patient_id}"}
    plan = {
        "resourceType": "CarePlan",
        "meta": {"profile": [DISCHARGE_PLAN_PROFILE]},
        "status": "draft",
        "intent": "plan",
        "category": [
            {
                "coding": [
                    {
                        "system": DISCHARGE_PLAN_SYSTEM,
                        "code": "discharge-plan",
                        "display": "Discharge plan",
                    }
                ]
            }
        ],
        "title": "Discharge plan",
        "description": (
            "Agree an expected discharge date and what matters to the patient, "
            "with the patient and their family or carer."
        ),
        "subject": patient,
        "encounter": {"reference": stay.encounter_ref},
        "period": {"start": local_date(record.now, record.zone).isoformat()},
        "contributor": [patient],
    }
    return Suggestion(
        key="create-discharge-plan",
        label="Start a discharge plan with the patient",
        actions=(
            Action(
                type="create",
                description="Draft discharge CarePlan with the patient as a contributor",
                resource=plan,
            ),
        ),
        is_recommended=True,
    )
