"""Reasonable adjustments: the NHS England Reasonable Adjustment Flag, learning disability, autism.

Pure: reads a ``PatientRecord``; no I/O, no clock (``record.now``).

Sources (shared/reference/clinical.md section 6; tags [Sn] as there):
- DAPB4019 *Reasonable Adjustment Digital Flag* information standard: the flag makes a patient's
  reasonable adjustments visible wherever they are treated; full compliance by 30 September 2026
  (NHS England ISN, December 2025) [S46].
- The NHS England RA FHIR model (``NHSDigital/ra-sandbox@cf0e0af0b564dc01c9cd7a21a4cb263b9af559e3``,
  IG canonical ``https://fhir.nhs.uk/England``) [S45]: an RA record is a ``PatientFlag`` (Flag,
  code ``PatientFlagCategory#NRAF``), ``ProgrammeFlag``s (Flag, category NRAF + ``RA-FlagCategory``,
  code = the adjustment, SNOMED CT from ``RA-FlagCode``), ``FlagCondition``s (Condition, category
  NRAF + ``RA-ConditionCategory``, code from ``RA-ConditionCode``: the impairment) and a
  ``FlagConsent`` (Consent, ``provision.purpose`` from ``RA-ConsentPurpose``: RACONSENT,
  RADISSENT, RAREVOKED), each with a contained ``FlagProvenance``. File paths are given next to
  each constant below.
- Consent (``input/pagecontent/consent-to-share-information.md``): consent must be established for
  information to be shared through the flag, or a best-interests decision made under the Mental
  Capacity Act 2005; a lasting power of attorney for health and welfare or a court-appointed
  deputy may consent. Dissent: the consent is recorded (inactive). Revoked: the consent is marked
  inactive "and all flags will be deleted, and all conditions will be deleted".

How consent is honoured here (docs/reasonable-adjustments.md, "Consent"):
- The latest RA consent decides (by ``Consent.dateTime``, else its contained Provenance
  ``recorded``; on a tie the more restrictive). RADISSENT, RAREVOKED, or an RACONSENT that has
  been made inactive (revoked) or rejected (dissent) are honoured: fhir-safety never offers to
  record a flag against them, and NRAF records still present are NOT displayed (the IG says they
  must not exist); the card says how many remain and offers to remove them, as the IG requires.
- Learning disability and autism diagnoses, family and carer contacts, and adjustment flags
  recorded locally outside the national NRAF model are the local care record for direct care:
  they are shown whatever the national flag consent says.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from fhir_safety.config import ReasonableAdjustmentsSettings
from fhir_safety.domain import Action, CardLink, Finding, Severity, Suggestion, Topic
from fhir_safety.fhir.resources import (
    CodeableConcept,
    Condition,
    Consent,
    ContactPoint,
    Flag,
    HumanName,
    Patient,
    RelatedPerson,
)
from fhir_safety.record import PatientRecord
from fhir_safety.rules.common import could_not_check, local_date, parse_when
from fhir_safety.terminology import Terminology

__all__ = [
    "RULE_ID",
    "Adjustment",
    "Assessment",
    "ConsentStatus",
    "Contact",
    "Diagnosis",
    "assess",
    "consent_status",
    "evaluate",
]

RULE_ID = "reasonable-adjustments"
TOPIC = Topic("reasonable-adjustments", "Reasonable adjustments")
SOURCE_LABEL = "NHS England: Reasonable Adjustment Digital Flag (DAPB4019)"
SOURCE_URL = (
    "https://standards.nhs.uk/published-standards/reasonable-adjustment-digital-flag"  # [S46]
)

# -- NHS England RA model [S45]: NHSDigital/ra-sandbox@cf0e0af0b564dc01c9cd7a21a4cb263b9af559e3 ----
RA_IG_COMMIT = "cf0e0af0b564dc01c9cd7a21a4cb263b9af559e3"
CONSENT_PAGE_URL = (
    f"https://github.com/NHSDigital/ra-sandbox/blob/{RA_IG_COMMIT}/"
    "input/pagecontent/consent-to-share-information.md"
)
_NHSE = "https://fhir.nhs.uk/England"  # sushi-config.yaml: canonical
# input/fsh/profiles/{PatientFlag,ProgrammeFlag,FlagCondition,FlagConsent}.fsh (^url)
PATIENT_FLAG_PROFILE = f"{_NHSE}/StructureDefinition/PatientFlag"
PROGRAMME_FLAG_PROFILE = f"{_NHSE}/StructureDefinition/ProgrammeFlag"
FLAG_CONDITION_PROFILE = f"{_NHSE}/StructureDefinition/FlagCondition"
FLAG_CONSENT_PROFILE = f"{_NHSE}/StructureDefinition/FlagConsent"
# input/fsh/extensions/Extension-AdjustmentNotes.fsh (^url): free-text notes on an adjustment.
FLAG_NOTES_URL = f"{_NHSE}/StructureDefinition/Extension-FlagNotes"
# input/fsh/codesystem/PatientFlagCategory.fsh: #NRAF "National Reasonable Adjustments Flag".
PATIENT_FLAG_CATEGORY = f"{_NHSE}/CodeSystem/PatientFlagCategory"
NRAF = "NRAF"
NRAF_DISPLAY = "National Reasonable Adjustments Flag"
# input/fsh/codesystem/RA-FlagCategory.fsh (001 Communication support ... 011 Bespoke).
RA_FLAG_CATEGORY = f"{_NHSE}/CodeSystem/RA-FlagCategory"
# input/fsh/codesystem/RA-ConditionCategory.fsh: #issue "Issue" (the IG's condition examples).
RA_CONDITION_CATEGORY = f"{_NHSE}/CodeSystem/RA-ConditionCategory"
# input/fsh/codesystem/RA-ConditionCode.fsh: the impairment a FlagCondition records.
RA_CONDITION_CODE = f"{_NHSE}/CodeSystem/RA-ConditionCode"
# input/fsh/codesystem/RA-ConsentPurpose.fsh.
RA_CONSENT_PURPOSE = f"{_NHSE}/CodeSystem/RA-ConsentPurpose"
RACONSENT = "RACONSENT"
RADISSENT = "RADISSENT"
RAREVOKED = "RAREVOKED"
RACONSENT_DISPLAY = "Reasonable Adjustments - Consent to record Reasonable Adjustments"
# input/fsh/codesystem/FlagProxyRole.fsh: who gave the consent (FlagConsent.policyRule).
FLAG_PROXY_ROLE = f"{_NHSE}/CodeSystem/FlagProxyRole"
PROXY_PATIENT = ("001", "Patient consent")
PROXY_BEST_INTEREST = (
    "002",
    "Best interest decision made on behalf of the patient (Mental Capacity Act 2005)",
)
# FlagCondition codes proposed from a diagnosis: RA-ConditionCode 5 is the impairment of the IG's
# example RAConditionExample1; 9 names autism spectrum disorder in its own display.
IMPAIRMENT_FOR = {
    "learning disability": ("5", "Learning or understanding or concentrating"),
    "autism": (
        "9",
        "Social or behavioural (for example associated with autism spectrum disorder (ASD) "
        "which includes Asperger\u2019s, or attention deficit hyperactivity disorder (ADHD))",
    ),
}
# HL7 code systems used by the IG examples (RAConditionExample1.fsh, RAConsentExample1.fsh).
CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CONSENT_SCOPE = "http://terminology.hl7.org/CodeSystem/consentscope"
DATA_OPERATION = "http://terminology.hl7.org/CodeSystem/v3-DataOperation"

# NHS England's later Patient Flag IG (Beta), which the Patient Flags Service FHIR API uses,
# renamed the codes and dropped Consent: NHSDigital/IOPS-FHIR-Simplifier-Backup@32fa716c4c475170693c7546933dfddd5ed43f11,
# NHSEnglandProgrammeImplementationGuides/backup/codesystems/CodeSystem-England-FlagCategoryPatient.xml
# (#national-reasonable-adjustment-flag), CodeSystem-England-FlagCategoryRA.xml and
# structuredefinitions/Extension-England-FlagNotes.xml. Read as well; we still write STU1.
PATIENT_FLAG_CATEGORY_BETA = f"{_NHSE}/CodeSystem/England-FlagCategoryPatient"
NRAF_BETA = "national-reasonable-adjustment-flag"
RA_FLAG_CATEGORY_BETA = f"{_NHSE}/CodeSystem/England-FlagCategoryRA"
FLAG_NOTES_URL_BETA = f"{_NHSE}/StructureDefinition/Extension-England-FlagNotes"
_NRAF_CODINGS = frozenset({(PATIENT_FLAG_CATEGORY, NRAF), (PATIENT_FLAG_CATEGORY_BETA, NRAF_BETA)})
_ADJUSTMENT_CATEGORIES = frozenset({RA_FLAG_CATEGORY, RA_FLAG_CATEGORY_BETA})
_FLAG_NOTES_URLS = frozenset({FLAG_NOTES_URL, FLAG_NOTES_URL_BETA})

ADJUSTMENT_VALUE_SET = "reasonable-adjustment-flag-codes"  # RA-FlagCode [S45] + [S47]
DIAGNOSIS_VALUE_SETS = (("learning disability", "learning-disability"), ("autism", "autism"))

ConsentState = Literal["consent", "dissent", "revoked", "none", "unknown"]
_RESTRICTIVENESS = {"consent": 0, "dissent": 1, "revoked": 2}
_INACTIVE_CONDITION = frozenset({"inactive", "resolved", "remission"})
_NOT_A_DIAGNOSIS = frozenset({"refuted", "entered-in-error", "provisional", "differential"})


@dataclass(frozen=True, slots=True)
class Adjustment:
    """One adjustment the patient needs, as recorded (display text is never invented)."""

    display: str
    category: str | None
    notes: tuple[str, ...]
    ref: str


@dataclass(frozen=True, slots=True)
class Diagnosis:
    kind: str  # "learning disability" | "autism"
    display: str
    ref: str


@dataclass(frozen=True, slots=True)
class Contact:
    name: str
    relationship: str | None
    telecom: str | None
    ref: str | None


@dataclass(frozen=True, slots=True)
class ConsentStatus:
    state: ConsentState
    ref: str | None = None
    when: datetime | None = None
    basis: str | None = None  # FlagConsent.policyRule: who consented (patient, best interests...)


@dataclass(frozen=True, slots=True)
class Assessment:
    """What the record says about reasonable adjustments, before any card is chosen."""

    national_count: int  # NRAF PatientFlag, ProgrammeFlags and FlagConditions on the record
    national_refs: tuple[str, ...]  # their references (those that have an id)
    national_adjustments: tuple[Adjustment, ...]
    impairments: tuple[str, ...]
    local_adjustments: tuple[Adjustment, ...]  # adjustment flags outside the NRAF model
    diagnoses: tuple[Diagnosis, ...]
    consent: ConsentStatus
    contacts: tuple[Contact, ...]
    conditions_gap: str | None
    consent_gap: str | None
    contacts_gap: str | None

    @property
    def has_national(self) -> bool:
        return self.national_count > 0

    @property
    def withheld(self) -> bool:
        """The latest RA consent is a dissent or a revocation."""
        return self.consent.state in {"dissent", "revoked"}


def evaluate(
    record: PatientRecord, settings: ReasonableAdjustmentsSettings, terminology: Terminology
) -> list[Finding]:
    flags_gap = record.why_unavailable("Flag")
    if flags_gap is not None:
        return [
            could_not_check(
                rule_id=RULE_ID,
                check="Reasonable Adjustment Flag",
                reason=flags_gap,
                source_label=SOURCE_LABEL,
                source_url=SOURCE_URL,
            )
        ]
    found = assess(record, terminology)
    if found.withheld:
        if found.has_national:
            return [_withheld_records_finding(record, found)]
        if found.diagnoses or found.local_adjustments:
            return [_withheld_finding(record, found)]
        return []
    if found.has_national:
        return [_flag_finding(record, found)]
    if found.diagnoses:
        return [_no_flag_finding(record, found, settings)]
    if found.local_adjustments:
        return [_local_only_finding(record, found)]
    if found.conditions_gap is not None:
        return [
            could_not_check(
                rule_id=RULE_ID,
                check="learning disability and autism diagnoses (Reasonable Adjustment Flag)",
                reason=found.conditions_gap,
                source_label=SOURCE_LABEL,
                source_url=SOURCE_URL,
            )
        ]
    return []


# -- reading the record -----------------------------------------------------------------------


def assess(record: PatientRecord, terminology: Terminology) -> Assessment:
    flags = [f for f in record.of_type(Flag) if _flag_is_current(f, record)]
    patient_flags = [f for f in flags if _is_nraf(f.code)]
    programme_flags = [
        f for f in flags if not _is_nraf(f.code) and any(_is_nraf(c) for c in f.category)
    ]
    local_flags = [
        f
        for f in flags
        if not _is_nraf(f.code)
        and not any(_is_nraf(c) for c in f.category)
        and terminology.match(ADJUSTMENT_VALUE_SET, f.code) is not None
    ]
    conditions = [c for c in record.of_type(Condition) if _condition_is_current(c)]
    flag_conditions = [c for c in conditions if any(_is_nraf(cat) for cat in c.category)]
    national = [*patient_flags, *programme_flags, *flag_conditions]
    return Assessment(
        national_count=len(national),
        national_refs=tuple(f"{r.resource_type}/{r.id}" for r in national if r.id),
        national_adjustments=tuple(_adjustment(f, terminology) for f in programme_flags),
        impairments=tuple(_concept_text(c.code) for c in flag_conditions if c.code),
        local_adjustments=tuple(_adjustment(f, terminology) for f in local_flags),
        diagnoses=_diagnoses(conditions, terminology),
        consent=consent_status(record),
        contacts=_contacts(record),
        conditions_gap=record.why_unavailable("Condition"),
        consent_gap=record.why_unavailable("Consent"),
        contacts_gap=record.why_unavailable("RelatedPerson"),
    )


def _is_nraf(concept: CodeableConcept | None) -> bool:
    """The National Reasonable Adjustments Flag category, in STU1 or Patient Flag (Beta) codes."""
    return concept is not None and any((c.system, c.code) in _NRAF_CODINGS for c in concept.coding)


def _flag_is_current(flag: Flag, record: PatientRecord) -> bool:
    if flag.status != "active":
        return False
    end = parse_when(flag.period.end if flag.period else None, record.zone)
    return end is None or end >= record.now


def _condition_is_current(condition: Condition) -> bool:
    clinical = _codes(condition.clinical_status)
    verification = _codes(condition.verification_status)
    return not (clinical & _INACTIVE_CONDITION) and not (verification & _NOT_A_DIAGNOSIS)


def _codes(concept: CodeableConcept | None) -> set[str]:
    return {c.code for c in concept.coding if c.code} if concept else set()


def _adjustment(flag: Flag, terminology: Terminology) -> Adjustment:
    display = _concept_text(flag.code, terminology)
    category = next(
        (
            coding.display or coding.code
            for concept in flag.category
            for coding in concept.coding
            if coding.system in _ADJUSTMENT_CATEGORIES
        ),
        None,
    )
    notes = tuple(
        ext.value_annotation.text
        for ext in flag.extension
        if ext.url in _FLAG_NOTES_URLS and ext.value_annotation and ext.value_annotation.text
    )
    return Adjustment(display, category, notes, f"Flag/{flag.id}")


def _concept_text(concept: CodeableConcept | None, terminology: Terminology | None = None) -> str:
    """The recorded meaning: our curated display for a known code, else the record's own words."""
    if concept is None:
        return "(not coded)"
    for coding in concept.coding:
        if terminology is not None and coding.system and coding.code:
            known = terminology.display(coding.system, coding.code)
            if known:
                return known
    for coding in concept.coding:
        if coding.display:
            return coding.display
    if concept.text:
        return concept.text
    codes = [c.code for c in concept.coding if c.code]
    return f"code {codes[0]}" if codes else "(not coded)"


