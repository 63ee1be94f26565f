"""Valproate safety: Pregnancy Prevention Programme (PPP), pregnancy, new starts, men.

Pure: reads a ``PatientRecord`` and the clock passed in it; no I/O.

Rules (source tags [Sn] are in shared/reference/clinical.md section 3; details and the
decisions the issue left open are in docs/valproate.md):

- **PPP** (MHRA Drug Safety Update, April 2018 [S24]): valproate is contraindicated in women and
  girls who could become pregnant unless the PPP conditions are met, including a specialist
  review at least annually with a signed Annual Risk Acknowledgement Form (ARAF). "Could become
  pregnant" = not male, aged ``ppp_min_age``..``ppp_max_age`` (NCL ICB production logic [S23]:
  non-male cohort aged 0-55, no action at 0-6), and no recorded permanent absence of pregnancy
  risk (hysterectomy, bilateral oophorectomy, established menopause [S23][S28]). The PPP is read
  from the ``valproate-ppp-flag`` Flag: ``period.start`` = ARAF date, ``period.end`` = review due;
  a Flag whose ARAF is older than ``araf_validity_months`` (NCL: one calendar year [S23]), whose
  review date has passed, or which is inactive counts as no PPP.
- **Pregnancy** [S24]: valproate is contraindicated in pregnancy (bipolar disorder) and in
  epilepsy only if there is no suitable alternative; 11% malformations and 30-40%
  developmental disorders (NICE CG192 update information, April 2018).
- **New start under 55** (MHRA, from 31 January 2024 [S25]; kept for initiation in February
  2025 [S26]): not to be started in anyone younger than 55 unless two specialists independently
  agree and document it.
- **Men** (MHRA Drug Safety Update, September 2024 [S27]): effective contraception during
  treatment and for 3 months after stopping, discuss family plans, no sperm donation.

Codes come from ``terminology/`` (``valproate-products``, ``valproate-ppp-status``,
``valproate-araf``, ``pregnancy-current``, ``pregnancy-risk-absent``, ``learning-disability``);
the two single codes the suggestions need are settings (``ValproateSettings``).
"""

from __future__ import annotations

import calendar
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Literal

from fhir_safety.config import ValproateSettings
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
    Flag,
    MedicationRequest,
    MedicationStatement,
    Observation,
    Procedure,
    Resource,
)
from fhir_safety.record import PatientRecord
from fhir_safety.rules.common import could_not_check, local_date, medication_concept, parse_when
from fhir_safety.terminology import SNOMED, CodeMatch, Terminology, canonical_system

__all__ = [
    "ARAF_EXTENSION_URL",
    "RULE_ID",
    "SPECIALIST_EXTENSION_URL",
    "ActionStatus",
    "Evidence",
    "PppStatus",
    "ValproateAssessment",
    "ValproateProduct",
    "action_status",
    "add_months",
    "age_of",
    "assess",
    "evaluate",
    "evaluate_status",
    "valproate_in_use",
]

RULE_ID = "valproate"

PRODUCTS = "valproate-products"
PPP_STATUS = "valproate-ppp-status"
ARAF = "valproate-araf"
PREGNANCY = "pregnancy-current"
RISK_ABSENT = "pregnancy-risk-absent"
LEARNING_DISABILITY = "learning-disability"

ARAF_EXTENSION_URL = f"{PROJECT_CANONICAL}/StructureDefinition/valproate-araf"
SPECIALIST_EXTENSION_URL = f"{PROJECT_CANONICAL}/StructureDefinition/valproate-specialist"

TOPIC_PPP = Topic("valproate-ppp", "Valproate Pregnancy Prevention Programme")
TOPIC_PREGNANCY = Topic("valproate-pregnancy", "Valproate in pregnancy")
TOPIC_TWO_SPECIALIST = Topic("valproate-two-specialist", "Valproate two-specialist initiation")
TOPIC_MALE = Topic("valproate-male", "Valproate in males")

# MHRA, "Valproate - reproductive risks" (GOV.UK, 2025): the current home of the PPP rules and
# materials (Patient Guide, patient card, ARAF) [S24][S25][S26][S27].
MHRA_LABEL = "MHRA: Valproate - reproductive risks"
MHRA_URL = "https://www.gov.uk/guidance/valproate-reproductive-risks"
# MHRA Drug Safety Update, January 2024: new measures for men and women under 55 [S25].
DSU_2024_LABEL = "MHRA Drug Safety Update (January 2024): valproate in patients under 55"
DSU_2024_URL = (
    "https://www.gov.uk/drug-safety-update/valproate-belvo-convulex-depakote-dyzantil-epilim-"
    "epilim-chrono-or-chronosphere-episenta-epival-and-syonellv-new-safety-and-educational-"
    "materials-to-support-regulatory-measures-in-men-and-women-under-55-years-of-age"
)
# MHRA Drug Safety Update, September 2024: valproate use in men [S27].
DSU_MEN_LABEL = "MHRA Drug Safety Update (September 2024): valproate use in men"
DSU_MEN_URL = (
    "https://www.gov.uk/drug-safety-update/valproate-use-in-men-as-a-precaution-men-and-their-"
    "partners-should-use-effective-contraception"
)
# MHRA Drug Safety Update: PPP educational materials (Patient Guide, patient card, ARAF).
PATIENT_GUIDE_LABEL = "MHRA: valproate Patient Guide and PPP materials"
PATIENT_GUIDE_URL = (
    "https://www.gov.uk/drug-safety-update/valproate-epilim-depakote-pregnancy-prevention-"
    "programme-updated-educational-materials"
)
# NHS website, plain English (no easy-read version on gov.uk could be verified).
NHS_PLAIN_LABEL = "NHS: valproate, pregnancy and fertility (plain English)"
NHS_PLAIN_URL = (
    "https://www.nhs.uk/medicines/sodium-valproate/"
    "pregnancy-breastfeeding-and-fertility-while-taking-sodium-valproate/"
)

ORDER_STATUSES = frozenset({"draft", "active", "on-hold", "unknown"})
CURRENT_REQUEST_STATUSES = frozenset({"active", "on-hold"})
EARLIER_REQUEST_STATUSES = frozenset({"active", "on-hold", "completed", "stopped", "unknown"})
CURRENT_STATEMENT_STATUSES = frozenset({"active", "intended"})
EARLIER_STATEMENT_STATUSES = frozenset({"active", "completed", "intended", "stopped", "unknown"})
NOT_TRUE = frozenset({"entered-in-error", "refuted"})
ENDED_CLINICAL = frozenset({"inactive", "resolved", "remission"})

