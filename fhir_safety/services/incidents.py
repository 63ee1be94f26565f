"""Incident investigations with the family as partners: open, record each step, report status.

All FHIR I/O goes through ``FhirClient``; the judgement (due dates, what is overdue, what may
be recorded when) is in the pure ``fhir_safety.rules.incident_engagement``.

- ``open_investigation``: one transaction creates (or updates) the ``AdverseEvent`` (profile
  ``safety-incident``, with the learning response in extension ``incident-learning-response``),
  the learning-response ``Task``, new ``RelatedPerson``s for family members named in the request,
  and one ``family-engagement-task`` Task per step of the ValueSet ``family-engagement-step``,
  each with its due date in ``restriction.period.end`` and the family in
  ``restriction.recipient``.
- ``record_step``: one transaction completes (or declines, pauses, reschedules) a step's Task
  and, for a step done, creates the ``Communication`` to the family member (``partOf`` and
  ``about`` the step, ``about`` the incident) that the Task's ``output`` links to. The family's
  questions are kept on the step's ``output`` and on the learning response's ``input``, so the
  final report can answer each one. "No surprises": the final report cannot be recorded as
  shared before the draft was shared or the family declined it.
- ``engagement_status`` / ``open_investigations``: where each incident stands.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any, Literal, TypeVar
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from fhir_safety.config import IncidentSettings
from fhir_safety.domain import PROJECT_CANONICAL
from fhir_safety.errors import FhirNotFoundError, FhirResponseError, InvalidRequestError
from fhir_safety.fhir.client import FhirClient
from fhir_safety.fhir.resources import AdverseEvent, Reference, Task, parse_fhir_datetime
from fhir_safety.rules import incident_engagement as engagement
from fhir_safety.rules.incident_engagement import EngagementStatus, StepStatus
from fhir_safety.terminology import Terminology

__all__ = [
    "FamilyMember",
    "IncidentNotFoundError",
    "IncidentService",
    "NewInvestigation",
    "StepRecord",
    "investigation_bundle",
    "status_json",
    "step_bundle",
]

SAFETY_INCIDENT_PROFILE = f"{PROJECT_CANONICAL}/StructureDefinition/safety-incident"
ENGAGEMENT_TASK_PROFILE = f"{PROJECT_CANONICAL}/StructureDefinition/family-engagement-task"
LEARNING_RESPONSE_SYSTEM = f"{PROJECT_CANONICAL}/CodeSystem/learning-response-type"
STEP_SYSTEM = f"{PROJECT_CANONICAL}/CodeSystem/family-engagement-step"
ROLE_CODE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
PARTICIPATION_MODE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ParticipationMode"
# HL7 v3 ParticipationMode: how the family was spoken to or written to (Communication.medium).
MEDIA = {
    "FACE": "face-to-face",
    "PHONE": "telephone",
    "VIDEOCONF": "videoconferencing",
    "EMAILWRIT": "email",
    "MAILWRIT": "mail",
}
# Task states from which a learning response or step can still move (FHIR R4 task-status).
OPEN_TASK_STATUSES = (
    "draft",
    "requested",
    "received",
    "accepted",
    "ready",
    "in-progress",
    "on-hold",
)
Outcome = Literal["done", "declined", "paused", "rescheduled"]


class IncidentNotFoundError(InvalidRequestError):
    """The incident (AdverseEvent) named in the request is not on the FHIR server."""


@dataclass(frozen=True, slots=True)
class FamilyMember:
    """An existing ``RelatedPerson/<id>``, or the details of one to create."""

    reference: str | None = None
    name: str | None = None
    relationship: str | None = None  # in words: "daughter"
    relationship_code: str | None = None  # HL7 v3 RoleCode, e.g. "DAUC"
    phone: str | None = None
    email: str | None = None

    def __post_init__(self) -> None:
        if self.reference is None and not self.name:
            raise InvalidRequestError("a family member needs a RelatedPerson reference or a name")
        if self.reference is not None and not self.reference.startswith("RelatedPerson/"):
            raise InvalidRequestError(f"{self.reference!r} is not a RelatedPerson reference")


@dataclass(frozen=True, slots=True)
class NewInvestigation:
    patient_id: str
    learning_response: str  # code in ValueSet learning-response-type
    event: str | None = None  # what happened, in plain words (for a new incident)
    occurred: str | None = None  # FHIR dateTime it happened (for a new incident)
    incident_id: str | None = None  # investigate this existing AdverseEvent instead
    encounter_id: str | None = None
    family: tuple[FamilyMember, ...] = ()
    lead: str | None = None  # Practitioner/PractitionerRole reference of the investigation lead
    lead_name: str | None = None
    due: str | None = None  # the learning response's due date (default: by type, local policy)


@dataclass(frozen=True, slots=True)
class StepRecord:
    step: str  # code in ValueSet family-engagement-step
    outcome: Outcome = "done"
    note: str | None = None  # what was said or shared (the Communication's payload)
    when: datetime | None = None  # default: now
    medium: str | None = None  # key of MEDIA
    recipient: str | None = None  # RelatedPerson/<id>; default: the step's recipients
    sender: str | None = None  # default: the investigation lead
    questions: tuple[str, ...] = ()  # the family's questions (step questions-recorded)
    document: str | None = None  # e.g. DocumentReference/<id> of the draft or final report
    due: str | None = None  # new agreed due date (outcome "rescheduled")


class IncidentService:
    """Investigations on one FHIR server, as seen with one access token."""

    def __init__(
        self,
        client: FhirClient,
        settings: IncidentSettings,
        terminology: Terminology,
        *,
        zone: ZoneInfo,
        clock: Callable[[], datetime],
        new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
    ) -> None:
        self._client = client
        self._settings = settings
        self._terminology = terminology
        self._zone = zone
        self._clock = clock
        self._new_id = new_id

    async def open_investigation(self, request: NewInvestigation) -> EngagementStatus:
        """Create the incident (or take an existing one), its learning response and the plan."""
        existing = None
        if request.incident_id is not None:
            existing = await self._read_incident(request.incident_id)
            status = await self.engagement_status(request.incident_id)
            if status.open:
                raise InvalidRequestError(
                    f"AdverseEvent/{request.incident_id} already has an open learning response "
                    f"({status.response_ref})"
                )
        family = [await self._known_family_member(m, request.patient_id) for m in request.family]
        bundle = investigation_bundle(
            replace(request, family=tuple(family)),
            existing,
            now=self._clock(),
            zone=self._zone,
            settings=self._settings,
            terminology=self._terminology,
            new_id=self._new_id,
        )
        reply = await self._client.post("", bundle)
        incident_id = request.incident_id or _created_id(reply, 0, "AdverseEvent")
        return await self.engagement_status(incident_id)

    async def record_step(self, incident_id: str, record: StepRecord) -> EngagementStatus:
        """Record that a step was done, declined, paused or rescheduled with the family."""
        status = await self.engagement_status(incident_id)
        step = _find_step(status, record.step)
        if step.task_ref is None:
            raise InvalidRequestError(
                f"AdverseEvent/{incident_id} has no Task for step {record.step!r} in its plan"
            )
        if step.state in {"done", "declined"}:
            raise InvalidRequestError(f"step {record.step!r} is already recorded as {step.state}")
        if record.outcome == "done":
            unmet = engagement.unmet_prerequisites(status, record.step, self._settings)
            if unmet:
                raise InvalidRequestError(
                    f"{record.step!r} cannot be recorded before {', '.join(unmet)} is done or "
                    "declined by the family (no surprises: they see the draft before the final)"
                )
        step_task = await self._client.read("Task", step.task_ref.removeprefix("Task/"))
        response_task = None
        if record.questions and status.response_ref is not None:
            response_task = await self._client.read(
                "Task", status.response_ref.removeprefix("Task/")
            )
        bundle = step_bundle(
            status,
            step_task,
            record,
            response_task=response_task,
            now=self._clock(),
            new_id=self._new_id,
        )
        await self._client.post("", bundle)
        return await self.engagement_status(incident_id)

    async def engagement_status(self, incident_id: str) -> EngagementStatus:
        incident = _parse(AdverseEvent, await self._read_incident(incident_id))
        tasks = await self._client.search_all(f"Task?focus=AdverseEvent/{incident_id}")
        return engagement.assess(
            incident,
            [_parse(Task, t) for t in tasks if t.get("resourceType") == "Task"],
            now=self._clock(),
            zone=self._zone,
            settings=self._settings,
            terminology=self._terminology,
        )

    async def open_investigations(self) -> list[EngagementStatus]:
        """Every incident with an open learning-response Task on the server."""
        query = f"Task?code={LEARNING_RESPONSE_SYSTEM}|&status={','.join(OPEN_TASK_STATUSES)}"
        responses = [_parse(Task, t) for t in await self._client.search_all(query)]
        incident_ids = list(
            dict.fromkeys(
                ref
                for t in responses
                if (ref := engagement.reference_id(t.focus, "AdverseEvent")) is not None
            )
        )
        statuses = await asyncio.gather(*(self.engagement_status(i) for i in incident_ids))
        return [s for s in statuses if s.open]

    async def _known_family_member(self, member: FamilyMember, patient_id: str) -> FamilyMember:
        """An existing RelatedPerson must exist and be related to this patient; take its name."""
        if member.reference is None:
            return member
        person_id = member.reference.removeprefix("RelatedPerson/")
        try:
            person = await self._client.read("RelatedPerson", person_id)
        except FhirNotFoundError as exc:
            raise InvalidRequestError(
                f"no {member.reference} on the FHIR server", location="family"
            ) from exc
        related_to = Reference(reference=(person.get("patient") or {}).get("reference"))
        if engagement.reference_id(related_to, "Patient") != patient_id:
            raise InvalidRequestError(
                f"{member.reference} is not related to Patient/{patient_id}", location="family"
            )
        relationship = [r.get("text") for r in person.get("relationship", []) if r.get("text")]
        return replace(
            member,
            name=member.name or _person_name(person),
            relationship=member.relationship or (relationship[0] if relationship else None),
        )

    async def _read_incident(self, incident_id: str) -> dict[str, Any]:
        try:
            return await self._client.read("AdverseEvent", incident_id)
        except FhirNotFoundError as exc:
            raise IncidentNotFoundError(
                f"no AdverseEvent/{incident_id} on the FHIR server", location="incidentId"
            ) from exc


# -- transaction builders (pure) ----------------------------------------------------------


def investigation_bundle(
    request: NewInvestigation,
    existing: Mapping[str, Any] | None,
    *,
    now: datetime,
    zone: ZoneInfo,
    settings: IncidentSettings,
    terminology: Terminology,
    new_id: Callable[[], str],
) -> dict[str, Any]:
    """The transaction that opens an investigation; entry 0 is always the AdverseEvent."""
    response = _concept(
        terminology, engagement.LEARNING_RESPONSE_VALUE_SET, request.learning_response
    )
    patient = {"reference": f"Patient/{request.patient_id}", "type": "Patient"}
    entries: list[dict[str, Any]] = []
    incident_url = _incident_entry(request, existing, response, patient, now, entries, new_id)
    family = [_family_reference(m, patient, entries, new_id) for m in request.family]
    lead = _lead(request)
    known = _incident_known(existing, now, zone)
    opened = now
    due = (
        _when(request.due, zone, "due")
        if request.due
        else engagement.response_due(
            None, request.learning_response, opened, settings=settings, zone=zone
        )
    )
    response_url = f"urn:uuid:{new_id()}"
    response_task: dict[str, Any] = {
        "resourceType": "Task",
        "status": "in-progress",
        "intent": "order",
        "code": {"coding": [response], "text": response["display"]},
        "description": f"{response['display']} into: {_event_text(existing, request)}",
        "focus": {"reference": incident_url, "type": "AdverseEvent"},
        "for": patient,
        "authoredOn": _iso(now),
        "restriction": {"period": {"start": _iso(now), "end": _day(due, zone)}},
    }
    if lead:
        response_task["owner"] = lead
    if family:
        response_task["restriction"]["recipient"] = family
    entries.append(_post(response_url, response_task))
    steps = terminology.expansion(engagement.STEP_VALUE_SET)
    dues = engagement.due_dates(
        [code for _, code, _ in steps], known=known, opened=opened, due=due, settings=settings
    )
    for system, code, display in steps:
        task: dict[str, Any] = {
            "resourceType": "Task",
            "meta": {"profile": [ENGAGEMENT_TASK_PROFILE]},
            "status": "requested",
            "intent": "order",
            "code": {"coding": [{"system": system, "code": code, "display": display}]},
            "focus": {"reference": incident_url, "type": "AdverseEvent"},
            "for": patient,
            "partOf": [{"reference": response_url, "type": "Task"}],
            "authoredOn": _iso(now),
            "restriction": {"period": {"start": _iso(now)}},
        }
        step_due = dues[code]
        if step_due is not None:
            task["restriction"]["period"]["end"] = _day(step_due, zone)
        if family:
            task["restriction"]["recipient"] = family
        if lead:
            task["owner"] = lead
        entries.append(_post(f"urn:uuid:{new_id()}", task))
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def step_bundle(
    status: EngagementStatus,
    step_task: Mapping[str, Any],
    record: StepRecord,
    *,
    response_task: Mapping[str, Any] | None,
    now: datetime,
    new_id: Callable[[], str],
) -> dict[str, Any]:
    """The transaction that records one step: the updated Task(s) and the Communication."""
    when = record.when or now
    task_url = f"urn:uuid:{new_id()}"
    version = (step_task.get("meta") or {}).get("versionId")
    task = {k: v for k, v in step_task.items() if k not in {"meta", "text"}}
    task["meta"] = {"profile": [ENGAGEMENT_TASK_PROFILE]}
    task["lastModified"] = _iso(now)
    entries: list[dict[str, Any]] = []
    if record.note:
        task["note"] = [*task.get("note", []), {"time": _iso(when), "text": record.note}]
    if record.outcome == "done":
        comm_url = f"urn:uuid:{new_id()}"
        entries.append(_post(comm_url, _communication(status, task, task_url, record, when)))
        task["status"] = "completed"
        task["executionPeriod"] = {**task.get("executionPeriod", {}), "end": _iso(when)}
        task["output"] = [
            *task.get("output", []),
            {"type": {"text": "Communication with the family"}, "valueReference": _ref(comm_url)},
            *(
                {"type": {"text": "Question from the family"}, "valueString": q}
                for q in record.questions
            ),
        ]
    elif record.outcome == "declined":
        task["status"] = "cancelled"
        task["statusReason"] = {"text": record.note or "Declined by the patient or family"}
    elif record.outcome == "paused":
        task["status"] = "on-hold"
        task["statusReason"] = {"text": record.note or "Paused at the family's request"}
    else:  # rescheduled: a new date agreed with the family
        if not record.due:
            raise InvalidRequestError("a rescheduled step needs the new agreed due date")
        restriction = dict(task.get("restriction", {}))
        restriction["period"] = {**restriction.get("period", {}), "end": record.due}
        task["restriction"] = restriction
        if task.get("status") == "on-hold":
            task["status"] = "requested"
    entries.insert(0, _put(task, task_url, if_match=version))
    if response_task is not None and record.questions:
        updated = dict(response_task)
        updated["input"] = [
            *updated.get("input", []),
            *(
                {"type": {"text": "Question from the family to be answered"}, "valueString": q}
                for q in record.questions
            ),
        ]
        entries.append(_put(updated, f"urn:uuid:{new_id()}"))
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def _communication(
    status: EngagementStatus,
    task: Mapping[str, Any],
    task_url: str,
    record: StepRecord,
    when: datetime,
) -> dict[str, Any]:
    task_ref = {"reference": task_url, "type": "Task"}
    recipients = (
        [{"reference": record.recipient, "type": "RelatedPerson"}]
        if record.recipient
        else list(task.get("restriction", {}).get("recipient", []))
    )
    if not recipients:
        raise InvalidRequestError(
            "no family member to record this with: give a recipient (RelatedPerson/<id>)"
        )
    payload: list[dict[str, Any]] = []
    if record.note:
        payload.append({"contentString": record.note})
    payload += [{"contentString": f"Question from the family: {q}"} for q in record.questions]
    if record.document:
        payload.append({"contentReference": {"reference": record.document}})
    if not payload:
        raise InvalidRequestError("say what was shared or discussed (note) or attach a document")
    code = (task.get("code") or {}).get("coding", [{}])[0]
    communication: dict[str, Any] = {
        "resourceType": "Communication",
        "status": "completed",
        "category": [{"text": "Patient safety incident: engagement with the patient and family"}],
        "subject": {"reference": status.patient_ref, "type": "Patient"},
        "topic": {"text": code.get("display") or record.step},
        "partOf": [task_ref],
        "about": [{"reference": status.incident_ref, "type": "AdverseEvent"}, task_ref],
        "sent": _iso(when),
        "recipient": recipients,
        "payload": payload,
    }
    if record.medium:
        if record.medium not in MEDIA:
            raise InvalidRequestError(
                f"medium must be one of {', '.join(MEDIA)}, not {record.medium!r}"
            )
        communication["medium"] = [
            {
                "coding": [
                    {
                        "system": PARTICIPATION_MODE_SYSTEM,
                        "code": record.medium,
                        "display": MEDIA[record.medium],
                    }
                ]
            }
        ]
    sender = record.sender or (task.get("owner") or {}).get("reference")
    if sender:
        communication["sender"] = {"reference": sender}
    return communication


def _incident_entry(
    request: NewInvestigation,
    existing: Mapping[str, Any] | None,
    response: dict[str, str],
    patient: dict[str, str],
    now: datetime,
    entries: list[dict[str, Any]],
    new_id: Callable[[], str],
) -> str:
    """Append the AdverseEvent entry; return the reference other entries use for it."""
    extension = {
        "url": engagement.LEARNING_RESPONSE_EXTENSION,
        "valueCodeableConcept": {"coding": [response]},
    }
    if existing is not None:
        subject = Reference(reference=(existing.get("subject") or {}).get("reference"))
        if engagement.reference_id(subject, "Patient") != request.patient_id:
            raise InvalidRequestError(
                f"AdverseEvent/{existing.get('id')} is not about Patient/{request.patient_id}",
                location="patientId",
            )
        incident = {k: v for k, v in existing.items() if k != "text"}
        incident["extension"] = [
            e for e in existing.get("extension", []) if e.get("url") != extension["url"]
        ] + [extension]
        profiles = (existing.get("meta") or {}).get("profile", [])
        incident["meta"] = {"profile": list(dict.fromkeys([*profiles, SAFETY_INCIDENT_PROFILE]))}
        url = f"urn:uuid:{new_id()}"
        entries.append(_put(incident, url, if_match=(existing.get("meta") or {}).get("versionId")))
        return url
    if not request.event or not request.occurred:
        raise InvalidRequestError(
            "a new incident needs what happened (event) and when (occurred)", location="event"
        )
    _check_datetime(request.occurred, "occurred")
    incident = {
        "resourceType": "AdverseEvent",
        "meta": {"profile": [SAFETY_INCIDENT_PROFILE]},
        "extension": [extension],
        "actuality": "actual",
        "event": {"text": request.event},
        "subject": patient,
        "date": request.occurred,
        "recordedDate": _iso(now),
    }
    if request.encounter_id:
        incident["encounter"] = {"reference": f"Encounter/{request.encounter_id}"}
    url = f"urn:uuid:{new_id()}"
    entries.append(_post(url, incident))
    return url


def _family_reference(
    member: FamilyMember,
    patient: dict[str, str],
    entries: list[dict[str, Any]],
    new_id: Callable[[], str],
) -> dict[str, str]:
    if member.reference is not None:
        ref = {"reference": member.reference, "type": "RelatedPerson"}
        if member.name:
            ref["display"] = _with_relationship(member)
        return ref
    person: dict[str, Any] = {
        "resourceType": "RelatedPerson",
        "active": True,
        "patient": patient,
        "name": [{"text": member.name}],
    }
    relationship: dict[str, Any] = {}
    if member.relationship_code:
        relationship["coding"] = [{"system": ROLE_CODE_SYSTEM, "code": member.relationship_code}]
    if member.relationship:
        relationship["text"] = member.relationship
    if relationship:
        person["relationship"] = [relationship]
    telecom = [
        {"system": system, "value": value}
        for system, value in (("phone", member.phone), ("email", member.email))
        if value
    ]
    if telecom:
        person["telecom"] = telecom
    url = f"urn:uuid:{new_id()}"
    entries.append(_post(url, person))
    return {"reference": url, "type": "RelatedPerson", "display": _with_relationship(member)}


def _with_relationship(member: FamilyMember) -> str:
    name = member.name or "family member"
    return f"{name} ({member.relationship})" if member.relationship else name


def _person_name(person: Mapping[str, Any]) -> str | None:
    for name in person.get("name", []):
        if name.get("text"):
            return str(name["text"])
        parts = [*name.get("given", []), name.get("family")]
        if any(parts):
            return " ".join(str(p) for p in parts if p)
    return None


def _lead(request: NewInvestigation) -> dict[str, str] | None:
    if request.lead is None:
        return None
    if not request.lead.startswith(("Practitioner/", "PractitionerRole/")):
        raise InvalidRequestError(
            "the lead must be a Practitioner/<id> or PractitionerRole/<id> reference",
            location="lead",
        )
    lead = {"reference": request.lead}
    if request.lead_name:
        lead["display"] = request.lead_name
    return lead


def _concept(terminology: Terminology, value_set: str, code: str) -> dict[str, str]:
    for system, member, display in terminology.expansion(value_set):
        if member == code:
            return {"system": system, "code": code, "display": display}
    allowed = ", ".join(c for _, c, _ in terminology.expansion(value_set))
    raise InvalidRequestError(f"{code!r} is not in {value_set} ({allowed})")


def _incident_known(existing: Mapping[str, Any] | None, now: datetime, zone: ZoneInfo) -> datetime:
    if existing is not None:
        for key in ("recordedDate", "detected", "date"):
            value = existing.get(key)
            if isinstance(value, str):
                return _when(value, zone, key)
    return now


def _event_text(existing: Mapping[str, Any] | None, request: NewInvestigation) -> str:
    if existing is not None:
        event = existing.get("event") or {}
        return str(event.get("text") or "the patient safety incident")
    return request.event or "the patient safety incident"


def _find_step(status: EngagementStatus, code: str) -> StepStatus:
    for step in status.steps:
        if step.code == code:
            return step
    allowed = ", ".join(s.code for s in status.steps)
    raise InvalidRequestError(f"{code!r} is not an engagement step ({allowed})", location="step")


def _created_id(reply: Mapping[str, Any], index: int, resource_type: str) -> str:
    """The id the server gave the transaction's entry ``index`` (from its response location)."""
    try:
        location = reply["entry"][index]["response"]["location"]
    except (KeyError, IndexError, TypeError) as exc:
        raise FhirResponseError(
            "the transaction response has no location for the incident"
        ) from exc
    parts = str(location).split("/_history/")[0].rstrip("/").split("/")
    if len(parts) < 2 or parts[-2] != resource_type:
        raise FhirResponseError(f"unexpected location in transaction response: {location}")
    return parts[-1]


