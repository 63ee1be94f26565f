"""Helpers shared by the rule modules (pure)."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from fhir_safety.domain import Finding, Severity, Topic
from fhir_safety.fhir.resources import (
    CodeableConcept,
    Medication,
    MedicationRequest,
    MedicationStatement,
    Reference,
    parse_fhir_datetime,
)
from fhir_safety.record import PatientRecord

__all__ = ["COULD_NOT_CHECK", "could_not_check", "local_date", "medication_concept", "parse_when"]

COULD_NOT_CHECK = Topic("could-not-check", "A safety check could not run")


def could_not_check(
    *, rule_id: str, check: str, reason: str, source_label: str, source_url: str
) -> Finding:
    """A card that tells the clinician a check did NOT run (never a silent pass)."""
    summary = f"Could not check: {check}"
    if len(summary) >= 140:
        summary = summary[:136] + "..."
    return Finding(
        rule_id=f"{rule_id}.could-not-check",
        severity=Severity.WARNING,
        summary=summary,
        detail=(
            f"fhir-safety could not run this check: **{check}**.\n\n"
            f"Reason: {reason}.\n\n"
            "Do not read the absence of a warning as reassurance; check the record directly."
        ),
        topic=COULD_NOT_CHECK,
        source_label=source_label,
        source_url=source_url,
    )


def parse_when(value: str | None, zone: ZoneInfo) -> datetime | None:
    """An aware datetime for a FHIR date/dateTime string, or None when absent."""
    return parse_fhir_datetime(value, local_zone=zone) if value else None


def local_date(moment: datetime, zone: ZoneInfo) -> date:
    """The calendar date of ``moment`` on the trust's wall clock."""
    return moment.astimezone(zone).date()


def medication_concept(
    resource: MedicationRequest | MedicationStatement, record: PatientRecord
) -> CodeableConcept | None:
    """The medicine's CodeableConcept: inline, a contained or sent Medication, or a display."""
    if resource.medication_codeable_concept is not None:
        return resource.medication_codeable_concept
    reference = resource.medication_reference
    if reference is None:
        return None
    medication = _resolve_medication(reference, resource, record)
    if medication is not None and medication.code is not None:
        return medication.code
    return CodeableConcept(text=reference.display) if reference.display else None


def _resolve_medication(
    reference: Reference, resource: MedicationRequest | MedicationStatement, record: PatientRecord
) -> Medication | None:
    target = reference.reference or ""
    if target.startswith("#"):  # a contained Medication
        for raw in resource.contained:
            if raw.get("resourceType") == "Medication" and raw.get("id") == target[1:]:
                try:
                    return Medication.model_validate(raw)
                except ValidationError:
                    return None  # an invalid Medication is not guessed at
        return None
    wanted = reference.target_id("Medication")
    for candidate in (*record.draft_orders, *record.of_type(Medication)):
        if isinstance(candidate, Medication) and wanted and candidate.id == wanted:
            return candidate
    return None