ActionStatus = Literal[
    "Review or refer", "Consider expiry of ARAF", "Keep under review", "No action required"
]


# -- what the rules read ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Evidence:
    """One resource a finding rests on."""

    ref: str  # "Condition/123"
    display: str
    when: date | None = None


@dataclass(frozen=True, slots=True)
class ValproateProduct:
    """A valproate medicine in an order or the record, and how it was recognised."""

    ref: str
    display: str
    by: Literal["code", "name"]
    matched_text: str | None = None

    def describe(self) -> str:
        if self.by == "name":
            return f"{self.display} (recognised by name, not by code: '{self.matched_text}')"
        return self.display


@dataclass(frozen=True, slots=True)
class PppStatus:
    """The patient's latest valproate PPP Flag."""

    flag_ref: str
    code: str  # enrolled | discontinued | not-needed | declined
    display: str
    active: bool  # Flag.status == active
    araf_date: date | None
    review_due: date | None  # period.end, or ARAF date + validity, whichever is earlier
    specialists: tuple[str, ...]

    def is_current(self, today: date) -> bool:
        """An active Flag whose review date has not passed (an expired Flag is no PPP)."""
        return self.active and (self.review_due is None or self.review_due >= today)

    def is_enrolled_in_date(self, today: date) -> bool:
        return (
            self.code == "enrolled"
            and self.is_current(today)
            and self.araf_date is not None
            and self.araf_date <= today
            and self.review_due is not None
        )


@dataclass(frozen=True, slots=True)
class ValproateAssessment:
    """Everything the valproate cards and the registry decide on, for one patient."""

    today: date
    gender: str | None
    patient_gap: str | None  # why the Patient could not be read, if it could not
    age: int | None  # completed years on the trust's calendar; None when unknown
    birth_date_partial: bool
    in_ppp_age_band: bool  # unknown age counts as in the band
    pregnancy: tuple[Evidence, ...]
    risk_absent: tuple[Evidence, ...]
    learning_disability: tuple[Evidence, ...]
    ppp: PppStatus | None
    coded_arafs: tuple[Evidence, ...]  # ARAF Observations/Procedures, latest first
    two_specialist: tuple[Evidence, ...]
    settings: ValproateSettings

    @property
    def is_male(self) -> bool:
        return self.gender == "male"

    @property
    def could_become_pregnant(self) -> bool:
        """Not male, in the age band, and no permanent absence of pregnancy risk recorded."""
        return not self.is_male and self.in_ppp_age_band and not self.risk_absent

    @property
    def ppp_in_place(self) -> bool:
        return self.ppp is not None and self.ppp.is_enrolled_in_date(self.today)

    @property
    def ppp_not_needed(self) -> bool:
        return (
            self.ppp is not None
            and self.ppp.code == "not-needed"
            and self.ppp.is_current(self.today)
        )

    @property
    def current_coded_araf(self) -> Evidence | None:
        limit = add_months(self.today, -self.settings.araf_validity_months)
        for araf in self.coded_arafs:
            if araf.when is not None and limit <= araf.when <= self.today:
                return araf
        return None

    def age_text(self) -> str:
        if self.patient_gap is not None:
            return f"age unknown (the Patient record could not be read: {self.patient_gap})"
        if self.age is None:
            return "age unknown (no date of birth recorded)"
        partial = ", date of birth partly recorded" if self.birth_date_partial else ""
        return f"aged {self.age}{partial}"

    def sex_text(self) -> str:
        if self.patient_gap is not None:
            return "sex unknown"
        return {
            "female": "female",
            "male": "male",
            "other": "sex recorded as other",
            "unknown": "sex unknown",
        }.get(self.gender or "", "sex not recorded")


def assess(
    record: PatientRecord, settings: ValproateSettings, terminology: Terminology
) -> ValproateAssessment:
    """Read the patient's age, sex, pregnancy, exclusions, PPP Flag and ARAF records."""
    today = local_date(record.now, record.zone)
    patient = record.patient
    birth = _date_of(patient.birth_date if patient else None, record)
    age = _age_years(birth, today) if birth is not None else None
    in_band = age is None or settings.ppp_min_age <= age <= settings.ppp_max_age
    ppp = _latest_ppp_flag(record, settings, terminology, today)
    coded_arafs = _coded_arafs(record, terminology, today)
    return ValproateAssessment(
        today=today,
        gender=patient.gender if patient else None,
        patient_gap=record.why_unavailable("Patient"),
        age=age,
        birth_date_partial=bool(patient and patient.birth_date and len(patient.birth_date) < 10),
        in_ppp_age_band=in_band,
        pregnancy=_current_pregnancy(record, settings, terminology, today),
        risk_absent=_risk_absent(record, terminology, today),
        learning_disability=_conditions_in(record, terminology, LEARNING_DISABILITY, today),
        ppp=ppp,
        coded_arafs=coded_arafs,
        two_specialist=_two_specialist_decisions(record, settings, coded_arafs, terminology, today),
        settings=settings,
    )


def age_of(record: PatientRecord) -> int | None:
    """The patient's age in completed years on the trust's calendar; None when unknown."""
    patient = record.patient
    birth = _date_of(patient.birth_date if patient else None, record)
    return _age_years(birth, local_date(record.now, record.zone)) if birth is not None else None


def action_status(assessment: ValproateAssessment) -> ActionStatus:
    """NCL ICB's production action status for a non-male patient on valproate [S23].

    ``dim_prog_valproate_action_status.sql`` (ncl-icb-analytics/dbt-OLIDS@1f848a1d), in its
    order: pregnant -> review or refer; age 0-6 or permanent absence of pregnancy risk -> no
    action; PPP discontinued/not needed/declined -> keep under review; no PPP, or no current ARAF
    (with learning disability, or aged 7-60) -> review or refer; enrolled with a current ARAF ->
    consider expiry of ARAF. Our PPP is the Flag: "current ARAF" = an in-date enrolled Flag, or
    an ARAF coded within ``araf_validity_months``. The age limits follow ``ValproateSettings``.
    """
    if assessment.pregnancy:
        return "Review or refer"
    below_band = assessment.age is not None and assessment.age < assessment.settings.ppp_min_age
    if below_band or assessment.risk_absent:
        return "No action required"
    ppp = assessment.ppp
    if ppp is not None and ppp.code != "enrolled" and ppp.is_current(assessment.today):
        return "Keep under review"
    current_araf = assessment.ppp_in_place or (
        ppp is not None and ppp.code == "enrolled" and assessment.current_coded_araf is not None
    )
    if current_araf:
        return "Consider expiry of ARAF"
    return "Review or refer"


