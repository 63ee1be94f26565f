"""NEWS2 and the patient's voice: worry and concern escalation (Martha's Rule). Pure.

One ``evaluate`` gives the patient-view cards of service ``news2-concern``:

* a **NEWS2 card**: the score, its band and the RCP Chart 4 response; an incomplete
  set says which parameters are missing or stale and is never shown as low (it
  escalates at the engine's ``minimum_band``); under 16 or pregnant says NEWS2 is
  not used. A scored set offers the NEWS2 score Observation (profile
  ``news2-score``) as a suggestion.
* an **escalation card** when a patient, family member, carer or member of staff
  said in the last ``concern_window_hours`` (24) that the patient is *worse* or that
  they are *worried*, whatever the score: it offers a Martha's Rule Task for the
  critical care outreach team (profile ``escalation-task``). Concern together with
  NEWS2 >= 5 (or an incomplete set already at medium or high) is critical and the
  Task is ``stat``; otherwise warning and ``urgent``.

Sources (tags of ``shared/reference/clinical.md``):
- [S7][S8][S9] RCP NEWS2 (2017): Chart 1, Chart 4 thresholds and responses.
- [S16][S17][S18] NHS England, Martha's Rule: patients, families and carers have 24/7
  access to a rapid review by the critical care outreach team; patients and families
  are asked at least daily; concern "can work alongside existing physiological scoring
  systems" [S17]. No national code for a concern or a Martha's Rule call exists
  (clinical.md §2.2, UNVERIFIED): project CodeSystems ``patient-concern``,
  ``concern-level`` and ``marthas-rule`` are used. No national response time exists
  (§2.1, UNVERIFIED), so the priority is ours: stat / urgent as above (issue #7).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from fhir_safety.config import News2Settings
from fhir_safety.domain import (
    PROJECT_CANONICAL,
    Action,
    CardLink,
    Finding,
    Severity,
    Suggestion,
    Topic,
)
from fhir_safety.fhir.resources import Encounter, Observation, Reference, Task
from fhir_safety.record import PatientRecord
from fhir_safety.rules import vitals
from fhir_safety.rules.common import could_not_check, parse_when
from fhir_safety.rules.news2 import Band, Parameter
from fhir_safety.rules.vitals import News2Assessment
from fhir_safety.terminology import Terminology

__all__ = [
    "CONCERN_RULE_ID",
    "ESCALATING_LEVELS",
    "ESCALATION_TASK_PROFILE",
    "RULE_ID",
    "Concern",
    "escalation_priority",
    "escalation_task",
    "evaluate",
    "existing_escalations",
    "recent_concerns",
]

RULE_ID = "news2"
CONCERN_RULE_ID = "patient-concern"
NEWS2_TOPIC = Topic("news2", "NEWS2")
CONCERN_TOPIC = Topic("patient-concern", "Patient or family concern")

NEWS2_SOURCE_LABEL = "Royal College of Physicians: NEWS2 (2017)"
# [S9] the RCP 2017 report names this page for the charts ("www.rcplondon.ac.uk/
# national-early-warning-score").
NEWS2_SOURCE_URL = "https://www.rcplondon.ac.uk/national-early-warning-score"
CONCERN_SOURCE_LABEL = "NHS England: Martha's Rule"
CONCERN_SOURCE_URL = "https://www.england.nhs.uk/patient-safety/marthas-rule/"  # [S16]

CONCERN_SYSTEM = f"{PROJECT_CANONICAL}/CodeSystem/patient-concern"
LEVEL_SYSTEM = f"{PROJECT_CANONICAL}/CodeSystem/concern-level"
MARTHAS_RULE_SYSTEM = f"{PROJECT_CANONICAL}/CodeSystem/marthas-rule"
MARTHAS_RULE_CALL = "marthas-rule-call"
ESCALATION_TASK_PROFILE = f"{PROJECT_CANONICAL}/StructureDefinition/escalation-task"
# Issue #7 (Martha's Rule [S16][S17]): these answers raise an escalation whatever the score.
ESCALATING_LEVELS = frozenset({"worse", "worried"})
# FHIR R4 ObservationStatus values that carry an answer.
_USABLE_STATUSES = frozenset({"final", "amended", "corrected", "preliminary"})
# FHIR R4 TaskStatus: a request in any other state still stands (open, or done).
_WITHDRAWN_TASK = frozenset({"cancelled", "rejected", "entered-in-error", "failed"})
# R4 Task.requester may be one of these.
_REQUESTER_TYPES = (
    "Practitioner",
    "PractitionerRole",
    "Patient",
    "RelatedPerson",
    "Organization",
    "Device",
)

Priority = Literal["stat", "urgent"]


@dataclass(frozen=True, slots=True)
class Concern:
    """One answer to "how is [name] today / are you worried?" from the record."""

    reference: str  # "Observation/123"
    level: str | None  # concern-level code; None when the answer could not be read
    level_display: str
    who: str  # "The patient", "A family member", ...
    performer: Reference | None
    said_at: datetime
    note: str | None

    @property
    def escalates(self) -> bool:
        return self.level in ESCALATING_LEVELS

    @property
    def observation_id(self) -> str:
        return self.reference.removeprefix("Observation/")

    def sentence(self) -> str:
        """ "A family member is worried", "The patient says they are worse"."""
        if self.level == "worried":
            return f"{self.who} is worried"
        if self.level == "worse":
            whom = "they are" if self.who == "The patient" else "the patient is"
            return f"{self.who} says {whom} worse"
        return f"{self.who} answered {self.level_display!r}"


def evaluate(
    record: PatientRecord, settings: News2Settings, terminology: Terminology
) -> list[Finding]:
    assessment = vitals.assess_record(record, settings, terminology)
    window = timedelta(hours=settings.concern_window_hours)
    concerns = recent_concerns(record, terminology, window=window)
    findings: list[Finding] = []
    if (why := record.why_unavailable("Observation")) is not None:
        findings.append(
            could_not_check(
                rule_id=RULE_ID,
                check="NEWS2 and patient or family concerns (observations)",
                reason=f"observations could not be fetched: {why}",
                source_label=NEWS2_SOURCE_LABEL,
                source_url=NEWS2_SOURCE_URL,
            )
        )
    if why is None or not _nothing_recorded(assessment):
        # With no observations at all, "no vital signs recorded" would be untrue: the
        # could-not-check card says what happened.
        findings.append(_news2_finding(record, assessment, concerns, settings, terminology))
    escalation = _escalation_finding(record, assessment, concerns, settings, terminology)
    if escalation is not None:
        findings.append(escalation)
    return findings


# --- Concerns --------------------------------------------------------------------------------


def recent_concerns(
    record: PatientRecord, terminology: Terminology, *, window: timedelta
) -> list[Concern]:
    """Concern Observations said within ``window`` before ``record.now``, newest first.

    The edge is inclusive: a concern exactly ``window`` old counts, one a second older does
    not. A concern dated after ``now`` (clock drift) still counts: a worry is never dropped.
    """
    found = []
    for observation in record.of_type(Observation):
        concern = concern_from(observation, record, terminology)
        if concern is not None and record.now - concern.said_at <= window:
            found.append(concern)
    return sorted(found, key=lambda c: (c.said_at, c.reference), reverse=True)


def concern_from(
    observation: Observation, record: PatientRecord, terminology: Terminology
) -> Concern | None:
    """The concern an Observation records, or None when it is not a usable concern."""
    codes = {c.code for c in observation.code.coding if c.system == CONCERN_SYSTEM and c.code}
    if not any(terminology.is_known_code(CONCERN_SYSTEM, code) for code in codes):
        return None
    if observation.status not in _USABLE_STATUSES or observation.id is None:
        return None
    subject = observation.subject
    if (
        subject is not None
        and record.patient_id
        and subject.target_id("Patient") not in {record.patient_id}
    ):
        return None
    period = observation.effective_period
    said = (
        observation.effective_date_time
        or observation.effective_instant
        or (period.start or period.end if period else None)
        or observation.issued
    )
    said_at = parse_when(said, record.zone)
    if said_at is None:
        return None
    level, display = _level(observation, terminology)
    performer = observation.performer[0] if observation.performer else None
    return Concern(
        reference=f"Observation/{observation.id}",
        level=level,
        level_display=display,
        who=_who(performer, codes),
        performer=performer,
        said_at=said_at,
        note=_note(observation),
    )


def _level(observation: Observation, terminology: Terminology) -> tuple[str | None, str]:
    answer = observation.value_codeable_concept
    for coding in answer.coding if answer else []:
        if coding.system == LEVEL_SYSTEM and terminology.is_known_code(LEVEL_SYSTEM, coding.code):
            code = coding.code or ""
            return code, terminology.display(LEVEL_SYSTEM, code) or code
    shown = (answer.text if answer else None) or observation.value_string or "no answer"
    return None, shown


def _who(performer: Reference | None, codes: set[str]) -> str:
    if performer is not None:
        if performer.target_id("Patient") is not None:
            return "The patient"
        if performer.target_id("RelatedPerson") is not None:
            return "A carer" if "carer-concern" in codes else "A family member"
        if any(performer.target_id(t) for t in ("Practitioner", "PractitionerRole")):
            return "A member of staff"
    by_code = {
        "patient-concern": "The patient",
        "family-concern": "A family member",
        "carer-concern": "A carer",
        "staff-concern": "A member of staff",
    }
    for code, who in by_code.items():
        if code in codes:
            return who
    return "Someone"


def _note(observation: Observation) -> str | None:
    texts = [str(n.get("text")) for n in observation.note if isinstance(n, dict) and n.get("text")]
    return " ".join(texts) or None


def existing_escalations(record: PatientRecord) -> dict[str, Task]:
    """Martha's Rule Tasks that still stand, by the concern Observation id they answer."""
    found: dict[str, Task] = {}
    for task in record.of_type(Task):
        if task.status in _WITHDRAWN_TASK or task.code is None:
            continue
        if not any(
            c.system == MARTHAS_RULE_SYSTEM and c.code == MARTHAS_RULE_CALL
            for c in task.code.coding
        ):
            continue
        reason = task.reason_reference
        concern_id = reason.target_id("Observation") if reason is not None else None
        if concern_id is not None:
            found.setdefault(concern_id, task)
    return found