def _diagnoses(conditions: list[Condition], terminology: Terminology) -> tuple[Diagnosis, ...]:
    found = []
    for condition in conditions:
        for kind, value_set in DIAGNOSIS_VALUE_SETS:
            match = terminology.match(value_set, condition.code)
            if match is not None:
                display = match.display or _concept_text(condition.code)
                found.append(Diagnosis(kind, display, f"Condition/{condition.id}"))
    return tuple(found)


def consent_status(record: PatientRecord) -> ConsentStatus:
    """The latest NHS England RA consent decision (see the module docstring)."""
    if record.why_unavailable("Consent") is not None:
        return ConsentStatus("unknown")
    decisions: list[tuple[datetime | None, Literal["consent", "dissent", "revoked"], Consent]] = []
    for consent in record.of_type(Consent):
        state = _consent_state(consent)
        if state is not None:
            decisions.append((_consent_time(consent, record), state, consent))
    if not decisions:
        return ConsentStatus("none")
    floor = datetime.min.replace(tzinfo=record.now.tzinfo)
    when, state, consent = max(decisions, key=lambda d: (d[0] or floor, _RESTRICTIVENESS[d[1]]))
    basis = None
    if consent.policy_rule is not None:
        basis = _concept_text(consent.policy_rule)
    return ConsentStatus(state, f"Consent/{consent.id}", when, basis)


