"""HRT joint items on order-select, order-sign, order-dispatch and patient-view (rules/hrt.py).

Prefetch: every key is the patient's resources of one type, all optional, so that data the EHR
cannot give becomes a "could not check" card rather than a 412 (the rule decides what it needs).

order-dispatch: ``context.dispatchedOrders`` is a root-level prefetch token, but it renders as a
comma list of *references* (``MedicationRequest/a,MedicationRequest/b``, see
``cds/prefetch.render_template``), which ``_id`` does not accept (it wants bare ids), and nested
tokens are not allowed in CDS Hooks 2.0. So the dispatched orders come from the patient's
MedicationRequest search, and the rule picks them out by the references in the context.
"""

from __future__ import annotations

from fhir_safety.cds.prefetch import PrefetchTemplate
from fhir_safety.cds.service import ServiceDefinition
from fhir_safety.domain import Finding
from fhir_safety.hrt_doses import load_hrt_dose_table
from fhir_safety.record import PatientRecord, RuleEnvironment
from fhir_safety.rules import hrt

__all__ = ["SERVICES", "SERVICE_ID"]

SERVICE_ID = "hrt-joint-items"


def _hrt(record: PatientRecord, env: RuleEnvironment) -> list[Finding]:
    doses = load_hrt_dose_table(env.settings.terminology_dir)
    return hrt.evaluate(record, env.settings.hrt, env.terminology, doses)


PREFETCH = (
    PrefetchTemplate("patient", "Patient/{{context.patientId}}", required=False),
    PrefetchTemplate(
        "medications", "MedicationRequest?patient={{context.patientId}}", required=False
    ),
    PrefetchTemplate(
        "statements", "MedicationStatement?patient={{context.patientId}}", required=False
    ),
    PrefetchTemplate("procedures", "Procedure?patient={{context.patientId}}", required=False),
    PrefetchTemplate("conditions", "Condition?patient={{context.patientId}}", required=False),
    PrefetchTemplate("devices", "Device?patient={{context.patientId}}", required=False),
)
_USAGE = (
    "Reads the patient's Patient, MedicationRequest (all statuses: stopped progestogens "
    "matter), MedicationStatement, Procedure, Condition and Device resources (prefetch or the "
    "FHIR server). Missing data gives a 'could not check' card, never a silent pass. Medicines "
    "are matched by SNOMED CT / dm+d code, or by name when recorded as text only."
)
_ABOUT = (
    "Systemic oestrogen-only HRT for a woman with a uterus needs a progestogen (BMS 2024, NICE "
    "NG23): the oestrogen and its progestogen are prescribed as one joint item "
    "(groupIdentifier), dosed by the BMS 2024 table for the oestrogen's dose band, and a 52 mg "
    "LNG-IUS used for protection is changed within 5 years of fitting."
)

SERVICES: tuple[ServiceDefinition, ...] = (
    ServiceDefinition(
        id=SERVICE_ID,
        hook="order-select",
        title="HRT joint item: oestrogen with its progestogen",
        description=(
            f"{_ABOUT} When a systemic oestrogen-only product is selected without protection, "
            "a critical card offers the progestogen regimens as joint items."
        ),
        usage_requirements=_USAGE,
        prefetch=PREFETCH,
        rules=_hrt,
    ),
    ServiceDefinition(
        id=SERVICE_ID,
        hook="order-sign",
        title="HRT joint item: oestrogen with its progestogen",
        description=(
            f"{_ABOUT} At signing: unprotected oestrogen (critical), oestrogen and progestogen "
            "not joined (warning), LNG-IUS change-by date near or passed."
        ),
        usage_requirements=_USAGE,
        prefetch=PREFETCH,
        rules=_hrt,
    ),
    ServiceDefinition(
        id=SERVICE_ID,
        hook="order-dispatch",
        title="HRT pharmacy check at dispensing",
        description=(
            f"{_ABOUT} At dispensing: the same checks for the dispatched oestrogen, and the "
            "label wording ('Use with your progestogen...')."
        ),
        usage_requirements=_USAGE,
        prefetch=PREFETCH,
        rules=_hrt,
    ),
    ServiceDefinition(
        id=SERVICE_ID,
        hook="patient-view",
        title="HRT: oestrogen without protection",
        description=(
            f"{_ABOUT} When the record is opened: a woman on oestrogen whose progestogen has "
            "stopped, or whose LNG-IUS change-by date is near or past."
        ),
        usage_requirements=_USAGE,
        prefetch=PREFETCH,
        rules=_hrt,
    ),
)