def escalation_priority(assessment: News2Assessment) -> Priority:
    """stat with NEWS2 >= 5 (or an incomplete set already medium/high), else urgent (issue #7)."""
    return "stat" if assessment.urgent_or_worse else "urgent"


def escalation_task(
    *,
    concern: Concern,
    assessment: News2Assessment,
    patient_id: str,
    now: datetime,
    settings: News2Settings,
    terminology: Terminology,
    requester: str | None,
    encounter_id: str | None = None,
) -> dict[str, Any]:
    """A Martha's Rule call for the outreach team (profile ``escalation-task``)."""
    task: dict[str, Any] = {
        "resourceType": "Task",
        "meta": {"profile": [ESCALATION_TASK_PROFILE]},
        "status": "requested",
        "intent": "order",
        "priority": escalation_priority(assessment),
        "code": {
            "coding": [
                {
                    "system": MARTHAS_RULE_SYSTEM,
                    "code": MARTHAS_RULE_CALL,
                    "display": terminology.display(MARTHAS_RULE_SYSTEM, MARTHAS_RULE_CALL)
                    or "Martha's Rule call for rapid review",
                }
            ]
        },
        "description": (
            f"Martha's Rule rapid review: {concern.sentence().lower()} "
            f"({concern.said_at.isoformat()}). NEWS2: {_news2_phrase(assessment)}."
        ),
        "for": {"reference": f"Patient/{patient_id}"},
    }
    if encounter_id:
        task["encounter"] = {"reference": f"Encounter/{encounter_id}"}
    task["authoredOn"] = now.isoformat()
    if requester and requester.split("/", 1)[0] in _REQUESTER_TYPES and "/" in requester:
        task["requester"] = {"reference": requester}
    task["owner"] = {
        "reference": settings.outreach_team_reference,
        "display": settings.outreach_team_display,
    }
    task["reasonReference"] = {"reference": concern.reference}
    return task