M = TypeVar("M", AdverseEvent, Task)


def _parse(model: type[M], raw: Mapping[str, Any]) -> M:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        what = f"{raw.get('resourceType')}/{raw.get('id')}"
        raise FhirResponseError(f"{what} from the FHIR server is not valid: {exc}") from exc


def _post(full_url: str, resource: dict[str, Any]) -> dict[str, Any]:
    return {
        "fullUrl": full_url,
        "resource": resource,
        "request": {"method": "POST", "url": resource["resourceType"]},
    }


def _put(
    resource: Mapping[str, Any], full_url: str, *, if_match: str | None = None
) -> dict[str, Any]:
    """An update; ``full_url`` (urn:uuid) is how other entries refer to it (FHIR R4 Bundle)."""
    request = {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}"}
    version = if_match or (resource.get("meta") or {}).get("versionId")
    if version:
        request["ifMatch"] = f'W/"{version}"'
    return {"fullUrl": full_url, "resource": dict(resource), "request": request}


def _ref(url: str) -> dict[str, str]:
    return {"reference": url, "type": "Communication"}


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _day(moment: datetime | None, zone: ZoneInfo) -> str | None:
    return moment.astimezone(zone).date().isoformat() if moment else None


def _when(value: str, zone: ZoneInfo, name: str) -> datetime:
    try:
        return parse_fhir_datetime(value, local_zone=zone)
    except ValueError as exc:
        raise InvalidRequestError(f"{name}: {exc}", location=name) from exc


