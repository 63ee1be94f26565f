"""Reasonable adjustments on patient-view (rules/reasonable_adjustments.py)."""

from __future__ import annotations

from fhir_safety.cds.prefetch import PrefetchTemplate
from fhir_safety.cds.service import ServiceDefinition
from fhir_safety.domain import Finding
from fhir_safety.record import PatientRecord, RuleEnvironment
from fhir_safety.rules import reasonable_adjustments

__all__ = ["SERVICES"]


def _reasonable_adjustments(record: PatientRecord, env: RuleEnvironment) -> list[Finding]:
    return reasonable_adjustments.evaluate(
        record, env.settings.reasonable_adjustments, env.terminology
    )


# All optional: a key that cannot be had gives a "could not check" card or a note on the card,
# never a 412 and never a silent pass.
_PREFETCH = (
    PrefetchTemplate("patient", "Patient/{{context.patientId}}", required=False),
    PrefetchTemplate("flags", "Flag?patient={{context.patientId}}", required=False),
    PrefetchTemplate("conditions", "Condition?patient={{context.patientId}}", required=False),
    PrefetchTemplate("consents", "Consent?patient={{context.patientId}}", required=False),
    PrefetchTemplate(
        "relatedPersons", "RelatedPerson?patient={{context.patientId}}", required=False
    ),
)

SERVICES: tuple[ServiceDefinition, ...] = (
    ServiceDefinition(
        id="reasonable-adjustments",
        hook="patient-view",
        title="Reasonable adjustments (learning disability, autism)",
        description=(
            "Shows the reasonable adjustments recorded on the NHS England Reasonable Adjustment "
            "Flag (Flag + Condition + Consent), the family or carer contacts and a prompt to "
            "listen to the family's concerns. Warns when a learning disability or autism is "
            "recorded without a flag and offers to record one (NHS England PatientFlag, "
            "FlagCondition and FlagConsent shapes). A dissent or revoked consent is honoured."
        ),
        usage_requirements=(
            "Needs read access to the patient's Patient, Flag, Condition, Consent and "
            "RelatedPerson resources (prefetch or the FHIR server). Suggestions are offered to "
            "Practitioner and PractitionerRole users only."
        ),
        prefetch=_PREFETCH,
        rules=_reasonable_adjustments,
    ),
)