# --- NEWS2 card ------------------------------------------------------------------------------


def _news2_finding(
    record: PatientRecord,
    assessment: News2Assessment,
    concerns: Sequence[Concern],
    settings: News2Settings,
    terminology: Terminology,
) -> Finding:
    result = assessment.result
    severity, summary = _news2_headline(assessment, in_hospital=_in_hospital(record))
    suggestions: tuple[Suggestion, ...] = ()
    recorded_as = None
    observation = vitals.news2_observation(
        assessment,
        patient_id=record.patient_id,
        now=record.now,
        terminology=terminology,
        encounter_id=record.encounter_id,
    )
    if observation is not None:
        recorded_as = _already_recorded(record, assessment, terminology)
        if recorded_as is None:
            suggestions = (
                Suggestion(
                    key="record-news2-score",
                    label=f"Record NEWS2 {result.total} in the patient's record",
                    actions=(
                        Action(
                            type="create",
                            description=(
                                f"NEWS2 score Observation: total {result.total} with its "
                                "parameter scores, derived from the vital signs used"
                            ),
                            resource=observation,
                        ),
                    ),
                ),
            )
    return Finding(
        rule_id=f"{RULE_ID}.{result.status}",
        severity=severity,
        summary=summary,
        detail=_news2_detail(record, assessment, concerns, settings, recorded_as),
        topic=NEWS2_TOPIC,
        source_label=NEWS2_SOURCE_LABEL,
        source_url=NEWS2_SOURCE_URL,
        suggestions=suggestions,
        override_reasons=("action-completed", "need-more-info", "cds-not-applicable"),
        evidence=result.evidence,
        facts={
            "status": result.status,
            "total": result.total,
            "band": result.band.value if result.band else None,
            "partialTotal": result.partial_total,
            "minimumBand": result.minimum_band.value if result.minimum_band else None,
            "scale": int(result.scale),
            "missing": [p.value for p in result.missing],
            "stale": [p.value for p in result.stale],
        },
    )


