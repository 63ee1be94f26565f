"""The patient's voice into the record: what the concern form reads and writes on the FHIR server.

The form (``fhir_safety.concern_form``) asks "How is [first name] today: better, the same or
worse? Are you worried about them?", who is answering, and lets them add their own words.
This module:

* reads the patient for the form: the first name only, and whether the record can take a
  concern (it exists, is active, the patient is alive and, by default, has an Encounter in
  progress: a link kept after discharge must not send the outreach team to an empty bed);
* writes one ``patient-concern`` Observation per submission (plus a RelatedPerson when a family
  member or carer answers) in one transaction, with ids derived from the form token, so that
  the same submission written twice is still one Observation;
* for a *worried* or *worse* answer, makes sure the outreach team is asked: it creates the
  Martha's Rule Task at once (``ConcernEscalator``, the same deterministic Task the
  Subscription path creates, so never two), and otherwise looks for the Task the Subscription
  path makes. The receipt says honestly which happened, so the form never tells a worried
  family "the team has been asked" when nobody was.

Logs carry ids, never names, answers or free text.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from fhir_safety.config import Settings
from fhir_safety.domain import PROJECT_CANONICAL
from fhir_safety.errors import FhirError, FhirNotFoundError, FhirSafetyError
from fhir_safety.fhir import resources as fhir
from fhir_safety.fhir.client import FhirClient
from fhir_safety.rules.concern import CONCERN_SYSTEM, ESCALATING_LEVELS, LEVEL_SYSTEM
from fhir_safety.services.escalation import EscalationOutcome, escalation_task_id
from fhir_safety.services.record import parse_resource
from fhir_safety.terminology import Terminology

__all__ = [
    "CONCERN_PROFILE",
    "ConcernAnswers",
    "ConcernSubmitter",
    "EscalationState",
    "FormPatient",
    "PatientNotReachableError",
    "SubmissionReceipt",
    "concern_observation_id",
    "concern_resources",
    "first_name",
    "watches_concerns",
]

log = logging.getLogger(__name__)

CONCERN_PROFILE = f"{PROJECT_CANONICAL}/StructureDefinition/patient-concern"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
# HL7 v3 RoleCode FAMMEMB "family member" (in R4's PatientRelationshipType value set). There is
# no carer code there: a carer's relationship is text only.
V3_ROLE_CODE = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
FORM_METHOD = "Patient and family concern form (ward link)"

Who = Literal["patient", "family", "carer"]
HowToday = Literal["better", "same", "worse"]
# Requested: the Task is on the server. Being requested: not seen yet, but an active
# Subscription for concerns is registered with our receiver. Not requested: neither.
EscalationState = Literal["not-needed", "requested", "being-requested", "not-requested"]
Escalate = Callable[[dict[str, Any]], Awaitable[EscalationOutcome]]

# Who answered -> the project code that says so (CodeSystem patient-concern): the card reads
# "A carer" from carer-concern on a RelatedPerson performer (rules/concern.py).
_WHO_CODE: dict[Who, str] = {
    "patient": "patient-concern",
    "family": "family-concern",
    "carer": "carer-concern",
}
_RELATED: dict[Who, dict[str, Any]] = {
    "family": {
        "coding": [{"system": V3_ROLE_CODE, "code": "FAMMEMB", "display": "family member"}],
        "text": "Family member",
    },
    "carer": {"text": "Carer"},
}
_NAME_USE_ORDER = ("usual", "official", None, "nickname", "temp")


class PatientNotReachableError(FhirSafetyError):
    """The record cannot take a concern from the form (gone, inactive, died, not admitted)."""


@dataclass(frozen=True, slots=True)
class ConcernAnswers:
    """What the person said on the form (already checked by the form)."""

    how_today: HowToday
    worried: bool
    who: Who
    note: str | None = None
    name: str | None = None  # family member or carer, optional
    phone: str | None = None  # family member or carer, optional

    @property
    def headline(self) -> str:
        """The Observation's value: "worried" when they are worried, else how the patient is."""
        return "worried" if self.worried else self.how_today

    @property
    def escalates(self) -> bool:
        return self.worried or self.how_today in ESCALATING_LEVELS


@dataclass(frozen=True, slots=True)
class FormPatient:
    """The little the form knows about the patient."""

    patient_id: str
    first_name: str | None
    encounter_id: str | None


@dataclass(frozen=True, slots=True)
class SubmissionReceipt:
    observation_id: str
    escalation: EscalationState
    task_id: str | None = None


