"""Escalation on arrival: a worried/worse concern written to the FHIR server -> one Task.

When a ``patient-concern`` Observation saying *worried* or *worse* reaches the
Subscription receiver (``services/subscriptions.NotificationReceiver``), the
Martha's Rule Task the ``news2-concern`` card would offer is created on the FHIR
server, within the seconds the notification takes, and **once only**:

* the Task id is derived from the concern (``marthas-rule-`` + 32 hex digits of
  SHA-256 of ``Observation/<id>``) and the Task is written with ``PUT``;
* it is written only when ``GET Task/<id>`` answers 404, so a second notification
  (a retry, or the concern being updated) neither duplicates the Task nor resets one
  the outreach team has already accepted; two racing notifications ``PUT`` the same
  resource, which leaves one Task;
* a standing Martha's Rule Task for the same concern made from the card counts too.

The priority follows the card: ``stat`` when the patient's NEWS2 (read from the
FHIR server with the service's queries) is 5 or more, or already at least medium
when incomplete; otherwise ``urgent``. Logs carry ids, never patient data.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from fhir_safety.cds.definitions.news2 import NEWS2_PREFETCH
from fhir_safety.config import Settings
from fhir_safety.errors import FhirNotFoundError, InvalidResourceError
from fhir_safety.fhir import resources as fhir
from fhir_safety.fhir.client import FhirClient
from fhir_safety.record import PatientRecord
from fhir_safety.rules import concern as concern_rules
from fhir_safety.rules import vitals
from fhir_safety.services.record import build_record, parse_resource, resolve_prefetch
from fhir_safety.services.subscriptions import NotificationReceiver
from fhir_safety.terminology import Terminology

__all__ = [
    "ConcernEscalator",
    "EscalationOutcome",
    "escalation_task_id",
    "register_concern_escalation",
]

log = logging.getLogger(__name__)

Action = Literal["created", "exists", "ignored"]


def escalation_task_id(concern_reference: str) -> str:
    """The deterministic Task id for a concern (FHIR ids: at most 64 of [A-Za-z0-9-.])."""
    digest = hashlib.sha256(concern_reference.encode()).hexdigest()[:32]
    return f"marthas-rule-{digest}"


@dataclass(frozen=True, slots=True)
class EscalationOutcome:
    action: Action
    reason: str
    task: dict[str, Any] | None = None


class ConcernEscalator:
    """A NotificationReceiver handler for Observations (see ``register_concern_escalation``)."""

    def __init__(
        self,
        client: FhirClient,
        settings: Settings,
        terminology: Terminology,
        clock: Callable[[], datetime],
    ) -> None:
        self._client = client
        self._settings = settings
        self._terminology = terminology
        self._clock = clock
        self._zone = ZoneInfo(settings.timezone)

    async def handle(self, resource: dict[str, Any]) -> None:
        """The receiver's handler: escalate, and log what was done (ids only)."""
        outcome = await self.escalate(resource)
        log.info(
            "concern notification",
            extra={
                "fields": {
                    "observation": resource.get("id"),
                    "action": outcome.action,
                    "reason": outcome.reason,
                    "task": (outcome.task or {}).get("id"),
                }
            },
        )

    async def escalate(self, resource: dict[str, Any]) -> EscalationOutcome:
        observation = _observation(resource)
        if observation is None or observation.id is None:
            return EscalationOutcome("ignored", "not an Observation with an id")
        patient_id = observation.subject.target_id("Patient") if observation.subject else None
        if patient_id is None:
            return EscalationOutcome("ignored", "the Observation names no Patient")
        now = self._clock()
        news2 = self._settings.news2
        alone = self._record(patient_id, now, {"Observation": (observation,)}, {})
        concern = concern_rules.concern_from(observation, alone, self._terminology)
        if concern is None:
            return EscalationOutcome("ignored", "not a usable concern Observation")
        if not concern.escalates:
            return EscalationOutcome(
                "ignored", f"answer {concern.level_display!r} does not escalate"
            )
        if now - concern.said_at > timedelta(hours=news2.concern_window_hours):
            return EscalationOutcome("ignored", "the concern is older than the concern window")
        task_id = escalation_task_id(concern.reference)
        try:
            existing = await self._client.read("Task", task_id)
        except FhirNotFoundError:
            existing = None
        if existing is not None:
            return EscalationOutcome("exists", "already escalated", existing)
        record = await self._patient_record(patient_id, now, observation)
        standing = concern_rules.existing_escalations(record).get(observation.id)
        if standing is not None:
            return EscalationOutcome("exists", f"Task/{standing.id} already answers the concern")
        assessment = vitals.assess_record(record, news2, self._terminology)
        task = concern_rules.escalation_task(
            concern=concern,
            assessment=assessment,
            patient_id=patient_id,
            now=now,
            settings=news2,
            terminology=self._terminology,
            requester=concern.performer.reference if concern.performer else None,
        )
        task = {"resourceType": "Task", "id": task_id} | task
        await self._client.put(task)
        return EscalationOutcome("created", f"priority {task['priority']}", task)

    async def _patient_record(
        self, patient_id: str, now: datetime, observation: fhir.Observation
    ) -> PatientRecord:
        """The patient's data from the server, with the notified concern in it for sure."""
        context = {"patientId": patient_id}
        outcome = await resolve_prefetch(
            NEWS2_PREFETCH,
            context,
            None,
            self._client,
            timeout_seconds=self._settings.request_deadline_seconds,
        )
        fetched = build_record(
            hook="subscription",
            context=context,
            templates=NEWS2_PREFETCH,
            outcome=outcome,
            now=now,
            zone=self._zone,
        )
        others = tuple(o for o in fetched.of_type(fhir.Observation) if o.id != observation.id)
        resources = dict(fetched.resources) | {"Observation": (*others, observation)}
        return self._record(patient_id, now, resources, fetched.unavailable, fetched.patient)

    def _record(
        self,
        patient_id: str,
        now: datetime,
        resources: dict[str, tuple[fhir.Resource, ...]],
        unavailable: Any,
        patient: fhir.Patient | None = None,
    ) -> PatientRecord:
        return PatientRecord(
            hook="subscription",
            context={"patientId": patient_id},
            now=now,
            zone=self._zone,
            patient=patient,
            resources=resources,
            unavailable=dict(unavailable),
        )


def _observation(resource: dict[str, Any]) -> fhir.Observation | None:
    if resource.get("resourceType") != "Observation":
        return None
    try:
        parsed = parse_resource(resource, "notification")
    except InvalidResourceError:
        log.warning("notified Observation is not valid; not escalated")
        return None
    return parsed if isinstance(parsed, fhir.Observation) else None


def register_concern_escalation(
    receiver: NotificationReceiver,
    client: FhirClient,
    settings: Settings,
    terminology: Terminology,
    clock: Callable[[], datetime],
) -> ConcernEscalator:
    """Escalate worried/worse concern Observations as they are notified."""
    escalator = ConcernEscalator(client, settings, terminology, clock)
    receiver.add_handler("Observation", escalator.handle)
    return escalator