def _consent_state(consent: Consent) -> Literal["consent", "dissent", "revoked"] | None:
    """consent | dissent | revoked for an RA consent; None for anything else."""
    if consent.status in {"entered-in-error", "draft", "proposed"}:
        return None
    purposes = {
        p.code
        for p in (consent.provision.purpose if consent.provision else [])
        if p.system == RA_CONSENT_PURPOSE
    }
    if not purposes and not any(_is_nraf(c) for c in consent.category):
        return None
    if RAREVOKED in purposes:
        return "revoked"
    if RADISSENT in purposes:
        return "dissent"
    if RACONSENT in purposes or (consent.provision and consent.provision.type == "permit"):
        # The IG revokes by marking the consent inactive: an inactive RACONSENT is a revocation.
        if consent.status == "inactive":
            return "revoked"
        return "dissent" if consent.status == "rejected" else "consent"
    if consent.provision and consent.provision.type == "deny":
        return "dissent"
    return None


def _consent_time(consent: Consent, record: PatientRecord) -> datetime | None:
    when = parse_when(consent.date_time, record.zone)
    if when is not None:
        return when
    for contained in consent.contained:
        recorded = contained.get("recorded")
        if contained.get("resourceType") == "Provenance" and isinstance(recorded, str):
            try:
                return parse_when(recorded, record.zone)
            except ValueError:
                return None
    return None