def concern_observation_id(submission_id: str) -> str:
    """``concern-form-`` + the form token's 32 hex digits: one submission, one Observation."""
    return f"concern-form-{submission_id}"


def _related_person_id(submission_id: str) -> str:
    return f"concern-person-{submission_id}"


def first_name(patient: fhir.Patient) -> str | None:
    """The name the patient is called by: usual, else official, else any; given name only."""
    names = [n for n in patient.name if n.use not in {"old", "anonymous", "maiden"}]
    for use in _NAME_USE_ORDER:
        for name in names:
            if name.use == use and name.given and name.given[0].strip():
                return name.given[0].strip()[:40]
    return None


def concern_resources(
    *,
    answers: ConcernAnswers,
    patient: FormPatient,
    submission_id: str,
    now: datetime,
    terminology: Terminology,
) -> list[dict[str, Any]]:
    """The RelatedPerson (family member or carer) and the ``patient-concern`` Observation."""
    when = now.isoformat(timespec="seconds")
    subject = {"reference": f"Patient/{patient.patient_id}"}
    written: list[dict[str, Any]] = []
    if answers.who == "patient":
        performer = subject | {"display": "The patient"}
    else:
        person = _related_person(answers, patient, submission_id)
        written.append(person)
        shown = answers.name or _RELATED[answers.who]["text"]
        performer = {"reference": f"RelatedPerson/{person['id']}", "display": shown}
    observation: dict[str, Any] = {
        "resourceType": "Observation",
        "id": concern_observation_id(submission_id),
        "meta": {"profile": [CONCERN_PROFILE]},
        "status": "final",
        "category": [
            {"coding": [{"system": OBSERVATION_CATEGORY, "code": "survey", "display": "Survey"}]}
        ],
        "code": {
            "coding": [
                _coding(terminology, CONCERN_SYSTEM, "concern-observation"),
                _coding(terminology, CONCERN_SYSTEM, _WHO_CODE[answers.who]),
            ],
            "text": "How is the patient today, and is anyone worried?",
        },
        "subject": subject,
    }
    if patient.encounter_id:
        observation["encounter"] = {"reference": f"Encounter/{patient.encounter_id}"}
    observation |= {
        "effectiveDateTime": when,
        "issued": when,
        "performer": [performer],
        "valueCodeableConcept": _answer(terminology, answers.headline),
        "method": {"text": FORM_METHOD},
        "component": [
            {
                "code": {"text": "How is the patient today?"},
                "valueCodeableConcept": _answer(terminology, answers.how_today),
            },
            {
                "code": {"text": "Are you worried about the patient?"},
                "valueCodeableConcept": _answer(
                    terminology, "worried" if answers.worried else "not-worried"
                ),
            },
        ],
    }
    if answers.note:
        observation["note"] = [{"authorReference": performer, "time": when, "text": answers.note}]
    written.append(observation)
    return written


def _related_person(
    answers: ConcernAnswers, patient: FormPatient, submission_id: str
) -> dict[str, Any]:
    person: dict[str, Any] = {
        "resourceType": "RelatedPerson",
        "id": _related_person_id(submission_id),
        "active": True,
        "patient": {"reference": f"Patient/{patient.patient_id}"},
        "relationship": [_RELATED[answers.who]],
    }
    if answers.name:
        person["name"] = [{"text": answers.name}]
    if answers.phone:
        person["telecom"] = [{"system": "phone", "value": answers.phone}]
    return person


def _coding(terminology: Terminology, system: str, code: str) -> dict[str, str]:
    return {"system": system, "code": code, "display": terminology.display(system, code) or code}


def _answer(terminology: Terminology, code: str) -> dict[str, Any]:
    coding = _coding(terminology, LEVEL_SYSTEM, code)
    return {"coding": [coding], "text": coding["display"]}


def watches_concerns(subscription: dict[str, Any]) -> bool:
    """An active rest-hook Subscription that notifies our receiver of concern Observations."""
    channel = subscription.get("channel") or {}
    criteria = str(subscription.get("criteria") or "")
    resource_type, _, query = criteria.partition("?")
    return (
        subscription.get("status") == "active"
        and channel.get("type") == "rest-hook"
        and "/subscriptions/notify" in str(channel.get("endpoint") or "")
        and resource_type == "Observation"
        and (not query or "concern-observation" in query or "patient-concern" in query)
    )