# -- order-select / order-sign ------------------------------------------------------------------


def evaluate(
    record: PatientRecord, settings: ValproateSettings, terminology: Terminology
) -> list[Finding]:
    """Prescribing cards for valproate in the draft orders."""
    products, unknown = _ordered_products(record, terminology)
    findings: list[Finding] = []
    if not products:
        findings.extend(_unidentified_medicines(unknown))
        return findings
    assessment = assess(record, settings, terminology)
    earlier = _earlier_valproate(record, terminology, {p.ref for p in products})
    pregnancy_checked = record.why_unavailable("Condition") is None
    if assessment.pregnancy:
        findings.append(_pregnancy_finding(record, assessment, products, settings, terminology))
    else:
        if not pregnancy_checked:
            findings.append(_cannot_check_pregnancy(record))
        findings.extend(_ppp_findings(record, assessment, products, settings, terminology))
        findings.extend(_new_start_findings(record, assessment, products, earlier, settings))
    if assessment.is_male:
        findings.append(_male_finding(assessment, products, earlier))
    findings.extend(_unidentified_medicines(unknown))
    return findings


def _ppp_findings(
    record: PatientRecord,
    assessment: ValproateAssessment,
    products: Sequence[ValproateProduct],
    settings: ValproateSettings,
    terminology: Terminology,
) -> list[Finding]:
    if not assessment.could_become_pregnant or assessment.ppp_in_place:
        return []
    if assessment.ppp_not_needed:
        return []
    flag_gap = record.why_unavailable("Flag")
    if flag_gap is not None:
        return [
            could_not_check(
                rule_id=f"{RULE_ID}.ppp",
                check="valproate Pregnancy Prevention Programme status (PPP Flag)",
                reason=f"the patient's Flags could not be read ({flag_gap}); this patient "
                f"could become pregnant ({assessment.sex_text()}, {assessment.age_text()})",
                source_label=MHRA_LABEL,
                source_url=MHRA_URL,
            )
        ]
    reason = _no_ppp_reason(assessment)
    summary = f"Valproate for a patient who could become pregnant: {reason}"
    if len(summary) >= 140:
        summary = "Valproate for a patient who could become pregnant: no current PPP"
    return [
        Finding(
            rule_id=f"{RULE_ID}.ppp-missing",
            severity=Severity.CRITICAL,
            summary=summary,
            detail=_ppp_detail(record, assessment, products),
            topic=TOPIC_PPP,
            source_label=MHRA_LABEL,
            source_url=MHRA_URL,
            suggestions=(
                _referral_suggestion(record, settings, urgent=False),
                _araf_task_suggestion(record, settings, terminology),
            ),
            selection_behavior="any",
            links=_patient_links(settings),
            override_reasons=(
                "patient-ineligible",
                "action-completed",
                "expert-contradicts",
                "risk-benefit-ratio",
            ),
            evidence=_evidence_refs(products, assessment),
            facts=_facts(assessment),
        )
    ]


def _no_ppp_reason(assessment: ValproateAssessment) -> str:
    ppp = assessment.ppp
    if ppp is None:
        return "no Pregnancy Prevention Programme recorded"
    if ppp.code == "declined":
        return "Pregnancy Prevention Programme declined"
    if ppp.code == "discontinued":
        return "Pregnancy Prevention Programme discontinued"
    if ppp.code == "enrolled" and ppp.review_due is not None and ppp.review_due < assessment.today:
        return f"ARAF expired (review was due {_fmt(ppp.review_due)})"
    if not ppp.active:
        return "PPP Flag no longer active"
    return "no current Annual Risk Acknowledgement Form"


def _ppp_detail(
    record: PatientRecord, assessment: ValproateAssessment, products: Sequence[ValproateProduct]
) -> str:
    lines = [
        f"**Valproate ordered:** {_product_list(products)}.",
        "",
        f"This patient **could become pregnant** ({assessment.sex_text()}, "
        f"{assessment.age_text()}, no permanent absence of pregnancy risk recorded) and has "
        f"**no current Pregnancy Prevention Programme (PPP)** ({_no_ppp_reason(assessment)}).",
        "",
        "Valproate must not be used in women and girls who could become pregnant unless the "
        "conditions of the PPP are met: highly effective contraception and a specialist review "
        "at least once a year with a signed Annual Risk Acknowledgement Form (MHRA, April 2018). "
        "Since 31 January 2024 the revised form needs a second specialist's signature at the "
        "next annual review (MHRA, January 2024). Valproate taken in pregnancy causes "
        "malformations in about 11% of babies and developmental disorders in 30-40% of children.",
        "",
        "What the record shows:",
        f"- PPP Flag: {_ppp_line(assessment)}",
        f"- Coded ARAF: {_araf_line(assessment)}",
        f"- Permanent absence of pregnancy risk (hysterectomy, bilateral oophorectomy, "
        f"established menopause): none recorded{_exclusion_gaps(record)}",
    ]
    if assessment.age is None:
        lines.append(f"- Age: **{assessment.age_text()}**: treated as able to become pregnant.")
    lines += _learning_disability_lines(assessment)
    lines += [
        "",
        "Refer for specialist valproate review and complete the ARAF, or record why the PPP "
        "does not apply (for example a hysterectomy or menopause not yet coded). "
        "**Do not stop valproate abruptly** without specialist advice.",
    ]
    return "\n".join(lines)


