"""Long-stay harm on patient-view and encounter-discharge (rules/length_of_stay.py)."""

from __future__ import annotations

from fhir_safety.cds.prefetch import PrefetchTemplate
from fhir_safety.cds.service import ServiceDefinition
from fhir_safety.domain import Finding
from fhir_safety.record import PatientRecord, RuleEnvironment
from fhir_safety.rules import length_of_stay

__all__ = ["SERVICES"]


def _long_stay(record: PatientRecord, env: RuleEnvironment) -> list[Finding]:
    return length_of_stay.evaluate(record, env.settings.long_stay, env.terminology)


_LONG_STAY_PREFETCH = (
    PrefetchTemplate("encounters", "Encounter?patient={{context.patientId}}&status=in-progress"),
    PrefetchTemplate("carePlans", "CarePlan?patient={{context.patientId}}", required=False),
    PrefetchTemplate("goals", "Goal?patient={{context.patientId}}", required=False),
)
_LONG_STAY_USAGE = (
    "Needs read access to the patient's Encounter, CarePlan and Goal resources "
    "(prefetch or the FHIR server). Counts days on the trust's local calendar."
)

SERVICES: tuple[ServiceDefinition, ...] = (
    ServiceDefinition(
        id="long-stay",
        hook="patient-view",
        title="Long hospital stay (stranded / super-stranded)",
        description=(
            "Warns when an inpatient has been in hospital 7+ days (stranded) or 21+ days "
            "(super-stranded) without an expected discharge date or a discharge plan shared "
            "with the patient, and offers to start one."
        ),
        usage_requirements=_LONG_STAY_USAGE,
        prefetch=_LONG_STAY_PREFETCH,
        rules=_long_stay,
    ),
    ServiceDefinition(
        id="long-stay",
        hook="encounter-discharge",
        title="Long hospital stay at discharge",
        description=(
            "At discharge of a long stay (7+ days), checks that a discharge plan exists and "
            "was shared with the patient."
        ),
        usage_requirements=_LONG_STAY_USAGE,
        prefetch=_LONG_STAY_PREFETCH,
        rules=_long_stay,
    ),
)