def _check_datetime(value: str, name: str) -> None:
    _when(value, ZoneInfo("UTC"), name)


# -- JSON view ----------------------------------------------------------------------------


def status_json(status: EngagementStatus) -> dict[str, Any]:
    """The engagement status as the API and ``fhir-safety incident status --json`` show it."""
    next_step = status.next_step
    return {
        "incident": status.incident_ref,
        "patient": status.patient_ref,
        "event": status.event,
        "incidentDate": _date(status.incident_date),
        "learningResponse": {
            "task": status.response_ref,
            "type": status.response_code,
            "display": status.response_display,
            "status": status.response_status,
            "open": status.open,
            "opened": _date(status.opened),
            "due": _date(status.response_due),
            "lead": status.lead,
        },
        "family": list(status.family),
        "overdue": [s.code for s in status.overdue],
        "missing": [s.code for s in status.missing],
        "nextStep": next_step.code if next_step else None,
        "steps": [
            {
                "step": s.code,
                "display": s.display,
                "state": s.state,
                "task": s.task_ref,
                "due": _date(s.due),
                "doneOn": _date(s.done_on),
                "late": s.late,
                "reason": s.reason,
                "with": list(s.recipients),
                "communications": list(s.communications),
            }
            for s in status.steps
        ],
    }


def _date(value: date | None) -> str | None:
    return value.isoformat() if value else None


def parse_step_outcome(value: str) -> Outcome:
    if value not in {"done", "declined", "paused", "rescheduled"}:
        raise InvalidRequestError(
            f"outcome must be done, declined, paused or rescheduled: {value!r}"
        )
    return value  # type: ignore[return-value]


def describe_steps(steps: Sequence[StepStatus]) -> list[tuple[str, str]]:
    """(step display, state in words) rows for the CLI table."""
    rows = []
    for step in steps:
        due = step.due.isoformat() if step.due else "-"
        state = {
            "done": f"done {step.done_on.isoformat() if step.done_on else ''}".strip()
            + (" (late)" if step.late else ""),
            "declined": "declined" + (f": {step.reason}" if step.reason else ""),
            "paused": "paused" + (f": {step.reason}" if step.reason else ""),
            "overdue": f"OVERDUE (due {due})",
            "due-soon": f"due soon ({due})",
            "pending": f"due {due}",
            "missing": "not in the plan",
        }[step.state]
        rows.append((step.display, state))
    return rows