def _pregnancy_finding(
    record: PatientRecord,
    assessment: ValproateAssessment,
    products: Sequence[ValproateProduct],
    settings: ValproateSettings,
    terminology: Terminology,
) -> Finding:
    del terminology  # same signature as the other builders; the referral needs no ValueSet
    return Finding(
        rule_id=f"{RULE_ID}.pregnancy",
        severity=Severity.CRITICAL,
        summary=(
            "PREGNANT: valproate can seriously harm the baby. Do not prescribe without urgent "
            "specialist advice"
        ),
        detail=_pregnancy_detail(record, assessment, products),
        topic=TOPIC_PREGNANCY,
        source_label=MHRA_LABEL,
        source_url=MHRA_URL,
        suggestions=(_referral_suggestion(record, settings, urgent=True),),
        selection_behavior="at-most-one",
        links=_patient_links(settings),
        override_reasons=("expert-contradicts", "risk-benefit-ratio", "cds-not-applicable"),
        evidence=tuple([p.ref for p in products] + [e.ref for e in assessment.pregnancy]),
        facts=_facts(assessment),
    )


def _pregnancy_detail(
    record: PatientRecord,
    assessment: ValproateAssessment,
    products: Sequence[ValproateProduct],
) -> str:
    del record
    recorded = "; ".join(
        f"{e.display} ({e.ref}{', ' + _fmt(e.when) if e.when else ', undated'})"
        for e in assessment.pregnancy
    )
    lines = [
        f"**A current pregnancy is recorded:** {recorded}.",
        "",
        f"**Valproate ordered:** {_product_list(products)}.",
        "",
        "Valproate taken in pregnancy causes **malformations in about 11% of babies** and "
        "**developmental disorders in 30-40% of children**. It is contraindicated in pregnancy "
        "for bipolar disorder, and in epilepsy may be used only if there is no suitable "
        "alternative (MHRA). This applies whatever the Pregnancy Prevention Programme status "
        f"(recorded: {_ppp_line(assessment)}).",
        "",
        "- Get **urgent specialist advice** (neurology or psychiatry, with obstetrics) today.",
        "- **Do not stop valproate abruptly**: sudden withdrawal can cause seizures or relapse "
        "that also endanger mother and baby. The specialist decides how to switch.",
        "- If the pregnancy has ended, update the record so this warning stops.",
    ]
    lines += _learning_disability_lines(assessment)
    return "\n".join(lines)


def _new_start_findings(
    record: PatientRecord,
    assessment: ValproateAssessment,
    products: Sequence[ValproateProduct],
    earlier: Sequence[ValproateProduct],
    settings: ValproateSettings,
) -> list[Finding]:
    if earlier or assessment.two_specialist:
        return []
    if assessment.age is not None and assessment.age >= settings.two_specialist_under_age:
        return []
    request_gap = record.why_unavailable("MedicationRequest")
    if request_gap is not None:
        return [
            could_not_check(
                rule_id=f"{RULE_ID}.two-specialist",
                check="whether valproate is a new start (two-specialist rule, under 55)",
                reason=f"earlier MedicationRequests could not be read ({request_gap})",
                source_label=DSU_2024_LABEL,
                source_url=DSU_2024_URL,
            )
        ]
    statement_gap = record.why_unavailable("MedicationStatement")
    age = (
        f"aged {assessment.age}"
        if assessment.age is not None
        else f"{assessment.age_text()}; treated as under 55"
    )
    lines = [
        f"**Valproate ordered:** {_product_list(products)}.",
        "",
        f"No earlier valproate is recorded for this patient ({age}), so this looks like a "
        "**new start**. Since 31 January 2024 valproate must not be started in anyone "
        "(male or female) younger than 55 unless **two specialists independently consider "
        "and document** that there is no other effective or tolerated treatment, or that "
        "there are compelling reasons the reproductive risks do not apply (MHRA). The "
        "February 2025 update keeps this for new starts.",
        "",
        "No two-specialist decision is recorded: fhir-safety looks for a PPP Flag signed by "
        "two specialists (`valproate-specialist` extensions) or a coded 2024 revised ARAF.",
    ]
    if statement_gap is not None:
        lines.append(
            f"\n_MedicationStatements could not be read ({statement_gap}): an earlier course "
            "recorded only there would not be seen._"
        )
    return [
        Finding(
            rule_id=f"{RULE_ID}.two-specialist",
            severity=Severity.WARNING,
            summary="New valproate start under 55: no two-specialist agreement recorded "
            "(MHRA, January 2024)",
            detail="\n".join(lines),
            topic=TOPIC_TWO_SPECIALIST,
            source_label=DSU_2024_LABEL,
            source_url=DSU_2024_URL,
            suggestions=(_second_specialist_suggestion(record),),
            selection_behavior="at-most-one",
            override_reasons=("action-completed", "cds-not-applicable", "expert-contradicts"),
            evidence=tuple(p.ref for p in products),
            facts={"age": assessment.age, "new_start": True},
        )
    ]


def _male_finding(
    assessment: ValproateAssessment,
    products: Sequence[ValproateProduct],
    earlier: Sequence[ValproateProduct],
) -> Finding:
    course = "continuing" if earlier else "starting"
    detail = "\n".join(
        [
            f"**Valproate ordered ({course}):** {_product_list(products)}. "
            f"Male patient, {assessment.age_text()}.",
            "",
            "MHRA advice for men (September 2024), as a precaution because of a possible "
            "increased risk of neurodevelopmental disorders in children whose father took "
            "valproate around conception:",
            "- Use **effective contraception** (condoms, plus contraception by a female "
            "partner) during treatment and for **3 months after stopping** valproate.",
            "- Discuss family plans at each review; refer to a specialist if the patient "
            "plans to have children within the next year.",
            "- Do not donate sperm during treatment and for 3 months after stopping.",
            "- For a boy, talk to him and his parents or carers when it becomes relevant.",
            "",
            "Two specialists are needed only to **start** valproate under 55, not for men "
            "already taking it (MHRA, February 2025).",
        ]
    )
    return Finding(
        rule_id=f"{RULE_ID}.male-advice",
        severity=Severity.INFO,
        summary="Valproate in a male patient: advise contraception during and for 3 months "
        "after treatment (MHRA 2024)",
        detail=detail,
        topic=TOPIC_MALE,
        source_label=DSU_MEN_LABEL,
        source_url=DSU_MEN_URL,
        links=(CardLink(DSU_MEN_LABEL, DSU_MEN_URL),),
        evidence=tuple(p.ref for p in products),
        facts={"age": assessment.age, "continuing": bool(earlier)},
    )


