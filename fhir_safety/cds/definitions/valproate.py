"""Valproate safety on order-select, order-sign and patient-view (rules/valproate.py)."""

from __future__ import annotations

from fhir_safety.cds.prefetch import PrefetchTemplate
from fhir_safety.cds.service import ServiceDefinition
from fhir_safety.domain import Finding
from fhir_safety.record import PatientRecord, RuleEnvironment
from fhir_safety.rules import valproate

__all__ = ["SERVICES"]


def _prescribing(record: PatientRecord, env: RuleEnvironment) -> list[Finding]:
    return valproate.evaluate(record, env.settings.valproate, env.terminology)


def _status(record: PatientRecord, env: RuleEnvironment) -> list[Finding]:
    return valproate.evaluate_status(record, env.settings.valproate, env.terminology)


# Every key is optional: data that cannot be had gives a "could not check" card (or, for the
# Patient, is treated as "could become pregnant, age unknown" and said on the card) instead of
# a 412 that would silence every valproate check.
_PREFETCH = (
    PrefetchTemplate("patient", "Patient/{{context.patientId}}", required=False),
    PrefetchTemplate(
        "medicationRequests", "MedicationRequest?patient={{context.patientId}}", required=False
    ),
    PrefetchTemplate(
        "medicationStatements", "MedicationStatement?patient={{context.patientId}}", required=False
    ),
    PrefetchTemplate("flags", "Flag?patient={{context.patientId}}", required=False),
    PrefetchTemplate("conditions", "Condition?patient={{context.patientId}}", required=False),
    PrefetchTemplate("procedures", "Procedure?patient={{context.patientId}}", required=False),
    # Coded ARAFs only (the ValueSet is loaded into HAPI by `fhir-safety load`). The ValueSet URL
    # is percent-encoded: it is a query value, and FhirClient reads "://" as an absolute URL.
    PrefetchTemplate(
        "arafObservations",
        "Observation?patient={{context.patientId}}"
        "&code:in=https%3A%2F%2Ffhir-safety.org%2Ffhir%2FValueSet%2Fvalproate-araf",
        required=False,
    ),
)
_USAGE = (
    "Needs the Patient (sex, date of birth) and, for each check, read access to the patient's "
    "MedicationRequest, MedicationStatement, Flag (valproate-ppp-flag), Condition, Procedure "
    "and ARAF Observation resources (prefetch or the FHIR server). A search that cannot be "
    "done gives a 'could not check' card, never silence. Ages and dates use the trust's "
    "local calendar."
)
_ORDER_DESCRIPTION = (
    "For valproate in the draft orders (SNOMED CT/dm+d or ATC codes, or recognised by name): "
    "critical when the patient could become pregnant without a current Pregnancy Prevention "
    "Programme (ARAF within 12 months), critical when a current pregnancy is recorded, a "
    "warning for a new start under 55 without a recorded two-specialist decision, and the "
    "MHRA advice for men. Offers a referral for specialist valproate review and an ARAF task."
)

SERVICES: tuple[ServiceDefinition, ...] = (
    ServiceDefinition(
        id="valproate",
        hook="order-select",
        title="Valproate: Pregnancy Prevention Programme and safe prescribing",
        description=_ORDER_DESCRIPTION,
        usage_requirements=_USAGE,
        prefetch=_PREFETCH,
        rules=_prescribing,
    ),
    ServiceDefinition(
        id="valproate",
        hook="order-sign",
        title="Valproate: Pregnancy Prevention Programme and safe prescribing",
        description=_ORDER_DESCRIPTION,
        usage_requirements=_USAGE,
        prefetch=_PREFETCH,
        rules=_prescribing,
    ),
    ServiceDefinition(
        id="valproate",
        hook="patient-view",
        title="Valproate: live Pregnancy Prevention Programme status",
        description=(
            "For a patient on valproate who could become pregnant: the PPP status (enrolled, "
            "ARAF date, review due) as information, a warning when the annual review is due "
            "within 30 days, overdue, or no PPP is recorded, and a critical card when a current "
            "pregnancy is recorded."
        ),
        usage_requirements=_USAGE,
        prefetch=_PREFETCH,
        rules=_status,
    ),
)