_SCORED_HEADLINES = {
    Band.HIGH: (Severity.CRITICAL, "high risk): emergency response, inform the medical team now"),
    Band.MEDIUM: (Severity.WARNING, "medium risk): urgent response, inform the medical team now"),
    Band.LOW_MEDIUM: (
        Severity.WARNING,
        "low-medium risk, a 3 in one parameter): inform the medical team",
    ),
}


def _in_hospital(record: PatientRecord) -> bool:
    """An encounter in progress, or not known: only then are overdue observations a warning."""
    if record.why_unavailable("Encounter") is not None:
        return True
    return any(e.status == "in-progress" for e in record.of_type(Encounter))


def _news2_headline(assessment: News2Assessment, *, in_hospital: bool) -> tuple[Severity, str]:
    result = assessment.result
    if result.status == "not-applicable":
        return Severity.INFO, _not_applicable_summary(assessment)
    if result.status == "scored" and result.band is not None:
        if result.band is Band.LOW:
            action = (
                "continue routine monitoring"
                if result.total == 0
                else "a registered nurse to assess the patient"
            )
            return Severity.INFO, f"NEWS2 {result.total} (low risk): {action}"
        severity, text = _SCORED_HEADLINES[result.band]
        return severity, f"NEWS2 {result.total} ({text}"
    missing = _short_list([_short_name(p) for p in result.missing])
    floor = result.minimum_band
    if floor is Band.HIGH:
        return (
            Severity.CRITICAL,
            f"NEWS2 incomplete (no {missing}) but at least {result.partial_total}: "
            "high risk, emergency response",
        )
    if floor is not None:
        return (
            Severity.WARNING,
            f"NEWS2 incomplete (no {missing}) but already {floor} risk: inform the medical team",
        )
    if _nothing_recorded(assessment):
        return Severity.INFO, "NEWS2 not calculated: no vital signs recorded"
    if not result.sub_scores and not in_hospital:
        # Old readings of a patient with no encounter in progress (an outpatient): no
        # observation schedule was missed, so this is information, not a warning.
        return (
            Severity.INFO,
            "NEWS2 not calculated: no current vital signs (no encounter in progress)",
        )
    return (
        Severity.WARNING,
        f"NEWS2 not calculated: no current {missing}; record a full set of observations",
    )


