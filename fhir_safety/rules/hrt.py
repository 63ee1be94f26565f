"""HRT joint items: no systemic oestrogen without its progestogen; LNG-IUS change-by dates.

Pure: reads a ``PatientRecord`` and the clock passed in it; no I/O.

Rules (source tags [Sn] are in shared/reference/clinical.md section 4; the rule table and the
decisions the issue left open are in docs/hrt.md):

- **Unopposed oestrogen** (NICE NG23 [S37]; GPhC patient-safety spotlight [S36]): a woman with a
  uterus needs a progestogen with systemic oestrogen; unopposed oestrogen raises the risk of
  endometrial hyperplasia and cancer [S36][S34]. Systemic oestrogen-only products are the ValueSet
  ``hrt-oestrogen-systemic``; combined products (``hrt-combined``) already hold a progestogen and
  low-dose vaginal oestrogen (``vaginal-oestrogen-low-dose``) needs none [S35].
- **Protection** = a progestogen (``progestogens-endometrial``) among the draft orders, an active
  progestogen MedicationRequest or MedicationStatement, a combined product, or a 52 mg LNG-IUS
  (``lng-ius-52mg``) fitted less than 5 years ago [S33][S34]. 13.5 mg and 19.5 mg devices
  (``lng-ius-low-dose``) never count [S34].
- **Joint item**: oestrogen and progestogen are separate MedicationRequests that share one
  ``groupIdentifier`` (profile ``hrt-joint-item``); the GPhC found inappropriate combinations
  when they were prescribed separately [S36].
- **Dose** of the progestogen: BMS 2024 table, by the oestrogen's dose band (clinical.md
  section 4.3 [S34]); the band needs the product's strength (``fhir_safety.hrt_doses``) and the
  dose in the order.
- **LNG-IUS change-by date** = fitting date + 5 years for HRT, even though Mirena is licensed for
  8 years of contraception (FSRH CEU statements [S33]); "within 3 months" is 90 days
  (``HrtSettings.change_by_warning_days``).
- **Hysterectomy** (``hysterectomy``): no card, except an info card when it was for endometriosis
  (``endometriosis``): a progestogen may still be needed [S36].
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any, Literal

from fhir_safety.config import HrtSettings
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
    Device,
    MedicationRequest,
    MedicationStatement,
    Procedure,
)
from fhir_safety.hrt_doses import FAMILIES, HrtDoseTable, OestrogenProduct, parse_oestrogen_name
from fhir_safety.record import PatientRecord
from fhir_safety.rules.common import could_not_check, local_date, medication_concept, parse_when
from fhir_safety.terminology import SNOMED, CodeMatch, Terminology

__all__ = [
    "BAND_EDGES",
    "CHANGE_BY_URL",
    "GROUP_SYSTEM",
    "JOINT_ITEM_PROFILE",
    "PROGESTOGEN_DOSES",
    "RULE_ID",
    "Band",
    "DoseAssessment",
    "Regimen",
    "add_years",
    "assess_dose",
    "band_for",
    "classify",
    "evaluate",
    "oestrogen_product",
    "regimens",
]

RULE_ID = "hrt-joint-items"

SYSTEMIC = "hrt-oestrogen-systemic"
COMBINED = "hrt-combined"
VAGINAL = "vaginal-oestrogen-low-dose"
PROGESTOGENS = "progestogens-endometrial"
LNG_IUS_52 = "lng-ius-52mg"
LNG_IUS_LOW = "lng-ius-low-dose"
HYSTERECTOMY = "hysterectomy"
ENDOMETRIOSIS = "endometriosis"

TOPIC_UNOPPOSED = Topic("hrt-unopposed-oestrogen", "Unopposed oestrogen")
TOPIC_NOT_JOINED = Topic("hrt-not-joined", "HRT components not joined up")
TOPIC_CHANGE_BY = Topic("lng-ius-change-by", "LNG-IUS change-by date")

JOINT_ITEM_PROFILE = f"{PROJECT_CANONICAL}/StructureDefinition/hrt-joint-item"
CHANGE_BY_URL = f"{PROJECT_CANONICAL}/StructureDefinition/lng-ius-change-by-date"
# groupIdentifier values are URNs (profile hrt-joint-item example): system = RFC 3986.
GROUP_SYSTEM = "urn:ietf:rfc:3986"
# uuid5 namespace for joint-item group ids: the same oestrogen order always gets the same group,
# so order-select and order-sign (and a retry) propose the same joint item.
_GROUP_NAMESPACE = uuid.UUID("6f1c39a4-0d1e-5b8e-9c43-2f0b1e7d4a11")

# GPhC patient-safety spotlight on prescribing and supplying HRT [S36].
GPHC_LABEL = "GPhC: risks in prescribing and supplying HRT (patient safety spotlight)"
GPHC_URL = (
    "https://www.pharmacyregulation.org/about-us/news-and-updates/regulate/patient-safety-"
    "spotlight-menopause-awareness-month-special-risks-prescribing-and-supplying-hormone-"
    "replacement-therapy-hrt-0"
)
# BMS 2024 progestogen table, as summarised by an NHS practice [S34].
BMS_LABEL = "BMS 2024: progestogen doses for endometrial protection (summary)"
BMS_URL = "https://beaumontelmspractice.co.uk/hrt-dosing"
# FSRH CEU statement: 52 mg LNG-IUDs, 5 years for HRT whatever the contraceptive licence [S33].
FSRH_LABEL = "FSRH CEU statement: extended use of 52 mg LNG-IUDs"
FSRH_URL = (
    "https://www.fsrh.org/news/fsrh-ceu-statement-extended-use-of-all-52mg-lng-iuds-for-up-to/"
)

LIVE_DRAFT_STATUSES = frozenset({"draft", "active"})
STOPPED_STATUSES = frozenset({"stopped", "completed", "cancelled", "on-hold"})
NOT_DONE = frozenset({"entered-in-error", "not-done", "preparation"})
NOT_TRUE = frozenset({"refuted", "entered-in-error"})

ORDER_HOOKS = frozenset({"order-select", "order-sign"})

Kind = Literal["oestrogen", "combined", "vaginal", "progestogen", "lng-ius-52", "lng-ius-low"]
# Checked in precedence order; code matches are disjoint (a terminology test checks it), names
# compete inside the sex-hormones group of medicine-names.json.
_KINDS: tuple[tuple[Kind, str], ...] = (
    ("lng-ius-low", LNG_IUS_LOW),
    ("lng-ius-52", LNG_IUS_52),
    ("vaginal", VAGINAL),
    ("combined", COMBINED),
    ("oestrogen", SYSTEMIC),
    ("progestogen", PROGESTOGENS),
)


# -- BMS 2024 dose bands and progestogen doses (clinical.md section 4.3 [S34]) -------------------


class Band(StrEnum):
    ULTRA_LOW = "ultra-low"
    LOW = "low"
    STANDARD = "standard"
    MODERATE = "moderate"
    HIGH = "high"


# The BMS 2024 dose of each band, per family, in the unit the table counts [S34]:
# (ultra-low, low, standard, moderate, high). Oestrogel: pumps a day (½/1/2/3/4); Sandrena: mg a
# day (0.25/0.5/1/1.5-2/3); Lenzetto: sprays a day (1/2/3/4-5/6); patch: micrograms/24 h
# (12.5/25/50/75/100); oral estradiol: mg a day (0.5/1/2/3/4). A dose between two columns is
# given the higher band (more progestogen), e.g. a 37.5 microgram patch is "standard".
BAND_EDGES: Mapping[str, tuple[Decimal, ...]] = {
    "oral-estradiol": tuple(Decimal(v) for v in ("0.5", "1", "2", "3", "4")),
    "patch": tuple(Decimal(v) for v in ("12.5", "25", "50", "75", "100")),
    "gel-pump": tuple(Decimal(v) for v in ("0.5", "1", "2", "3", "4")),
    "gel-sachet": tuple(Decimal(v) for v in ("0.25", "0.5", "1", "2", "3")),
    "spray": tuple(Decimal(v) for v in ("1", "2", "3", "5", "6")),
}
_BAND_UNIT = {
    "oral-estradiol": "mg a day",
    "patch": "micrograms/24 hours",
    "gel-pump": "pumps a day",
    "gel-sachet": "mg a day",
    "spray": "sprays a day",
}

Progestogen = Literal["micronised-progesterone", "medroxyprogesterone", "norethisterone"]
Schedule = Literal["continuous", "sequential"]

# BMS 2024 table [S34]: mg a day, (continuous, sequential). Standard-band MPA continuous is
# "2.5-5 mg": the suggestion offers 5 mg (the end that protects the endometrium more) and the
# card shows the range.
PROGESTOGEN_DOSES: Mapping[Band, Mapping[Progestogen, tuple[Decimal, Decimal]]] = {
    Band.ULTRA_LOW: {
        "micronised-progesterone": (Decimal(100), Decimal(200)),
        "medroxyprogesterone": (Decimal("2.5"), Decimal(10)),
        "norethisterone": (Decimal(5), Decimal(5)),
    },
    Band.LOW: {
        "micronised-progesterone": (Decimal(100), Decimal(200)),
        "medroxyprogesterone": (Decimal("2.5"), Decimal(10)),
        "norethisterone": (Decimal(5), Decimal(5)),
    },
    Band.STANDARD: {
        "micronised-progesterone": (Decimal(100), Decimal(200)),
        "medroxyprogesterone": (Decimal(5), Decimal(10)),
        "norethisterone": (Decimal(5), Decimal(5)),
    },
    Band.MODERATE: {
        "micronised-progesterone": (Decimal(100), Decimal(200)),
        "medroxyprogesterone": (Decimal(5), Decimal(10)),
        "norethisterone": (Decimal(5), Decimal(5)),
    },
    Band.HIGH: {
        "micronised-progesterone": (Decimal(200), Decimal(300)),
        "medroxyprogesterone": (Decimal(10), Decimal(20)),
        "norethisterone": (Decimal(5), Decimal(5)),
    },
}
_RANGE_NOTE = {(Band.STANDARD, "medroxyprogesterone", "continuous"): "BMS range 2.5-5 mg"}
# Sequential = progestogen for 12-14 days of each 28-day cycle [S34] ("300 mg for 12-14 days per
# month"): the suggestion writes 14 days, days 15 to 28.
SEQUENTIAL_DAYS = "days 15 to 28 of each 28-day cycle"
_PROGESTOGEN_NAMES: Mapping[str, str] = {
    "micronised-progesterone": "micronised progesterone",
    "medroxyprogesterone": "medroxyprogesterone",
    "norethisterone": "norethisterone",
}
_PROGESTOGEN_ORDER: tuple[Progestogen, ...] = (
    "micronised-progesterone",
    "medroxyprogesterone",
    "norethisterone",
)


@dataclass(frozen=True, slots=True)
class DoseAssessment:
    """The oestrogen's daily dose and BMS band, or why the band could not be told."""

    band: Band | None
    description: str  # "2 pumps a day (1.5 mg estradiol)"
    notes: tuple[str, ...] = ()  # assumptions made, or why there is no band
    above_table: bool = False