class ConcernSubmitter:
    """Reads the patient for the form and writes what the person said."""

    def __init__(
        self,
        client: FhirClient,
        settings: Settings,
        terminology: Terminology,
        clock: Callable[[], datetime],
        *,
        escalate: Escalate | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._client = client
        self._settings = settings
        self._form = settings.concern_form
        self._terminology = terminology
        self._clock = clock
        self._escalate = escalate
        self._sleep = sleep

    async def patient(self, patient_id: str) -> FormPatient:
        """The patient the link names; ``PatientNotReachableError`` when they cannot be asked."""
        try:
            raw = await self._client.read("Patient", patient_id)
        except FhirNotFoundError as exc:
            raise PatientNotReachableError(f"Patient/{patient_id} not found") from exc
        parsed = parse_resource(raw, f"Patient/{patient_id}")
        assert isinstance(parsed, fhir.Patient)
        if parsed.active is False:
            raise PatientNotReachableError(f"Patient/{patient_id} is not active")
        if parsed.deceased_boolean or parsed.deceased_date_time:
            raise PatientNotReachableError(f"Patient/{patient_id} has died")
        encounter_id = await self._encounter_in_progress(patient_id)
        if encounter_id is None and self._form.require_admission:
            raise PatientNotReachableError(f"Patient/{patient_id} has no encounter in progress")
        return FormPatient(patient_id, first_name(parsed), encounter_id)

    async def _encounter_in_progress(self, patient_id: str) -> str | None:
        found = await self._client.search_all(
            f"Encounter?patient={patient_id}&status=in-progress&_count=10"
        )
        ids = sorted(str(e["id"]) for e in found if e.get("resourceType") == "Encounter")
        return ids[0] if ids else None

    async def submit(
        self, patient: FormPatient, answers: ConcernAnswers, submission_id: str
    ) -> SubmissionReceipt:
        """Write the concern (and the relative), then see that a worry reaches the team."""
        resources = concern_resources(
            answers=answers,
            patient=patient,
            submission_id=submission_id,
            now=self._clock(),
            terminology=self._terminology,
        )
        await self._client.post("", _transaction(self._client.base_url, resources))
        observation = resources[-1]
        receipt = await self._escalation(observation, answers)
        log.info(
            "concern form answer written",
            extra={
                "fields": {
                    "observation": observation["id"],
                    "escalation": receipt.escalation,
                    "task": receipt.task_id,
                }
            },
        )
        return receipt

    async def _escalation(
        self, observation: dict[str, Any], answers: ConcernAnswers
    ) -> SubmissionReceipt:
        observation_id = str(observation["id"])
        if not answers.escalates:
            return SubmissionReceipt(observation_id, "not-needed")
        task_id = escalation_task_id(f"Observation/{observation_id}")
        if self._escalate is not None and self._form.escalate_on_submit:
            try:
                outcome = await self._escalate(observation)
            except FhirError as exc:
                log.warning(
                    "concern form could not create the escalation Task",
                    extra={"fields": {"observation": observation_id, "error": type(exc).__name__}},
                )
            else:
                if outcome.action in {"created", "exists"}:
                    made = (outcome.task or {}).get("id") or task_id
                    return SubmissionReceipt(observation_id, "requested", str(made))
                log.warning(
                    "concern form answer not escalated",
                    extra={"fields": {"observation": observation_id, "reason": outcome.reason}},
                )
        if not await self._subscription_configured():
            return SubmissionReceipt(observation_id, "not-requested")
        if await self._task_appears(task_id):
            return SubmissionReceipt(observation_id, "requested", task_id)
        return SubmissionReceipt(observation_id, "being-requested", task_id)

    async def _subscription_configured(self) -> bool:
        """Our receiver has its secret and the server has an active Subscription for concerns."""
        if not self._settings.subscription_secret:
            return False
        try:
            subscriptions = await self._client.search_all("Subscription?status=active")
        except FhirError:
            return False
        return any(watches_concerns(s) for s in subscriptions)

    async def _task_appears(self, task_id: str) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._form.escalation_wait_seconds
        while True:
            try:
                await self._client.read("Task", task_id)
            except FhirNotFoundError:
                pass
            except FhirError:
                return False
            else:
                return True
            if loop.time() >= deadline:
                return False
            await self._sleep(0.5)


def _transaction(base_url: str, resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": f"{base_url}/{r['resourceType']}/{r['id']}",
                "resource": r,
                "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"},
            }
            for r in resources
        ],
    }