def _nothing_recorded(assessment: News2Assessment) -> bool:
    result = assessment.result
    return (
        not result.sub_scores
        and not result.stale
        and not assessment.inputs.not_used
        and len(result.missing) == len(Parameter)
    )


def _not_applicable_summary(assessment: News2Assessment) -> str:
    inputs = assessment.inputs
    under_16 = inputs.age_years is not None and inputs.age_years < 16
    if under_16 and inputs.pregnant:
        return f"NEWS2 not used: patient is under 16 (age {inputs.age_years}) and pregnant"
    if under_16:
        return (
            f"NEWS2 not used: patient is under 16 (age {inputs.age_years}); "
            "use a paediatric early warning score"
        )
    return "NEWS2 not used: patient is pregnant; use the obstetric early warning score"


def _short_name(parameter: Parameter) -> str:
    return {
        Parameter.RESPIRATION_RATE: "resp rate",
        Parameter.SPO2: "SpO2",
        Parameter.AIR_OR_OXYGEN: "air/O2",
        Parameter.SYSTOLIC_BP: "BP",
        Parameter.PULSE: "pulse",
        Parameter.CONSCIOUSNESS: "ACVPU",
        Parameter.TEMPERATURE: "temperature",
    }[parameter]


def _short_list(names: Sequence[str]) -> str:
    if len(names) > 3:
        return f"{len(names)} parameters"
    return ", ".join(names)


def _news2_detail(
    record: PatientRecord,
    assessment: News2Assessment,
    concerns: Sequence[Concern],
    settings: News2Settings,
    recorded_as: str | None,
) -> str:
    result, inputs = assessment.result, assessment.inputs
    max_age = timedelta(hours=settings.max_vitals_age_hours)
    blocks: list[str] = []
    if result.status == "not-applicable":
        blocks.append(f"**NEWS2 is not used for this patient.** {result.reason or ''}".strip())
        if inputs.pregnancy_source:
            blocks.append(f"Current pregnancy: {inputs.pregnancy_source}.")
    else:
        blocks.append(_news2_opening(assessment))
        blocks.append("\n".join(_parameter_table(record, assessment, max_age)))
        if result.response is not None:
            blocks.append(
                f"**Clinical response (RCP Chart 4):** {result.response.monitoring}. "
                f"{result.response.action}"
            )
        if result.status == "incomplete":
            blocks.append(
                "An incomplete set is **not** a low score: record a full set of observations."
            )
    if inputs.observations_unavailable:
        blocks.append(
            f"Some observations could not be fetched ({inputs.observations_unavailable}): "
            "newer readings may exist."
        )
    notes = [inputs.scale2.note, *inputs.notes]
    if result.status == "scored" and result.reason:
        notes.append(result.reason)  # the engine's caveat (age unknown)
    if any(notes):
        blocks.append("\n".join(f"- {note}" for note in notes if note))
    if recorded_as:
        blocks.append(f"This score is already recorded as {recorded_as}.")
    blocks.append(_concern_overview(record, concerns, settings))
    return "\n\n".join(blocks)


def _news2_opening(assessment: News2Assessment) -> str:
    result = assessment.result
    scale = f"SpO2 Scale {int(result.scale)}"
    if result.status == "scored" and result.band is not None:
        return f"**NEWS2 {result.total}: {vitals.band_text(result.band).lower()}.** {scale}."
    floor = (
        f" The parameters available already score {result.partial_total}: at least "
        f"**{result.minimum_band} risk**."
        if result.minimum_band is not None
        else f" The parameters available score {result.partial_total}."
    )
    return f"**NEWS2 could not be calculated: incomplete set.**{floor} {scale}."