def _contacts(record: PatientRecord) -> tuple[Contact, ...]:
    contacts: list[Contact] = []
    for person in record.of_type(RelatedPerson):
        if person.active is False or _ended(person.period.end if person.period else None, record):
            continue
        contacts.append(
            Contact(
                name=_name(person.name[0] if person.name else None),
                relationship=_relationships(person.relationship),
                telecom=_telecom(person.telecom),
                ref=f"RelatedPerson/{person.id}",
            )
        )
    patient: Patient | None = record.patient
    for entry in patient.contact if patient else []:
        if _ended(entry.period.end if entry.period else None, record):
            continue
        contacts.append(
            Contact(
                name=_name(entry.name),
                relationship=_relationships(entry.relationship),
                telecom=_telecom(entry.telecom),
                ref=None,
            )
        )
    unique: dict[str, Contact] = {}
    for contact in contacts:  # the same person in RelatedPerson and Patient.contact: once
        unique.setdefault(contact.name.casefold(), contact)
    return tuple(unique.values())


def _ended(end: str | None, record: PatientRecord) -> bool:
    when = parse_when(end, record.zone)
    return when is not None and when < record.now


def _name(name: HumanName | None) -> str:
    if name is None:
        return "(name not recorded)"
    if name.text:
        return name.text
    parts = [*name.prefix, *name.given, name.family or ""]
    return " ".join(p for p in parts if p) or "(name not recorded)"