@dataclass(frozen=True, slots=True)
class Regimen:
    progestogen: Progestogen
    schedule: Schedule
    dose_mg: Decimal
    band: Band  # the band whose doses these are (standard when the real band is unknown)
    band_checked: bool  # False: the oestrogen's band was unknown, standard doses offered


# -- reading the record ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Item:
    """An HRT medicine or device as read from the record (or the draft orders)."""

    ref: str
    kind: Kind
    name: str
    match: CodeMatch
    draft: bool
    status: str
    request: MedicationRequest | None = None
    fitted: date | None = None  # LNG-IUS: fitting (or prescribing) date
    change_by_recorded: date | None = None  # LNG-IUS: the change-by extension on the order
    changed_on: date | None = None  # a stopped order: when it was last changed (authoredOn)

    @property
    def by_name(self) -> bool:
        return self.match.by == "name"


@dataclass(frozen=True, slots=True)
class Ius:
    """A 52 mg LNG-IUS and when it must be changed for HRT."""

    item: Item
    change_by: date | None


@dataclass(frozen=True, slots=True)
class Reading:
    requests: tuple[Item, ...]  # every HRT MedicationRequest (drafts overlay stored ones)
    statements: tuple[Item, ...]  # active HRT MedicationStatements
    devices: tuple[Item, ...]  # LNG-IUS evidence of either strength, any source
    hysterectomy: str | None  # reference of the evidence
    endometriosis: str | None
    gaps: Mapping[str, str] = field(default_factory=dict)  # resourceType -> why unavailable


def evaluate(
    record: PatientRecord,
    settings: HrtSettings,
    terminology: Terminology,
    doses: HrtDoseTable,
) -> list[Finding]:
    """Findings for ``record.hook``: order-select/-sign, order-dispatch or patient-view."""
    if record.patient is not None and record.patient.gender == "male":
        # Administrative gender only: a man on oestrogen (prostate cancer, trans woman) has no
        # uterus to protect. Not a statement about anatomy; see docs/hrt.md.
        return []
    gaps = {
        kind: why
        for kind in ("MedicationRequest", "MedicationStatement", "Procedure", "Condition", "Device")
        if (why := record.why_unavailable(kind)) is not None
    }
    if "MedicationRequest" in gaps and record.hook not in ORDER_HOOKS and not record.draft_orders:
        return [
            could_not_check(
                rule_id=RULE_ID,
                check="oestrogen and progestogen (HRT) prescriptions",
                reason=f"MedicationRequest: {gaps['MedicationRequest']}",
                source_label=GPHC_LABEL,
                source_url=GPHC_URL,
            )
        ]
    reading = _read(record, terminology, gaps)
    context = _Context(record, settings, terminology, doses, reading)
    findings: list[Finding] = []
    for oestrogen in _targets(record, reading):
        findings.extend(context.assess(oestrogen))
    if record.hook in ORDER_HOOKS:
        findings.extend(context.stored_oestrogens_with_draft_progestogen())
    if record.hook == "order-select":
        selected = {str(s) for s in record.context.get("selections") or []}
        findings = [f for f in findings if selected & set(f.evidence)]
    return findings


def _targets(record: PatientRecord, reading: Reading) -> list[Item]:
    """The oestrogen orders this hook is about."""
    oestrogens = [i for i in reading.requests if i.kind == "oestrogen"]
    if record.hook in ORDER_HOOKS:
        return [i for i in oestrogens if i.draft and i.status in LIVE_DRAFT_STATUSES]
    if record.hook == "order-dispatch":
        dispatched = _dispatched(record)
        return [i for i in oestrogens if i.ref in dispatched and i.status not in NOT_TRUE]
    return [i for i in oestrogens if not i.draft and i.status == "active"]


def _dispatched(record: PatientRecord) -> set[str]:
    orders = record.context.get("dispatchedOrders") or []
    return {str(o) for o in orders} if isinstance(orders, list) else set()


def _read(record: PatientRecord, terminology: Terminology, gaps: Mapping[str, str]) -> Reading:
    requests: list[Item] = []
    drafts = [r for r in record.draft_orders if isinstance(r, MedicationRequest)]
    draft_ids = {r.id for r in drafts if r.id}
    stored = [r for r in record.of_type(MedicationRequest) if not (r.id and r.id in draft_ids)]
    for index, request in enumerate([*drafts, *stored]):
        item = _request_item(record, request, index < len(drafts), terminology)
        if item is not None:
            requests.append(item)
    statements = [
        item
        for s in record.of_type(MedicationStatement)
        if s.status == "active" and (item := _statement_item(record, s, terminology)) is not None
    ]
    devices = [
        *(i for i in requests if i.kind in {"lng-ius-52", "lng-ius-low"}),
        *(i for i in statements if i.kind in {"lng-ius-52", "lng-ius-low"}),
        *_device_items(record, terminology),
    ]
    hysterectomy, endometriosis = _hysterectomy(record, terminology)
    return Reading(
        requests=tuple(requests),
        statements=tuple(s for s in statements if s.kind not in {"lng-ius-52", "lng-ius-low"}),
        devices=tuple(devices),
        hysterectomy=hysterectomy,
        endometriosis=endometriosis,
        gaps=gaps,
    )


