"""The family as partners in a patient safety incident's learning response.

Pure: reads AdverseEvents and Tasks (narrow models) and the clock passed in; no I/O.

Model (profiles ``safety-incident`` and ``family-engagement-task``; clinical.md section 8.3):

- the incident is an ``AdverseEvent`` with the patient as ``subject``;
- its learning response (PSII, after action review, swarm huddle, MDT review, thematic review
  [S50]) is a ``Task`` whose ``code`` is in the ValueSet ``learning-response-type`` and whose
  ``focus`` is the AdverseEvent; the investigation is *open* while that Task is not completed,
  cancelled, failed, rejected or entered in error;
- each engagement step (ValueSet ``family-engagement-step``: first contact, the family's
  questions recorded, terms of reference shared, their evidence taken, draft shared, final
  shared) is a ``Task`` with the same ``focus``, ``partOf`` the learning-response Task, the
  family member in ``restriction.recipient`` and its due date in ``restriction.period.end``;
  a completed step links (``output``) the ``Communication`` sent to the family.

Due dates: a date written on the step's Task wins (PSIRF asks for timeframes agreed with those
affected [S50]); otherwise ``IncidentSettings.step_due`` gives a LOCAL POLICY default
relative to when the incident became known, when the response opened, or when it is due.
No step is due later than the step after it. Dates are compared on the trust's calendar
(``record.zone``): a step due on a date is overdue from the next local day.

Sources (shared/reference/clinical.md section 8): NHS England, *Guide to engaging and
involving patients, families and staff following a patient safety incident* (PSIRF, 2022)
[S50]; Duty of Candour, Regulation 20(2) of the Health and Social Care Act 2008 (Regulated
Activities) Regulations 2014 ("as soon as reasonably practicable"; no day count).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from fhir_safety.config import EngagementStepDue, IncidentSettings
from fhir_safety.domain import PROJECT_CANONICAL, CardLink, Finding, Severity, Topic
from fhir_safety.fhir.resources import AdverseEvent, Reference, Task
from fhir_safety.record import PatientRecord
from fhir_safety.rules.common import could_not_check, local_date, parse_when
from fhir_safety.terminology import Terminology

__all__ = [
    "LEARNING_RESPONSE_EXTENSION",
    "LEARNING_RESPONSE_VALUE_SET",
    "RULE_ID",
    "STEP_VALUE_SET",
    "EngagementStatus",
    "StepStatus",
    "assess",
    "due_dates",
    "evaluate",
    "is_closed",
    "reference_id",
    "response_due",
    "unmet_prerequisites",
]

RULE_ID = "incident-family-partnership"
TOPIC = Topic("incident-family-partnership", "Family are partners in an incident investigation")
SOURCE_LABEL = "NHS England PSIRF: engaging and involving patients and families"
SOURCE_URL = (
    "https://www.england.nhs.uk/patient-safety/patient-safety-insight/incident-response-"
    "framework/engaging-and-involving-patients-families-and-staff-following-a-patient-"
    "safety-incident/"
)  # [S50]
LEARNING_RESPONSE_VALUE_SET = "learning-response-type"
STEP_VALUE_SET = "family-engagement-step"
LEARNING_RESPONSE_EXTENSION = f"{PROJECT_CANONICAL}/StructureDefinition/incident-learning-response"

# FHIR R4 task-status: states in which a Task will not progress any further.
_CLOSED = frozenset({"completed", "cancelled", "failed", "rejected", "entered-in-error"})

StepState = Literal["done", "declined", "paused", "overdue", "due-soon", "pending", "missing"]
# When several Tasks exist for one step, the most advanced one speaks for it.
_STATE_RANK: Mapping[str, int] = {"completed": 0, "cancelled": 1, "rejected": 1, "on-hold": 2}


@dataclass(frozen=True, slots=True)
class StepStatus:
    """Where one engagement step stands."""

    code: str
    display: str
    state: StepState
    task_ref: str | None
    due: date | None
    done_on: date | None = None
    late: bool = False  # done after its due date
    reason: str | None = None  # why declined or paused (Task.statusReason)
    recipients: tuple[str, ...] = ()  # who it was with: RelatedPerson / Patient displays
    communications: tuple[str, ...] = ()  # Communication references in Task.output


@dataclass(frozen=True, slots=True)
class EngagementStatus:
    """One incident: its learning response and where each engagement step stands."""

    incident_ref: str
    patient_ref: str
    event: str
    incident_date: date | None
    response_ref: str | None
    response_code: str | None
    response_display: str | None
    response_status: str | None
    opened: date | None
    response_due: date | None
    lead: str | None
    family: tuple[str, ...]
    steps: tuple[StepStatus, ...] = field(default_factory=tuple)

    @property
    def open(self) -> bool:
        return self.response_status is not None and self.response_status not in _CLOSED

    @property
    def overdue(self) -> tuple[StepStatus, ...]:
        return tuple(s for s in self.steps if s.state == "overdue")

    @property
    def missing(self) -> tuple[StepStatus, ...]:
        return tuple(s for s in self.steps if s.state == "missing")

    @property
    def next_step(self) -> StepStatus | None:
        """The first step in plan order that is neither done, declined nor missing."""
        for step in self.steps:
            if step.state in {"overdue", "due-soon", "pending", "paused"}:
                return step
        return None


def is_closed(status: str | None) -> bool:
    return status in _CLOSED


def reference_id(ref: Reference | None, resource_type: str) -> str | None:
    """The id a (relative, absolute or versioned) reference points to, if of ``resource_type``."""
    if ref is None or not ref.reference:
        return None
    path = ref.reference.split("/_history/")[0]
    return Reference(reference=path, type=ref.type).target_id(resource_type)


# -- due dates ---------------------------------------------------------------------------


def response_due(
    response: Task | None,
    response_code: str | None,
    opened: datetime | None,
    settings: IncidentSettings,
    zone: ZoneInfo,
) -> datetime | None:
    """The learning response's due date: its Task's ``restriction.period.end``, else opened +
    the configured length for its type (local policy)."""
    written = _task_due(response, zone)
    if written is not None:
        return written
    if opened is None:
        return None
    days = settings.response_days.get(response_code or "", settings.default_response_days)
    return opened + timedelta(days=days)


def due_dates(
    step_codes: Sequence[str],
    *,
    known: datetime | None,
    opened: datetime | None,
    due: datetime | None,
    settings: IncidentSettings,
) -> dict[str, datetime | None]:
    """Default due date per step, in plan order; no step later than the step after it."""
    anchors = {"incident-known": known, "response-opened": opened, "response-due": due}
    dates: dict[str, datetime | None] = {}
    for code in step_codes:
        rule: EngagementStepDue | None = settings.step_due.get(code)
        anchor = anchors[rule.anchor] if rule is not None else None
        dates[code] = anchor + timedelta(days=rule.days) if rule and anchor else None
    later: datetime | None = None
    for code in reversed(step_codes):
        current = dates[code]
        if current is not None and later is not None and current > later:
            dates[code] = current = later
        later = current if current is not None else later
    return dates


def unmet_prerequisites(
    status: EngagementStatus, step_code: str, settings: IncidentSettings
) -> tuple[str, ...]:
    """Steps that must be done (or declined) before ``step_code`` can be recorded as done."""
    states = {s.code: s.state for s in status.steps}
    return tuple(
        code
        for code in settings.prerequisites.get(step_code, ())
        if states.get(code) not in {"done", "declined"}
    )


# -- assessment --------------------------------------------------------------------------


def assess(
    incident: AdverseEvent,
    tasks: Sequence[Task],
    *,
    now: datetime,
    zone: ZoneInfo,
    settings: IncidentSettings,
    terminology: Terminology,
) -> EngagementStatus:
    """Where the learning response into ``incident`` and each engagement step stand."""
    incident_ref = f"AdverseEvent/{incident.id}"
    about = [
        t
        for t in tasks
        if reference_id(t.focus, "AdverseEvent") == incident.id and t.status != "entered-in-error"
    ]
    response, response_code, response_display = _learning_response(
        incident, about, terminology, zone
    )
    opened = parse_when(response.authored_on if response else None, zone)
    known = _incident_known(incident, zone) or opened
    due = response_due(response, response_code, opened, settings, zone)
    plan = terminology.expansion(STEP_VALUE_SET)
    defaults = due_dates(
        [code for _, code, _ in plan], known=known, opened=opened, due=due, settings=settings
    )
    today = local_date(now, zone)
    steps = tuple(
        _step_status(
            code,
            display,
            [t for t in about if _step_code(t, terminology) == code],
            defaults[code],
            today,
            zone,
            settings,
        )
        for _, code, display in plan
    )
    family = _unique(
        _display(r)
        for t in about
        for r in (t.restriction.recipient if t.restriction else [])
        if reference_id(r, "Patient") is None
    )
    happened = parse_when(incident.date, zone)
    return EngagementStatus(
        incident_ref=incident_ref,
        patient_ref=incident.subject.reference or "",
        event=_event_text(incident),
        incident_date=local_date(happened, zone) if happened else None,
        response_ref=f"Task/{response.id}" if response else None,
        response_code=response_code,
        response_display=response_display,
        response_status=response.status if response else None,
        opened=local_date(opened, zone) if opened else None,
        response_due=local_date(due, zone) if due else None,
        lead=_display(response.owner) if response and response.owner else None,
        family=family,
        steps=steps,
    )


def _learning_response(
    incident: AdverseEvent, tasks: Sequence[Task], terminology: Terminology, zone: ZoneInfo
) -> tuple[Task | None, str | None, str | None]:
    """The learning-response Task (an open one first, then the latest), its type and display."""
    responses = [
        (t, m)
        for t in tasks
        if (m := terminology.match(LEARNING_RESPONSE_VALUE_SET, t.code)) is not None
    ]
    oldest = datetime.min.replace(tzinfo=zone)
    responses.sort(key=lambda pair: parse_when(pair[0].authored_on, zone) or oldest, reverse=True)
    responses.sort(key=lambda pair: is_closed(pair[0].status))  # stable: open ones first
    if responses:
        task, match = responses[0]
        return task, match.code, match.display
    for extension in incident.extension:  # chosen but not yet started
        if extension.url == LEARNING_RESPONSE_EXTENSION:
            chosen = terminology.match(
                LEARNING_RESPONSE_VALUE_SET, extension.value_codeable_concept
            )
            if chosen is not None:
                return None, chosen.code, chosen.display
    return None, None, None


def _step_code(task: Task, terminology: Terminology) -> str | None:
    match = terminology.match(STEP_VALUE_SET, task.code)
    return match.code if match is not None else None


def _step_status(
    code: str,
    display: str,
    tasks: Sequence[Task],
    default_due: datetime | None,
    today: date,
    zone: ZoneInfo,
    settings: IncidentSettings,
) -> StepStatus:
    if not tasks:
        due_day = local_date(default_due, zone) if default_due else None
        return StepStatus(code, display, "missing", None, due_day)
    task = sorted(tasks, key=lambda t: _STATE_RANK.get(t.status, 3))[0]
    written = _task_due(task, zone)
    due = written or default_due
    due_day = local_date(due, zone) if due else None
    recipients = _unique(
        _display(r) for t in tasks for r in (t.restriction.recipient if t.restriction else [])
    )
    communications = _unique(
        o.value_reference.reference
        for t in tasks
        for o in t.output
        if o.value_reference is not None
        and o.value_reference.reference
        and reference_id(o.value_reference, "Communication") is not None
    )
    done_on: date | None = None
    state: StepState
    if task.status == "completed":
        finished = parse_when(
            (task.execution_period.end if task.execution_period else None) or task.last_modified,
            zone,
        )
        done_on = local_date(finished, zone) if finished else None
        state = "done"
    elif task.status in {"cancelled", "rejected"}:
        state = "declined"
    elif task.status == "on-hold":
        state = "paused"
    else:
        state = _open_state(due_day, today, settings)
    return StepStatus(
        code,
        display,
        state,
        f"Task/{task.id}",
        due_day,
        done_on=done_on,
        late=done_on is not None and due_day is not None and done_on > due_day,
        reason=task.status_reason.text if task.status_reason else None,
        recipients=recipients,
        communications=communications,
    )


def _open_state(due: date | None, today: date, settings: IncidentSettings) -> StepState:
    if due is None:
        return "pending"
    if today > due:
        return "overdue"
    if (due - today).days <= settings.due_soon_days:
        return "due-soon"
    return "pending"


def _task_due(task: Task | None, zone: ZoneInfo) -> datetime | None:
    if task is None or task.restriction is None or task.restriction.period is None:
        return None
    return parse_when(task.restriction.period.end, zone)


def _incident_known(incident: AdverseEvent, zone: ZoneInfo) -> datetime | None:
    """When the organisation knew of the incident: recorded, else detected, else happened."""
    for value in (incident.recorded_date, incident.detected, incident.date):
        when = parse_when(value, zone)
        if when is not None:
            return when
    return None


def _event_text(incident: AdverseEvent) -> str:
    if incident.event is not None:
        if incident.event.text:
            return incident.event.text
        for coding in incident.event.coding:
            if coding.display:
                return coding.display
    return "patient safety incident"


def _display(ref: Reference) -> str:
    return ref.display or ref.reference or "unnamed"


def _unique(values: Iterable[str | None]) -> tuple[str, ...]:
    """The distinct non-empty values, in first-seen order."""
    return tuple(dict.fromkeys(v for v in values if v))


# -- patient-view card -------------------------------------------------------------------


def evaluate(
    record: PatientRecord, settings: IncidentSettings, terminology: Terminology
) -> list[Finding]:
    """An info card per open investigation into an incident that affected this patient."""
    incidents = [
        e
        for e in record.of_type(AdverseEvent)
        if reference_id(e.subject, "Patient") == record.patient_id
        and e.actuality != "entered-in-error"
    ]
    if not incidents:
        return []
    tasks_gap = record.why_unavailable("Task")
    if tasks_gap is not None:
        return [
            could_not_check(
                rule_id=RULE_ID,
                check="whether the family are partners in an open incident investigation",
                reason=f"learning-response Tasks could not be read ({tasks_gap})",
                source_label=SOURCE_LABEL,
                source_url=SOURCE_URL,
            )
        ]
    tasks = record.of_type(Task)
    findings = []
    for incident in incidents:
        status = assess(
            incident,
            tasks,
            now=record.now,
            zone=record.zone,
            settings=settings,
            terminology=terminology,
        )
        if status.response_ref is not None and status.open:
            findings.append(_finding(status, settings))
    return findings


def _short_name(display: str | None) -> str:
    """ "Patient safety incident investigation (PSII)" -> "PSII"; else the display itself."""
    if display and display.endswith(")") and "(" in display:
        return display[display.rindex("(") + 1 : -1]
    return display or "learning response"


def _finding(status: EngagementStatus, settings: IncidentSettings) -> Finding:
    kind = "investigation" if status.response_code == "psii" else "learning response"
    summary = (
        f"Open safety incident {kind} ({_short_name(status.response_display)}): "
        "the family are partners in it"
    )
    overdue = len(status.overdue)
    if overdue:
        summary += f"; {overdue} engagement step{'s' if overdue > 1 else ''} overdue"
    links = [CardLink("NHS England: engaging and involving patients and families", SOURCE_URL)]
    if settings.engagement_link_url:
        links.append(CardLink(settings.engagement_link_label, settings.engagement_link_url))
    return Finding(
        rule_id=RULE_ID,
        severity=Severity.INFO,
        summary=summary,
        detail=_detail(status),
        topic=TOPIC,
        source_label=SOURCE_LABEL,
        source_url=SOURCE_URL,
        links=tuple(links),
        evidence=tuple(r for r in (status.incident_ref, status.response_ref) if r),
        facts={
            "incident": status.incident_ref,
            "learningResponse": status.response_code,
            "overdueSteps": [s.code for s in status.overdue],
            "nextStep": status.next_step.code if status.next_step else None,
        },
    )


def _detail(status: EngagementStatus) -> str:
    when = f" ({status.incident_date:%d %b %Y})" if status.incident_date else ""
    opened = f", opened {status.opened:%d %b %Y}" if status.opened else ""
    due = f", due {status.response_due:%d %b %Y}" if status.response_due else ""
    family = ", ".join(status.family) if status.family else "**none recorded**"
    lines = [
        f"- **Incident**: {status.event}{when}",
        f"- **Learning response**: {status.response_display or 'not recorded'}{opened}{due}",
        f"- **Lead**: {status.lead or 'not recorded'}",
        f"- **Family contact**: {family}",
        "",
        "Under PSIRF the patient and family are partners in this learning response: their "
        "questions shape it, their account is evidence, and they see the draft before the "
        "final report. If they raise it with you, be open and compassionate, do not speculate "
        "about causes, and pass their questions to the lead.",
        "",
        "Engagement with the family:",
        "",
    ]
    lines += [f"- {s.display}: {_describe(s)}" for s in status.steps]
    return "\n".join(lines)


def _describe(step: StepStatus) -> str:
    due = f"{step.due:%d %b %Y}" if step.due else "no due date"
    if step.state == "done":
        on = f" on {step.done_on:%d %b %Y}" if step.done_on else ""
        return f"done{on}" + (f" (due {due})" if step.late else "")
    if step.state == "declined":
        return "declined by the family" + (f" ({step.reason})" if step.reason else "")
    if step.state == "paused":
        return "paused" + (f" ({step.reason})" if step.reason else "") + f", due {due}"
    if step.state == "overdue":
        return f"**overdue** (due {due})"
    if step.state == "missing":
        return f"**not in the plan** (would be due {due})"
    return f"due {due}"
