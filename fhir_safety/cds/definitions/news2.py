"""NEWS2 with the patient's and family's concern (Martha's Rule) on patient-view.

Rules: ``rules/concern.py`` (cards) over ``rules/vitals.py`` (FHIR -> NEWS2) and
``rules/news2.py`` (the RCP engine). Docs: docs/concern.md, docs/news2.md.
"""

from __future__ import annotations

from fhir_safety.cds.prefetch import PrefetchTemplate
from fhir_safety.cds.service import ServiceDefinition
from fhir_safety.domain import Finding
from fhir_safety.record import PatientRecord, RuleEnvironment
from fhir_safety.rules import concern

__all__ = ["CODED_OBSERVATIONS", "NEWS2_PREFETCH", "SERVICES", "SERVICE_ID"]

SERVICE_ID = "news2-concern"

# The codes of ValueSets inspired-oxygen (UK Core InspiredOxygen [S4]) and acvpu-observation
# (UK Core ACVPU [S2]), searched by code: UK Core's own NEWS2 example records "Breathing room
# air" without a category, and a category search would miss it (or an uncategorised ACVPU);
# tests/unit/rules/test_concern.py checks this list against the ValueSets. Token values carry
# no system: a "system|code" value holds "://", which FhirClient.get would take for an
# absolute URL (and the rules check the system of what comes back anyway).
CODED_OBSERVATIONS = ("722742002", "371825009", "1104441000000107")

NEWS2_PREFETCH = (
    PrefetchTemplate("patient", "Patient/{{context.patientId}}", required=False),
    # FHIR R4 vital-signs profile: category vital-signs (RR, SpO2, BP, pulse, temperature).
    PrefetchTemplate(
        "vitalSigns",
        "Observation?patient={{context.patientId}}&category=vital-signs",
        required=False,
    ),
    # UK Core ACVPU and the patient-concern Observations are category survey [S2].
    PrefetchTemplate(
        "surveys", "Observation?patient={{context.patientId}}&category=survey", required=False
    ),
    PrefetchTemplate(
        "oxygenAndAcvpu",
        f"Observation?patient={{{{context.patientId}}}}&code={','.join(CODED_OBSERVATIONS)}",
        required=False,
    ),
    # A documented SpO2 target of 88-92% (Scale 2) is a Goal (docs/news2.md, FHIR mapping).
    PrefetchTemplate("goals", "Goal?patient={{context.patientId}}", required=False),
    PrefetchTemplate("conditions", "Condition?patient={{context.patientId}}", required=False),
    # Overdue observations are a warning only for a patient with an encounter in progress.
    PrefetchTemplate(
        "encounters",
        "Encounter?patient={{context.patientId}}&status=in-progress",
        required=False,
    ),
    PrefetchTemplate(
        "escalations",
        "Task?patient={{context.patientId}}&code=marthas-rule-call",
        required=False,
    ),
)


def _news2_concern(record: PatientRecord, env: RuleEnvironment) -> list[Finding]:
    return concern.evaluate(record, env.settings.news2, env.terminology)


SERVICES: tuple[ServiceDefinition, ...] = (
    ServiceDefinition(
        id=SERVICE_ID,
        hook="patient-view",
        title="NEWS2 and patient or family concern (Martha's Rule)",
        description=(
            "The patient's NEWS2 (RCP 2017) with its band and clinical response, never shown as "
            "low when the set is incomplete; and any worry or 'worse' said by the patient, "
            "family, carer or staff in the last 24 hours, with a Martha's Rule request for a "
            "critical care outreach review."
        ),
        usage_requirements=(
            "Needs read access to the patient's Patient, Observation (vital signs, ACVPU, air or "
            "oxygen, concern), Goal, Condition, Encounter and Task resources. Every key is "
            "optional: what cannot be read is named on the card."
        ),
        prefetch=NEWS2_PREFETCH,
        rules=_news2_concern,
    ),
)