def classify(
    concept: CodeableConcept | None, terminology: Terminology
) -> tuple[Kind, CodeMatch] | None:
    """Which HRT class a medicine or device belongs to (at most one)."""
    for kind, value_set in _KINDS:
        found = terminology.match(value_set, concept)
        if found is not None:
            return kind, found
    return None


def _request_item(
    record: PatientRecord, request: MedicationRequest, draft: bool, terminology: Terminology
) -> Item | None:
    concept = medication_concept(request, record)
    classified = classify(concept, terminology)
    if classified is None:
        return None
    kind, found = classified
    authored = parse_when(request.authored_on, record.zone)
    authored_on = local_date(authored, record.zone) if authored else None
    recorded = _change_by_extension(request, record)
    fitted = authored_on
    if draft and kind == "lng-ius-52":
        fitted = authored_on or local_date(record.now, record.zone)  # to be fitted now
    return Item(
        ref=f"MedicationRequest/{request.id}",
        kind=kind,
        name=_name(concept, found),
        match=found,
        draft=draft,
        status=request.status,
        request=request,
        fitted=fitted,
        change_by_recorded=recorded,
        changed_on=authored_on,
    )


def _statement_item(
    record: PatientRecord, statement: MedicationStatement, terminology: Terminology
) -> Item | None:
    concept = medication_concept(statement, record)
    classified = classify(concept, terminology)
    if classified is None:
        return None
    kind, found = classified
    start = statement.effective_date_time or (
        statement.effective_period.start if statement.effective_period else None
    )
    when = parse_when(start, record.zone)
    return Item(
        ref=f"MedicationStatement/{statement.id}",
        kind=kind,
        name=_name(concept, found),
        match=found,
        draft=False,
        status=statement.status,
        fitted=local_date(when, record.zone) if when else None,
    )


def _device_items(record: PatientRecord, terminology: Terminology) -> list[Item]:
    """LNG-IUS devices and fitting procedures, with the fitting date where one is recorded."""
    items: list[Item] = []
    procedures = [p for p in record.of_type(Procedure) if p.status not in NOT_DONE]
    devices: dict[str, tuple[Kind, CodeMatch, str]] = {}
    for device in record.of_type(Device):
        if device.status in {"inactive", "entered-in-error"}:
            continue
        names = [n.name for n in device.device_name]
        concept = CodeableConcept(
            coding=device.type.coding if device.type else [],
            text=(device.type.text if device.type else None) or (names[0] if names else None),
        )
        classified = classify(concept, terminology)
        if classified is None or classified[0] not in {"lng-ius-52", "lng-ius-low"}:
            continue
        kind, found = classified
        devices[str(device.id)] = (kind, found, _name(concept, found))
    dated_devices: set[str] = set()
    for procedure in procedures:
        when = _performed(procedure, record)
        linked = [
            ref.target_id("Device")
            for ref in (*procedure.used_reference, *(f.manipulated for f in procedure.focal_device))
        ]
        hits = [(d, devices[d]) for d in linked if d in devices]
        for device_id, (kind, found, name) in hits:
            dated_devices.add(device_id)
            items.append(_device_item(f"Device/{device_id}", kind, found, name, when))
        if hits:
            continue
        for used in (*procedure.used_code, procedure.code):
            classified = classify(used, terminology)
            if classified is not None and classified[0] in {"lng-ius-52", "lng-ius-low"}:
                kind, found = classified
                items.append(
                    _device_item(f"Procedure/{procedure.id}", kind, found, _name(used, found), when)
                )
                break
    for device_id, (kind, found, name) in devices.items():
        if device_id not in dated_devices:
            items.append(_device_item(f"Device/{device_id}", kind, found, name, None))
    return items


def _device_item(ref: str, kind: Kind, found: CodeMatch, name: str, fitted: date | None) -> Item:
    return Item(
        ref=ref, kind=kind, name=name, match=found, draft=False, status="active", fitted=fitted
    )


def _performed(procedure: Procedure, record: PatientRecord) -> date | None:
    value = procedure.performed_date_time or (
        procedure.performed_period.start if procedure.performed_period else None
    )
    when = parse_when(value, record.zone)
    return local_date(when, record.zone) if when else None


def _hysterectomy(record: PatientRecord, terminology: Terminology) -> tuple[str | None, str | None]:
    """(hysterectomy evidence, endometriosis evidence) references."""
    hysterectomy: str | None = None
    endometriosis: str | None = None
    for procedure in record.of_type(Procedure):
        if procedure.status in NOT_DONE or not terminology.match(HYSTERECTOMY, procedure.code):
            continue
        hysterectomy = hysterectomy or f"Procedure/{procedure.id}"
        if any(terminology.match(ENDOMETRIOSIS, reason) for reason in procedure.reason_code):
            endometriosis = endometriosis or f"Procedure/{procedure.id}"
    for condition in record.of_type(Condition):
        if _condition_refuted(condition):
            continue
        if terminology.match(HYSTERECTOMY, condition.code):
            hysterectomy = hysterectomy or f"Condition/{condition.id}"
        if terminology.match(ENDOMETRIOSIS, condition.code):
            endometriosis = endometriosis or f"Condition/{condition.id}"
    return hysterectomy, endometriosis


def _condition_refuted(condition: Condition) -> bool:
    status = condition.verification_status
    return status is not None and any(c.code in NOT_TRUE for c in status.coding)


def _name(concept: CodeableConcept | None, found: CodeMatch) -> str:
    if concept is not None:
        for coding in concept.coding:
            if coding.display:
                return coding.display
        if concept.text:
            return concept.text
    return found.display or "an HRT product"


def _change_by_extension(request: MedicationRequest, record: PatientRecord) -> date | None:
    for extension in request.extension:
        if extension.url == CHANGE_BY_URL and extension.value_date:
            when = parse_when(extension.value_date, record.zone)
            if when is not None:
                return local_date(when, record.zone)
    return None


def add_years(day: date, years: int) -> date:
    """The same calendar day ``years`` later; 29 February becomes 28 February (never later)."""
    try:
        return day.replace(year=day.year + years)
    except ValueError:
        return day.replace(year=day.year + years, day=28)


# -- dose of the oestrogen -------------------------------------------------------------------

_WORD_NUMBERS = {
    "half": Decimal("0.5"),
    "½": Decimal("0.5"),
    "a": Decimal(1),
    "an": Decimal(1),
    "one": Decimal(1),
    "two": Decimal(2),
    "three": Decimal(3),
    "four": Decimal(4),
    "five": Decimal(5),
    "six": Decimal(6),
}
_COUNT_WORDS = (
    r"pumps?|actuations?|presses|press|sprays?|tablets?|tabs?|capsules?|patch(?:es)?|sachets?"
    r"|doses?|applications?"
)
_TEXT_DOSE_RE = re.compile(
    rf"(?<![a-z0-9.])(\d+(?:\.\d+)?|half(?: an?)?|½|one|two|three|four|five|six|an?)\s*(?:x\s*)?"
    rf"(?:{_COUNT_WORDS})(?![a-z])"
)
_TEXT_MASS_RE = re.compile(
    r"(?<![\d.])(\d+(?:\.\d+)?)\s*(mg|micrograms?|mcg|microg|ug|µg)(?![a-z])"
)
_TWICE_RE = re.compile(r"\b(twice (a|per|each) day|twice daily|two times a day|bd|b\.d\.|bid)\b")
_ONCE_RE = re.compile(
    r"\b(once (a|per|each) day|once daily|daily|every day|each day|od|o\.d\.|qd|at night|"
    r"nightly|every night|each night|in the morning|every morning|each morning|a day)\b"
)
_MASS_UNITS = {
    "mg": Decimal(1),
    "milligram": Decimal(1),
    "milligrams": Decimal(1),
    "ug": Decimal("0.001"),
    "µg": Decimal("0.001"),
    "mcg": Decimal("0.001"),
    "microg": Decimal("0.001"),
    "microgram": Decimal("0.001"),
    "micrograms": Decimal("0.001"),
}