def _relationships(concepts: list[CodeableConcept]) -> str | None:
    words = [_concept_text(c) for c in concepts]
    return ", ".join(w for w in words if w != "(not coded)") or None


def _telecom(points: list[ContactPoint]) -> str | None:
    usable = [p for p in points if p.value]
    if not usable:
        return None
    usable.sort(key=lambda p: (p.system != "phone", p.rank if p.rank is not None else 99))
    best = usable[0]
    return f"{best.system or 'contact'} {best.value}"


# -- findings -----------------------------------------------------------------------------------


def _flag_finding(record: PatientRecord, found: Assessment) -> Finding:
    adjustments = found.national_adjustments + found.local_adjustments
    if adjustments:
        summary = _fit("Reasonable adjustments: ", [a.display for a in adjustments])
    else:
        summary = "Reasonable Adjustment Flag recorded: no adjustments listed, ask what is needed"
    lines = [*_adjustment_lines(found), "", *_context_lines(record, found)]
    if found.consent.state == "none":
        lines += [
            "",
            "_No Reasonable Adjustment Flag consent was found with this flag: check that consent "
            "(or a best-interests decision) is recorded before the flag is shared._",
        ]
    elif found.consent.state == "unknown":
        lines += [
            "",
            f"_Consent records could not be read ({found.consent_gap}): if the patient has "
            "withdrawn consent, the flag must be removed._",
        ]
    return _finding(
        "flag",
        Severity.INFO,
        summary,
        lines,
        evidence=found.national_refs + tuple(a.ref for a in found.local_adjustments),
        override_reasons=("cds-not-applicable", "action-completed"),
    )


def _local_only_finding(record: PatientRecord, found: Assessment) -> Finding:
    summary = _fit(
        "Reasonable adjustments (local record): ", [a.display for a in found.local_adjustments]
    )
    lines = [*_adjustment_lines(found), "", *_context_lines(record, found)]
    return _finding(
        "local",
        Severity.INFO,
        summary,
        lines,
        evidence=tuple(a.ref for a in found.local_adjustments),
        override_reasons=("cds-not-applicable", "action-completed"),
    )


def _no_flag_finding(
    record: PatientRecord, found: Assessment, settings: ReasonableAdjustmentsSettings
) -> Finding:
    kinds = _kinds(found.diagnoses)
    summary = f"{kinds[0].upper()}{kinds[1:]} recorded: no Reasonable Adjustment Flag"
    lines = [
        f"**{kinds[0].upper()}{kinds[1:]}** is recorded, but there is no NHS England Reasonable "
        "Adjustment Flag, so the adjustments this person needs are not visible to the other "
        "services that treat them. Every NHS and publicly funded care provider must record and "
        "share them (DAPB4019; full compliance by 30 September 2026).",
        "",
    ]
    if found.local_adjustments:
        lines += [*_adjustment_lines(found), ""]
    lines += [*_context_lines(record, found), ""]
    lines += [
        "**Recording the flag.** Ask the patient whether they agree to their reasonable "
        "adjustments being recorded and shared through the flag. If they lack capacity for this "
        "decision, record a best-interests decision under the Mental Capacity Act 2005 (a lasting "
        "power of attorney for health and welfare or a court-appointed deputy can also consent) "
        f"([NHS England RA consent model]({CONSENT_PAGE_URL})). Then add the adjustments the "
        "patient and family tell you they need (for example carer present, easy read, "
        "communication support) in the EHR's reasonable adjustment form.",
    ]
    suggestions: tuple[Suggestion, ...] = ()
    if found.consent_gap is not None:
        lines += [
            "",
            f"_Consent records could not be read ({found.consent_gap}): check for a recorded "
            "dissent before recording a flag. No flag is offered._",
        ]
    elif not _is_clinician(record):
        lines += ["", "_A clinician can record the flag from the EHR._"]
    else:
        suggestions = _record_flag_suggestions(record, found, settings)
    return _finding(
        "no-flag",
        Severity.WARNING,
        summary,
        lines,
        evidence=tuple(d.ref for d in found.diagnoses),
        suggestions=suggestions,
        override_reasons=("patient-refuses", "action-completed", "cds-not-applicable"),
    )