def _cannot_check_pregnancy(record: PatientRecord) -> Finding:
    return could_not_check(
        rule_id=f"{RULE_ID}.pregnancy",
        check="current pregnancy before valproate",
        reason=f"the patient's Conditions could not be read ({record.why_unavailable('Condition')})",
        source_label=MHRA_LABEL,
        source_url=MHRA_URL,
    )


def _unidentified_medicines(unknown: Sequence[str]) -> list[Finding]:
    if not unknown:
        return []
    return [
        could_not_check(
            rule_id=f"{RULE_ID}.medicine",
            check="whether a draft medicine is valproate",
            reason=(
                "fhir-safety cannot tell which medicine is ordered in "
                + ", ".join(unknown)
                + " (no code it knows, and no name or text)"
            ),
            source_label=MHRA_LABEL,
            source_url=MHRA_URL,
        )
    ]


# -- patient-view -------------------------------------------------------------------------------


def evaluate_status(
    record: PatientRecord, settings: ValproateSettings, terminology: Terminology
) -> list[Finding]:
    """Live PPP status for a patient on valproate (patient-view)."""
    current = valproate_in_use(record, terminology)
    if not current:
        gap = record.why_unavailable("MedicationRequest")
        if gap is None:
            return []
        return [
            could_not_check(
                rule_id=f"{RULE_ID}.status",
                check="whether the patient is on valproate (PPP status)",
                reason=f"the patient's MedicationRequests could not be read ({gap})",
                source_label=MHRA_LABEL,
                source_url=MHRA_URL,
            )
        ]
    assessment = assess(record, settings, terminology)
    if assessment.pregnancy:
        return [_pregnancy_finding(record, assessment, current, settings, terminology)]
    findings: list[Finding] = []
    if record.why_unavailable("Condition") is not None:
        findings.append(_cannot_check_pregnancy(record))
    if not assessment.could_become_pregnant:
        return findings
    flag_gap = record.why_unavailable("Flag")
    if flag_gap is not None:
        findings.append(
            could_not_check(
                rule_id=f"{RULE_ID}.status",
                check="valproate Pregnancy Prevention Programme status (PPP Flag)",
                reason=f"the patient's Flags could not be read ({flag_gap})",
                source_label=MHRA_LABEL,
                source_url=MHRA_URL,
            )
        )
        return findings
    findings.append(_status_finding(record, assessment, current, settings, terminology))
    return findings


def _status_finding(
    record: PatientRecord,
    assessment: ValproateAssessment,
    current: Sequence[ValproateProduct],
    settings: ValproateSettings,
    terminology: Terminology,
) -> Finding:
    ppp = assessment.ppp
    today = assessment.today
    suggestions: tuple[Suggestion, ...] = ()
    if ppp is not None and ppp.is_enrolled_in_date(today) and ppp.review_due is not None:
        days = (ppp.review_due - today).days
        if days <= settings.review_warning_days:
            severity, rule = Severity.WARNING, "araf-due"
            when = "today" if days == 0 else f"in {days} day{'s' if days != 1 else ''}"
            summary = f"Valproate PPP: annual review and ARAF due {when} ({_fmt(ppp.review_due)})"
            suggestions = (_araf_task_suggestion(record, settings, terminology),)
        else:
            severity, rule = Severity.INFO, "enrolled"
            summary = (
                f"Valproate PPP: enrolled, ARAF {_fmt(ppp.araf_date)}, "
                f"review due {_fmt(ppp.review_due)}"
            )
    elif ppp is not None and ppp.code != "enrolled" and ppp.is_current(today):
        severity, rule = Severity.INFO, "not-enrolled"
        since = f" since {_fmt(ppp.araf_date)}" if ppp.araf_date else ""
        summary = f"Valproate PPP: {ppp.code.replace('-', ' ')}{since}: keep under review"
    elif (
        ppp is not None
        and ppp.code == "enrolled"
        and ppp.review_due is not None
        and ppp.review_due < today
    ):
        severity, rule = Severity.WARNING, "araf-overdue"
        summary = f"Valproate PPP: annual review and ARAF overdue since {_fmt(ppp.review_due)}"
        suggestions = (
            _araf_task_suggestion(record, settings, terminology),
            _referral_suggestion(record, settings, urgent=False),
        )
    else:
        severity, rule = Severity.WARNING, "no-ppp"
        summary = f"On valproate and could become pregnant: {_no_ppp_reason(assessment)}"
        if len(summary) >= 140:
            summary = "On valproate and could become pregnant: no current PPP"
        suggestions = (
            _referral_suggestion(record, settings, urgent=False),
            _araf_task_suggestion(record, settings, terminology),
        )
    lines = [
        f"**On valproate:** {_product_list(current)}.",
        f"Patient: {assessment.sex_text()}, {assessment.age_text()}; could become pregnant "
        "(no permanent absence of pregnancy risk recorded).",
        "",
        f"- PPP Flag: {_ppp_line(assessment)}",
        f"- Coded ARAF: {_araf_line(assessment)}",
        f"- NCL action status: **{action_status(assessment)}**",
    ]
    lines += _learning_disability_lines(assessment)
    return Finding(
        rule_id=f"{RULE_ID}.status.{rule}",
        severity=severity,
        summary=summary,
        detail="\n".join(lines),
        topic=TOPIC_PPP,
        source_label=MHRA_LABEL,
        source_url=MHRA_URL,
        suggestions=suggestions,
        selection_behavior="any",
        links=_patient_links(settings),
        override_reasons=("action-completed", "patient-ineligible") if suggestions else (),
        evidence=_evidence_refs(current, assessment),
        facts=_facts(assessment),
    )


# -- medicines ----------------------------------------------------------------------------------


def valproate_in_use(record: PatientRecord, terminology: Terminology) -> list[ValproateProduct]:
    """Valproate the patient is currently on: active requests or statements."""
    found: list[ValproateProduct] = []
    for request in record.of_type(MedicationRequest):
        if request.status in CURRENT_REQUEST_STATUSES:
            product = _product(request, record, terminology)
            if product is not None:
                found.append(product)
    for statement in record.of_type(MedicationStatement):
        if statement.status in CURRENT_STATEMENT_STATUSES:
            product = _product(statement, record, terminology)
            if product is not None:
                found.append(product)
    return found