def oestrogen_product(
    concept: CodeableConcept | None, doses: HrtDoseTable
) -> OestrogenProduct | None:
    """The product from the curated table by code, else read from its name."""
    if concept is None:
        return None
    for coding in concept.coding:
        product = doses.lookup(coding.system, coding.code)
        if product is not None:
            return product
    for text in (concept.text, *(c.display for c in concept.coding)):
        if text:
            product = parse_oestrogen_name(text)
            if product.family != "unknown":
                return product
    return None


def assess_dose(
    product: OestrogenProduct | None, dosage: Sequence[Mapping[str, Any]]
) -> DoseAssessment:
    """The oestrogen's daily dose and BMS 2024 band [S34], or why it cannot be told."""
    if product is None:
        return DoseAssessment(None, "unknown product", ("the product's strength is not known",))
    family_name = FAMILIES[product.family][2]
    if not product.banded:
        return DoseAssessment(
            None,
            family_name,
            (f"{family_name} is not in the BMS 2024 dose table: check the dose band",),
        )
    if product.strength is None:
        return DoseAssessment(None, family_name, ("the product's strength could not be read",))
    units, per_day, notes = _dose_from_dosage(product, dosage)
    if units is None:
        return DoseAssessment(
            None, family_name, (f"the order gives no number of {product.counted}s a day",)
        )
    amount = units if product.family in {"gel-pump", "spray"} else units * product.strength
    if product.family != "patch":
        amount *= per_day
    band, above = band_for(product.family, amount)
    description = f"{_number(amount)} {_BAND_UNIT[product.family]}"
    if product.family == "gel-pump":
        description += f" ({_number(amount * product.strength)} mg estradiol)"
    return DoseAssessment(band, description, tuple(notes), above)


def band_for(family: str, amount: Decimal) -> tuple[Band, bool]:
    """The BMS band of a daily dose (rounded up between columns); True when above the table."""
    edges = BAND_EDGES[family]
    bands = (Band.ULTRA_LOW, Band.LOW, Band.STANDARD, Band.MODERATE)
    for band, edge in zip(bands, edges, strict=False):
        if amount <= edge:
            return band, False
    return Band.HIGH, amount > edges[4]


def _dose_from_dosage(
    product: OestrogenProduct, dosage: Sequence[Mapping[str, Any]]
) -> tuple[Decimal | None, Decimal, list[str]]:
    """(units per administration, administrations a day, notes). Units None: not known."""
    notes: list[str] = []
    first = dosage[0] if dosage else {}
    units = _units_from_quantity(product, first) or _units_from_text(product, first)
    per_day = _per_day(first)
    if units is None and product.family in {"oral-estradiol", "patch", "gel-sachet"}:
        units = Decimal(1)
        notes.append(f"the order gives no dose: one {product.counted} assumed")
    if per_day is None:
        per_day = Decimal(1)
        if product.family != "patch" and units is not None:
            notes.append("no frequency in the order: once a day assumed")
    return units, per_day, notes


def _units_from_quantity(product: OestrogenProduct, dosage: Mapping[str, Any]) -> Decimal | None:
    for dose_and_rate in dosage.get("doseAndRate") or []:
        if not isinstance(dose_and_rate, Mapping):
            continue
        quantity = dose_and_rate.get("doseQuantity")
        if not isinstance(quantity, Mapping):
            range_ = dose_and_rate.get("doseRange")
            quantity = range_.get("high") if isinstance(range_, Mapping) else None
        if not isinstance(quantity, Mapping):
            continue
        value = _decimal(quantity.get("value"))
        if value is None or value <= 0:
            continue
        unit = str(quantity.get("code") or quantity.get("unit") or "").strip().lower()
        return _to_units(product, value, unit)
    return None


def _units_from_text(product: OestrogenProduct, dosage: Mapping[str, Any]) -> Decimal | None:
    text = str(dosage.get("text") or "").lower()
    if not text:
        return None
    counted = _TEXT_DOSE_RE.search(text)
    if counted:
        word = counted.group(1).split(" ")[0]
        return _WORD_NUMBERS.get(word) or _decimal(word)
    mass = _TEXT_MASS_RE.search(text)
    if mass:
        value = _decimal(mass.group(1))
        return _to_units(product, value, mass.group(2)) if value else None
    return None


def _to_units(product: OestrogenProduct, value: Decimal, unit: str) -> Decimal | None:
    """A dose quantity in units of the product (tablets, patches, pumps...)."""
    factor = _MASS_UNITS.get(unit.strip("{}"))
    if factor is None:
        return value  # a count: tablet, patch, pump, actuation, spray, sachet, "{tbl}"...
    if product.strength is None:
        return None
    mg = value * factor
    strength_mg = (
        product.strength / 1000 if product.unit.startswith("microgram") else product.strength
    )
    return mg / strength_mg


def _per_day(dosage: Mapping[str, Any]) -> Decimal | None:
    timing = dosage.get("timing")
    repeat = timing.get("repeat") if isinstance(timing, Mapping) else None
    if isinstance(repeat, Mapping) and repeat.get("periodUnit"):
        frequency = _decimal(repeat.get("frequency")) or Decimal(1)
        period = _decimal(repeat.get("period")) or Decimal(1)
        days = {"d": Decimal(1), "wk": Decimal(7), "h": Decimal(1) / 24}.get(
            str(repeat["periodUnit"])
        )
        if days is not None and period > 0:
            return frequency / (period * days)
    text = str(dosage.get("text") or "").lower()
    if _TWICE_RE.search(text):
        return Decimal(2)
    if _ONCE_RE.search(text):
        return Decimal(1)
    return None


