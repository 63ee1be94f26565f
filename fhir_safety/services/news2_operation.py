"""The ``$news2`` operation: vital signs in, the NEWS2 score Observation (or why not) out.

Two ways in, one answer (used by ``api/routes/news2.py`` and ``fhir-safety news2``):

* ``news2_from_bundle``: a Bundle (any type) holding the patient's Observations and,
  optionally, their Patient, Goals (SpO2 Scale 2 target) and Conditions (pregnancy).
  Resource types the Bundle does not hold are reported as "not in the Bundle".
* ``news2_for_patient``: the same data read from a FHIR server with the queries of the
  ``news2-concern`` CDS service.

The answer is a ``news2-score`` Observation when the set could be scored, otherwise an
OperationOutcome saying which parameters are missing or stale (and the band the partial
set already guarantees) or why NEWS2 does not apply. Both are answers, not errors; a
Bundle that cannot be used, or data that cannot be fetched, raises our errors.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from fhir_safety.cds.definitions.news2 import NEWS2_PREFETCH
from fhir_safety.config import Settings
from fhir_safety.errors import DataUnavailableError, InvalidRequestError
from fhir_safety.fhir import resources as fhir
from fhir_safety.fhir.client import FhirClient
from fhir_safety.record import PatientRecord
from fhir_safety.rules import vitals
from fhir_safety.services.record import build_record, parse_resource, resolve_prefetch
from fhir_safety.terminology import Terminology

__all__ = ["News2Answer", "news2_for_patient", "news2_from_bundle"]

HOOK = "$news2"
# The types the NEWS2 mapping reads besides Observation; absent ones are named in the answer.
_CONTEXT_TYPES = ("Patient", "Goal", "Condition")
# The CDS service's queries, without the escalation Tasks the score does not need.
_TEMPLATES = tuple(t for t in NEWS2_PREFETCH if t.resource_type != "Task")


@dataclass(frozen=True, slots=True)
class News2Answer:
    resource: dict[str, Any]  # a news2-score Observation or an OperationOutcome
    scored: bool


def news2_from_bundle(
    bundle: Any,
    *,
    patient_id: str | None,
    now: datetime,
    settings: Settings,
    terminology: Terminology,
) -> News2Answer:
    """NEWS2 for the patient whose data the Bundle holds (``patient_id`` when given)."""
    resources = _bundle_resources(bundle)
    patient_id = _patient_id(resources, patient_id)
    by_type: dict[str, list[fhir.Resource]] = {}
    for resource in resources:
        by_type.setdefault(resource.resource_type, []).append(resource)
    patients = [r for r in by_type.get("Patient", []) if isinstance(r, fhir.Patient)]
    record = PatientRecord(
        hook=HOOK,
        context={"patientId": patient_id},
        now=now,
        zone=ZoneInfo(settings.timezone),
        patient=patients[0] if patients else None,
        resources={kind: tuple(items) for kind, items in by_type.items()},
        unavailable={kind: "not in the Bundle" for kind in _CONTEXT_TYPES if kind not in by_type},
    )
    return _answer(record, settings, terminology)


async def news2_for_patient(
    patient_id: str,
    *,
    client: FhirClient,
    now: datetime,
    settings: Settings,
    terminology: Terminology,
) -> News2Answer:
    """NEWS2 for a patient from the FHIR server (the news2-concern service's queries)."""
    context = {"patientId": patient_id}
    outcome = await resolve_prefetch(
        _TEMPLATES,
        context,
        None,
        client,
        timeout_seconds=settings.request_deadline_seconds * 0.8,
    )
    record = build_record(
        hook=HOOK,
        context=context,
        templates=_TEMPLATES,
        outcome=outcome,
        now=now,
        zone=ZoneInfo(settings.timezone),
    )
    if (why := record.why_unavailable("Observation")) is not None:
        raise DataUnavailableError(f"the patient's observations could not be read: {why}")
    return _answer(record, settings, terminology)


def _answer(record: PatientRecord, settings: Settings, terminology: Terminology) -> News2Answer:
    assessment = vitals.assess_record(record, settings.news2, terminology)
    observation = vitals.news2_observation(
        assessment, patient_id=record.patient_id, now=record.now, terminology=terminology
    )
    if observation is not None:
        return News2Answer(observation, scored=True)
    outcome = vitals.no_score_outcome(
        assessment,
        max_age=timedelta(hours=settings.news2.max_vitals_age_hours),
        zone=record.zone,
    )
    return News2Answer(outcome, scored=False)


def _bundle_resources(bundle: Any) -> list[fhir.Resource]:
    if not isinstance(bundle, Mapping) or bundle.get("resourceType") != "Bundle":
        raise InvalidRequestError("the body must be a FHIR Bundle of Observations")
    entries = bundle.get("entry") or []
    if not isinstance(entries, list):
        raise InvalidRequestError("Bundle.entry must be an array", location="Bundle.entry")
    resources = []
    for index, entry in enumerate(entries):
        location = f"Bundle.entry[{index}].resource"
        raw = entry.get("resource") if isinstance(entry, Mapping) else None
        if not isinstance(raw, Mapping):
            raise InvalidRequestError(f"{location} is missing", location=location)
        parsed = parse_resource(dict(raw), location)  # InvalidResourceError (422) names it
        if parsed is not None:
            resources.append(parsed)
    return resources


def _patient_id(resources: list[fhir.Resource], given: str | None) -> str:
    """The one patient the data is about; data about anyone else is refused."""
    named: dict[str, str] = {}  # patient id -> the resource that names it
    for resource in resources:
        if isinstance(resource, fhir.Patient) and resource.id:
            named.setdefault(resource.id, f"Patient/{resource.id}")
        subject = _subject(resource)
        target = subject.target_id("Patient") if subject is not None else None
        if target is not None:
            named.setdefault(target, f"{resource.resource_type}/{resource.id or '?'}")
    if given is not None:
        others = {pid: source for pid, source in named.items() if pid != given}
        if others:
            pid, source = next(iter(others.items()))
            raise InvalidRequestError(f"{source} is about Patient/{pid}, not Patient/{given}")
        return given
    if len(named) != 1:
        problem = "no patient" if not named else f"{len(named)} patients"
        raise InvalidRequestError(
            f"the Bundle names {problem}: give Observation.subject or call Patient/{{id}}/$news2"
        )
    return next(iter(named))


def _subject(resource: fhir.Resource) -> fhir.Reference | None:
    subject = getattr(resource, "subject", None)
    return subject if isinstance(subject, fhir.Reference) else None