def _ordered_products(
    record: PatientRecord, terminology: Terminology
) -> tuple[list[ValproateProduct], list[str]]:
    """Valproate in the draft orders (the selected ones on order-select), and unreadable ones."""
    selections = record.context.get("selections")
    selected = set(selections) if record.hook == "order-select" and selections else None
    products: list[ValproateProduct] = []
    unknown: list[str] = []
    for index, order in enumerate(record.draft_orders):
        if not isinstance(order, MedicationRequest) or order.status not in ORDER_STATUSES:
            continue
        ref = f"MedicationRequest/{order.id}" if order.id else f"draftOrders.entry[{index}]"
        if selected is not None and ref not in selected:
            continue
        concept = medication_concept(order, record)
        if concept is None or not _identifiable(concept, terminology):
            unknown.append(ref)
            continue
        product = _product(order, record, terminology, ref=ref)
        if product is not None:
            products.append(product)
    return products, unknown


def _earlier_valproate(
    record: PatientRecord, terminology: Terminology, draft_refs: set[str]
) -> list[ValproateProduct]:
    """Valproate recorded before this order (any earlier course, not this draft)."""
    earlier: list[ValproateProduct] = []
    for request in record.of_type(MedicationRequest):
        ref = f"MedicationRequest/{request.id}"
        if request.status in EARLIER_REQUEST_STATUSES and ref not in draft_refs:
            product = _product(request, record, terminology)
            if product is not None:
                earlier.append(product)
    for statement in record.of_type(MedicationStatement):
        if statement.status in EARLIER_STATEMENT_STATUSES:
            product = _product(statement, record, terminology)
            if product is not None:
                earlier.append(product)
    return earlier


def _product(
    resource: MedicationRequest | MedicationStatement,
    record: PatientRecord,
    terminology: Terminology,
    *,
    ref: str | None = None,
) -> ValproateProduct | None:
    concept = medication_concept(resource, record)
    found = _valproate_match(concept, terminology)
    if found is None or concept is None:
        return None
    display = found.display or concept.text or _first_display(concept) or "valproate"
    return ValproateProduct(
        ref=ref or f"{resource.resource_type}/{resource.id}",
        display=display if found.by == "code" else (found.display or display),
        by=found.by,
        matched_text=found.matched_text,
    )


def _valproate_match(concept: CodeableConcept | None, terminology: Terminology) -> CodeMatch | None:
    """Code first; a code fhir-safety has never seen may still be named (say so on the card)."""
    found = terminology.match(PRODUCTS, concept)
    if found is not None or concept is None:
        return found
    unknown_codes = [
        c for c in concept.coding if c.code and not terminology.is_known_code(c.system, c.code)
    ]
    if unknown_codes and len(unknown_codes) == len([c for c in concept.coding if c.code]):
        names_only = CodeableConcept(
            text=concept.text,
            coding=[c.model_copy(update={"code": None, "system": None}) for c in concept.coding],
        )
        return terminology.match(PRODUCTS, names_only)
    return None


def _identifiable(concept: CodeableConcept, terminology: Terminology) -> bool:
    """Can we tell what this medicine is? A name or text, a code we know, or a code in a
    system whose valproate codes we hold in full (medicine-names.json: a held code decides)."""
    if concept.text or any(c.display for c in concept.coding):
        return True
    held = terminology.held_in_full(PRODUCTS)
    return any(
        c.code is not None
        and (terminology.is_known_code(c.system, c.code) or canonical_system(c.system) in held)
        for c in concept.coding
    )


def _first_display(concept: CodeableConcept) -> str | None:
    return next((c.display for c in concept.coding if c.display), None)


# -- record reading -----------------------------------------------------------------------------


def _current_pregnancy(
    record: PatientRecord,
    settings: ValproateSettings,
    terminology: Terminology,
    today: date,
) -> tuple[Evidence, ...]:
    found = []
    for condition in record.of_type(Condition):
        if not _asserted(condition) or _clinical(condition) in ENDED_CLINICAL:
            continue
        if condition.abatement_date_time:
            continue
        match = terminology.match(PREGNANCY, condition.code)
        if match is None:
            continue
        when = _date_of(condition.onset_date_time or condition.recorded_date, record)
        if when is not None and (
            when > today or (today - when).days > settings.pregnancy_lookback_days
        ):
            continue
        found.append(Evidence(f"Condition/{condition.id}", _display(match, condition.code), when))
    return tuple(found)


def _risk_absent(
    record: PatientRecord, terminology: Terminology, today: date
) -> tuple[Evidence, ...]:
    found = list(_conditions_in(record, terminology, RISK_ABSENT, today))
    for procedure in record.of_type(Procedure):
        if procedure.status != "completed":
            continue
        match = terminology.match(RISK_ABSENT, procedure.code)
        if match is None:
            continue
        performed = procedure.performed_date_time or (
            procedure.performed_period.start if procedure.performed_period else None
        )
        when = _date_of(performed, record)
        if when is not None and when > today:
            continue
        found.append(Evidence(f"Procedure/{procedure.id}", _display(match, procedure.code), when))
    return tuple(found)


def _conditions_in(
    record: PatientRecord, terminology: Terminology, value_set: str, today: date
) -> tuple[Evidence, ...]:
    found = []
    for condition in record.of_type(Condition):
        if not _asserted(condition):
            continue
        match = terminology.match(value_set, condition.code)
        if match is None:
            continue
        when = _date_of(condition.onset_date_time or condition.recorded_date, record)
        if when is not None and when > today:
            continue
        found.append(Evidence(f"Condition/{condition.id}", _display(match, condition.code), when))
    return tuple(found)


def _latest_ppp_flag(
    record: PatientRecord,
    settings: ValproateSettings,
    terminology: Terminology,
    today: date,
) -> PppStatus | None:
    statuses = []
    for flag in record.of_type(Flag):
        if flag.status == "entered-in-error":
            continue
        match = terminology.match(PPP_STATUS, flag.code)
        if match is None or match.code is None:
            continue
        araf = _date_of(flag.period.start if flag.period else None, record)
        if araf is None:
            araf = _date_of(_extension_date(flag, ARAF_EXTENSION_URL), record)
        end = _date_of(flag.period.end if flag.period else None, record)
        expiry = add_months(araf, settings.araf_validity_months) if araf else None
        due = min((d for d in (end, expiry) if d is not None), default=None)
        specialists = tuple(dict.fromkeys(_specialists(flag)))
        statuses.append(
            PppStatus(
                flag_ref=f"Flag/{flag.id}",
                code=match.code,
                display=match.display or match.code,
                active=flag.status == "active" and (araf is None or araf <= today),
                araf_date=araf,
                review_due=due,
                specialists=specialists,
            )
        )
    if not statuses:
        return None
    # The latest active Flag is the status; else the latest of any (to say it has expired).
    statuses.sort(key=lambda s: (s.active, s.araf_date or date.min), reverse=True)
    return statuses[0]