def _withheld_records_finding(record: PatientRecord, found: Assessment) -> Finding:
    count = found.national_count
    records = f"{count} flag record{'s' if count != 1 else ''}"
    if found.consent.state == "revoked":
        summary = f"Reasonable Adjustment Flag consent withdrawn: {records} should be removed"
    else:
        verb = "exist" if count != 1 else "exists"
        summary = f"Patient declined the Reasonable Adjustment Flag but {records} {verb}"
    lines = [
        f"{_consent_sentence(record, found.consent)} {records.capitalize()} of the national "
        "Reasonable Adjustment Flag are still on the record "
        f"({', '.join(found.national_refs)}). NHS England's RA model: when consent is revoked, "
        "the patient flag and all adjustment flags and conditions are deleted "
        f"([consent to share information]({CONSENT_PAGE_URL})). fhir-safety does not show "
        "their content.",
        "",
        "Removing the flag does not remove the patient's needs: ask the patient and, with their "
        "agreement, their family or carer what adjustments they need today.",
        "",
        *_context_lines(record, found),
    ]
    suggestions: tuple[Suggestion, ...] = ()
    if _is_clinician(record):
        deletes = tuple(
            Action(
                type="delete", description=f"Remove {ref} (RA consent withheld)", resource_id=ref
            )
            for ref in found.national_refs
        )
        if deletes:
            reason = "consent withdrawn" if found.consent.state == "revoked" else "patient declined"
            suggestions = (
                Suggestion(
                    key="remove-ra-records",
                    label=f"Remove the Reasonable Adjustment Flag records ({reason})",
                    actions=deletes,
                ),
            )
    return _finding(
        "consent-withheld",
        Severity.WARNING,
        summary,
        lines,
        evidence=(*found.national_refs, *([found.consent.ref] if found.consent.ref else [])),
        suggestions=suggestions,
        override_reasons=("action-completed", "need-more-info"),
    )


def _withheld_finding(record: PatientRecord, found: Assessment) -> Finding:
    if found.consent.state == "revoked":
        summary = "Reasonable Adjustment Flag consent withdrawn: ask what adjustments are needed"
    else:
        summary = "Patient declined the Reasonable Adjustment Flag: ask what adjustments are needed"
    lines = [
        f"{_consent_sentence(record, found.consent)} No flag is offered: the decision is "
        "honoured. It covers sharing through the national flag; it does not remove the "
        "patient's needs. Ask the patient and, with their agreement, their family or carer what "
        "adjustments they need today.",
        "",
    ]
    if found.local_adjustments:
        lines += [*_adjustment_lines(found), ""]
    lines += _context_lines(record, found)
    return _finding(
        "consent-withheld",
        Severity.INFO,
        summary,
        lines,
        evidence=tuple(d.ref for d in found.diagnoses)
        + ((found.consent.ref,) if found.consent.ref else ()),
        override_reasons=("cds-not-applicable",),
    )


def _finding(
    name: str,
    severity: Severity,
    summary: str,
    lines: list[str],
    *,
    evidence: tuple[str, ...],
    suggestions: tuple[Suggestion, ...] = (),
    override_reasons: tuple[str, ...] = (),
) -> Finding:
    return Finding(
        rule_id=f"{RULE_ID}.{name}",
        severity=severity,
        summary=summary,
        detail="\n".join(lines),
        topic=TOPIC,
        source_label=SOURCE_LABEL,
        source_url=SOURCE_URL,
        suggestions=suggestions,
        links=(
            CardLink("NHS England RA FHIR model: consent to share information", CONSENT_PAGE_URL),
            CardLink(
                "NHS England: RA Digital Flag action checklist",
                "https://www.england.nhs.uk/long-read/the-reasonable-adjustment-digital-flag-"
                "action-checklist-what-you-need-to-do-to-achieve-compliance",
            ),
        ),
        override_reasons=override_reasons,
        evidence=evidence,
    )


