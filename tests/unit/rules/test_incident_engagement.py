"""Family engagement in incident learning responses: due dates, step states, the card."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from fhir_safety.config import EngagementStepDue, IncidentSettings
from fhir_safety.domain import Severity
from fhir_safety.fhir.resources import AdverseEvent, Reference, Task
from fhir_safety.record import PatientRecord
from fhir_safety.rules import incident_engagement as rule
from fhir_safety.terminology import Terminology

LONDON = ZoneInfo("Europe/London")
NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
STEP_SYSTEM = "https://fhir-safety.org/fhir/CodeSystem/family-engagement-step"
RESPONSE_SYSTEM = "https://fhir-safety.org/fhir/CodeSystem/learning-response-type"
STEPS = [
    "first-contact",
    "questions-recorded",
    "terms-of-reference-shared",
    "family-evidence-taken",
    "draft-shared",
    "final-shared",
]
SETTINGS = IncidentSettings()


def incident(**overrides: Any) -> AdverseEvent:
    data: dict[str, Any] = {
        "resourceType": "AdverseEvent",
        "id": "ae1",
        "actuality": "actual",
        "event": {"text": "Unwitnessed fall on the ward"},
        "subject": {"reference": "Patient/p1"},
        "date": "2026-10-01T02:00:00Z",
        "recordedDate": "2026-10-01T08:00:00Z",
    }
    data.update(overrides)
    return AdverseEvent.model_validate(data)


def response_task(status: str = "in-progress", **overrides: Any) -> Task:
    data: dict[str, Any] = {
        "resourceType": "Task",
        "id": "lr1",
        "status": status,
        "intent": "order",
        "code": {"coding": [{"system": RESPONSE_SYSTEM, "code": "psii"}]},
        "focus": {"reference": "AdverseEvent/ae1"},
        "for": {"reference": "Patient/p1"},
        "authoredOn": "2026-10-02T09:00:00Z",
        "owner": {"reference": "Practitioner/lead", "display": "Dr Ada Lead"},
    }
    data.update(overrides)
    return Task.model_validate(data)


def step_task(
    code: str, status: str = "requested", due: str | None = None, **overrides: Any
) -> Task:
    data: dict[str, Any] = {
        "resourceType": "Task",
        "id": f"step-{code}",
        "status": status,
        "intent": "order",
        "code": {"coding": [{"system": STEP_SYSTEM, "code": code}]},
        "focus": {"reference": "AdverseEvent/ae1"},
        "for": {"reference": "Patient/p1"},
        "partOf": [{"reference": "Task/lr1"}],
        "restriction": {
            "recipient": [{"reference": "RelatedPerson/rp1", "display": "Jane Example (daughter)"}]
        },
    }
    if due:
        data["restriction"]["period"] = {"end": due}
    data.update(overrides)
    return Task.model_validate(data)


def plan(**states: str) -> list[Task]:
    """A response Task and one step Task per step; ``states`` overrides statuses by step."""
    return [response_task()] + [
        step_task(code, states.get(code.replace("-", "_"), "requested")) for code in STEPS
    ]


def assess(tasks: list[Task], *, now: datetime = NOW, **kw: Any) -> rule.EngagementStatus:
    return rule.assess(
        kw.pop("event", incident()),
        tasks,
        now=now,
        zone=LONDON,
        settings=kw.pop("settings", SETTINGS),
        terminology=kw.pop("terminology"),
    )


def by_code(status: rule.EngagementStatus) -> dict[str, rule.StepStatus]:
    return {s.code: s for s in status.steps}


# -- due dates ---------------------------------------------------------------------------


def test_due_dates_defaults_follow_anchors() -> None:
    known = datetime(2026, 10, 1, 8, tzinfo=UTC)
    opened = datetime(2026, 10, 2, 9, tzinfo=UTC)
    due = opened + timedelta(days=90)
    dates = rule.due_dates(STEPS, known=known, opened=opened, due=due, settings=SETTINGS)
    assert dates == {
        "first-contact": known + timedelta(days=10),
        "questions-recorded": opened + timedelta(days=20),
        "terms-of-reference-shared": opened + timedelta(days=28),
        "family-evidence-taken": opened + timedelta(days=42),
        "draft-shared": due - timedelta(days=14),
        "final-shared": due,
    }


def test_due_dates_short_response_clamps_earlier_steps() -> None:
    opened = datetime(2026, 10, 2, tzinfo=UTC)
    due = opened + timedelta(days=14)  # a swarm huddle
    dates = rule.due_dates(STEPS, known=opened, opened=opened, due=due, settings=SETTINGS)
    assert dates["draft-shared"] == opened
    # No step falls due after the step that follows it.
    for earlier, later in itertools.pairwise(STEPS):
        assert dates[earlier] is not None
        assert dates[later] is not None
        assert dates[earlier] <= dates[later]


def test_due_dates_missing_anchor_gives_none() -> None:
    dates = rule.due_dates(STEPS, known=None, opened=None, due=None, settings=SETTINGS)
    assert set(dates.values()) == {None}


def test_due_dates_unconfigured_step_has_no_due_date() -> None:
    settings = IncidentSettings(
        step_due={"final-shared": EngagementStepDue(anchor="response-due", days=0)}
    )
    due = datetime(2026, 12, 1, tzinfo=UTC)
    dates = rule.due_dates(STEPS, known=due, opened=due, due=due, settings=settings)
    assert dates["first-contact"] is None
    assert dates["final-shared"] == due


@pytest.mark.parametrize(
    ("code", "days"),
    [("psii", 90), ("after-action-review", 30), ("swarm-huddle", 14), (None, 90), ("other", 90)],
)
def test_response_due_by_type_when_task_has_none(code: str | None, days: int) -> None:
    opened = datetime(2026, 10, 2, tzinfo=UTC)
    assert rule.response_due(None, code, opened, SETTINGS, LONDON) == opened + timedelta(days=days)


def test_response_due_written_on_task_wins() -> None:
    task = response_task(restriction={"period": {"end": "2026-12-24"}})
    opened = datetime(2026, 10, 2, tzinfo=UTC)
    assert rule.response_due(task, "psii", opened, SETTINGS, LONDON) == datetime(
        2026, 12, 24, tzinfo=LONDON
    )


def test_response_due_without_opening_is_unknown() -> None:
    assert rule.response_due(None, "psii", None, SETTINGS, LONDON) is None


# -- step states ----------------------------------------------------------------------------


def test_assess_first_contact_overdue_after_ten_days(terminology: Terminology) -> None:
    status = assess(plan(), terminology=terminology)
    steps = by_code(status)
    assert steps["first-contact"].state == "overdue"
    assert steps["first-contact"].due == date(2026, 10, 11)
    assert steps["questions-recorded"].due == date(2026, 10, 22)
    assert [s.code for s in status.overdue] == [
        "first-contact",
        "questions-recorded",
        "terms-of-reference-shared",
        "family-evidence-taken",
    ]
    assert status.next_step is not None
    assert status.next_step.code == "first-contact"
    assert status.open
    assert status.response_code == "psii"
    assert status.lead == "Dr Ada Lead"
    assert status.family == ("Jane Example (daughter)",)


@pytest.mark.parametrize(
    ("now", "state"),
    [
        (datetime(2026, 10, 11, 22, 59, tzinfo=UTC), "due-soon"),  # 23:59 London on the due day
        (datetime(2026, 10, 11, 23, 0, tzinfo=UTC), "overdue"),  # 00:00 London the next day
        (datetime(2026, 10, 4, 9, 0, tzinfo=UTC), "due-soon"),  # 7 days before: due soon
        (datetime(2026, 10, 3, 9, 0, tzinfo=UTC), "pending"),  # 8 days before
    ],
)
def test_assess_due_edges_on_local_calendar(
    terminology: Terminology, now: datetime, state: str
) -> None:
    status = assess(plan(), now=now, terminology=terminology)
    assert by_code(status)["first-contact"].state == state


def test_assess_completed_step_reports_date_and_lateness(terminology: Terminology) -> None:
    tasks = plan()
    tasks[1] = step_task(
        "first-contact",
        "completed",
        executionPeriod={"end": "2026-10-15T10:00:00Z"},
        output=[
            {
                "type": {"text": "Communication with the family"},
                "valueReference": {"reference": "Communication/c1"},
            }
        ],
    )
    step = by_code(assess(tasks, terminology=terminology))["first-contact"]
    assert step.state == "done"
    assert step.done_on == date(2026, 10, 15)
    assert step.late
    assert step.communications == ("Communication/c1",)


def test_assess_completed_on_time_is_not_late(terminology: Terminology) -> None:
    tasks = plan()
    tasks[1] = step_task("first-contact", "completed", lastModified="2026-10-05T10:00:00Z")
    step = by_code(assess(tasks, terminology=terminology))["first-contact"]
    assert (step.state, step.late, step.done_on) == ("done", False, date(2026, 10, 5))


@pytest.mark.parametrize(
    ("status", "state"),
    [("cancelled", "declined"), ("rejected", "declined"), ("on-hold", "paused")],
)
def test_assess_declined_and_paused_are_never_overdue(
    terminology: Terminology, status: str, state: str
) -> None:
    tasks = plan()
    tasks[1] = step_task("first-contact", status, statusReason={"text": "Family asked for time"})
    step = by_code(assess(tasks, terminology=terminology))["first-contact"]
    assert step.state == state
    assert step.reason == "Family asked for time"


def test_assess_missing_step_task_is_reported(terminology: Terminology) -> None:
    tasks = [t for t in plan() if t.id != "step-draft-shared"]
    status = assess(tasks, terminology=terminology)
    assert [s.code for s in status.missing] == ["draft-shared"]
    assert by_code(status)["draft-shared"].task_ref is None


def test_assess_agreed_due_date_on_task_wins(terminology: Terminology) -> None:
    tasks = plan()
    tasks[1] = step_task("first-contact", due="2026-12-10")
    step = by_code(assess(tasks, terminology=terminology))["first-contact"]
    assert (step.state, step.due) == ("pending", date(2026, 12, 10))


def test_assess_ignores_entered_in_error_and_other_incidents(terminology: Terminology) -> None:
    tasks = plan()
    tasks.append(step_task("first-contact", "completed", id="err", lastModified="2026-10-03"))
    tasks[-1] = tasks[-1].model_copy(update={"status": "entered-in-error"})
    other = step_task("first-contact", "completed", id="x", focus={"reference": "AdverseEvent/ae2"})
    status = assess([*tasks, other], terminology=terminology)
    assert by_code(status)["first-contact"].state == "overdue"


def test_assess_best_task_speaks_for_a_step(terminology: Terminology) -> None:
    tasks = plan()
    tasks.append(step_task("first-contact", "completed", id="again", lastModified="2026-10-09"))
    step = by_code(assess(tasks, terminology=terminology))["first-contact"]
    assert (step.state, step.task_ref) == ("done", "Task/again")


def test_assess_absolute_and_versioned_references_match(terminology: Terminology) -> None:
    tasks = [
        t.model_copy(
            update={
                "focus": Reference(reference="http://ehr.test/fhir/AdverseEvent/ae1/_history/3")
            }
        )
        for t in plan()
    ]
    status = assess(tasks, terminology=terminology)
    assert status.response_ref == "Task/lr1"
    assert not status.missing


def test_assess_open_response_preferred_over_closed_one(terminology: Terminology) -> None:
    closed = response_task("completed", id="lr0", authoredOn="2026-11-01T09:00:00Z")
    status = assess([closed, *plan()], terminology=terminology)
    assert status.response_ref == "Task/lr1"


def test_assess_chosen_response_without_task_is_not_open(terminology: Terminology) -> None:
    event = incident(
        extension=[
            {
                "url": rule.LEARNING_RESPONSE_EXTENSION,
                "valueCodeableConcept": {
                    "coding": [{"system": RESPONSE_SYSTEM, "code": "after-action-review"}]
                },
            }
        ]
    )
    status = assess([], event=event, terminology=terminology)
    assert status.response_code == "after-action-review"
    assert status.response_ref is None
    assert not status.open


def test_unmet_prerequisites_no_surprises(terminology: Terminology) -> None:
    status = assess(plan(), terminology=terminology)
    assert rule.unmet_prerequisites(status, "final-shared", SETTINGS) == ("draft-shared",)
    assert rule.unmet_prerequisites(status, "first-contact", SETTINGS) == ()
    tasks = plan(draft_shared="cancelled")
    declined = assess(tasks, terminology=terminology)
    assert rule.unmet_prerequisites(declined, "final-shared", SETTINGS) == ()


@pytest.mark.parametrize(
    ("status", "closed"),
    [
        ("completed", True),
        ("cancelled", True),
        ("failed", True),
        ("in-progress", False),
        (None, False),
    ],
)
def test_is_closed(status: str | None, closed: bool) -> None:
    assert rule.is_closed(status) is closed


# -- the patient-view card -----------------------------------------------------------------


def record(
    resources: dict[str, tuple[Any, ...]], unavailable: dict[str, str] | None = None
) -> PatientRecord:
    return PatientRecord(
        hook="patient-view",
        context={"patientId": "p1", "userId": "Practitioner/u1"},
        now=NOW,
        zone=LONDON,
        patient=None,
        resources=resources,
        unavailable=unavailable or {},
    )


def test_evaluate_open_investigation_gives_info_card(terminology: Terminology) -> None:
    findings = rule.evaluate(
        record({"AdverseEvent": (incident(),), "Task": tuple(plan())}), SETTINGS, terminology
    )
    assert len(findings) == 1
    finding = findings[0]
    assert finding.severity is Severity.INFO
    assert finding.summary == (
        "Open safety incident investigation (PSII): the family are partners in it; "
        "4 engagement steps overdue"
    )
    assert "Jane Example (daughter)" in finding.detail
    assert "Dr Ada Lead" in finding.detail
    assert "**overdue** (due 11 Oct 2026)" in finding.detail
    assert finding.evidence == ("AdverseEvent/ae1", "Task/lr1")
    assert finding.topic.code == "incident-family-partnership"


def test_evaluate_learning_response_other_than_psii(terminology: Terminology) -> None:
    tasks = plan(
        first_contact="completed",
        questions_recorded="completed",
        terms_of_reference_shared="completed",
        family_evidence_taken="completed",
    )
    tasks[0] = response_task(
        code={"coding": [{"system": RESPONSE_SYSTEM, "code": "after-action-review"}]},
        restriction={"period": {"end": "2026-12-31"}},
    )
    findings = rule.evaluate(
        record({"AdverseEvent": (incident(),), "Task": tuple(tasks)}), SETTINGS, terminology
    )
    assert findings[0].summary == (
        "Open safety incident learning response (AAR): the family are partners in it"
    )


def test_evaluate_closed_investigation_gives_no_card(terminology: Terminology) -> None:
    tasks = plan()
    tasks[0] = response_task("completed")
    assert (
        rule.evaluate(
            record({"AdverseEvent": (incident(),), "Task": tuple(tasks)}), SETTINGS, terminology
        )
        == []
    )


def test_evaluate_no_incident_gives_no_card_even_without_tasks(terminology: Terminology) -> None:
    assert rule.evaluate(record({}, {"Task": "server down"}), SETTINGS, terminology) == []


def test_evaluate_other_patients_incident_is_ignored(terminology: Terminology) -> None:
    other = incident(subject={"reference": "Patient/p2"})
    assert (
        rule.evaluate(
            record({"AdverseEvent": (other,), "Task": tuple(plan())}), SETTINGS, terminology
        )
        == []
    )


def test_evaluate_tasks_unavailable_says_could_not_check(terminology: Terminology) -> None:
    findings = rule.evaluate(
        record({"AdverseEvent": (incident(),)}, {"Task": "the FHIR server timed out"}),
        SETTINGS,
        terminology,
    )
    assert [f.rule_id for f in findings] == ["incident-family-partnership.could-not-check"]
    assert "timed out" in findings[0].detail


def test_evaluate_trust_link_is_added_when_configured(terminology: Terminology) -> None:
    settings = IncidentSettings(engagement_link_url="https://trust.example/psirf")
    finding = rule.evaluate(
        record({"AdverseEvent": (incident(),), "Task": tuple(plan())}), settings, terminology
    )[0]
    assert [link.url for link in finding.links][-1] == "https://trust.example/psirf"


def test_evaluate_no_family_recorded_says_so(terminology: Terminology) -> None:
    tasks = [t.model_copy(update={"restriction": None}) for t in plan()]
    finding = rule.evaluate(
        record({"AdverseEvent": (incident(),), "Task": tuple(tasks)}), SETTINGS, terminology
    )[0]
    assert "**Family contact**: **none recorded**" in finding.detail