def _coded_arafs(
    record: PatientRecord, terminology: Terminology, today: date
) -> tuple[Evidence, ...]:
    found: list[Evidence] = []
    for observation in record.of_type(Observation):
        if observation.status in {"entered-in-error", "cancelled", "registered", "preliminary"}:
            continue
        match = terminology.match(ARAF, observation.code)
        if match is not None:
            when = _date_of(observation.effective_date_time or observation.issued, record)
            if when is None or when <= today:
                found.append(Evidence(f"Observation/{observation.id}", _display(match, None), when))
    for procedure in record.of_type(Procedure):
        if procedure.status != "completed":
            continue
        match = terminology.match(ARAF, procedure.code)
        if match is not None:
            when = _date_of(procedure.performed_date_time, record)
            if when is None or when <= today:
                found.append(Evidence(f"Procedure/{procedure.id}", _display(match, None), when))
    found.sort(key=lambda e: e.when or date.min, reverse=True)
    return tuple(found)


def _two_specialist_decisions(
    record: PatientRecord,
    settings: ValproateSettings,
    coded_arafs: Sequence[Evidence],
    terminology: Terminology,
    today: date,
) -> tuple[Evidence, ...]:
    """A decision by two specialists: a PPP Flag signed by two, or a coded 2024 revised ARAF."""
    found: list[Evidence] = []
    for flag in record.of_type(Flag):
        if flag.status == "entered-in-error" or terminology.match(PPP_STATUS, flag.code) is None:
            continue
        signers = set(_specialists(flag))
        when = _date_of(flag.period.start if flag.period else None, record)
        if len(signers) >= 2 and (when is None or when <= today):
            found.append(Evidence(f"Flag/{flag.id}", "PPP Flag signed by two specialists", when))
    codes = set(settings.two_specialist_araf_codes)
    coded: list[Observation | Procedure] = [
        *record.of_type(Observation),
        *record.of_type(Procedure),
    ]
    for resource in coded:
        code = resource.code
        if code is None or resource.status in {"entered-in-error", "cancelled", "not-done"}:
            continue
        for coding in code.coding:
            if coding.code in codes and terminology.contains(ARAF, coding.system, coding.code):
                ref = f"{resource.resource_type}/{resource.id}"
                araf = next((a for a in coded_arafs if a.ref == ref), None)
                if araf is not None:
                    found.append(araf)
                break
    return tuple(found)


def _specialists(flag: Flag) -> list[str]:
    """References of the specialists who signed (``valproate-specialist`` extensions)."""
    signers = []
    for extension in flag.extension:
        reference = extension.value_reference
        if extension.url == SPECIALIST_EXTENSION_URL and reference and reference.reference:
            signers.append(reference.reference)
    return signers


def _asserted(condition: Condition) -> bool:
    verification = condition.verification_status
    codes = {c.code for c in verification.coding} if verification else set()
    return not codes & NOT_TRUE


def _clinical(condition: Condition) -> str | None:
    status = condition.clinical_status
    return next((c.code for c in status.coding if c.code), None) if status else None


def _display(match: CodeMatch, concept: CodeableConcept | None) -> str:
    if match.display:
        return match.display
    if concept is not None:
        return concept.text or _first_display(concept) or (match.code or "recorded")
    return match.code or "recorded"


def _extension_date(resource: Resource, url: str) -> str | None:
    for extension in resource.extension:
        if extension.url == url:
            return extension.value_date or extension.value_date_time
    return None


def _date_of(value: str | None, record: PatientRecord) -> date | None:
    """The local calendar date of a FHIR date/dateTime; None when absent or unreadable."""
    if not value:
        return None
    try:
        when = parse_when(value, record.zone)
    except ValueError:
        return None
    return local_date(when, record.zone) if when is not None else None


def _age_years(birth: date, today: date) -> int:
    return today.year - birth.year - ((today.month, today.day) < (birth.month, birth.day))


def add_months(day: date, months: int) -> date:
    """The same day ``months`` calendar months later (or earlier); 29 Feb -> 28 Feb."""
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    last = calendar.monthrange(year, month + 1)[1]
    return date(year, month + 1, min(day.day, last))


# -- suggestions, links, text ---------------------------------------------------------------------


def _requester(record: PatientRecord) -> dict[str, str] | None:
    user = record.context.get("userId")
    if isinstance(user, str) and user.startswith(("Practitioner/", "PractitionerRole/")):
        return {"reference": user}
    return None


def _referral_suggestion(
    record: PatientRecord, settings: ValproateSettings, *, urgent: bool
) -> Suggestion:
    reason = (
        "Current pregnancy recorded while on or starting valproate"
        if urgent
        else "Valproate for a patient who could become pregnant, without a current "
        "Pregnancy Prevention Programme / Annual Risk Acknowledgement Form"
    )
    request: dict[str, object] = {
        "resourceType": "ServiceRequest",
        "status": "draft",
        "intent": "order",
        "priority": "urgent" if urgent else "routine",
        "code": {
            # NCL's valproate-related referral code [S23]; its display is UNVERIFIED
            # (clinical.md section 3.2), so only the code and our own text are sent.
            "coding": [{"system": SNOMED, "code": settings.referral_code}],
            "text": "Referral for specialist valproate review",
        },
        "subject": {"reference": f"Patient/{record.patient_id}"},
        "authoredOn": record.now.isoformat(),
        "reasonCode": [{"text": reason}],
        "note": [
            {
                "text": "Specialist review under the valproate Pregnancy Prevention Programme "
                "(MHRA): review of treatment, contraception and the Annual Risk "
                "Acknowledgement Form."
            }
        ],
    }
    if record.encounter_id:
        request["encounter"] = {"reference": f"Encounter/{record.encounter_id}"}
    requester = _requester(record)
    if requester is not None:
        request["requester"] = requester
    label = (
        "Urgent referral for specialist valproate review (pregnancy)"
        if urgent
        else "Refer for specialist valproate review"
    )
    return Suggestion(
        key="refer-valproate-review",
        label=label,
        actions=(
            Action(
                type="create",
                description="Draft ServiceRequest: referral for specialist valproate review",
                resource=request,
            ),
        ),
        is_recommended=True,
    )