def _fit(prefix: str, items: list[str]) -> str:
    """``prefix`` + as many items as fit under 140 characters, then "(+n more)"."""
    for shown in range(len(items), 0, -1):
        rest = len(items) - shown
        text = prefix + "; ".join(items[:shown]) + (f" (+{rest} more)" if rest else "")
        if len(text) < 140:
            return text
    first = items[0][: 139 - len(prefix) - 15].rstrip() + "..."
    rest = len(items) - 1
    return prefix + first + (f" (+{rest} more)" if rest else "")


def _kinds(diagnoses: tuple[Diagnosis, ...]) -> str:
    kinds = [k for k, _ in DIAGNOSIS_VALUE_SETS if any(d.kind == k for d in diagnoses)]
    return " and ".join(kinds)


def _adjustment_lines(found: Assessment) -> list[str]:
    lines: list[str] = []
    if found.national_adjustments:
        lines.append("**Adjustments needed** (NHS England Reasonable Adjustment Flag):")
        lines += [_adjustment_line(a) for a in found.national_adjustments]
    if found.impairments:
        lines.append("")
        lines.append("Impairments recorded with the flag: " + "; ".join(found.impairments) + ".")
    if found.local_adjustments:
        if lines:
            lines.append("")
        lines.append(
            "**Adjustments recorded locally** (not on the national flag, so other services "
            "cannot see them):"
        )
        lines += [_adjustment_line(a) for a in found.local_adjustments]
    return lines


def _adjustment_line(adjustment: Adjustment) -> str:
    line = f"- **{adjustment.display}**"
    if adjustment.category:
        line += f" ({adjustment.category})"
    for note in adjustment.notes:
        line += f": _{note}_"
    return line


def _context_lines(record: PatientRecord, found: Assessment) -> list[str]:
    lines: list[str] = []
    if found.diagnoses:
        seen = dict.fromkeys(f"{d.display} ({d.ref})" for d in found.diagnoses)
        lines.append("Diagnoses: " + "; ".join(seen) + ".")
    elif found.conditions_gap is not None:
        lines.append(f"Diagnoses: _could not be checked ({found.conditions_gap})_.")
    if found.consent.state in {"consent", "dissent", "revoked"} and not found.withheld:
        lines.append(_consent_sentence(record, found.consent))
    lines.append("")
    lines.append("**Family and carers:**")
    if found.contacts:
        for contact in found.contacts[:3]:
            parts = [f"- {contact.name}"]
            if contact.relationship:
                parts.append(f" ({contact.relationship})")
            if contact.telecom:
                parts.append(f", {contact.telecom}")
            lines.append("".join(parts))
        if len(found.contacts) > 3:
            lines.append(f"- and {len(found.contacts) - 3} more in the record")
    elif found.contacts_gap is not None:
        lines.append(f"- _could not be read ({found.contacts_gap})_")
    else:
        lines.append(
            "- none recorded: ask who knows the patient best and record them as a related person."
        )
    lines += [
        "",
        "**Listen to the family's concerns.** Family and carers know how this person usually "
        "communicates, behaves and shows pain or distress. Ask them, record what they say, and "
        "act on a concern that something is not right.",
    ]
    return lines


def _consent_sentence(record: PatientRecord, consent: ConsentStatus) -> str:
    when = f" on {local_date(consent.when, record.zone):%d %b %Y}" if consent.when else ""
    ref = f" ({consent.ref})" if consent.ref else ""
    if consent.state == "revoked":
        return f"Consent to the Reasonable Adjustment Flag was withdrawn{when}{ref}."
    if consent.state == "dissent":
        return f"The patient declined the Reasonable Adjustment Flag{when}{ref}."
    basis = f"; basis: {consent.basis}" if consent.basis else ""
    return f"Consent to share through the flag: given{when}{basis}{ref}."


# -- suggestions ---------------------------------------------------------------------------------


def _is_clinician(record: PatientRecord) -> bool:
    user = str(record.context.get("userId", ""))
    return user.startswith(("Practitioner/", "PractitionerRole/"))


def _record_flag_suggestions(
    record: PatientRecord, found: Assessment, settings: ReasonableAdjustmentsSettings
) -> tuple[Suggestion, ...]:
    flag_actions = (
        Action(
            type="create",
            description="National Reasonable Adjustments Flag (NHS England PatientFlag, NRAF)",
            resource=_patient_flag(record),
        ),
        *(
            Action(
                type="create",
                description=f"Impairment: {display} (NHS England FlagCondition, code {code})",
                resource=_flag_condition(record, code, display, refs),
            )
            for code, display, refs in _impairments(found.diagnoses)
        ),
    )
    if found.consent.state == "consent":
        return (
            Suggestion(
                key="record-ra-flag",
                label="Record the Reasonable Adjustment Flag (consent already recorded)",
                actions=flag_actions,
                is_recommended=True,
            ),
        )
    return tuple(
        Suggestion(
            key=key,
            label=label,
            actions=(
                Action(
                    type="create",
                    description=f"Consent to share reasonable adjustments: {rule[1]} "
                    "(NHS England FlagConsent, RACONSENT)",
                    resource=_flag_consent(record, rule, settings),
                ),
                *flag_actions,
            ),
        )
        for key, label, rule in (
            (
                "record-ra-flag-patient-consent",
                "Patient agrees: record a Reasonable Adjustment Flag",
                PROXY_PATIENT,
            ),
            (
                "record-ra-flag-best-interests",
                "Best-interests decision (MCA 2005): record a Reasonable Adjustment Flag",
                PROXY_BEST_INTEREST,
            ),
        )
    )