def _parameter_table(
    record: PatientRecord, assessment: News2Assessment, max_age: timedelta
) -> list[str]:
    result = assessment.result
    rows = ["| Parameter | Reading | Taken | Score |", "|---|---|---|---|"]
    for parameter in Parameter:
        reading = vitals.reading_of(assessment.inputs.vitals, parameter)
        score = result.sub_scores.get(parameter)
        if score is not None and reading is not None:
            rows.append(
                f"| {vitals.parameter_label(parameter)} | "
                f"{vitals.format_value(parameter, reading.value)} | "
                f"{vitals.when(reading.taken_at, record.zone)} | {score} |"
            )
        else:
            why = vitals.missing_reason(assessment, parameter, max_age=max_age, zone=record.zone)
            rows.append(f"| {vitals.parameter_label(parameter)} | **missing**: {why} | | - |")
    return rows


def _concern_overview(
    record: PatientRecord, concerns: Sequence[Concern], settings: News2Settings
) -> str:
    hours = settings.concern_window_hours
    if not concerns:
        return (
            f'No patient, family or carer answer to "how are they today?" in the last {hours} '
            "hours. Martha's Rule: ask patients and families at least daily."
        )
    answers = "; ".join(
        f"{c.who.lower()}: {c.level_display.lower()} ({vitals.when(c.said_at, record.zone)})"
        for c in concerns
    )
    return f"Patient and family answers in the last {hours} hours: {answers}."


def _already_recorded(
    record: PatientRecord, assessment: News2Assessment, terminology: Terminology
) -> str | None:
    """A NEWS2 total Observation already derived from exactly these readings."""
    evidence = set(assessment.result.evidence)
    for observation in record.of_type(Observation):
        if observation.status not in _USABLE_STATUSES or observation.id is None:
            continue
        if terminology.match("news2-total-score", observation.code) is None:
            continue
        derived = {r.reference for r in observation.derived_from if r.reference}
        if derived == evidence:
            return f"Observation/{observation.id}"
    return None


# --- Escalation card -------------------------------------------------------------------------


def _escalation_finding(
    record: PatientRecord,
    assessment: News2Assessment,
    concerns: Sequence[Concern],
    settings: News2Settings,
    terminology: Terminology,
) -> Finding | None:
    escalating = [c for c in concerns if c.escalates]
    if not escalating:
        return None
    tasks = existing_escalations(record)
    unanswered = [c for c in escalating if c.observation_id not in tasks]
    urgent = assessment.urgent_or_worse
    links = [CardLink("NHS England: Martha's Rule", CONCERN_SOURCE_URL)]
    if settings.outreach_link_url:
        links.insert(0, CardLink(settings.outreach_link_label, settings.outreach_link_url))
    common: dict[str, Any] = {
        "topic": CONCERN_TOPIC,
        "source_label": CONCERN_SOURCE_LABEL,
        "source_url": CONCERN_SOURCE_URL,
        "links": tuple(links),
        "evidence": tuple(c.reference for c in escalating),
    }
    if not unanswered:
        latest = escalating[0]
        existing = tasks[latest.observation_id]
        state = existing.status
        return Finding(
            rule_id=f"{CONCERN_RULE_ID}.escalation-requested",
            severity=Severity.INFO,
            summary=(
                f"Outreach review already requested for the concern raised "
                f"{vitals.when(latest.said_at, record.zone)} ({state})"
            ),
            detail=_escalation_detail(record, assessment, escalating, tasks, None, settings),
            facts={
                "concerns": len(escalating),
                "task": f"Task/{existing.id}",
                "status": existing.status,
            },
            **common,
        )
    concern = unanswered[0]
    priority = escalation_priority(assessment)
    if urgent:
        summary = (
            f"{concern.sentence()} and NEWS2 {_news2_short(assessment)}: "
            "request an outreach review now (Martha's Rule)"
        )
    else:
        summary = (
            f"{concern.sentence()} ({vitals.when(concern.said_at, record.zone)}): "
            "request a critical care outreach review (Martha's Rule)"
        )
    if len(summary) >= 140:
        summary = f"{concern.sentence()}: request an outreach review (Martha's Rule)"
    task = escalation_task(
        concern=concern,
        assessment=assessment,
        patient_id=record.patient_id,
        now=record.now,
        settings=settings,
        terminology=terminology,
        requester=_user(record),
        encounter_id=record.encounter_id,
    )
    suggestion = Suggestion(
        key="request-outreach-review",
        label=f"Request {'a stat' if priority == 'stat' else 'an urgent'} review by the critical care outreach team",
        actions=(
            Action(
                type="create",
                description=(
                    f"Martha's Rule Task ({priority}) for {settings.outreach_team_display}, "
                    f"for the concern {concern.reference}"
                ),
                resource=task,
            ),
        ),
        is_recommended=True,
    )
    return Finding(
        rule_id=f"{CONCERN_RULE_ID}.escalate",
        severity=Severity.CRITICAL if urgent else Severity.WARNING,
        summary=summary,
        detail=_escalation_detail(record, assessment, escalating, tasks, priority, settings),
        suggestions=(suggestion,),
        override_reasons=("action-completed", "expert-contradicts", "need-more-info"),
        facts={
            "concerns": len(escalating),
            "priority": priority,
            "news2UrgentOrWorse": urgent,
        },
        **common,
    )


