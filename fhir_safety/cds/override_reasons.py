"""Override reasons offered on cards: HL7 non-adherence reason codes.

Source: CDS Hooks 3.0.0-ballot, CodeSystem ``non-adherence-reason-codes``
(``HL7/cds-hooks@16b2bfc:input/vocabulary/CodeSystem-non-adherence-reason-codes.json``),
from AHRQ CDSiC "Approaches to Standardizing Override Reasons" (2025). The
displays are copied exactly: CDS Hooks requires a ``display`` on every reason.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["NON_ADHERENCE_SYSTEM", "OVERRIDE_REASON_DISPLAYS"]

NON_ADHERENCE_SYSTEM = "http://terminology.hl7.org/CodeSystem/non-adherence-reason-codes"

OVERRIDE_REASON_DISPLAYS: Mapping[str, str] = {
    "cds-not-applicable": "PC CDS does not apply to patient",
    "patient-ineligible": "Patient does not meet eligibility for recommended action",
    "indication-order-exists": "Patient has indication/order for intended action",
    "action-completed": "Recommended action was already completed",
    "action-not-priority": (
        "Recommended action is not relevant or a priority in current state of health"
    ),
    "cds-suboptimal-context": "PC CDS delivered in suboptimal context",
    "wrong-time-workflow": "PC CDS delivered at wrong time in workflow or patient lifecycle",
    "inappropriate-recipient": "PC CDS delivered to inappropriate recipient/role",
    "need-more-info": (
        "Could not address recommended action due to need for more information/"
        "pending results/pending consult"
    ),
    "recipient-disagrees-evidence": (
        "Recipient disagrees with recommendation because of issues with the evidence"
    ),
    "expert-contradicts": "Advice from expert contradicts the recommended action",
    "policy-contradicts": "Institutional policy/guideline contradicts the recommended action",
    "recipient-concerns-outcomes": "Recipient has concerns regarding potential health outcomes",
    "risk-benefit-ratio": "Recipient assessment of risk/benefit ratio",
    "patient-contraindication": "Patient has contraindication to recommended action",
    "does-not-align-preferences": "Recommendation does not align with patient preferences or values",
    "prefers-alternative": "Patient prefers an alternative approach or treatment",
    "patient-refuses": "Patient refuses/declines (no context given)*",
    "not-convenient-feasible": "Recommendation is not convenient or feasible",
    "inadequate-support": "Patient has inadequate caregiver/social support",
    "service-not-available": "Treatment or service is not practically available",
}