def _impairments(diagnoses: tuple[Diagnosis, ...]) -> list[tuple[str, str, tuple[str, ...]]]:
    out = []
    for kind, _ in DIAGNOSIS_VALUE_SETS:
        refs = tuple(dict.fromkeys(d.ref for d in diagnoses if d.kind == kind))
        if refs:
            code, display = IMPAIRMENT_FOR[kind]
            out.append((code, display, refs))
    return out


def _nraf() -> dict[str, object]:
    return {"system": PATIENT_FLAG_CATEGORY, "code": NRAF, "display": NRAF_DISPLAY}


def _provenance(record: PatientRecord) -> dict[str, object]:
    """The contained FlagProvenance every RA resource carries (IG examples: target "#")."""
    return {
        "resourceType": "Provenance",
        "id": "provenance",
        "target": [{"reference": "#"}],
        "recorded": record.now.isoformat(),
        "activity": {"coding": [{"system": DATA_OPERATION, "code": "CREATE", "display": "create"}]},
        "agent": [{"who": _recorder(str(record.context.get("userId")))}],
    }


def _recorder(user: str) -> dict[str, object]:
    """FlagProvenance.agent.who: only a Practitioner may be named (FlagProvenance.fsh).

    A PractitionerRole user cannot be put there, and the hook does not say which Practitioner
    holds the role, so the agent is typed Practitioner and described by the role it acted in.
    """
    if user.startswith("PractitionerRole/"):
        return {"type": "Practitioner", "display": f"The clinician acting in {user}"}
    return {"reference": user, "type": "Practitioner"}


def _patient_flag(record: PatientRecord) -> dict[str, object]:
    return {
        "resourceType": "Flag",
        "meta": {"profile": [PATIENT_FLAG_PROFILE]},
        "contained": [_provenance(record)],
        "status": "active",
        "code": {"coding": [_nraf()]},
        "subject": {"reference": f"Patient/{record.patient_id}"},
        "period": {"start": record.now.isoformat()},
    }


def _flag_condition(
    record: PatientRecord, code: str, display: str, evidence: tuple[str, ...]
) -> dict[str, object]:
    return {
        "resourceType": "Condition",
        "meta": {"profile": [FLAG_CONDITION_PROFILE]},
        "contained": [_provenance(record)],
        "clinicalStatus": {"coding": [{"system": CONDITION_CLINICAL, "code": "active"}]},
        "category": [
            {"coding": [_nraf()]},
            {"coding": [{"system": RA_CONDITION_CATEGORY, "code": "issue", "display": "Issue"}]},
        ],
        "code": {"coding": [{"system": RA_CONDITION_CODE, "code": code, "display": display}]},
        "subject": {"reference": f"Patient/{record.patient_id}"},
        "recordedDate": record.now.isoformat(),
        "evidence": [{"detail": [{"reference": ref} for ref in evidence]}],
    }


def _flag_consent(
    record: PatientRecord, rule: tuple[str, str], settings: ReasonableAdjustmentsSettings
) -> dict[str, object]:
    return {
        "resourceType": "Consent",
        "meta": {"profile": [FLAG_CONSENT_PROFILE]},
        "contained": [_provenance(record)],
        "status": "active",
        "scope": {
            "coding": [
                {"system": CONSENT_SCOPE, "code": "patient-privacy", "display": "Privacy Consent"}
            ]
        },
        "category": [{"coding": [_nraf()]}],
        "patient": {"reference": f"Patient/{record.patient_id}"},
        "dateTime": record.now.isoformat(),
        "policy": [
            {
                "authority": settings.consent_policy_authority,
                "uri": settings.consent_policy_uri,
            }
        ],
        "policyRule": {
            "coding": [{"system": FLAG_PROXY_ROLE, "code": rule[0], "display": rule[1]}]
        },
        "provision": {
            "purpose": [
                {"system": RA_CONSENT_PURPOSE, "code": RACONSENT, "display": RACONSENT_DISPLAY}
            ]
        },
    }
