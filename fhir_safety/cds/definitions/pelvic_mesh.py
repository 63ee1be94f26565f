"""Pelvic mesh referrals on patient-view (rules/pelvic_mesh.py).

The nine NHS England specialist mesh centres are data (``data/mesh-centres.json``, a Bundle of
Organizations): read once here at import, so a broken file stops the service from starting,
and passed to the pure rule.
"""

from __future__ import annotations

import json

from fhir_safety.cds.prefetch import PrefetchTemplate
from fhir_safety.cds.service import ServiceDefinition
from fhir_safety.config import REPO_ROOT
from fhir_safety.domain import Finding
from fhir_safety.record import PatientRecord, RuleEnvironment
from fhir_safety.rules import pelvic_mesh

__all__ = ["MESH_CENTRES", "MESH_CENTRES_FILE", "SERVICES"]

MESH_CENTRES_FILE = REPO_ROOT / "data" / "mesh-centres.json"
MESH_CENTRES = pelvic_mesh.centres_from_bundle(
    json.loads(MESH_CENTRES_FILE.read_text(encoding="utf-8"))
)


def _pelvic_mesh(record: PatientRecord, env: RuleEnvironment) -> list[Finding]:
    return pelvic_mesh.evaluate(record, env.settings.pelvic_mesh, env.terminology, MESH_CENTRES)


_PREFETCH = (
    PrefetchTemplate("patient", "Patient/{{context.patientId}}", required=False),
    PrefetchTemplate("conditions", "Condition?patient={{context.patientId}}", required=False),
    PrefetchTemplate("procedures", "Procedure?patient={{context.patientId}}", required=False),
    PrefetchTemplate(
        "serviceRequests", "ServiceRequest?patient={{context.patientId}}", required=False
    ),
)

SERVICES: tuple[ServiceDefinition, ...] = (
    ServiceDefinition(
        id="pelvic-mesh",
        hook="patient-view",
        title="Pelvic mesh complication: specialist mesh centre referral",
        description=(
            "Warns when a complication of pelvic mesh is recorded and the patient has not been "
            "referred to one of NHS England's nine specialist mesh centres, and offers a draft "
            "referral (ServiceRequest) to the centre(s) of the patient's NHS England region, or "
            "to a centre chosen with the patient. Complications are matched by local project "
            "codes (no verified SNOMED CT concept exists), and the card says so."
        ),
        usage_requirements=(
            "Needs read access to the patient's Patient, Condition, Procedure and ServiceRequest "
            "resources (prefetch or the FHIR server). The referral names the centre as "
            "Organization/<id> from data/mesh-centres.json: load that Bundle into the FHIR "
            "server, or map the ids. Suggestions are offered to Practitioner and "
            "PractitionerRole users only."
        ),
        prefetch=_PREFETCH,
        rules=_pelvic_mesh,
    ),
)
