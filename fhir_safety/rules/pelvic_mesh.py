"""Pelvic mesh: a mesh complication with no referral to an NHS England specialist mesh centre.

Pure: reads a ``PatientRecord`` and the centres passed in (loaded from ``data/mesh-centres.json``
by ``fhir_safety/cds/definitions/pelvic_mesh.py``); no I/O, no clock.

Sources (shared/reference/clinical.md section 7; tags [Sn] as there):
- NHS England commissions nine specialist mesh centres (multidisciplinary teams) for complications
  of mesh inserted for urinary incontinence and vaginal prolapse; together they cover every NHS
  England region "to provide services as close as possible to where patients live" [S48]
  (england.nhs.uk, SOURCE_URL below). Patients may discuss a referral to a surgeon in another
  centre (written answer on the South East centre, parallelparliament.co.uk question 124936).
- Mesh procedures: ValueSet ``pelvic-mesh-procedures`` (SNOMED CT 737099004, 287775004 [S30]);
  a sling (287775004) may be autologous, so it is worded as "possible mesh".
- Complications: ValueSet ``pelvic-mesh-complications``, codes of the project CodeSystem
  ``pelvic-mesh-local``: no verified SNOMED CT concept exists for mesh complication, exposure,
  erosion or pain (clinical.md section 7, UNVERIFIED), so the card says the match is by local
  code. ``mesh-implant-history`` is in that set but records the mesh itself, not a complication:
  it counts as the mesh procedure.
- Which region each centre serves: see docs/pelvic-mesh.md (the basis is given per centre).

Trigger (docs/pelvic-mesh.md): a current mesh complication Condition (the complication itself
implies mesh even when the original operation is not coded) and no ServiceRequest to one of the
centres that is active, on hold or completed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, get_args

from fhir_safety.config import NhsEnglandRegion, PelvicMeshSettings
from fhir_safety.domain import (
    PROJECT_CANONICAL,
    Action,
    CardLink,
    Finding,
    Severity,
    Suggestion,
    Topic,
)
from fhir_safety.fhir.resources import (
    CodeableConcept,
    Condition,
    Patient,
    Procedure,
    Reference,
    ServiceRequest,
)
from fhir_safety.record import PatientRecord
from fhir_safety.rules.common import could_not_check, local_date, parse_when
from fhir_safety.terminology import CodeMatch, Terminology

__all__ = [
    "REGIONS",
    "REGION_EXTENSION_URL",
    "RULE_ID",
    "MeshCentre",
    "centres_from_bundle",
    "evaluate",
    "patient_region",
]

RULE_ID = "pelvic-mesh"
TOPIC = Topic("pelvic-mesh", "Pelvic mesh")
SOURCE_LABEL = "NHS England: specialised services for complications of mesh"
SOURCE_URL = (
    "https://www.england.nhs.uk/commissioning/spec-services/npc-crg/group-e/e09/"
    "complications-of-mesh-inserted-for-urinary-incontinence-and-vaginal-prolapse/"
)  # [S48]
CHOICE_URL = "https://parallelparliament.co.uk/question/124936/surgical-mesh-implants-south-east"

PROCEDURE_VALUE_SET = "pelvic-mesh-procedures"
COMPLICATION_VALUE_SET = "pelvic-mesh-complications"
LOCAL_SYSTEM = f"{PROJECT_CANONICAL}/CodeSystem/pelvic-mesh-local"
MESH_HISTORY_CODE = "mesh-implant-history"
SLING_CODE = "287775004"  # may be autologous: "possible mesh" (ValueSet curation note)
# Organization extension carrying the NHS England region a centre serves (data/mesh-centres.json).
REGION_EXTENSION_URL = f"{PROJECT_CANONICAL}/StructureDefinition/nhs-england-region"
REGIONS: tuple[str, ...] = get_args(NhsEnglandRegion)
REFERRAL_TEXT = "Referral to an NHS England specialist mesh centre (complications of pelvic mesh)"

_PROCEDURE_DONE = frozenset({"completed", "unknown"})
_REFERRED = frozenset({"active", "on-hold", "completed"})
_NOT_SENT_STATUSES = frozenset({"draft", "unknown"})
_NOT_SENT_INTENTS = frozenset({"proposal", "option"})
_INACTIVE_CONDITION = frozenset({"inactive", "resolved", "remission"})
_NOT_A_FINDING = frozenset({"refuted", "entered-in-error"})


@dataclass(frozen=True, slots=True)
class MeshCentre:
    """One of the nine specialist mesh centres, as shipped in data/mesh-centres.json."""

    id: str
    name: str
    region: str
    city: str | None
    aliases: tuple[str, ...]  # other names the trust or its centre is known by

    @property
    def reference(self) -> str:
        return f"Organization/{self.id}"


@dataclass(frozen=True, slots=True)
class _Mesh:
    """What the record shows of the mesh, its complications and referrals."""

    procedures: tuple[tuple[Procedure, CodeMatch], ...]
    histories: tuple[Condition, ...]
    complications: tuple[tuple[Condition, CodeMatch], ...]
    pending: tuple[ServiceRequest, ...]  # drafts / proposals about the mesh or to a centre
    elsewhere: tuple[ServiceRequest, ...]  # sent, about the mesh, not to a specialist centre
    referrals_gap: str | None

    @property
    def refs(self) -> frozenset[str]:
        return frozenset(
            [f"Procedure/{p.id}" for p, _ in self.procedures]
            + [f"Condition/{c.id}" for c in self.histories]
            + [f"Condition/{c.id}" for c, _ in self.complications]
        )

    @property
    def by_local_code(self) -> bool:
        return any(m.system == LOCAL_SYSTEM for _, m in self.complications)


def centres_from_bundle(bundle: Mapping[str, Any]) -> tuple[MeshCentre, ...]:
    """The centres in a Bundle of Organizations; a malformed entry is a ValueError (fail loudly)."""
    centres = []
    for index, entry in enumerate(bundle.get("entry") or []):
        org = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(org, dict) or org.get("resourceType") != "Organization":
            raise ValueError(f"mesh centres: entry[{index}] is not an Organization")
        regions = [
            e.get("valueString")
            for e in org.get("extension") or []
            if e.get("url") == REGION_EXTENSION_URL
        ]
        if len(regions) != 1 or regions[0] not in REGIONS:
            raise ValueError(f"mesh centres: {org.get('id')} needs one NHS England region")
        if not org.get("id") or not org.get("name"):
            raise ValueError(f"mesh centres: entry[{index}] needs an id and a name")
        addresses = org.get("address") or [{}]
        centres.append(
            MeshCentre(
                id=org["id"],
                name=org["name"],
                region=regions[0],
                city=addresses[0].get("city"),
                aliases=tuple(org.get("alias") or ()),
            )
        )
    if not centres:
        raise ValueError("mesh centres: the bundle holds no Organization")
    return tuple(centres)


def evaluate(
    record: PatientRecord,
    settings: PelvicMeshSettings,
    terminology: Terminology,
    centres: Sequence[MeshCentre],
) -> list[Finding]:
    conditions_gap = record.why_unavailable("Condition")
    if conditions_gap is not None:
        return [
            could_not_check(
                rule_id=RULE_ID,
                check="pelvic mesh complications",
                reason=conditions_gap,
                source_label=SOURCE_LABEL,
                source_url=SOURCE_URL,
            )
        ]
    mesh = _read_mesh(record, terminology, centres)
    if mesh is None:  # no complication, or already referred to a centre
        return []
    return [_finding(record, mesh, settings, centres)]


def _read_mesh(
    record: PatientRecord, terminology: Terminology, centres: Sequence[MeshCentre]
) -> _Mesh | None:
    complications: list[tuple[Condition, CodeMatch]] = []
    histories: list[Condition] = []
    for condition in record.of_type(Condition):
        match = terminology.match(COMPLICATION_VALUE_SET, condition.code)
        if match is None or not _is_current(condition):
            continue
        if match.code == MESH_HISTORY_CODE:
            histories.append(condition)
        else:
            complications.append((condition, match))
    if not complications:
        return None
    procedures = []
    for procedure in record.of_type(Procedure):
        match = terminology.match(PROCEDURE_VALUE_SET, procedure.code)
        if match is not None and procedure.status in _PROCEDURE_DONE:
            procedures.append((procedure, match))
    mesh = _Mesh(tuple(procedures), tuple(histories), tuple(complications), (), (), None)
    referrals_gap = record.why_unavailable("ServiceRequest")
    pending: list[ServiceRequest] = []
    elsewhere: list[ServiceRequest] = []
    for request in record.of_type(ServiceRequest):
        if request.status in {"revoked", "entered-in-error"}:
            continue
        about = _about_mesh(request, mesh.refs, terminology)
        centre = _centre_of(request, centres, about_mesh=about)
        not_sent = request.status in _NOT_SENT_STATUSES or request.intent in _NOT_SENT_INTENTS
        if centre is not None and not not_sent and request.status in _REFERRED:
            return None  # referred: nothing to say
        if not_sent and (centre is not None or about):
            pending.append(request)
        elif about and request.status in _REFERRED:
            elsewhere.append(request)
    return _Mesh(
        mesh.procedures,
        mesh.histories,
        mesh.complications,
        tuple(pending),
        tuple(elsewhere),
        referrals_gap,
    )


def _is_current(condition: Condition) -> bool:
    clinical = _codes(condition.clinical_status)
    verification = _codes(condition.verification_status)
    return not (clinical & _INACTIVE_CONDITION) and not (verification & _NOT_A_FINDING)


def _codes(concept: CodeableConcept | None) -> set[str]:
    return {c.code for c in concept.coding if c.code} if concept else set()


def _target(reference: Reference) -> str | None:
    for kind in ("Condition", "Procedure"):
        target = reference.target_id(kind)
        if target is not None:
            return f"{kind}/{target}"
    return None


def _about_mesh(
    request: ServiceRequest, mesh_refs: frozenset[str], terminology: Terminology
) -> bool:
    """Is the referral for the mesh: by reference, by complication code, or "mesh" in its code."""
    if any(_target(r) in mesh_refs for r in (*request.reason_reference, *request.supporting_info)):
        return True
    if any(terminology.match(COMPLICATION_VALUE_SET, c) for c in request.reason_code):
        return True
    words = [request.code.text or ""] if request.code else []
    words += [c.display or "" for c in request.code.coding] if request.code else []
    return any(re.search(r"\bmesh\b", w, re.IGNORECASE) for w in words)


def _normalise(text: str) -> str:
    return " " + " ".join(re.sub(r"[^a-z0-9]+", " ", text.casefold()).split()) + " "


def _centre_of(
    request: ServiceRequest, centres: Sequence[MeshCentre], *, about_mesh: bool
) -> MeshCentre | None:
    """The centre a referral goes to: by our Organization id, or by name for a mesh referral."""
    by_id = {c.id: c for c in centres}
    for performer in request.performer:
        target = performer.target_id("Organization")
        if target in by_id:
            return by_id[target]
    if not about_mesh:  # a trust's name alone does not make a referral a mesh referral
        return None
    for performer in request.performer:
        display = _normalise(performer.display or "")
        for centre in centres:
            if any(_normalise(name) in display for name in (centre.name, *centre.aliases)):
                return centre
    return None


def patient_region(patient: Patient | None, record: PatientRecord) -> tuple[str, str] | None:
    """(NHS England region, what it was read from) from a current address, or None."""
    if patient is None:
        return None
    by_name = {_normalise(r): r for r in REGIONS}
    for address in patient.address:
        ended = parse_when(address.period.end if address.period else None, record.zone)
        if address.use == "old" or (ended is not None and ended < record.now):
            continue
        for field in ("state", "district", "city"):
            value = getattr(address, field)
            if value and _normalise(value) in by_name:
                return by_name[_normalise(value)], f"the patient's address ({field} '{value}')"
    return None


def _region(record: PatientRecord, settings: PelvicMeshSettings) -> tuple[str, str] | None:
    found = patient_region(record.patient, record)
    if found is not None:
        return found
    if settings.default_region is not None:
        return (
            settings.default_region,
            "this trust's region (setting pelvic_mesh.default_region); the patient's address "
            "names no NHS England region",
        )
    return None


# -- the card -----------------------------------------------------------------------------------


def _finding(
    record: PatientRecord,
    mesh: _Mesh,
    settings: PelvicMeshSettings,
    centres: Sequence[MeshCentre],
) -> Finding:
    local = " (local code)" if mesh.by_local_code else ""
    if mesh.referrals_gap is not None:
        summary = f"Pelvic mesh complication{local}: mesh centre referral could not be checked"
    elif mesh.pending:
        summary = f"Pelvic mesh complication{local}: referral to a mesh centre not yet sent"
    else:
        summary = f"Pelvic mesh complication{local}: no referral to a specialist mesh centre"
    region = _region(record, settings)
    nearest = [c for c in centres if region and c.region == region[0]]
    suggestions: tuple[Suggestion, ...] = ()
    if mesh.referrals_gap is None and not mesh.pending and _is_clinician(record):
        suggestions = _referral_suggestions(record, mesh, nearest)
    evidence = tuple(sorted(mesh.refs)) + tuple(f"ServiceRequest/{r.id}" for r in mesh.pending)
    return Finding(
        rule_id=f"{RULE_ID}.no-referral",
        severity=Severity.WARNING,
        summary=summary,
        detail="\n".join(_detail(record, mesh, centres, nearest, region)),
        topic=TOPIC,
        source_label=SOURCE_LABEL,
        source_url=SOURCE_URL,
        suggestions=suggestions,
        links=(CardLink("Choice of mesh centre (written answer, UK Parliament)", CHOICE_URL),),
        override_reasons=("action-completed", "does-not-align-preferences", "cds-not-applicable"),
        evidence=evidence,
        facts={"region": region[0] if region else None, "by_local_code": mesh.by_local_code},
    )


def _detail(
    record: PatientRecord,
    mesh: _Mesh,
    centres: Sequence[MeshCentre],
    nearest: list[MeshCentre],
    region: tuple[str, str] | None,
) -> list[str]:
    lines = [
        "A complication of pelvic mesh is recorded and the patient has not been referred to one "
        "of NHS England's nine specialist mesh centres (multidisciplinary teams for mesh "
        "inserted for urinary incontinence or vaginal prolapse).",
        "",
        "**Mesh:**",
    ]
    for procedure, match in mesh.procedures:
        when = _when(record, procedure)
        possible = " (possible mesh: a sling may be autologous)" if match.code == SLING_CODE else ""
        lines.append(f"- {match.display} (Procedure/{procedure.id}{when}){possible}")
    for condition in mesh.histories:
        lines.append(f"- History of pelvic mesh implant (Condition/{condition.id}), local code")
    if not mesh.procedures and not mesh.histories:
        lines.append("- no mesh operation is coded; the complication below records the mesh")
    lines += ["", "**Complications:**"]
    for condition, match in mesh.complications:
        how = (
            f"matched by local code `{match.code}` (fhir-safety CodeSystem pelvic-mesh-local: "
            "no verified SNOMED CT concept exists yet)"
            if match.system == LOCAL_SYSTEM
            else f"SNOMED CT {match.code}"
        )
        lines.append(f"- {match.display} (Condition/{condition.id}): {how}")
    if mesh.referrals_gap is not None:
        lines += [
            "",
            f"Referrals **could not be checked** ({mesh.referrals_gap}): no referral is offered.",
        ]
    for request in mesh.pending:
        lines += [
            "",
            f"A referral is drafted but not sent (ServiceRequest/{request.id}, status "
            f"{request.status}): complete it, choosing the centre with the patient.",
        ]
    for request in mesh.elsewhere:
        where = (
            ", ".join(p.display or p.reference or "?" for p in request.performer) or "no performer"
        )
        lines += [
            "",
            f"ServiceRequest/{request.id} refers the mesh problem to {where}, which is not one of "
            "the specialist mesh centres.",
        ]
    lines += ["", "**Specialist mesh centres:**"]
    if nearest and region:
        names = " and ".join(c.name for c in nearest)
        lines.append(
            f"Nearest by NHS England region: **{names}** ({region[0]}; region read from "
            f"{region[1]})."
        )
    elif record.why_unavailable("Patient") is not None:
        lines.append(
            f"The patient's record could not be read ({record.why_unavailable('Patient')}), so "
            "their NHS England region is not known: choose the centre with the patient."
        )
    else:
        lines.append(
            "The patient's NHS England region is not recorded: choose the centre with the patient."
        )
    lines += ["", "| Centre | NHS England region |", "|---|---|"]
    lines += [
        f"| {c.name} | {c.region} |" for c in sorted(centres, key=lambda c: (c.region, c.name))
    ]
    lines += [
        "",
        "The patient may ask to be seen at another centre, for example to avoid the surgeon "
        "who implanted the mesh.",
    ]
    return lines


def _when(record: PatientRecord, procedure: Procedure) -> str:
    raw = procedure.performed_date_time or (
        procedure.performed_period.start if procedure.performed_period else None
    )
    when = parse_when(raw, record.zone)
    return f", {local_date(when, record.zone):%d %b %Y}" if when else ""


def _is_clinician(record: PatientRecord) -> bool:
    user = str(record.context.get("userId", ""))
    return user.startswith(("Practitioner/", "PractitionerRole/"))


def _referral_suggestions(
    record: PatientRecord,
    mesh: _Mesh,
    nearest: list[MeshCentre],
) -> tuple[Suggestion, ...]:
    if not nearest:
        return (
            Suggestion(
                key="refer-mesh-centre",
                label="Draft a referral to a specialist mesh centre (choose the centre)",
                actions=(
                    Action(
                        type="create",
                        description="Draft referral to a specialist mesh centre; the centre is "
                        "chosen with the patient",
                        resource=_referral(record, mesh, None),
                    ),
                ),
            ),
        )
    return tuple(
        Suggestion(
            key=f"refer-{centre.id}",
            label=f"Refer to {centre.name} (mesh centre, {centre.region})",
            actions=(
                Action(
                    type="create",
                    description=f"Draft referral to the specialist mesh centre at {centre.name}",
                    resource=_referral(record, mesh, centre),
                ),
            ),
            is_recommended=len(nearest) == 1,
        )
        for centre in nearest
    )


def _referral(record: PatientRecord, mesh: _Mesh, centre: MeshCentre | None) -> dict[str, object]:
    resource: dict[str, object] = {
        "resourceType": "ServiceRequest",
        "status": "draft",
        "intent": "order",
        "code": {"text": REFERRAL_TEXT},
        "subject": {"reference": f"Patient/{record.patient_id}"},
        "authoredOn": record.now.isoformat(),
        "requester": {"reference": str(record.context.get("userId"))},
    }
    if centre is not None:
        resource["performer"] = [{"reference": centre.reference, "display": centre.name}]
    else:
        resource["performerType"] = {"text": "NHS England specialist mesh centre"}
    resource["reasonReference"] = [
        {"reference": f"Condition/{condition.id}"} for condition, _ in mesh.complications
    ]
    supporting = [f"Procedure/{p.id}" for p, _ in mesh.procedures]
    supporting += [f"Condition/{c.id}" for c in mesh.histories]
    if supporting:
        resource["supportingInfo"] = [{"reference": ref} for ref in supporting]
    resource["note"] = [
        {
            "text": "Complication of pelvic mesh recorded (fhir-safety pelvic-mesh card). "
            "Complication codes are local project codes: no verified SNOMED CT concept exists."
        }
    ]
    return resource
