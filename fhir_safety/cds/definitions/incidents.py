"""Family partnership in incident investigations on patient-view (rules/incident_engagement.py)."""

from __future__ import annotations

from fhir_safety.cds.prefetch import PrefetchTemplate
from fhir_safety.cds.service import ServiceDefinition
from fhir_safety.domain import Finding
from fhir_safety.record import PatientRecord, RuleEnvironment
from fhir_safety.rules import incident_engagement

__all__ = ["SERVICES"]


def _incident_family_partnership(record: PatientRecord, env: RuleEnvironment) -> list[Finding]:
    return incident_engagement.evaluate(record, env.settings.incidents, env.terminology)


SERVICES: tuple[ServiceDefinition, ...] = (
    ServiceDefinition(
        id="incident-family-partnership",
        hook="patient-view",
        title="Family are partners in an open incident investigation",
        description=(
            "Tells any clinician opening the record that the patient has an open patient "
            "safety incident learning response (PSII, after action review, swarm huddle, MDT or "
            "thematic review) in which the patient and family are partners (PSIRF), who leads "
            "it, who the family contact is, and which engagement steps are done or overdue."
        ),
        usage_requirements=(
            "Needs read access to the patient's AdverseEvent and Task resources (prefetch or "
            "the FHIR server). AdverseEvent (R4 search parameter subject) is required; without "
            "Task (search parameter patient) the card says the check could not run."
        ),
        prefetch=(
            # R4 AdverseEvent has no "patient" search parameter; "subject" is the patient.
            PrefetchTemplate("incidents", "AdverseEvent?subject=Patient/{{context.patientId}}"),
            # R4 Task "patient" = Task.for as a Patient: learning responses and engagement steps.
            PrefetchTemplate("tasks", "Task?patient={{context.patientId}}", required=False),
        ),
        rules=_incident_family_partnership,
    ),
)