def _decimal(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def _number(value: Decimal) -> str:
    return format(value.quantize(Decimal("0.001")).normalize(), "f")


# -- progestogen regimens ----------------------------------------------------------------------


def regimens(
    band: Band | None, schedules: Sequence[Schedule], preferred: Progestogen
) -> list[tuple[Regimen, bool]]:
    """Suggested regimens with the recommended one marked, preferred progestogen first."""
    used = band or Band.STANDARD
    order = (preferred, *(p for p in _PROGESTOGEN_ORDER if p != preferred))
    result = []
    for progestogen in order:
        for schedule in schedules:
            continuous, sequential = PROGESTOGEN_DOSES[used][progestogen]
            dose = continuous if schedule == "continuous" else sequential
            regimen = Regimen(progestogen, schedule, dose, used, band is not None)
            result.append((regimen, progestogen == preferred and schedule == schedules[0]))
    return result


def _schedules(record: PatientRecord, settings: HrtSettings) -> tuple[Schedule, ...]:
    """Continuous alone from ``continuous_from_age``; else sequential first, then continuous."""
    age = _age(record)
    if age is not None and age >= settings.continuous_from_age:
        return ("continuous",)
    return ("sequential", "continuous")


def _age(record: PatientRecord) -> int | None:
    birth = parse_when(record.patient.birth_date if record.patient else None, record.zone)
    if birth is None:
        return None
    born = local_date(birth, record.zone)
    on = local_date(record.now, record.zone)
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


# -- assessment --------------------------------------------------------------------------------


class _Context:
    """One hook call's view of the record, shared by the checks."""

    def __init__(
        self,
        record: PatientRecord,
        settings: HrtSettings,
        terminology: Terminology,
        doses: HrtDoseTable,
        reading: Reading,
    ) -> None:
        self.record = record
        self.settings = settings
        self.terminology = terminology
        self.doses = doses
        self.reading = reading
        self.on = local_date(record.now, record.zone)
        self.hook = record.hook

    # -- what protects ------------------------------------------------------------------------

    def protectors(self) -> list[Item]:
        """Progestogens and combined products in use: live drafts, active orders, statements."""
        live = [
            i
            for i in self.reading.requests
            if i.kind in {"progestogen", "combined"}
            and (i.status in LIVE_DRAFT_STATUSES if i.draft else i.status == "active")
        ]
        statements = [i for i in self.reading.statements if i.kind in {"progestogen", "combined"}]
        return [*live, *statements]

    def stopped_progestogens(self) -> list[Item]:
        return [
            i
            for i in self.reading.requests
            if i.kind in {"progestogen", "combined"}
            and not i.draft
            and i.status in STOPPED_STATUSES
        ]

    def ius(self, oestrogen: Item) -> tuple[Ius | None, list[Item]]:
        """The 52 mg LNG-IUS in effect (latest change-by) and any low-dose devices.

        change-by = fitting date + 5 years [S33]. A prescription's date stands in for the
        fitting date (the device is fitted on or after it, so this errs early), and a change-by
        date recorded on it is used unless it is later than prescription + 5 years (which is
        the 8-year contraceptive date, not the HRT one). With no device evidence at all, a
        change-by date recorded on the oestrogen prescription itself is used.
        """
        years = self.settings.lng_ius_protection_years
        low = [d for d in self.reading.devices if d.kind == "lng-ius-low"]
        candidates = []
        for device in self.reading.devices:
            if device.kind != "lng-ius-52":
                continue
            stored_order = device.request is not None and not device.draft
            if stored_order and device.status not in {"active", "completed"}:
                continue
            limit = add_years(device.fitted, years) if device.fitted else None
            recorded = device.change_by_recorded
            change_by = min(recorded, limit) if recorded and limit else recorded or limit
            candidates.append(Ius(device, change_by))
        if not candidates and oestrogen.change_by_recorded is not None:
            candidates.append(Ius(oestrogen, oestrogen.change_by_recorded))
        if not candidates:
            return None, low
        dated = [c for c in candidates if c.change_by is not None]
        if dated:
            return max(dated, key=lambda c: c.change_by or date.min), low
        return candidates[0], low

    # -- the checks ---------------------------------------------------------------------------

    def assess(self, oestrogen: Item) -> list[Finding]:
        if self.reading.hysterectomy is not None:
            return self._after_hysterectomy(oestrogen)
        protectors = self.protectors()
        if protectors:
            return self._protected_by_progestogen(oestrogen, protectors)
        ius, low = self.ius(oestrogen)
        if ius is not None and ius.change_by is not None:
            return self._protected_by_ius(oestrogen, ius)
        if ius is not None:
            return [self._ius_without_date(oestrogen, ius)]
        return [self._unopposed(oestrogen, low)]

    def stored_oestrogens_with_draft_progestogen(self) -> list[Finding]:
        """order hooks: a progestogen being ordered for an oestrogen already prescribed."""
        if self.reading.hysterectomy is not None:
            return []
        draft_progestogens = [
            i
            for i in self.reading.requests
            if i.kind == "progestogen" and i.draft and i.status in LIVE_DRAFT_STATUSES
        ]
        if not draft_progestogens:
            return []
        findings = []
        for oestrogen in self.reading.requests:
            if oestrogen.kind != "oestrogen" or oestrogen.draft or oestrogen.status != "active":
                continue
            if any(_joined(oestrogen, p) for p in draft_progestogens):
                continue
            findings.append(self._not_joined(oestrogen, draft_progestogens[0]))
        return findings

    def _after_hysterectomy(self, oestrogen: Item) -> list[Finding]:
        if self.reading.endometriosis is None or self.protectors():
            return []
        evidence = (oestrogen.ref, self.reading.hysterectomy or "", self.reading.endometriosis)
        summary = _fit(
            "Hysterectomy for endometriosis: a progestogen may still be needed with {}",
            oestrogen.name,
        )
        detail = [
            f"**{oestrogen.name}** is oestrogen-only HRT. A hysterectomy is recorded "
            f"({self.reading.hysterectomy}), so no progestogen is needed for endometrial "
            "protection in most women, **but** endometriosis is recorded "
            f"({self.reading.endometriosis}): women whose hysterectomy was for (severe) "
            "endometriosis may still need a progestogen (GPhC patient-safety spotlight [S36]; "
            "BMS 2024 [S34]).",
            "",
            "Consider adding a progestogen, or record why it is not needed.",
            *self._name_notes([oestrogen]),
        ]
        return [
            Finding(
                rule_id=f"{RULE_ID}.endometriosis",
                severity=Severity.INFO,
                summary=summary,
                detail="\n".join(detail),
                topic=TOPIC_UNOPPOSED,
                source_label=GPHC_LABEL,
                source_url=GPHC_URL,
                override_reasons=("patient-ineligible", "expert-contradicts"),
                evidence=tuple(e for e in evidence if e),
                facts={"hysterectomy": True, "endometriosis": True},
            )
        ]

    def _protected_by_progestogen(self, oestrogen: Item, protectors: list[Item]) -> list[Finding]:
        findings: list[Finding] = []
        if any(p.kind == "combined" for p in protectors):
            partners: list[Item] = []
        else:
            partners = [p for p in protectors if p.request is not None]
        if partners and not any(_joined(oestrogen, p) for p in partners):
            partner = _best_partner(partners)
            involved = oestrogen.draft or partner.draft
            if self.hook == "order-dispatch" or (self.hook in ORDER_HOOKS and involved):
                findings.append(self._not_joined(oestrogen, partner))
        if self.hook == "order-dispatch":
            protector = _best_partner(protectors)
            findings.append(self._label(oestrogen, _progestogen_label(protector.name), protector))
        return findings

    def _protected_by_ius(self, oestrogen: Item, ius: Ius) -> list[Finding]:
        assert ius.change_by is not None
        days = (ius.change_by - self.on).days
        if days < 0:
            return [self._change_by_passed(oestrogen, ius, -days)]
        if days <= self.settings.change_by_warning_days:
            return [self._change_by_near(oestrogen, ius, days)]
        findings = []
        if (
            self.hook in ORDER_HOOKS
            and oestrogen.draft
            and oestrogen.change_by_recorded != ius.change_by
        ):
            findings.append(self._record_change_by(oestrogen, ius))
        if self.hook == "order-dispatch":
            label = (
                f"Use with your hormonal coil ({self._device_name(ius)}), which protects your "
                f"womb until {ius.change_by:%d %B %Y}. Have it changed by then; if it is removed "
                "you will need a progestogen."
            )
            findings.append(self._label(oestrogen, label, ius.item))
        return findings

    # -- findings ---------------------------------------------------------------------------

    def _unopposed(self, oestrogen: Item, low: list[Item]) -> Finding:
        gaps = self._decision_gaps()
        stopped = self.stopped_progestogens()
        dose = self._dose(oestrogen)
        severity = Severity.CRITICAL if self.hook != "patient-view" else Severity.WARNING
        if self.hook == "patient-view" and stopped:
            last = max(stopped, key=lambda i: i.changed_on or date.min)
            summary = _fit(
                "On {} with no progestogen since " + _short(_plain(last.name), 40) + " stopped",
                oestrogen.name,
            )
        elif self.hook == "order-dispatch":
            summary = _fit(
                "Supplying {} without a progestogen: check with the prescriber", oestrogen.name
            )
        else:
            summary = _fit(
                "{} alone risks womb cancer: she has a uterus and no progestogen", oestrogen.name
            )
        lines = [
            f"**{oestrogen.name}** is systemic oestrogen-only HRT. No hysterectomy is recorded, "
            "so she is taken to have a uterus, and **no progestogen** protects the lining of the "
            "womb: no progestogen among the orders, no active progestogen prescription or "
            "statement, no combined HRT and no 52 mg LNG-IUS fitted in the last "
            f"{self.settings.lng_ius_protection_years} years.",
            "",
            "Unopposed oestrogen raises the risk of endometrial hyperplasia and **endometrial "
            "(womb) cancer** [S36][S34]; a woman with a uterus needs a progestogen with it (NICE "
            "NG23 [S37]). The "
            "GPhC found unsafe combinations when the hormones were prescribed separately [S36]: "
            "prescribe them as **one joint item** (a shared groupIdentifier).",
        ]
        if stopped:
            lines += ["", "Progestogen no longer in use:"]
            lines += [
                f"- {i.name} ({i.status}"
                + (f", last changed {i.changed_on:%d %b %Y}" if i.changed_on else "")
                + ")"
                for i in stopped
            ]
        if low:
            lines += [
                "",
                "A low-dose levonorgestrel device is recorded ("
                + ", ".join(i.name for i in low)
                + "): 13.5 mg and 19.5 mg devices do **not** protect the endometrium in HRT; "
                "only 52 mg devices do (BMS 2024 [S34]).",
            ]
        lines += ["", *self._dose_lines(dose)]
        lines += self._schedule_lines()
        lines += self._name_notes([oestrogen, *stopped, *low])
        suggestions = self._regimen_suggestions(oestrogen, dose)
        if gaps:
            return self._could_not_check(oestrogen, gaps, lines, suggestions)
        return Finding(
            rule_id=f"{RULE_ID}.unopposed",
            severity=severity,
            summary=summary,
            detail="\n".join(lines),
            topic=TOPIC_UNOPPOSED,
            source_label=GPHC_LABEL,
            source_url=GPHC_URL,
            suggestions=suggestions,
            links=(CardLink(BMS_LABEL, BMS_URL), CardLink(FSRH_LABEL, FSRH_URL)),
            override_reasons=(
                "patient-ineligible",
                "indication-order-exists",
                "expert-contradicts",
            ),
            evidence=(oestrogen.ref, *(i.ref for i in stopped), *(i.ref for i in low)),
            facts=self._dose_facts(dose),
        )

    def _could_not_check(
        self,
        oestrogen: Item,
        gaps: Mapping[str, str],
        lines: list[str],
        suggestions: tuple[Suggestion, ...],
    ) -> Finding:
        base = could_not_check(
            rule_id=RULE_ID,
            check=_short(f"progestogen protection for {oestrogen.name}", 110),
            reason="; ".join(f"{kind}: {why}" for kind, why in gaps.items()),
            source_label=GPHC_LABEL,
            source_url=GPHC_URL,
        )
        detail = (
            f"{base.detail}\n\nWhat could be checked: no progestogen was found for "
            f"**{oestrogen.name}**, but the data that could show a hysterectomy, a 52 mg LNG-IUS "
            "or an existing progestogen were not all available.\n\n" + "\n".join(lines)
        )
        return replace(
            base,
            detail=detail,
            topic=TOPIC_UNOPPOSED,
            suggestions=tuple(replace(s, is_recommended=False) for s in suggestions),
            evidence=(oestrogen.ref,),
        )

    def _decision_gaps(self) -> dict[str, str]:
        needed = ("Procedure", "Device", "MedicationRequest")
        return {k: v for k, v in self.reading.gaps.items() if k in needed}

    def _not_joined(self, oestrogen: Item, partner: Item) -> Finding:
        summary = _fit(
            "{} and " + _short(_plain(partner.name), 45) + " are not one joint HRT item: join them",
            oestrogen.name,
            limit=40,
        )
        group = _group_identifier(self.record, oestrogen, partner)
        lines = [
            f"**{oestrogen.name}** ({oestrogen.ref}) and its progestogen **{partner.name}** "
            f"({partner.ref}) are prescribed separately: they do not share a groupIdentifier.",
            "",
            "Prescribed apart, one half can be stopped, not reissued or not supplied without "
            "the other, leaving the oestrogen unopposed; the GPhC found such 'split' regimens "
            "behind unsafe HRT supply [S36]. A joint item (profile hrt-joint-item) keeps them "
            "together on the prescription and at the pharmacy.",
            *self._name_notes([oestrogen, partner]),
        ]
        suggestions: tuple[Suggestion, ...] = ()
        if self.hook != "order-dispatch":
            actions = tuple(
                action
                for item in (oestrogen, partner)
                if (action := _update_group(item, group)) is not None
            )
            if actions:
                suggestions = (
                    Suggestion(
                        key="join-joint-item",
                        label="Join them as one HRT joint item",
                        actions=actions,
                        is_recommended=True,
                    ),
                )
        else:
            lines += ["", "Ask the prescriber to reissue them as one joint item."]
        return Finding(
            rule_id=f"{RULE_ID}.not-joined",
            severity=Severity.WARNING,
            summary=summary,
            detail="\n".join(lines),
            topic=TOPIC_NOT_JOINED,
            source_label=GPHC_LABEL,
            source_url=GPHC_URL,
            suggestions=suggestions,
            override_reasons=("cds-not-applicable", "not-convenient-feasible"),
            evidence=(oestrogen.ref, partner.ref),
            facts={"group": group["value"]},
        )

    def _change_by_near(self, oestrogen: Item, ius: Ius, days: int) -> Finding:
        assert ius.change_by is not None
        when = "today" if days == 0 else f"in {days} day{'s' if days != 1 else ''}"
        summary = f"LNG-IUS change-by date {ius.change_by:%d %b %Y} is {when}: arrange a new device"
        lines = [
            f"Endometrial protection for **{oestrogen.name}** relies on "
            f"{self._device_text(ius)}. For HRT a 52 mg LNG-IUS protects for "
            f"{self.settings.lng_ius_protection_years} years from insertion, so it must be "
            f"changed by **{ius.change_by:%d %B %Y}** ({when}), even though Mirena is licensed "
            "for 8 years of contraception (FSRH [S33]; BMS 2024 [S34]).",
            "",
            "Arrange a replacement, or a progestogen from that date.",
            *self._name_notes({oestrogen.ref: oestrogen, ius.item.ref: ius.item}.values()),
        ]
        suggestions = self._change_by_suggestion(oestrogen, ius)
        return Finding(
            rule_id=f"{RULE_ID}.lng-ius-change-by-near",
            severity=Severity.WARNING,
            summary=summary,
            detail="\n".join(lines),
            topic=TOPIC_CHANGE_BY,
            source_label=FSRH_LABEL,
            source_url=FSRH_URL,
            suggestions=suggestions,
            links=(CardLink(BMS_LABEL, BMS_URL),),
            override_reasons=("action-completed", "cds-not-applicable"),
            evidence=tuple(dict.fromkeys((oestrogen.ref, ius.item.ref))),
            facts={"change_by": ius.change_by.isoformat(), "days": days},
        )

    def _change_by_passed(self, oestrogen: Item, ius: Ius, days_over: int) -> Finding:
        assert ius.change_by is not None
        severity = Severity.WARNING if self.hook == "patient-view" else Severity.CRITICAL
        summary = (
            f"LNG-IUS passed its HRT change-by date {ius.change_by:%d %b %Y}: "
            "oestrogen is unopposed"
        )
        dose = self._dose(oestrogen)
        lines = [
            f"Endometrial protection for **{oestrogen.name}** relied on "
            f"{self._device_text(ius)}. Its HRT change-by date, "
            f"**{ius.change_by:%d %B %Y}**, passed {days_over} day{'s' if days_over != 1 else ''} "
            f"ago: a 52 mg LNG-IUS protects the endometrium for "
            f"{self.settings.lng_ius_protection_years} years in HRT, whatever its contraceptive "
            "licence (FSRH [S33]; BMS 2024 [S34]). The oestrogen is now **unopposed**: womb "
            "cancer risk.",
            "",
            "Replace the device, or add a progestogen until it is replaced.",
            "",
            *self._dose_lines(dose),
            *self._schedule_lines(),
            *self._name_notes({oestrogen.ref: oestrogen, ius.item.ref: ius.item}.values()),
        ]
        return Finding(
            rule_id=f"{RULE_ID}.lng-ius-change-by-passed",
            severity=severity,
            summary=summary,
            detail="\n".join(lines),
            topic=TOPIC_CHANGE_BY,
            source_label=FSRH_LABEL,
            source_url=FSRH_URL,
            suggestions=self._regimen_suggestions(oestrogen, dose),
            links=(CardLink(BMS_LABEL, BMS_URL),),
            override_reasons=("action-completed", "expert-contradicts"),
            evidence=tuple(dict.fromkeys((oestrogen.ref, ius.item.ref))),
            facts={"change_by": ius.change_by.isoformat(), "days": -days_over},
        )

    def _record_change_by(self, oestrogen: Item, ius: Ius) -> Finding:
        assert ius.change_by is not None
        summary = (
            f"Record the LNG-IUS change-by date {ius.change_by:%d %b %Y} on this HRT prescription"
        )
        lines = [
            f"**{oestrogen.name}** is protected by {self._device_text(ius)}, which must be "
            f"changed by **{ius.change_by:%d %B %Y}** "
            f"for HRT ({self.settings.lng_ius_protection_years} years from insertion, FSRH [S33]).",
            "",
            "BMS 2024 asks for the fitting date on the prescription [S34]; recording the "
            "change-by date on the oestrogen prescription prints it for the patient and the "
            "pharmacist.",
            *self._name_notes({oestrogen.ref: oestrogen, ius.item.ref: ius.item}.values()),
        ]
        return Finding(
            rule_id=f"{RULE_ID}.lng-ius-change-by-record",
            severity=Severity.INFO,
            summary=summary,
            detail="\n".join(lines),
            topic=TOPIC_CHANGE_BY,
            source_label=FSRH_LABEL,
            source_url=FSRH_URL,
            suggestions=self._change_by_suggestion(oestrogen, ius),
            override_reasons=("action-completed",),
            evidence=tuple(dict.fromkeys((oestrogen.ref, ius.item.ref))),
            facts={"change_by": ius.change_by.isoformat()},
        )

    def _ius_without_date(self, oestrogen: Item, ius: Ius) -> Finding:
        summary = (
            "52 mg LNG-IUS has no fitting date: HRT endometrial protection cannot be confirmed"
        )
        lines = [
            f"Endometrial protection for **{oestrogen.name}** appears to rely on "
            f"**{ius.item.name}** ({ius.item.ref}), but no fitting date is recorded, so its HRT "
            f"change-by date ({self.settings.lng_ius_protection_years} years from insertion, "
            "FSRH [S33]) cannot be worked out.",
            "",
            "Record the fitting date (a Procedure for the insertion) or the change-by date.",
            *self._name_notes({oestrogen.ref: oestrogen, ius.item.ref: ius.item}.values()),
        ]
        return Finding(
            rule_id=f"{RULE_ID}.lng-ius-no-date",
            severity=Severity.WARNING,
            summary=summary,
            detail="\n".join(lines),
            topic=TOPIC_CHANGE_BY,
            source_label=FSRH_LABEL,
            source_url=FSRH_URL,
            override_reasons=("action-completed", "need-more-info"),
            evidence=tuple(dict.fromkeys((oestrogen.ref, ius.item.ref))),
        )

    def _label(self, oestrogen: Item, label: str, protector: Item) -> Finding:
        coil = protector.kind not in {"progestogen", "combined"}
        if coil:
            summary = _fit("Label for {}: 'Use with your hormonal coil...'", oestrogen.name)
            protected_by = "a 52 mg LNG-IUS"
            together = "The coil must be changed by the date on the label (FSRH [S33])."
        else:
            summary = _fit("Label for {}: 'Use with your progestogen...'", oestrogen.name)
            protected_by = f"**{protector.name}** ({protector.ref})"
            together = "The oestrogen and its progestogen must be supplied together (GPhC [S36])."
        lines = [
            f"**{oestrogen.name}** is oestrogen-only HRT, protected by {protected_by}. "
            "Suggested additional label wording for the bag:",
            "",
            f"> {label}",
            "",
            together,
        ]
        return Finding(
            rule_id=f"{RULE_ID}.label",
            severity=Severity.INFO,
            summary=summary,
            detail="\n".join(lines),
            topic=TOPIC_UNOPPOSED,
            source_label=GPHC_LABEL,
            source_url=GPHC_URL,
            evidence=tuple(dict.fromkeys((oestrogen.ref, protector.ref))),
            facts={"label": label},
        )

    # -- detail helpers -------------------------------------------------------------------------

    def _dose(self, oestrogen: Item) -> DoseAssessment:
        request = oestrogen.request
        concept = medication_concept(request, self.record) if request else None
        product = oestrogen_product(concept, self.doses)
        dosage = request.dosage_instruction if request else []
        return assess_dose(product, dosage)

    def _dose_lines(self, dose: DoseAssessment) -> list[str]:
        if dose.band is None:
            lines = [
                "**Oestrogen dose band: needs checking** ("
                + "; ".join(dose.notes)
                + "). The suggestions use the **standard-dose** progestogen doses of the BMS "
                "2024 table [S34]; check them against the oestrogen dose before accepting.",
            ]
        else:
            lines = [
                f"Oestrogen dose: {dose.description}, BMS 2024 **{dose.band}** dose [S34]"
                + (f" ({'; '.join(dose.notes)})" if dose.notes else "")
                + ".",
            ]
            if dose.above_table:
                lines.append(
                    "This is above the highest dose in the BMS table: seek specialist advice "
                    "on the progestogen dose."
                )
        band = dose.band or Band.STANDARD
        lines += ["", f"BMS 2024 progestogen doses for a {band} oestrogen dose [S34]:"]
        for progestogen in _PROGESTOGEN_ORDER:
            continuous, sequential = PROGESTOGEN_DOSES[band][progestogen]
            note = _RANGE_NOTE.get((band, progestogen, "continuous"))
            lines.append(
                f"- {_PROGESTOGEN_NAMES[progestogen]}: {_number(continuous)} mg a day continuous"
                + (f" ({note})" if note else "")
                + f", {_number(sequential)} mg a day for 12-14 days of each cycle sequential"
            )
        lines.append("- 52 mg LNG-IUS: up to 5 years (record the fitting date)")
        return lines

    def _schedule_lines(self) -> list[str]:
        schedules = _schedules(self.record, self.settings)
        if schedules == ("continuous",):
            return [
                "",
                f"She is {self.settings.continuous_from_age} or over: continuous regimens are "
                "offered.",
            ]
        return [
            "",
            "Sequential if she still has periods (progestogen on "
            f"{SEQUENTIAL_DAYS}); continuous if her last period was more than 12 months ago.",
        ]

    def _dose_facts(self, dose: DoseAssessment) -> dict[str, Any]:
        return {"band": str(dose.band) if dose.band else None, "dose": dose.description}

    def _device_name(self, ius: Ius) -> str:
        if ius.item.kind != "lng-ius-52":
            return "52 mg LNG-IUS"
        return _plain(ius.item.name)

    def _device_text(self, ius: Ius) -> str:
        if ius.item.kind != "lng-ius-52":
            return (
                "a 52 mg LNG-IUS known only from the change-by date recorded on this "
                f"prescription ({ius.item.ref})"
            )
        return f"**{ius.item.name}** ({ius.item.ref}){self._fitted_text(ius)}"

    def _fitted_text(self, ius: Ius) -> str:
        item = ius.item
        if item.fitted is None:
            return ""
        if item.request is not None and not item.draft:
            return f", prescribed {item.fitted:%d %b %Y} (taken as the fitting date)"
        if item.draft:
            return ""
        return f", fitted {item.fitted:%d %b %Y}"

    def _name_notes(self, items: Iterable[Item]) -> list[str]:
        notes = [
            f"- {i.name}: recognised by name ('{i.match.matched_text}'), not by code."
            for i in items
            if i.by_name
        ]
        return ["", "_Medicines recorded as text only:_", *notes] if notes else []

    # -- suggestions ----------------------------------------------------------------------------

    def _regimen_suggestions(self, oestrogen: Item, dose: DoseAssessment) -> tuple[Suggestion, ...]:
        if self.hook == "order-dispatch" or oestrogen.request is None:
            return ()
        group = _group_identifier(self.record, oestrogen, None)
        update = _update_group(oestrogen, group, add_profile=True)
        schedules = _schedules(self.record, self.settings)
        suggestions = []
        for regimen, recommended in regimens(
            dose.band, schedules, self.settings.preferred_progestogen
        ):
            resource = self._progestogen_request(oestrogen, regimen, group)
            if resource is None:
                continue
            actions = [
                Action(
                    type="create",
                    description=(
                        f"Prescribe {_regimen_text(regimen)} as a joint item with {oestrogen.name}"
                    ),
                    resource=resource,
                )
            ]
            if update is not None:
                actions.append(update)
            suggestions.append(
                Suggestion(
                    key=f"add-{regimen.progestogen}-{regimen.schedule}",
                    label=_regimen_label(regimen),
                    actions=tuple(actions),
                    is_recommended=recommended,
                )
            )
        return tuple(suggestions)

    def _progestogen_request(
        self, oestrogen: Item, regimen: Regimen, group: Mapping[str, str]
    ) -> dict[str, Any] | None:
        product = _progestogen_product(self.settings, regimen)
        if product is None:
            return None
        code, strength = product
        display = self.terminology.display(SNOMED, code) or _PROGESTOGEN_NAMES[regimen.progestogen]
        units = regimen.dose_mg / strength
        form = "capsule" if regimen.progestogen == "micronised-progesterone" else "tablet"
        when = "at bedtime" if regimen.progestogen == "micronised-progesterone" else "once a day"
        if regimen.schedule == "continuous":
            text = (
                f"{_units_text(units, form)} ({_number(regimen.dose_mg)} mg) {when}, every day "
                f"(continuous), with {oestrogen.name}"
            )
        else:
            text = (
                f"{_units_text(units, form)} ({_number(regimen.dose_mg)} mg) {when} on "
                f"{SEQUENTIAL_DAYS} (sequential), with {oestrogen.name}"
            )
        if not regimen.band_checked:
            text += "; standard-dose band: check against the oestrogen dose"
        resource: dict[str, Any] = {
            "resourceType": "MedicationRequest",
            "meta": {"profile": [JOINT_ITEM_PROFILE]},
            "status": "draft",
            "intent": "order",
            "medicationCodeableConcept": {
                "coding": [{"system": SNOMED, "code": code, "display": display}],
                "text": display,
            },
            "subject": {"reference": f"Patient/{self.record.patient_id}"},
            "authoredOn": self.on.isoformat(),
            "groupIdentifier": dict(group),
            "dosageInstruction": [
                {
                    "sequence": 1,
                    "text": text,
                    "timing": _timing(regimen.schedule),
                    "route": {"text": "Oral"},
                    "doseAndRate": [{"doseQuantity": {"value": _json_number(units), "unit": form}}],
                }
            ],
            "note": [
                {
                    "text": (
                        f"Endometrial protection for {oestrogen.name} (BMS 2024, {regimen.band} "
                        "oestrogen dose). Joint HRT item: do not supply or stop one without the "
                        "other."
                    )
                }
            ],
        }
        if self.record.encounter_id:
            resource["encounter"] = {"reference": f"Encounter/{self.record.encounter_id}"}
        requester = self.record.context.get("userId")
        if isinstance(requester, str) and requester.startswith(
            ("Practitioner/", "PractitionerRole/")
        ):
            resource["requester"] = {"reference": requester}
        return resource

    def _change_by_suggestion(self, oestrogen: Item, ius: Ius) -> tuple[Suggestion, ...]:
        if (
            self.hook == "order-dispatch"
            or ius.change_by is None
            or oestrogen.change_by_recorded == ius.change_by
        ):
            return ()
        request = oestrogen.request
        resource = request.source_json() if request is not None else {}
        if not resource:
            return ()
        extensions = [
            e
            for e in resource.get("extension") or []
            if not (isinstance(e, dict) and e.get("url") == CHANGE_BY_URL)
        ]
        resource["extension"] = [
            *extensions,
            {"url": CHANGE_BY_URL, "valueDate": ius.change_by.isoformat()},
        ]
        return (
            Suggestion(
                key="record-change-by",
                label=f"Record change-by date {ius.change_by:%d %b %Y} on the prescription",
                actions=(
                    Action(
                        type="update",
                        description=(
                            f"Add the LNG-IUS change-by date {ius.change_by:%d %b %Y} to "
                            f"{oestrogen.name}"
                        ),
                        resource=resource,
                    ),
                ),
                is_recommended=True,
            ),
        )


# -- small helpers -----------------------------------------------------------------------------


def _joined(oestrogen: Item, partner: Item) -> bool:
    a = oestrogen.request.group_identifier if oestrogen.request else None
    b = partner.request.group_identifier if partner.request else None
    if a is None or b is None or not a.value or a.value != b.value:
        return False
    return a.system is None or b.system is None or a.system == b.system


def _best_partner(items: Sequence[Item]) -> Item:
    """Drafts first, then prescriptions, then statements; the most recent of those."""
    return sorted(
        items,
        key=lambda i: (not i.draft, i.request is None, -(i.changed_on or date.min).toordinal()),
    )[0]


def _group_identifier(
    record: PatientRecord, oestrogen: Item, partner: Item | None
) -> dict[str, str]:
    """The joint item's groupIdentifier: an existing one, else a stable uuid5 URN."""
    for item in (oestrogen, partner):
        existing = item.request.group_identifier if item and item.request else None
        if existing is not None and existing.value:
            group = {"value": existing.value}
            if existing.system:
                group = {"system": existing.system, **group}
            return group
    seed = f"{record.patient_id}|{oestrogen.ref}"
    return {"system": GROUP_SYSTEM, "value": f"urn:uuid:{uuid.uuid5(_GROUP_NAMESPACE, seed)}"}


def _update_group(
    item: Item, group: Mapping[str, str], *, add_profile: bool = False
) -> Action | None:
    """An update giving ``item`` the joint item's groupIdentifier (None when it has it)."""
    request = item.request
    if request is None:
        return None
    current = request.group_identifier
    if current is not None and current.value == group["value"]:
        return None
    resource = request.source_json()
    if not resource:
        return None
    resource["groupIdentifier"] = dict(group)
    if add_profile:
        meta = resource.setdefault("meta", {})
        profiles = meta.setdefault("profile", [])
        if JOINT_ITEM_PROFILE not in profiles:
            profiles.append(JOINT_ITEM_PROFILE)
    return Action(
        type="update",
        description=f"Give {item.name} the joint item's groupIdentifier",
        resource=resource,
    )


def _progestogen_product(settings: HrtSettings, regimen: Regimen) -> tuple[str, Decimal] | None:
    """The largest product strength that makes up the dose in whole units."""
    products = settings.progestogen_products.get(regimen.progestogen, {})
    for strength_text, code in sorted(
        products.items(), key=lambda kv: Decimal(kv[0]), reverse=True
    ):
        strength = Decimal(strength_text)
        if regimen.dose_mg % strength == 0:
            return code, strength
    return None


def _timing(schedule: Schedule) -> dict[str, Any]:
    """Continuous: once a day. Sequential: R4 Timing cannot say "days 15-28 of each cycle"
    without inventing a code, so the cycle goes in ``Timing.code.text`` (and the dosage text)."""
    if schedule == "continuous":
        return {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}}
    return {"code": {"text": f"Once a day on {SEQUENTIAL_DAYS}"}}


