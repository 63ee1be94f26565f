"""Incident service against an in-memory FHIR server (pytest-httpx): open, record, status."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from fhir.resources.R4B import get_fhir_model_class
from pytest_httpx import HTTPXMock

from fhir_safety.config import IncidentSettings
from fhir_safety.errors import InvalidRequestError
from fhir_safety.fhir.client import FhirClient
from fhir_safety.services.incidents import (
    ENGAGEMENT_TASK_PROFILE,
    SAFETY_INCIDENT_PROFILE,
    FamilyMember,
    IncidentNotFoundError,
    IncidentService,
    NewInvestigation,
    StepRecord,
    describe_steps,
    parse_step_outcome,
    status_json,
)
from fhir_safety.terminology import Terminology
from tests.unit.services.fake_fhir import BASE, FakeFhirServer

NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
LONDON = ZoneInfo("Europe/London")

NEW = NewInvestigation(
    patient_id="p1",
    learning_response="psii",
    event="Unwitnessed fall on the ward; fractured wrist",
    occurred="2026-11-20T02:00:00Z",
    family=(FamilyMember(name="Jane Example", relationship="daughter", phone="07700 900123"),),
    lead="Practitioner/lead",
    lead_name="Dr Ada Lead",
)


@pytest.fixture
def server(httpx_mock: HTTPXMock) -> FakeFhirServer:
    fake = FakeFhirServer()
    httpx_mock.add_callback(fake, is_reusable=True, is_optional=True)
    return fake


@pytest.fixture
async def service(
    server: FakeFhirServer,  # noqa: ARG001 - the fake server must be installed first
    terminology: Terminology,
) -> AsyncIterator[IncidentService]:
    counter = itertools.count(1)
    async with httpx.AsyncClient() as http:
        yield IncidentService(
            FhirClient(http, BASE),
            IncidentSettings(),
            terminology,
            zone=LONDON,
            clock=lambda: NOW,
            new_id=lambda: f"00000000-0000-0000-0000-{next(counter):012d}",
        )


def assert_valid_r4(resource: dict[str, Any]) -> None:
    get_fhir_model_class(resource["resourceType"]).model_validate(resource)


def steps(status_dict: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["step"]: s for s in status_dict["steps"]}


async def test_open_investigation_creates_incident_response_and_plan(
    service: IncidentService, server: FakeFhirServer
) -> None:
    status = await service.open_investigation(NEW)
    [incident] = server.of_type("AdverseEvent")
    assert incident["meta"]["profile"] == [SAFETY_INCIDENT_PROFILE]
    assert incident["extension"][0]["valueCodeableConcept"]["coding"][0]["code"] == "psii"
    assert incident["recordedDate"] == "2026-11-26T09:00:00Z"
    [person] = server.of_type("RelatedPerson")
    assert person["patient"] == {"reference": "Patient/p1", "type": "Patient"}
    tasks = server.of_type("Task")
    assert len(tasks) == 7
    step_tasks = [t for t in tasks if t.get("meta", {}).get("profile") == [ENGAGEMENT_TASK_PROFILE]]
    assert len(step_tasks) == 6
    for task in step_tasks:
        assert task["focus"]["reference"] == f"AdverseEvent/{incident['id']}"
        assert task["restriction"]["recipient"][0]["reference"] == f"RelatedPerson/{person['id']}"
        assert task["partOf"][0]["reference"].startswith("Task/")
    for resource in server.store.values():
        assert_valid_r4(resource)
    view = status_json(status)
    assert view["learningResponse"]["open"] is True
    assert view["learningResponse"]["due"] == "2027-02-24"  # PSII: 90 days (local policy)
    assert view["family"] == ["Jane Example (daughter)"]
    assert steps(view)["first-contact"]["due"] == "2026-12-06"
    assert steps(view)["draft-shared"]["due"] == "2027-02-10"
    assert view["overdue"] == []
    assert view["nextStep"] == "first-contact"


async def test_open_investigation_on_existing_incident_updates_it(
    service: IncidentService, server: FakeFhirServer
) -> None:
    server.add(
        {
            "resourceType": "AdverseEvent",
            "id": "ae9",
            "actuality": "actual",
            "event": {"text": "Medication given twice"},
            "subject": {"reference": "Patient/p1"},
            "date": "2026-11-01T10:00:00Z",
            "recordedDate": "2026-11-01T12:00:00Z",
        }
    )
    server.add(
        {
            "resourceType": "RelatedPerson",
            "id": "rp1",
            "patient": {"reference": "Patient/p1"},
            "name": [{"given": ["Sam"], "family": "Example"}],
            "relationship": [{"text": "son"}],
        }
    )
    request = NewInvestigation(
        patient_id="p1",
        learning_response="after-action-review",
        incident_id="ae9",
        family=(FamilyMember(reference="RelatedPerson/rp1"),),
        due="2026-12-20",
    )
    status = await service.open_investigation(request)
    put = [e for e in server.transactions[0]["entry"] if e["request"]["method"] == "PUT"]
    assert put[0]["request"] == {"method": "PUT", "url": "AdverseEvent/ae9", "ifMatch": 'W/"1"'}
    incident = server.store[("AdverseEvent", "ae9")]
    assert SAFETY_INCIDENT_PROFILE in incident["meta"]["profile"]
    assert status.family == ("Sam Example (son)",)
    assert status.response_due is not None
    assert status.response_due.isoformat() == "2026-12-20"
    # First contact is due 10 days after the incident was recorded, so it is already overdue.
    assert [s.code for s in status.overdue] == ["first-contact"]
    with pytest.raises(InvalidRequestError, match="already has an open learning response"):
        await service.open_investigation(request)


async def test_open_investigation_refuses_an_incident_about_another_patient(
    service: IncidentService, server: FakeFhirServer
) -> None:
    server.add(
        {
            "resourceType": "AdverseEvent",
            "id": "ae2",
            "actuality": "actual",
            "subject": {"reference": "Patient/other"},
        }
    )
    request = NewInvestigation(patient_id="p1", learning_response="psii", incident_id="ae2")
    with pytest.raises(InvalidRequestError, match="is not about Patient/p1"):
        await service.open_investigation(request)


async def test_open_investigation_unknown_incident_is_a_request_error(
    service: IncidentService,
) -> None:
    request = NewInvestigation(patient_id="p1", learning_response="psii", incident_id="nope")
    with pytest.raises(IncidentNotFoundError, match="no AdverseEvent/nope"):
        await service.open_investigation(request)


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (NewInvestigation(patient_id="p1", learning_response="root-cause-analysis"), "not in"),
        (NewInvestigation(patient_id="p1", learning_response="psii"), "needs what happened"),
        (
            NewInvestigation(
                patient_id="p1", learning_response="psii", event="x", occurred="yesterday"
            ),
            "not a FHIR",
        ),
        (
            NewInvestigation(
                patient_id="p1",
                learning_response="psii",
                event="x",
                occurred="2026",
                lead="Nurse/1",
            ),
            "Practitioner",
        ),
    ],
)
async def test_open_investigation_bad_requests(
    service: IncidentService, request_: NewInvestigation, message: str
) -> None:
    with pytest.raises(InvalidRequestError, match=message):
        await service.open_investigation(request_)


def test_family_member_needs_reference_or_name() -> None:
    with pytest.raises(InvalidRequestError, match="reference or a name"):
        FamilyMember()
    with pytest.raises(InvalidRequestError, match="not a RelatedPerson"):
        FamilyMember(reference="Patient/p1")


async def test_record_first_contact_creates_communication(
    service: IncidentService, server: FakeFhirServer
) -> None:
    opened = await service.open_investigation(NEW)
    incident_id = opened.incident_ref.removeprefix("AdverseEvent/")
    status = await service.record_step(
        incident_id,
        StepRecord(
            step="first-contact",
            note="Met Jane on the ward, apologised and explained the investigation.",
            medium="FACE",
        ),
    )
    [communication] = server.of_type("Communication")
    assert_valid_r4(communication)
    # The step's Task is updated only if nobody changed it meanwhile.
    update = server.transactions[-1]["entry"][0]
    assert update["request"]["ifMatch"] == 'W/"1"'
    assert update["fullUrl"].startswith("urn:uuid:")
    assert communication["partOf"][0]["reference"] == update["request"]["url"]
    assert communication["recipient"][0]["reference"].startswith("RelatedPerson/")
    assert communication["subject"]["reference"] == "Patient/p1"
    assert communication["about"][0]["reference"] == opened.incident_ref
    assert communication["medium"][0]["coding"][0]["code"] == "FACE"
    assert communication["sender"] == {"reference": "Practitioner/lead"}
    step = steps(status_json(status))["first-contact"]
    assert step["state"] == "done"
    assert step["doneOn"] == "2026-11-26"
    assert step["communications"] == [f"Communication/{communication['id']}"]
    task = server.store[("Task", step["task"].removeprefix("Task/"))]
    assert_valid_r4(task)
    assert task["status"] == "completed"
    with pytest.raises(InvalidRequestError, match="already recorded as done"):
        await service.record_step(incident_id, StepRecord(step="first-contact", note="again"))


async def test_record_questions_go_on_step_and_learning_response(
    service: IncidentService, server: FakeFhirServer
) -> None:
    opened = await service.open_investigation(NEW)
    incident_id = opened.incident_ref.removeprefix("AdverseEvent/")
    questions = ("Why was the call bell not answered?", "Who checked Mum after she fell?")
    await service.record_step(
        incident_id,
        StepRecord(step="questions-recorded", note="Call with Jane", questions=questions),
    )
    response = server.store[("Task", opened.response_ref.removeprefix("Task/"))]  # type: ignore[union-attr]
    assert [i["valueString"] for i in response["input"]] == list(questions)
    assert_valid_r4(response)
    [communication] = server.of_type("Communication")
    assert communication["payload"][1]["contentString"].startswith("Question from the family")


async def test_record_final_before_draft_is_refused_no_surprises(
    service: IncidentService, server: FakeFhirServer
) -> None:
    opened = await service.open_investigation(NEW)
    incident_id = opened.incident_ref.removeprefix("AdverseEvent/")
    with pytest.raises(InvalidRequestError, match="no surprises"):
        await service.record_step(incident_id, StepRecord(step="final-shared", note="Report sent"))
    await service.record_step(
        incident_id,
        StepRecord(
            step="draft-shared", outcome="declined", note="Jane asked to see the final only"
        ),
    )
    status = await service.record_step(
        incident_id,
        StepRecord(step="final-shared", note="Report sent", document="DocumentReference/r1"),
    )
    view = steps(status_json(status))
    assert view["draft-shared"]["state"] == "declined"
    assert view["draft-shared"]["reason"] == "Jane asked to see the final only"
    assert view["final-shared"]["state"] == "done"
    [communication] = server.of_type("Communication")
    assert communication["payload"][-1] == {
        "contentReference": {"reference": "DocumentReference/r1"}
    }


async def test_record_pause_and_reschedule(
    service: IncidentService, server: FakeFhirServer
) -> None:
    opened = await service.open_investigation(NEW)
    incident_id = opened.incident_ref.removeprefix("AdverseEvent/")
    paused = await service.record_step(
        incident_id, StepRecord(step="family-evidence-taken", outcome="paused")
    )
    assert steps(status_json(paused))["family-evidence-taken"]["state"] == "paused"
    moved = await service.record_step(
        incident_id,
        StepRecord(step="family-evidence-taken", outcome="rescheduled", due="2027-01-15"),
    )
    step = steps(status_json(moved))["family-evidence-taken"]
    assert (step["state"], step["due"]) == ("pending", "2027-01-15")
    with pytest.raises(InvalidRequestError, match="new agreed due date"):
        await service.record_step(
            incident_id, StepRecord(step="family-evidence-taken", outcome="rescheduled")
        )
    assert server.of_type("Communication") == []


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (StepRecord(step="apology"), "not an engagement step"),
        (StepRecord(step="first-contact"), "say what was shared"),
        (StepRecord(step="first-contact", note="x", medium="PIGEON"), "medium must be one of"),
    ],
)
async def test_record_bad_requests(
    service: IncidentService, record: StepRecord, message: str
) -> None:
    opened = await service.open_investigation(NEW)
    with pytest.raises(InvalidRequestError, match=message):
        await service.record_step(opened.incident_ref.removeprefix("AdverseEvent/"), record)


async def test_record_without_family_needs_a_recipient(service: IncidentService) -> None:
    alone = NewInvestigation(
        patient_id="p1", learning_response="swarm-huddle", event="Near miss", occurred="2026-11-25"
    )
    opened = await service.open_investigation(alone)
    incident_id = opened.incident_ref.removeprefix("AdverseEvent/")
    with pytest.raises(InvalidRequestError, match="no family member"):
        await service.record_step(incident_id, StepRecord(step="first-contact", note="Called"))
    status = await service.record_step(
        incident_id,
        StepRecord(
            step="first-contact", note="Called the patient's son", recipient="RelatedPerson/s1"
        ),
    )
    assert steps(status_json(status))["first-contact"]["state"] == "done"


async def test_open_investigations_lists_only_open_ones(
    service: IncidentService, server: FakeFhirServer
) -> None:
    first = await service.open_investigation(NEW)
    second = await service.open_investigation(
        NewInvestigation(
            patient_id="p2", learning_response="mdt-review", event="x", occurred="2026"
        )
    )
    response = server.store[("Task", second.response_ref.removeprefix("Task/"))]  # type: ignore[union-attr]
    response["status"] = "completed"
    listed = await service.open_investigations()
    assert [s.incident_ref for s in listed] == [first.incident_ref]
    query = next(str(r.url) for r in server.requests if "code=" in str(r.url))
    assert "status=draft%2Crequested" in query or "status=draft,requested" in query


def test_parse_step_outcome() -> None:
    assert parse_step_outcome("declined") == "declined"
    with pytest.raises(InvalidRequestError):
        parse_step_outcome("forgotten")


async def test_describe_steps_words(service: IncidentService) -> None:
    status = await service.open_investigation(NEW)
    rows = dict(describe_steps(status.steps))
    assert rows["First contact with the patient or family"] == "due 2026-12-06"


@pytest.mark.parametrize(
    ("person", "message"),
    [
        (None, "no RelatedPerson/rp7 on the FHIR server"),
        ({"patient": {"reference": "Patient/someone-else"}}, "is not related to Patient/p1"),
    ],
)
async def test_open_investigation_checks_the_family_member(
    service: IncidentService, server: FakeFhirServer, person: dict[str, Any] | None, message: str
) -> None:
    if person is not None:
        server.add({"resourceType": "RelatedPerson", "id": "rp7", **person})
    request = NewInvestigation(
        patient_id="p1",
        learning_response="psii",
        event="x",
        occurred="2026-11-20",
        family=(FamilyMember(reference="RelatedPerson/rp7"),),
    )
    with pytest.raises(InvalidRequestError, match=message):
        await service.open_investigation(request)
    assert server.transactions == []