def _araf_task_suggestion(
    record: PatientRecord, settings: ValproateSettings, terminology: Terminology
) -> Suggestion:
    coding: dict[str, str] = {"system": SNOMED, "code": settings.araf_task_code}
    if not terminology.contains(ARAF, SNOMED, settings.araf_task_code):
        coding = {}  # a misconfigured code is not sent; the text still says what to do
    # No display: the ARAF codes' FSNs are UNVERIFIED (clinical.md section 3.2); NCL's labels
    # must not be written into the record as SNOMED displays.
    task: dict[str, object] = {
        "resourceType": "Task",
        "status": "requested",
        "intent": "order",
        "priority": "routine",
        "code": {
            **({"coding": [coding]} if coding else {}),
            "text": "Complete the valproate Annual Risk Acknowledgement Form",
        },
        "description": (
            "Specialist to review valproate with the patient and complete and sign the "
            "Annual Risk Acknowledgement Form (2024 revised form: a second specialist signs at "
            "the first annual review after 31 January 2024); then update the valproate PPP "
            "Flag (ARAF date and review due date)."
        ),
        "for": {"reference": f"Patient/{record.patient_id}"},
        "authoredOn": record.now.isoformat(),
    }
    requester = _requester(record)
    if requester is not None:
        task["requester"] = requester
    return Suggestion(
        key="complete-araf",
        label="Task: complete the Annual Risk Acknowledgement Form",
        actions=(
            Action(
                type="create",
                description="Task to complete the valproate Annual Risk Acknowledgement Form",
                resource=task,
            ),
        ),
    )


def _second_specialist_suggestion(record: PatientRecord) -> Suggestion:
    task: dict[str, object] = {
        "resourceType": "Task",
        "status": "requested",
        "intent": "order",
        "priority": "routine",
        "code": {"text": "Two-specialist agreement to start valproate"},
        "description": (
            "Before valproate is started under 55: a second specialist to consider "
            "independently and document that there is no other effective or tolerated "
            "treatment, or that the reproductive risks do not apply (MHRA, January 2024). "
            "Record both specialists on the valproate PPP Flag or with the 2024 ARAF."
        ),
        "for": {"reference": f"Patient/{record.patient_id}"},
        "authoredOn": record.now.isoformat(),
    }
    requester = _requester(record)
    if requester is not None:
        task["requester"] = requester
    return Suggestion(
        key="second-specialist",
        label="Task: record a second specialist's agreement",
        actions=(
            Action(
                type="create",
                description="Task to obtain and record a second specialist's agreement",
                resource=task,
            ),
        ),
        is_recommended=True,
    )


def _patient_links(settings: ValproateSettings) -> tuple[CardLink, ...]:
    links = [CardLink(PATIENT_GUIDE_LABEL, PATIENT_GUIDE_URL), CardLink(MHRA_LABEL, MHRA_URL)]
    if settings.easy_read_url:
        links.append(CardLink(settings.easy_read_label, settings.easy_read_url))
    else:
        links.append(CardLink(NHS_PLAIN_LABEL, NHS_PLAIN_URL))
    return tuple(links)


def _learning_disability_lines(assessment: ValproateAssessment) -> list[str]:
    if not assessment.learning_disability:
        return []
    names = "; ".join(f"{e.display} ({e.ref})" for e in assessment.learning_disability[:3])
    return [
        "",
        f"**Learning disability recorded** ({names}): use easy-read information, involve the "
        "person and their family or carers, assess capacity for each decision and record "
        "best-interests decisions (Mental Capacity Act 2005). NCL's programme puts these "
        "patients first for review.",
    ]


def _ppp_line(assessment: ValproateAssessment) -> str:
    ppp = assessment.ppp
    if ppp is None:
        return "**none recorded**"
    parts = [f"{ppp.display} ({ppp.flag_ref})"]
    parts.append(f"ARAF {_fmt(ppp.araf_date)}" if ppp.araf_date else "no ARAF date")
    if ppp.review_due is not None:
        overdue = ppp.review_due < assessment.today
        parts.append(f"review {'was ' if overdue else ''}due {_fmt(ppp.review_due)}")
    if not ppp.active:
        parts.append("Flag inactive")
    elif not ppp.is_current(assessment.today):
        parts.append("**expired**")
    if ppp.specialists:
        parts.append(f"{len(ppp.specialists)} specialist(s) signed")
    return ", ".join(parts)


def _araf_line(assessment: ValproateAssessment) -> str:
    if not assessment.coded_arafs:
        return "none recorded"
    latest = assessment.coded_arafs[0]
    when = _fmt(latest.when) if latest.when else "undated"
    current = " (within the last year)" if assessment.current_coded_araf is latest else ""
    return f"{latest.display}, {when}{current} ({latest.ref})"


def _exclusion_gaps(record: PatientRecord) -> str:
    gaps = [t for t in ("Condition", "Procedure") if record.why_unavailable(t) is not None]
    if not gaps:
        return ""
    return f" (**{' and '.join(gaps)} records could not be read**, so one may be missed)"


def _product_list(products: Sequence[ValproateProduct]) -> str:
    return "; ".join(dict.fromkeys(p.describe() for p in products))


def _evidence_refs(
    products: Sequence[ValproateProduct], assessment: ValproateAssessment
) -> tuple[str, ...]:
    refs = [p.ref for p in products]
    if assessment.ppp is not None:
        refs.append(assessment.ppp.flag_ref)
    refs += [e.ref for e in assessment.coded_arafs[:1]]
    return tuple(dict.fromkeys(refs))


def _facts(assessment: ValproateAssessment) -> dict[str, object]:
    ppp = assessment.ppp
    return {
        "age": assessment.age,
        "gender": assessment.gender,
        "ppp_status": ppp.code if ppp else None,
        "araf_date": ppp.araf_date.isoformat() if ppp and ppp.araf_date else None,
        "review_due": ppp.review_due.isoformat() if ppp and ppp.review_due else None,
        "action_status": action_status(assessment),
    }


def _fmt(day: date | None) -> str:
    return f"{day.day} {day:%b %Y}" if day is not None else "unknown"