def _user(record: PatientRecord) -> str | None:
    user = record.context.get("userId")
    return user if isinstance(user, str) else None


def _news2_short(assessment: News2Assessment) -> str:
    result = assessment.result
    if result.status == "scored":
        return str(result.total)
    return f">= {result.partial_total} (incomplete)"


def _news2_phrase(assessment: News2Assessment) -> str:
    result = assessment.result
    if result.status == "scored" and result.band is not None:
        return f"{result.total}, {result.band} risk"
    if result.status == "not-applicable":
        return "not applicable (under 16 or pregnant)"
    if result.minimum_band is not None:
        return f"incomplete, at least {result.partial_total} ({result.minimum_band} risk)"
    return "incomplete, could not be calculated"


def _escalation_detail(
    record: PatientRecord,
    assessment: News2Assessment,
    escalating: Sequence[Concern],
    tasks: dict[str, Task],
    priority: Priority | None,
    settings: News2Settings,
) -> str:
    latest = escalating[0]
    named = latest.performer.display if latest.performer is not None else None
    who = f"{latest.who} ({named})" if named else latest.who
    lines = [
        f"**{who} {latest.sentence().removeprefix(latest.who).strip()}**, "
        f"{vitals.when(latest.said_at, record.zone)} ({latest.reference}).",
    ]
    if latest.note:
        lines += ["", f"> {latest.note}"]
    lines += [
        "",
        "Under Martha's Rule, patients, families and carers can ask for a rapid review by the "
        "critical care outreach team at any time, and their concern is acted on whatever the "
        "early warning score says (NHS England).",
        "",
        f"**NEWS2:** {_news2_phrase(assessment)}.",
    ]
    if priority is not None:
        why = (
            "concern together with NEWS2 of 5 or more"
            if priority == "stat"
            else "concern, NEWS2 below the urgent threshold or not known"
        )
        lines.append(f"**Priority:** {priority} ({why}); owner: {settings.outreach_team_display}.")
    others = list(escalating[1:])
    if others:
        lines += ["", "Other concerns in this window:"]
        lines += [
            f"- {c.sentence()}, {vitals.when(c.said_at, record.zone)} ({c.reference})"
            for c in others
        ]
    if tasks:
        lines += ["", "Martha's Rule requests already made:"]
        lines += [
            f"- Task/{task.id}: {task.status}, priority {task.priority or 'not set'}, "
            f"for Observation/{concern_id}"
            for concern_id, task in tasks.items()
        ]
    if (why_tasks := record.why_unavailable("Task")) is not None:
        lines += [
            "",
            f"Existing outreach requests could not be checked ({why_tasks}): check before "
            "requesting another.",
        ]
    return "\n".join(lines)