def _progestogen_label(name: str) -> str:
    return (
        f"Use with your progestogen ({_plain(name)}) to protect the lining of your womb. "
        "Do not stop either medicine without talking to your prescriber."
    )


def _regimen_text(regimen: Regimen) -> str:
    name = _PROGESTOGEN_NAMES[regimen.progestogen]
    return f"{name} {_number(regimen.dose_mg)} mg {regimen.schedule}"


def _regimen_label(regimen: Regimen) -> str:
    name = _PROGESTOGEN_NAMES[regimen.progestogen]
    when = "every day" if regimen.schedule == "continuous" else "days 15-28"
    label = f"Add {name} {_number(regimen.dose_mg)} mg {when} ({regimen.schedule})"
    if not regimen.band_checked:
        label += ": standard dose, check"
    return label


def _units_text(units: Decimal, form: str) -> str:
    count = _number(units)
    return f"{count} {form}{'' if units == 1 else 's'}"


def _json_number(value: Decimal) -> int | float:
    return int(value) if value == value.to_integral_value() else float(value)


def _plain(name: str) -> str:
    """A name without its trailing parenthesis: "Utrogestan 100mg capsules (Besins ...)"."""
    text = name.rstrip()
    if not text.endswith(")"):
        return text
    depth = 0
    for index in range(len(text) - 1, -1, -1):
        depth += {")": 1, "(": -1}.get(text[index], 0)
        if depth == 0:
            return text[:index].rstrip() or text
    return text


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def _fit(template: str, name: str, *, limit: int = 139) -> str:
    """Fill ``{}`` with ``name``, shortening the name so the summary stays under 140."""
    room = 139 - len(template.replace("{}", ""))
    return template.replace("{}", _short(_plain(name), max(12, min(room, limit))), 1)
