"""HRT joint items: product classes, exemptions, protection, joining, change-by edges, doses."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fhir.resources.R4B.medicationrequest import MedicationRequest as R4BMedicationRequest

from fhir_safety.config import REPO_ROOT, HrtSettings
from fhir_safety.domain import Finding, Severity
from fhir_safety.fhir.resources import CodeableConcept, MedicationRequest, Patient, Resource
from fhir_safety.hrt_doses import load_hrt_dose_table, parse_oestrogen_name
from fhir_safety.record import PatientRecord
from fhir_safety.rules import hrt
from fhir_safety.services.record import parse_resource
from fhir_safety.terminology import SNOMED, Terminology

NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
TODAY = date(2026, 11, 26)
P = "p-1"
DOSES = load_hrt_dose_table(REPO_ROOT / "terminology")
GROUP = "urn:uuid:0d6a2f55-8a41-4c7e-9f1b-3c2e5d7a9b10"


def med(code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": SNOMED, "code": code, "display": display}]}


ORAL_2MG = med("325546003", "Estradiol 2mg tablets")
ORAL_1MG = med("325545004", "Estradiol 1mg tablets")
ORAL_4MG = med("400795008", "Estradiol 4mg tablets")
PATCH_25 = med("36064911000001108", "Estradiol 25micrograms/24hours transdermal patches")
PATCH_50 = med("39112011000001100", "Estradiol 50micrograms/24hours transdermal patches")
PATCH_100 = med("36064811000001103", "Estradiol 100micrograms/24hours transdermal patches")
OESTROGEL = med("325577001", "Estradiol 0.06% gel (750microgram per actuation)")
SANDRENA_1MG = med("3664111000001108", "Estradiol 1mg gel sachets")
LENZETTO = med("38344311000001108", "Estradiol 1.53mg/dose transdermal spray")
IMPLANT_50 = med("325541008", "Estradiol 50mg implant")
VALERATE_2MG = med("325533008", "Estradiol valerate 2mg tablets")
VAGINAL = med("353131001", "Estriol 500microgram pessaries")
COMBINED = med("325662001", "Estradiol 1mg / Norethisterone acetate 500microgram tablets")
UTROGESTAN = med("11758911000001105", "Utrogestan 100mg capsules (Besins Healthcare (UK) Ltd)")
MPA_10 = med("325601006", "Medroxyprogesterone 10mg tablets")
MIRENA = med("3493211000001100", "Mirena 20micrograms/24hours intrauterine device")
JAYDESS = med("24379611000001100", "Jaydess 13.5mg intrauterine device")
HYSTERECTOMY = med("116140006", "Total hysterectomy (procedure)")
ENDOMETRIOSIS = med("129103003", "Endometriosis (disorder)")
SUBJECT = {"reference": f"Patient/{P}"}


def mr(
    mid: str,
    medication: dict[str, Any],
    *,
    status: str = "draft",
    dose: tuple[float, str] | None = None,
    text: str | None = None,
    daily: bool = True,
    group: str | None = None,
    authored: str | None = None,
    change_by: str | None = None,
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "id": mid,
        "status": status,
        "intent": "order",
        "medicationCodeableConcept": medication,
        "subject": SUBJECT,
    }
    if authored:
        resource["authoredOn"] = authored
    if group:
        resource["groupIdentifier"] = {"system": "urn:ietf:rfc:3986", "value": group}
    if change_by:
        resource["extension"] = [{"url": hrt.CHANGE_BY_URL, "valueDate": change_by}]
    dosage: dict[str, Any] = {}
    if text:
        dosage["text"] = text
    if dose:
        dosage["doseAndRate"] = [{"doseQuantity": {"value": dose[0], "unit": dose[1]}}]
        if daily:
            dosage["timing"] = {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}}
    if dosage:
        resource["dosageInstruction"] = [dosage]
    return resource


def procedure(
    pid: str, code: dict[str, Any], when: str, *, status: str = "completed", **extra: Any
) -> dict[str, Any]:
    return {
        "resourceType": "Procedure",
        "id": pid,
        "status": status,
        "code": code,
        "subject": SUBJECT,
        "performedDateTime": when,
        **extra,
    }


def condition(cid: str, code: dict[str, Any], *, verification: str | None = None) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Condition",
        "id": cid,
        "code": code,
        "subject": SUBJECT,
    }
    if verification:
        resource["verificationStatus"] = {"coding": [{"code": verification}]}
    return resource


def statement(
    sid: str, medication: dict[str, Any], when: str, status: str = "active"
) -> dict[str, Any]:
    return {
        "resourceType": "MedicationStatement",
        "id": sid,
        "status": status,
        "medicationCodeableConcept": medication,
        "subject": SUBJECT,
        "effectiveDateTime": when,
    }


def device(did: str, kind: dict[str, Any], status: str = "active") -> dict[str, Any]:
    return {"resourceType": "Device", "id": did, "status": status, "type": kind, "patient": SUBJECT}


def mirena_fitted(when: date) -> list[dict[str, Any]]:
    """A Mirena Device and the Procedure that fitted it on ``when``."""
    return [
        device("dev-1", MIRENA),
        procedure(
            "proc-fit",
            {"text": "Insertion of intrauterine system"},
            when.isoformat(),
            focalDevice=[{"manipulated": {"reference": "Device/dev-1"}}],
        ),
    ]


def parse(raw: dict[str, Any]) -> Resource:
    parsed = parse_resource(raw, "test")
    assert parsed is not None
    return parsed


def record(
    *,
    drafts: Sequence[dict[str, Any]] = (),
    stored: Sequence[dict[str, Any]] = (),
    hook: str = "order-sign",
    birth: str | None = "1972-03-14",
    gender: str = "female",
    unavailable: dict[str, str] | None = None,
    context: dict[str, Any] | None = None,
    now: datetime = NOW,
) -> PatientRecord:
    by_type: dict[str, list[Resource]] = {}
    for raw in stored:
        parsed = parse(raw)
        by_type.setdefault(parsed.resource_type, []).append(parsed)
    patient_raw: dict[str, Any] = {"resourceType": "Patient", "id": P, "gender": gender}
    if birth:
        patient_raw["birthDate"] = birth
    patient = Patient.model_validate(patient_raw)
    ctx: dict[str, Any] = {"patientId": P, "userId": "Practitioner/dr-1", **(context or {})}
    if drafts:
        ctx["draftOrders"] = {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"resource": d} for d in drafts],
        }
    return PatientRecord(
        hook=hook,
        context=ctx,
        now=now,
        zone=ZoneInfo("Europe/London"),
        patient=patient,
        resources={k: tuple(v) for k, v in by_type.items()},
        draft_orders=tuple(parse(d) for d in drafts),
        unavailable=unavailable or {},
    )


def run(
    rec: PatientRecord, terminology: Terminology, settings: HrtSettings | None = None
) -> list[Finding]:
    return hrt.evaluate(rec, settings or HrtSettings(), terminology, DOSES)


def rules(findings: Sequence[Finding]) -> list[str]:
    return [f.rule_id for f in findings]


def validate_suggestions(finding: Finding) -> None:
    """Every resource a suggestion creates or updates is a valid R4B MedicationRequest."""
    for suggestion in finding.suggestions:
        for action in suggestion.actions:
            assert action.resource is not None
            R4BMedicationRequest.model_validate(dict(action.resource))


ORAL = mr("oe-1", ORAL_2MG, dose=(1, "tablet"))


# -- product classes ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("medication", "dose", "expected"),
    [
        (ORAL_2MG, (1, "tablet"), ["hrt-joint-items.unopposed"]),  # oral
        (PATCH_50, (1, "patch"), ["hrt-joint-items.unopposed"]),  # patch
        (OESTROGEL, (2, "pump"), ["hrt-joint-items.unopposed"]),  # gel (pump)
        (SANDRENA_1MG, (1, "sachet"), ["hrt-joint-items.unopposed"]),  # gel (sachet)
        (LENZETTO, (3, "spray"), ["hrt-joint-items.unopposed"]),  # spray
        (IMPLANT_50, (1, "implant"), ["hrt-joint-items.unopposed"]),  # implant
        (VALERATE_2MG, (1, "tablet"), ["hrt-joint-items.unopposed"]),  # oral valerate
        (VAGINAL, (1, "pessary"), []),  # low-dose vaginal: exempt
        (COMBINED, (1, "tablet"), []),  # combined: already opposed
        (UTROGESTAN, (1, "capsule"), []),  # a progestogen alone: nothing to check
    ],
)
def test_hrt_product_class_on_order_sign_gives_expected_card(
    terminology: Terminology,
    medication: dict[str, Any],
    dose: tuple[float, str],
    expected: list[str],
) -> None:
    findings = run(record(drafts=[mr("oe-1", medication, dose=dose)]), terminology)
    assert rules(findings) == expected
    for finding in findings:
        assert finding.severity is Severity.CRITICAL
        assert finding.suggestions
        validate_suggestions(finding)


def test_hrt_unopposed_card_names_the_hazard_and_joint_item(terminology: Terminology) -> None:
    [finding] = run(record(drafts=[ORAL]), terminology)
    assert "womb cancer" in finding.summary
    assert "uterus" in finding.summary
    assert "joint item" in finding.detail
    assert finding.topic.code == "hrt-unopposed-oestrogen"
    assert finding.evidence == ("MedicationRequest/oe-1",)


def test_hrt_unopposed_suggestion_creates_progestogen_and_updates_oestrogen(
    terminology: Terminology,
) -> None:
    [finding] = run(record(drafts=[ORAL]), terminology)
    recommended = [s for s in finding.suggestions if s.is_recommended]
    assert len(recommended) == 1
    for suggestion in finding.suggestions:
        create, update = suggestion.actions
        assert create.type == "create"
        assert update.type == "update"
        assert create.resource is not None
        assert update.resource is not None
        group = create.resource["groupIdentifier"]
        assert update.resource["groupIdentifier"] == group
        assert group["system"] == hrt.GROUP_SYSTEM
        assert group["value"].startswith("urn:uuid:")
        assert update.resource["id"] == "oe-1"
        assert hrt.JOINT_ITEM_PROFILE in update.resource["meta"]["profile"]
        assert create.resource["meta"]["profile"] == [hrt.JOINT_ITEM_PROFILE]
        assert create.resource["status"] == "draft"
        assert create.resource["subject"] == SUBJECT
        assert create.resource["requester"] == {"reference": "Practitioner/dr-1"}
    validate_suggestions(finding)


def test_hrt_group_identifier_is_stable_across_calls(terminology: Terminology) -> None:
    first = run(record(drafts=[ORAL]), terminology)[0]
    again = run(
        record(
            drafts=[ORAL], hook="order-select", context={"selections": ["MedicationRequest/oe-1"]}
        ),
        terminology,
    )[0]
    group = first.suggestions[0].actions[0].resource["groupIdentifier"]  # type: ignore[index]
    assert again.suggestions[0].actions[0].resource["groupIdentifier"] == group  # type: ignore[index]


def test_hrt_existing_group_identifier_is_reused_without_update(terminology: Terminology) -> None:
    oestrogen = mr("oe-1", ORAL_2MG, dose=(1, "tablet"), group=GROUP)
    [finding] = run(record(drafts=[oestrogen]), terminology)
    for suggestion in finding.suggestions:
        [create] = suggestion.actions
        assert create.resource is not None
        assert create.resource["groupIdentifier"]["value"] == GROUP


# -- exemptions ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "stored",
    [
        [procedure("h-1", HYSTERECTOMY, "2019-04-02")],
        [procedure("h-1", med("236887006", "Laparoscopic hysterectomy (procedure)"), "2019-04-02")],
        [condition("c-1", HYSTERECTOMY)],
    ],
    ids=["procedure", "laparoscopic", "condition"],
)
def test_hrt_hysterectomy_gives_no_card(
    terminology: Terminology, stored: list[dict[str, Any]]
) -> None:
    assert run(record(drafts=[ORAL], stored=stored), terminology) == []


@pytest.mark.parametrize(
    "stored",
    [
        [procedure("h-1", HYSTERECTOMY, "2019-04-02", status="entered-in-error")],
        [procedure("h-1", HYSTERECTOMY, "2019-04-02", status="not-done")],
        [condition("c-1", HYSTERECTOMY, verification="refuted")],
        [procedure("h-1", med("265047004", "Myomectomy (procedure)"), "2019-04-02")],
    ],
    ids=["entered-in-error", "not-done", "refuted", "uterus-sparing"],
)
def test_hrt_hysterectomy_not_really_done_still_warns(
    terminology: Terminology, stored: list[dict[str, Any]]
) -> None:
    assert rules(run(record(drafts=[ORAL], stored=stored), terminology)) == [
        "hrt-joint-items.unopposed"
    ]


@pytest.mark.parametrize(
    "stored",
    [
        [procedure("h-1", HYSTERECTOMY, "2019-04-02", reasonCode=[ENDOMETRIOSIS])],
        [procedure("h-1", HYSTERECTOMY, "2019-04-02"), condition("c-1", ENDOMETRIOSIS)],
    ],
    ids=["reason-code", "condition"],
)
def test_hrt_hysterectomy_for_endometriosis_gives_info(
    terminology: Terminology, stored: list[dict[str, Any]]
) -> None:
    [finding] = run(record(drafts=[ORAL], stored=stored), terminology)
    assert finding.rule_id == "hrt-joint-items.endometriosis"
    assert finding.severity is Severity.INFO
    assert "endometriosis" in finding.summary.lower()


def test_hrt_hysterectomy_for_endometriosis_with_progestogen_is_silent(
    terminology: Terminology,
) -> None:
    stored = [
        procedure("h-1", HYSTERECTOMY, "2019-04-02", reasonCode=[ENDOMETRIOSIS]),
        mr("pg-1", MPA_10, status="active", group=GROUP),
    ]
    oestrogen = mr("oe-1", ORAL_2MG, dose=(1, "tablet"), group=GROUP)
    assert run(record(drafts=[oestrogen], stored=stored), terminology) == []


def test_hrt_endometriosis_without_hysterectomy_is_an_ordinary_unopposed_card(
    terminology: Terminology,
) -> None:
    findings = run(record(drafts=[ORAL], stored=[condition("c-1", ENDOMETRIOSIS)]), terminology)
    assert rules(findings) == ["hrt-joint-items.unopposed"]


def test_hrt_male_patient_gives_no_card(terminology: Terminology) -> None:
    assert run(record(drafts=[ORAL], gender="male"), terminology) == []


# -- draft and active combinations -------------------------------------------------------


@pytest.mark.parametrize(
    ("drafts", "stored", "expected"),
    [
        # draft oestrogen + draft progestogen, joined: nothing to say
        ([mr("oe-1", ORAL_2MG, group=GROUP), mr("pg-1", UTROGESTAN, group=GROUP)], [], []),
        # draft + draft, not joined: warning
        (
            [mr("oe-1", ORAL_2MG), mr("pg-1", UTROGESTAN)],
            [],
            ["hrt-joint-items.not-joined"],
        ),
        # draft oestrogen + active progestogen, joined
        (
            [mr("oe-1", ORAL_2MG, group=GROUP)],
            [mr("pg-1", MPA_10, status="active", group=GROUP)],
            [],
        ),
        # draft oestrogen + active progestogen, not joined
        (
            [mr("oe-1", ORAL_2MG)],
            [mr("pg-1", MPA_10, status="active")],
            ["hrt-joint-items.not-joined"],
        ),
        # active oestrogen + draft progestogen, not joined
        (
            [mr("pg-1", UTROGESTAN)],
            [mr("oe-1", ORAL_2MG, status="active")],
            ["hrt-joint-items.not-joined"],
        ),
        # active oestrogen + draft progestogen, joined
        (
            [mr("pg-1", UTROGESTAN, group=GROUP)],
            [mr("oe-1", ORAL_2MG, status="active", group=GROUP)],
            [],
        ),
        # active oestrogen + active progestogen, nothing being ordered: order-sign is silent
        ([], [mr("oe-1", ORAL_2MG, status="active"), mr("pg-1", MPA_10, status="active")], []),
        # draft oestrogen + stopped progestogen: unopposed
        (
            [mr("oe-1", ORAL_2MG)],
            [mr("pg-1", MPA_10, status="stopped")],
            ["hrt-joint-items.unopposed"],
        ),
        # draft oestrogen + an order cancelling the active progestogen: unopposed
        (
            [mr("oe-1", ORAL_2MG), mr("pg-1", MPA_10, status="cancelled")],
            [mr("pg-1", MPA_10, status="active")],
            ["hrt-joint-items.unopposed"],
        ),
        # draft oestrogen + active progestogen MedicationStatement: protected (cannot be joined)
        ([mr("oe-1", ORAL_2MG)], [statement("ms-1", UTROGESTAN, "2026-01-01")], []),
        # draft oestrogen + stopped progestogen statement: unopposed
        (
            [mr("oe-1", ORAL_2MG)],
            [statement("ms-1", UTROGESTAN, "2026-01-01", status="stopped")],
            ["hrt-joint-items.unopposed"],
        ),
        # draft oestrogen + active combined HRT: protected, nothing to join
        ([mr("oe-1", ORAL_2MG)], [mr("c-1", COMBINED, status="active")], []),
        # draft oestrogen on hold counts as not being ordered
        ([mr("oe-1", ORAL_2MG, status="on-hold")], [], []),
    ],
    ids=[
        "draft-draft-joined",
        "draft-draft-apart",
        "draft-active-joined",
        "draft-active-apart",
        "active-draft-apart",
        "active-draft-joined",
        "active-active",
        "stopped-progestogen",
        "cancelling-order",
        "statement",
        "stopped-statement",
        "combined",
        "on-hold-draft",
    ],
)
def test_hrt_draft_and_active_combinations(
    terminology: Terminology,
    drafts: list[dict[str, Any]],
    stored: list[dict[str, Any]],
    expected: list[str],
) -> None:
    findings = run(record(drafts=drafts, stored=stored), terminology)
    assert rules(findings) == expected
    for finding in findings:
        validate_suggestions(finding)


def test_hrt_not_joined_suggestion_updates_both_orders_with_one_group(
    terminology: Terminology,
) -> None:
    rec = record(drafts=[mr("oe-1", ORAL_2MG)], stored=[mr("pg-1", MPA_10, status="active")])
    [finding] = run(rec, terminology)
    assert finding.severity is Severity.WARNING
    assert finding.topic.code == "hrt-not-joined"
    [suggestion] = finding.suggestions
    assert suggestion.is_recommended
    ids = {a.resource["id"] for a in suggestion.actions}  # type: ignore[index]
    assert ids == {"oe-1", "pg-1"}
    groups = {a.resource["groupIdentifier"]["value"] for a in suggestion.actions}  # type: ignore[index]
    assert len(groups) == 1
    validate_suggestions(finding)


def test_hrt_not_joined_keeps_the_group_one_side_already_has(terminology: Terminology) -> None:
    rec = record(
        drafts=[mr("oe-1", ORAL_2MG)], stored=[mr("pg-1", MPA_10, status="active", group=GROUP)]
    )
    [finding] = run(rec, terminology)
    [action] = finding.suggestions[0].actions
    assert action.resource is not None
    assert action.resource["id"] == "oe-1"
    assert action.resource["groupIdentifier"]["value"] == GROUP


def test_hrt_update_keeps_fields_the_rules_do_not_model(terminology: Terminology) -> None:
    oestrogen = mr("oe-1", ORAL_2MG, dose=(1, "tablet"))
    oestrogen["note"] = [{"text": "patient prefers tablets"}]
    oestrogen["dispenseRequest"] = {"numberOfRepeatsAllowed": 3}
    [finding] = run(record(drafts=[oestrogen]), terminology)
    update = finding.suggestions[0].actions[1].resource
    assert update is not None
    assert update["note"] == [{"text": "patient prefers tablets"}]
    assert update["dispenseRequest"] == {"numberOfRepeatsAllowed": 3}
    assert "groupIdentifier" not in oestrogen  # the request itself is not changed


def test_hrt_order_select_reports_only_the_selected_orders(terminology: Terminology) -> None:
    drafts = [mr("oe-1", ORAL_2MG), mr("other", med("322236009", "Paracetamol 500mg tablets"))]
    selected_other = record(
        drafts=drafts, hook="order-select", context={"selections": ["MedicationRequest/other"]}
    )
    assert run(selected_other, terminology) == []
    selected_oestrogen = record(
        drafts=drafts, hook="order-select", context={"selections": ["MedicationRequest/oe-1"]}
    )
    assert rules(run(selected_oestrogen, terminology)) == ["hrt-joint-items.unopposed"]


# -- LNG-IUS ------------------------------------------------------------------------------


def fitted_for(days_to_change_by: int) -> date:
    """The fitting date whose 5-year change-by date is ``days_to_change_by`` from today."""
    change_by = TODAY + timedelta(days=days_to_change_by)
    return change_by.replace(year=change_by.year - 5)


@pytest.mark.parametrize(
    ("days", "order_sign", "patient_view"),
    [
        (91, [], []),
        (
            90,
            ["hrt-joint-items.lng-ius-change-by-near"],
            ["hrt-joint-items.lng-ius-change-by-near"],
        ),
        (0, ["hrt-joint-items.lng-ius-change-by-near"], ["hrt-joint-items.lng-ius-change-by-near"]),
        (
            -1,
            ["hrt-joint-items.lng-ius-change-by-passed"],
            ["hrt-joint-items.lng-ius-change-by-passed"],
        ),
    ],
    ids=["91-days-before", "90-days-before", "on-the-day", "1-day-after"],
)
def test_hrt_lng_ius_change_by_edges(
    terminology: Terminology, days: int, order_sign: list[str], patient_view: list[str]
) -> None:
    fitted = fitted_for(days)
    change_by = (TODAY + timedelta(days=days)).isoformat()
    draft = mr("oe-1", PATCH_50, dose=(1, "patch"), change_by=change_by)
    signing = run(record(drafts=[draft], stored=mirena_fitted(fitted)), terminology)
    assert rules(signing) == order_sign
    active = mr("oe-1", PATCH_50, status="active", dose=(1, "patch"))
    viewing = run(record(hook="patient-view", stored=[active, *mirena_fitted(fitted)]), terminology)
    assert rules(viewing) == patient_view
    if days < 0:
        assert signing[0].severity is Severity.CRITICAL
        assert viewing[0].severity is Severity.WARNING
        assert signing[0].suggestions  # progestogen until the device is replaced
        validate_suggestions(signing[0])
    elif order_sign:
        assert signing[0].severity is Severity.WARNING
        assert signing[0].facts["days"] == days
        assert viewing[0].severity is Severity.WARNING


def test_hrt_change_by_is_fitting_plus_five_years_not_eight(terminology: Terminology) -> None:
    active = mr("oe-1", PATCH_50, status="active", dose=(1, "patch"))
    rec = record(hook="patient-view", stored=[active, *mirena_fitted(date(2021, 12, 20))])
    [finding] = run(rec, terminology)
    assert finding.facts["change_by"] == "2026-12-20"
    assert "20 Dec 2026" in finding.summary


def test_hrt_change_by_near_suggests_recording_the_date(terminology: Terminology) -> None:
    active = mr("oe-1", PATCH_50, status="active", dose=(1, "patch"))
    active["note"] = [{"text": "keep"}]
    rec = record(hook="patient-view", stored=[active, *mirena_fitted(fitted_for(30))])
    [finding] = run(rec, terminology)
    [suggestion] = finding.suggestions
    [update] = suggestion.actions
    assert update.type == "update"
    assert update.resource is not None
    assert update.resource["extension"] == [
        {"url": hrt.CHANGE_BY_URL, "valueDate": (TODAY + timedelta(days=30)).isoformat()}
    ]
    assert update.resource["note"] == [{"text": "keep"}]
    validate_suggestions(finding)


def test_hrt_change_by_already_recorded_offers_no_update(terminology: Terminology) -> None:
    change_by = (TODAY + timedelta(days=30)).isoformat()
    active = mr("oe-1", PATCH_50, status="active", dose=(1, "patch"), change_by=change_by)
    rec = record(hook="patient-view", stored=[active, *mirena_fitted(fitted_for(30))])
    [finding] = run(rec, terminology)
    assert finding.suggestions == ()


def test_hrt_order_sign_protected_by_ius_asks_to_record_change_by(terminology: Terminology) -> None:
    stored = [statement("ms-1", MIRENA, "2024-06-03")]
    [finding] = run(record(drafts=[ORAL], stored=stored), terminology)
    assert finding.rule_id == "hrt-joint-items.lng-ius-change-by-record"
    assert finding.severity is Severity.INFO
    assert finding.facts["change_by"] == "2029-06-03"
    validate_suggestions(finding)


@pytest.mark.parametrize(
    "stored",
    [
        [statement("ms-1", MIRENA, "2024-06-03")],
        [mr("ius-1", MIRENA, status="completed", authored="2024-06-03")],
        [procedure("p-ius", {"text": "Insertion of IUS"}, "2024-06-03", usedCode=[MIRENA])],
        mirena_fitted(date(2024, 6, 3)),
        [mr("ius-1", MIRENA, status="active", authored="2024-07-01", change_by="2029-06-03")],
    ],
    ids=["statement", "prescription", "procedure-used-code", "device-and-procedure", "extension"],
)
def test_hrt_every_ius_source_gives_the_change_by(
    terminology: Terminology, stored: list[dict[str, Any]]
) -> None:
    active = mr("oe-1", PATCH_50, status="active", dose=(1, "patch"))
    later = datetime(2029, 5, 1, 9, 0, tzinfo=UTC)  # 33 days before 3 June 2029
    [finding] = run(record(hook="patient-view", stored=[active, *stored], now=later), terminology)
    assert finding.facts["change_by"] == "2029-06-03"


def test_hrt_recorded_change_by_later_than_five_years_is_not_trusted(
    terminology: Terminology,
) -> None:
    ius = mr("ius-1", MIRENA, status="completed", authored="2021-11-01", change_by="2029-11-01")
    [finding] = run(record(drafts=[ORAL], stored=[ius]), terminology)
    assert finding.rule_id == "hrt-joint-items.lng-ius-change-by-passed"
    assert finding.facts["change_by"] == "2026-11-01"


def test_hrt_recorded_change_by_later_than_the_prescription_plus_five_years_is_capped(
    terminology: Terminology,
) -> None:
    ius = mr("ius-1", MIRENA, status="completed", authored="2024-01-01", change_by="2029-06-03")
    active = mr("oe-1", PATCH_50, status="active", dose=(1, "patch"))
    later = datetime(2028, 12, 1, 9, 0, tzinfo=UTC)
    [finding] = run(record(hook="patient-view", stored=[active, ius], now=later), terminology)
    assert finding.facts["change_by"] == "2029-01-01"


def test_hrt_change_by_on_the_oestrogen_prescription_counts_as_the_device(
    terminology: Terminology,
) -> None:
    active = mr("oe-1", PATCH_50, status="active", dose=(1, "patch"), change_by="2026-12-20")
    [finding] = run(record(hook="patient-view", stored=[active]), terminology)
    assert finding.rule_id == "hrt-joint-items.lng-ius-change-by-near"
    assert "recorded on this prescription" in finding.detail
    assert finding.evidence == ("MedicationRequest/oe-1",)
    lapsed = mr("oe-1", PATCH_50, dose=(1, "patch"), change_by="2026-11-01")
    [finding] = run(record(drafts=[lapsed]), terminology)
    assert finding.rule_id == "hrt-joint-items.lng-ius-change-by-passed"


def test_hrt_newest_ius_wins(terminology: Terminology) -> None:
    stored = [statement("ms-old", MIRENA, "2020-01-10"), statement("ms-new", MIRENA, "2025-02-01")]
    [finding] = run(record(drafts=[ORAL], stored=stored), terminology)
    assert finding.rule_id == "hrt-joint-items.lng-ius-change-by-record"
    assert finding.facts["change_by"] == "2030-02-01"


@pytest.mark.parametrize(
    "stored",
    [
        [device("dev-1", JAYDESS)],
        [statement("ms-1", JAYDESS, "2025-01-01")],
        [statement("ms-1", {"text": "Kyleena 19.5mg intrauterine device"}, "2025-01-01")],
    ],
    ids=["jaydess-device", "jaydess-statement", "kyleena-text"],
)
def test_hrt_low_dose_ius_never_protects(
    terminology: Terminology, stored: list[dict[str, Any]]
) -> None:
    [finding] = run(record(drafts=[ORAL], stored=stored), terminology)
    assert finding.rule_id == "hrt-joint-items.unopposed"
    assert "13.5 mg and 19.5 mg devices do **not** protect" in finding.detail


def test_hrt_removed_device_does_not_protect(terminology: Terminology) -> None:
    stored = [device("dev-1", MIRENA, status="inactive")]
    assert rules(run(record(drafts=[ORAL], stored=stored), terminology)) == [
        "hrt-joint-items.unopposed"
    ]


def test_hrt_ius_without_fitting_date_warns(terminology: Terminology) -> None:
    [finding] = run(record(drafts=[ORAL], stored=[device("dev-1", MIRENA)]), terminology)
    assert finding.rule_id == "hrt-joint-items.lng-ius-no-date"
    assert finding.severity is Severity.WARNING


def test_hrt_draft_ius_with_the_oestrogen_protects(terminology: Terminology) -> None:
    drafts = [ORAL, mr("ius-1", MIRENA)]
    [finding] = run(record(drafts=drafts), terminology)
    assert finding.rule_id == "hrt-joint-items.lng-ius-change-by-record"
    assert finding.facts["change_by"] == "2031-11-26"


def test_hrt_add_years_moves_29_february_back() -> None:
    assert hrt.add_years(date(2024, 2, 29), 5) == date(2029, 2, 28)
    assert hrt.add_years(date(2021, 12, 20), 5) == date(2026, 12, 20)


# -- doses in each BMS band ---------------------------------------------------------------


def band_of(
    medication: dict[str, Any], dose: tuple[float, str] | None, text: str | None = None
) -> hrt.DoseAssessment:
    request = mr("oe-1", medication, dose=dose, text=text)
    parsed = parse(request)
    assert isinstance(parsed, MedicationRequest)
    product = hrt.oestrogen_product(CodeableConcept.model_validate(medication), DOSES)
    return hrt.assess_dose(product, parsed.dosage_instruction)


@pytest.mark.parametrize(
    ("medication", "dose", "band", "above"),
    [
        # oral estradiol: 0.5 / 1 / 2 / 3 / 4 mg
        (ORAL_1MG, (0.5, "tablet"), "ultra-low", False),
        (ORAL_1MG, (1, "tablet"), "low", False),
        (ORAL_1MG, (1.5, "tablet"), "standard", False),  # between columns: the higher band
        (ORAL_2MG, (1, "tablet"), "standard", False),
        (ORAL_1MG, (3, "tablet"), "moderate", False),
        (ORAL_4MG, (1, "tablet"), "high", False),
        (ORAL_2MG, (3, "tablet"), "high", True),
        (ORAL_2MG, (2, "mg"), "standard", False),  # a dose in mg
        # patch: 12.5 / 25 / 50 / 75 / 100 micrograms per 24 hours
        (PATCH_25, (0.5, "patch"), "ultra-low", False),
        (PATCH_25, (1, "patch"), "low", False),
        (
            med("36065011000001108", "Estradiol 37.5micrograms/24hours transdermal patches"),
            (1, "patch"),
            "standard",
            False,
        ),
        (PATCH_50, (1, "patch"), "standard", False),
        (
            med("36065411000001104", "Estradiol 75micrograms/24hours transdermal patches"),
            (1, "patch"),
            "moderate",
            False,
        ),
        (PATCH_100, (1, "patch"), "high", False),
        (PATCH_100, (2, "patch"), "high", True),
        # Oestrogel: 1/2 / 1 / 2 / 3 / 4 pumps
        (OESTROGEL, (0.5, "pump"), "ultra-low", False),
        (OESTROGEL, (1, "pump"), "low", False),
        (OESTROGEL, (2, "pump"), "standard", False),
        (OESTROGEL, (3, "actuation"), "moderate", False),
        (OESTROGEL, (4, "pump"), "high", False),
        (OESTROGEL, (1.5, "mg"), "standard", False),  # 1.5 mg = 2 pumps
        # Sandrena: 0.25 / 0.5 / 1 / 1.5-2 / 3 mg
        (
            med("3664211000001102", "Estradiol 500microgram gel sachets"),
            (0.5, "sachet"),
            "ultra-low",
            False,
        ),
        (
            med("3664211000001102", "Estradiol 500microgram gel sachets"),
            (1, "sachet"),
            "low",
            False,
        ),
        (SANDRENA_1MG, (1, "sachet"), "standard", False),
        (SANDRENA_1MG, (1.5, "sachet"), "moderate", False),
        (SANDRENA_1MG, (2, "sachet"), "moderate", False),
        (SANDRENA_1MG, (3, "sachet"), "high", False),
        # Lenzetto: 1 / 2 / 3 / 4-5 / 6 sprays
        (LENZETTO, (1, "spray"), "ultra-low", False),
        (LENZETTO, (2, "spray"), "low", False),
        (LENZETTO, (3, "spray"), "standard", False),
        (LENZETTO, (4, "spray"), "moderate", False),
        (LENZETTO, (5, "spray"), "moderate", False),
        (LENZETTO, (6, "spray"), "high", False),
    ],
)
def test_hrt_oestrogen_dose_band(
    medication: dict[str, Any], dose: tuple[float, str], band: str, above: bool
) -> None:
    assessed = band_of(medication, dose)
    assert assessed.band == band
    assert assessed.above_table is above


@pytest.mark.parametrize(
    ("medication", "dose", "text", "band"),
    [
        (OESTROGEL, None, "Apply two pumps daily", "standard"),
        (OESTROGEL, None, "half a pump once a day", "ultra-low"),
        (LENZETTO, None, "3 sprays each morning", "standard"),
        (OESTROGEL, None, "Apply 1 pump twice daily", "standard"),
        (ORAL_2MG, None, None, "standard"),  # no dose: one tablet a day assumed
        (PATCH_50, None, None, "standard"),
        (OESTROGEL, None, None, None),  # no dose: the number of pumps is needed
        (LENZETTO, None, "as directed", None),
        (IMPLANT_50, (1, "implant"), None, None),  # not in the BMS table
        (VALERATE_2MG, (1, "tablet"), None, None),
    ],
)
def test_hrt_oestrogen_dose_from_text_or_unknown(
    medication: dict[str, Any], dose: tuple[float, str] | None, text: str | None, band: str | None
) -> None:
    assessed = band_of(medication, dose, text)
    assert assessed.band == band
    if band is None:
        assert assessed.notes


@pytest.mark.parametrize(
    ("band", "continuous", "sequential"),
    [
        (
            "ultra-low",
            {
                "micronised-progesterone": 100,
                "medroxyprogesterone": Decimal("2.5"),
                "norethisterone": 5,
            },
            {"micronised-progesterone": 200, "medroxyprogesterone": 10, "norethisterone": 5},
        ),
        (
            "low",
            {
                "micronised-progesterone": 100,
                "medroxyprogesterone": Decimal("2.5"),
                "norethisterone": 5,
            },
            {"micronised-progesterone": 200, "medroxyprogesterone": 10, "norethisterone": 5},
        ),
        (
            "standard",
            {"micronised-progesterone": 100, "medroxyprogesterone": 5, "norethisterone": 5},
            {"micronised-progesterone": 200, "medroxyprogesterone": 10, "norethisterone": 5},
        ),
        (
            "moderate",
            {"micronised-progesterone": 100, "medroxyprogesterone": 5, "norethisterone": 5},
            {"micronised-progesterone": 200, "medroxyprogesterone": 10, "norethisterone": 5},
        ),
        (
            "high",
            {"micronised-progesterone": 200, "medroxyprogesterone": 10, "norethisterone": 5},
            {"micronised-progesterone": 300, "medroxyprogesterone": 20, "norethisterone": 5},
        ),
    ],
)
def test_hrt_bms_2024_progestogen_doses_per_band(
    band: str, continuous: dict[str, Any], sequential: dict[str, Any]
) -> None:
    offered = hrt.regimens(hrt.Band(band), ("continuous", "sequential"), "micronised-progesterone")
    got_continuous = {r.progestogen: r.dose_mg for r, _ in offered if r.schedule == "continuous"}
    got_sequential = {r.progestogen: r.dose_mg for r, _ in offered if r.schedule == "sequential"}
    assert got_continuous == {k: Decimal(v) for k, v in continuous.items()}
    assert got_sequential == {k: Decimal(v) for k, v in sequential.items()}


def test_hrt_high_band_suggestions_prescribe_whole_units(terminology: Terminology) -> None:
    oestrogen = mr("oe-1", OESTROGEL, dose=(4, "pump"))
    [finding] = run(record(drafts=[oestrogen], birth="1960-01-01"), terminology)
    assert finding.facts["band"] == "high"
    doses = {
        s.key: s.actions[0].resource["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]  # type: ignore[index]
        for s in finding.suggestions
    }
    assert doses == {
        "add-micronised-progesterone-continuous": {"value": 2, "unit": "capsule"},  # 2 x 100 mg
        "add-medroxyprogesterone-continuous": {"value": 1, "unit": "tablet"},  # 1 x 10 mg
        "add-norethisterone-continuous": {"value": 1, "unit": "tablet"},
    }
    codes = {
        s.key: s.actions[0].resource["medicationCodeableConcept"]["coding"][0]["code"]  # type: ignore[index]
        for s in finding.suggestions
    }
    assert codes["add-micronised-progesterone-continuous"] == "11758911000001105"
    validate_suggestions(finding)


def test_hrt_sequential_high_mpa_is_two_10mg_tablets(terminology: Terminology) -> None:
    oestrogen = mr("oe-1", OESTROGEL, dose=(4, "pump"))
    [finding] = run(record(drafts=[oestrogen]), terminology)
    mpa = next(s for s in finding.suggestions if s.key == "add-medroxyprogesterone-sequential")
    resource = mpa.actions[0].resource
    assert resource is not None
    assert resource["medicationCodeableConcept"]["coding"][0]["code"] == "325601006"
    assert resource["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] == 2
    assert "days 15 to 28" in resource["dosageInstruction"][0]["timing"]["code"]["text"]


def test_hrt_unknown_band_offers_standard_doses_flagged(terminology: Terminology) -> None:
    [finding] = run(record(drafts=[mr("oe-1", IMPLANT_50, dose=(1, "implant"))]), terminology)
    assert finding.severity is Severity.CRITICAL
    assert finding.facts["band"] is None
    assert "needs checking" in finding.detail
    assert all(s.label.endswith("standard dose, check") for s in finding.suggestions)
    for suggestion in finding.suggestions:
        text = suggestion.actions[0].resource["dosageInstruction"][0]["text"]  # type: ignore[index]
        assert "check against the oestrogen dose" in text


@pytest.mark.parametrize(
    ("birth", "schedules"),
    [
        ("1971-11-26", ["continuous"]),  # 55 today
        ("1971-11-27", ["sequential", "continuous"]),  # 55 tomorrow
        (None, ["sequential", "continuous"]),  # age unknown
    ],
)
def test_hrt_schedules_by_age(
    terminology: Terminology, birth: str | None, schedules: list[str]
) -> None:
    [finding] = run(record(drafts=[ORAL], birth=birth), terminology)
    offered = [s.key.rsplit("-", 1)[1] for s in finding.suggestions]
    assert offered[: len(schedules)] == schedules
    assert len(finding.suggestions) == 3 * len(schedules)
    [recommended] = [s for s in finding.suggestions if s.is_recommended]
    assert recommended.key == f"add-micronised-progesterone-{schedules[0]}"


def test_hrt_preferred_progestogen_is_a_setting(terminology: Terminology) -> None:
    settings = HrtSettings(preferred_progestogen="norethisterone")
    [finding] = run(record(drafts=[ORAL], birth="1960-01-01"), terminology, settings)
    assert finding.suggestions[0].key == "add-norethisterone-continuous"
    assert finding.suggestions[0].is_recommended


def test_hrt_progestogen_products_are_endometrial_progestogens(terminology: Terminology) -> None:
    for products in HrtSettings().progestogen_products.values():
        for code in products.values():
            assert terminology.contains("progestogens-endometrial", SNOMED, code)


# -- text-only medicines --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Oestrogel Pump-Pack 0.06% gel", ["hrt-joint-items.unopposed"]),
        ("Evorel 50 patches", ["hrt-joint-items.unopposed"]),
        ("estradiol 2 mg tablets", ["hrt-joint-items.unopposed"]),
        ("Estradiol 10 microgram vaginal tablets", []),
        ("Evorel Conti", []),
        ("Elleste Duet 2mg", []),
    ],
)
def test_hrt_text_only_oestrogen_recognised_by_name(
    terminology: Terminology, text: str, expected: list[str]
) -> None:
    oestrogen = mr("oe-1", {"text": text}, text="Apply 2 pumps daily" if "gel" in text else None)
    findings = run(record(drafts=[oestrogen]), terminology)
    assert rules(findings) == expected
    for finding in findings:
        assert "recognised by name" in finding.detail
        assert "not by code" in finding.detail


def test_hrt_text_only_progestogen_protects(terminology: Terminology) -> None:
    drafts = [
        mr("oe-1", ORAL_2MG, group=GROUP),
        mr("pg-1", {"text": "Utrogestan 100mg capsules"}, group=GROUP),
    ]
    assert run(record(drafts=drafts), terminology) == []


def test_hrt_medication_reference_display_and_contained_medication(
    terminology: Terminology,
) -> None:
    by_display = mr("oe-1", ORAL_2MG)
    del by_display["medicationCodeableConcept"]
    by_display["medicationReference"] = {
        "reference": "Medication/m-1",
        "display": "Estradiol 2mg tablets",
    }
    assert rules(run(record(drafts=[by_display]), terminology)) == ["hrt-joint-items.unopposed"]
    contained = mr("oe-2", ORAL_2MG)
    del contained["medicationCodeableConcept"]
    contained["contained"] = [{"resourceType": "Medication", "id": "med", "code": PATCH_50}]
    contained["medicationReference"] = {"reference": "#med"}
    [finding] = run(record(drafts=[contained]), terminology)
    assert finding.facts["band"] == "standard"


def test_hrt_text_only_product_parser_reads_strengths() -> None:
    assert parse_oestrogen_name("Evorel 75 patches").strength == Decimal(75)
    assert parse_oestrogen_name("Estradot 37.5micrograms/24hours patches").strength == Decimal(
        "37.5"
    )
    assert parse_oestrogen_name("Sandrena 500microgram gel sachets").strength == Decimal("0.5")
    assert parse_oestrogen_name("Oestrogel").strength == Decimal("0.75")
    assert parse_oestrogen_name("Lenzetto spray").strength == Decimal("1.53")
    assert parse_oestrogen_name("estradiol gel").strength is None  # concentration unknown
    assert parse_oestrogen_name("estradiol patch").strength is None
    assert parse_oestrogen_name("Menoring 50 vaginal ring").family == "vaginal-ring-systemic"
    assert parse_oestrogen_name("Premarin 0.625mg").family == "oral-conjugated-oestrogens"
    assert parse_oestrogen_name("Aerodiol nasal spray").family == "nasal-spray"


# -- patient-view and order-dispatch ---------------------------------------------------------


def test_hrt_patient_view_progestogen_stopped_warns(terminology: Terminology) -> None:
    stored = [
        mr("oe-1", OESTROGEL, status="active", dose=(2, "pump"), group=GROUP),
        mr("pg-1", UTROGESTAN, status="stopped", group=GROUP, authored="2026-09-15"),
    ]
    [finding] = run(record(hook="patient-view", stored=stored), terminology)
    assert finding.rule_id == "hrt-joint-items.unopposed"
    assert finding.severity is Severity.WARNING
    assert "Utrogestan 100mg capsules stopped" in finding.summary
    assert "stopped, last changed 15 Sep 2026" in finding.detail
    validate_suggestions(finding)


def test_hrt_patient_view_silent_when_protected_or_not_on_oestrogen(
    terminology: Terminology,
) -> None:
    protected = [
        mr("oe-1", OESTROGEL, status="active", dose=(2, "pump")),
        mr("pg-1", UTROGESTAN, status="active"),  # not joined: not a patient-view card
    ]
    assert run(record(hook="patient-view", stored=protected), terminology) == []
    stopped_oestrogen = [mr("oe-1", OESTROGEL, status="stopped", dose=(2, "pump"))]
    assert run(record(hook="patient-view", stored=stopped_oestrogen), terminology) == []


def dispatch_record(stored: list[dict[str, Any]], orders: list[str]) -> PatientRecord:
    return record(
        hook="order-dispatch",
        stored=stored,
        context={
            "dispatchedOrders": [f"MedicationRequest/{o}" for o in orders],
            "performer": "Organization/pharm-1",
        },
    )


def test_hrt_dispatch_unopposed_is_critical_without_suggestions(terminology: Terminology) -> None:
    rec = dispatch_record([mr("oe-1", ORAL_2MG, status="active", dose=(1, "tablet"))], ["oe-1"])
    [finding] = run(rec, terminology)
    assert finding.severity is Severity.CRITICAL
    assert finding.suggestions == ()
    assert finding.summary.startswith("Supplying Estradiol 2mg tablets without a progestogen")


def test_hrt_dispatch_joint_item_gives_the_label(terminology: Terminology) -> None:
    stored = [
        mr("oe-1", OESTROGEL, status="active", dose=(2, "pump"), group=GROUP),
        mr("pg-1", UTROGESTAN, status="active", group=GROUP),
    ]
    [finding] = run(dispatch_record(stored, ["oe-1", "pg-1"]), terminology)
    assert finding.rule_id == "hrt-joint-items.label"
    assert finding.severity is Severity.INFO
    assert finding.facts["label"].startswith(
        "Use with your progestogen (Utrogestan 100mg capsules)"
    )


def test_hrt_dispatch_not_joined_warns_and_labels(terminology: Terminology) -> None:
    stored = [
        mr("oe-1", OESTROGEL, status="active", dose=(2, "pump")),
        mr("pg-1", UTROGESTAN, status="active"),
    ]
    findings = run(dispatch_record(stored, ["oe-1"]), terminology)
    assert rules(findings) == ["hrt-joint-items.not-joined", "hrt-joint-items.label"]
    assert findings[0].suggestions == ()  # the pharmacist cannot rejoin a prescription


def test_hrt_dispatch_ius_label_gives_the_change_by(terminology: Terminology) -> None:
    stored = [
        mr("oe-1", PATCH_50, status="active", dose=(1, "patch")),
        statement("ms-1", MIRENA, "2024-06-03"),
    ]
    [finding] = run(dispatch_record(stored, ["oe-1"]), terminology)
    assert finding.rule_id == "hrt-joint-items.label"
    assert "03 June 2029" in finding.facts["label"]


def test_hrt_dispatch_ignores_orders_not_dispatched(terminology: Terminology) -> None:
    stored = [
        mr("oe-1", ORAL_2MG, status="active"),
        mr("x-1", med("322236009", "Paracetamol 500mg tablets"), status="active"),
    ]
    assert run(dispatch_record(stored, ["x-1"]), terminology) == []


# -- data that could not be had ------------------------------------------------------------


@pytest.mark.parametrize("hook", ["patient-view", "order-dispatch"])
def test_hrt_medication_requests_unavailable_could_not_check(
    terminology: Terminology, hook: str
) -> None:
    context = {"dispatchedOrders": ["MedicationRequest/oe-1"], "performer": "Organization/x"}
    rec = record(hook=hook, unavailable={"MedicationRequest": "timed out"}, context=context)
    [finding] = run(rec, terminology)
    assert finding.rule_id == "hrt-joint-items.could-not-check"
    assert "timed out" in finding.detail


@pytest.mark.parametrize("missing", ["Procedure", "Device", "MedicationRequest"])
def test_hrt_order_sign_with_gaps_could_not_check_but_offers_regimens(
    terminology: Terminology, missing: str
) -> None:
    [finding] = run(record(drafts=[ORAL], unavailable={missing: "no FHIR server"}), terminology)
    assert finding.rule_id == "hrt-joint-items.could-not-check"
    assert finding.severity is Severity.WARNING
    assert finding.suggestions
    assert not any(s.is_recommended for s in finding.suggestions)
    assert f"{missing}: no FHIR server" in finding.detail


def test_hrt_order_sign_gap_does_not_matter_when_a_draft_progestogen_protects(
    terminology: Terminology,
) -> None:
    drafts = [mr("oe-1", ORAL_2MG, group=GROUP), mr("pg-1", UTROGESTAN, group=GROUP)]
    rec = record(drafts=drafts, unavailable={"MedicationRequest": "x", "Procedure": "y"})
    assert run(rec, terminology) == []


def test_hrt_male_with_unavailable_data_is_silent(terminology: Terminology) -> None:
    rec = record(hook="patient-view", gender="male", unavailable={"MedicationRequest": "x"})
    assert run(rec, terminology) == []


# -- summaries --------------------------------------------------------------------------------


def test_hrt_long_names_keep_summaries_under_140(terminology: Terminology) -> None:
    long_name = {"text": "Estradiol " + "very long product description " * 8 + "2mg tablets"}
    partner = {"text": "Utrogestan " + "extremely long supplier name " * 8}
    findings = run(record(drafts=[mr("oe-1", long_name), mr("pg-1", partner)]), terminology)
    findings += run(record(drafts=[mr("oe-1", long_name)]), terminology)
    assert findings
    assert all(len(f.summary) < 140 for f in findings)


# -- edges of the record reading -------------------------------------------------------------


def test_hrt_stopped_ius_prescription_does_not_protect(terminology: Terminology) -> None:
    stored = [mr("ius-1", MIRENA, status="stopped", authored="2024-06-03")]
    assert rules(run(record(drafts=[ORAL], stored=stored), terminology)) == [
        "hrt-joint-items.unopposed"
    ]


def test_hrt_other_medicines_and_devices_are_ignored(terminology: Terminology) -> None:
    stored = [
        statement("ms-1", med("322236009", "Paracetamol 500mg tablets"), "2026-01-01"),
        device("dev-9", {"text": "Cardiac pacemaker"}),
        procedure("p-9", med("80146002", "Appendectomy (procedure)"), "2001-01-01"),
    ]
    assert rules(run(record(drafts=[ORAL], stored=stored), terminology)) == [
        "hrt-joint-items.unopposed"
    ]


def test_hrt_dose_above_the_table_asks_for_specialist_advice(terminology: Terminology) -> None:
    [finding] = run(record(drafts=[mr("oe-1", PATCH_100, dose=(2, "patch"))]), terminology)
    assert finding.facts["band"] == "high"
    assert "specialist advice" in finding.detail


def test_hrt_dose_range_and_mass_text() -> None:
    ranged = mr("oe-1", ORAL_1MG)
    ranged["dosageInstruction"] = [
        {"doseAndRate": [{"doseRange": {"low": {"value": 1}, "high": {"value": 3}}}]}
    ]
    assert band_of_request(ranged).band == "moderate"  # the top of the range
    by_text = mr("oe-1", ORAL_1MG, text="2mg daily")
    assert band_of_request(by_text).band == "standard"
    odd = mr("oe-1", ORAL_1MG)
    odd["dosageInstruction"] = [{"doseAndRate": ["x", {"doseQuantity": {"value": "lots"}}]}]
    assessed = band_of_request(odd)
    assert assessed.band == "low"  # no usable dose: one tablet assumed
    assert "one tablet assumed" in assessed.notes[0]


def band_of_request(request: dict[str, Any]) -> hrt.DoseAssessment:
    parsed = parse(request)
    assert isinstance(parsed, MedicationRequest)
    concept = CodeableConcept.model_validate(request["medicationCodeableConcept"])
    return hrt.assess_dose(hrt.oestrogen_product(concept, DOSES), parsed.dosage_instruction)


def test_hrt_unknown_product_has_no_band() -> None:
    assessed = hrt.assess_dose(None, [])
    assert assessed.band is None
    assert assessed.notes == ("the product's strength is not known",)
    gel = parse_oestrogen_name("estradiol gel")
    assert hrt.assess_dose(gel, []).notes == ("the product's strength could not be read",)


def test_hrt_suggestion_carries_the_encounter(terminology: Terminology) -> None:
    [finding] = run(record(drafts=[ORAL], context={"encounterId": "enc-1"}), terminology)
    create = finding.suggestions[0].actions[0].resource
    assert create is not None
    assert create["encounter"] == {"reference": "Encounter/enc-1"}


def test_hrt_regimen_without_a_product_is_not_offered(terminology: Terminology) -> None:
    products = {
        k: v for k, v in HrtSettings().progestogen_products.items() if k != "norethisterone"
    }
    settings = HrtSettings(progestogen_products=products)
    [finding] = run(record(drafts=[ORAL], birth="1960-01-01"), terminology, settings)
    assert [s.key for s in finding.suggestions] == [
        "add-micronised-progesterone-continuous",
        "add-medroxyprogesterone-continuous",
    ]


def test_hrt_invalid_contained_medication_falls_back_to_the_display(
    terminology: Terminology,
) -> None:
    request = mr("oe-1", ORAL_2MG)
    del request["medicationCodeableConcept"]
    request["contained"] = [{"resourceType": "Medication", "id": "med", "code": "not a concept"}]
    request["medicationReference"] = {"reference": "#med", "display": "Estradiol 2mg tablets"}
    [finding] = run(record(drafts=[request]), terminology)
    assert finding.rule_id == "hrt-joint-items.unopposed"
    assert "recognised by name" in finding.detail


def test_hrt_dispatch_label_for_a_change_by_on_the_prescription(terminology: Terminology) -> None:
    stored = [mr("oe-1", PATCH_50, status="active", dose=(1, "patch"), change_by="2029-06-03")]
    [finding] = run(dispatch_record(stored, ["oe-1"]), terminology)
    assert finding.rule_id == "hrt-joint-items.label"
    assert finding.facts["label"].startswith("Use with your hormonal coil (52 mg LNG-IUS)")
    assert finding.evidence == ("MedicationRequest/oe-1",)


# -- RxNorm-coded orders (non-UK EHRs) ------------------------------------------------------------

RX = "http://www.nlm.nih.gov/research/umls/rxnorm"


def rx(code: str, display: str | None = None) -> dict[str, Any]:
    coding: dict[str, Any] = {"system": RX, "code": code}
    if display:
        coding["display"] = display
    return {"coding": [coding]}


@pytest.mark.parametrize(
    ("medication", "dose", "expected", "by_code"),
    [
        (rx("197658"), (1, "tablet"), ["hrt-joint-items.unopposed"], True),  # estradiol 1 MG tab
        (rx("238003"), (1, "patch"), ["hrt-joint-items.unopposed"], True),  # 0.00208 MG/HR patch
        (rx("1000355"), (1, "tablet"), [], True),  # conjugated estrogens/MPA (Prempro)
        # Not listed (vaginal insert 884707): its RxNorm name keeps it exempt, said by name.
        (rx("884707", "estradiol 0.01 MG Vaginal Insert"), (1, "insert"), [], False),
        # Not listed (an estradiol gel): its name makes it systemic, and the card says so.
        (
            rx("1310418", "estradiol 0.75 MG/ACTUAT Topical Gel"),
            (2, "pump"),
            ["hrt-joint-items.unopposed"],
            False,
        ),
    ],
    ids=["oral-listed", "patch-listed", "combined-listed", "vaginal-unlisted", "gel-unlisted"],
)
def test_hrt_rxnorm_coded_orders(
    terminology: Terminology,
    medication: dict[str, Any],
    dose: tuple[float, str],
    expected: list[str],
    by_code: bool,
) -> None:
    findings = run(record(drafts=[mr("oe-1", medication, dose=dose)]), terminology)
    assert rules(findings) == expected
    for finding in findings:
        assert ("recognised by name" in finding.detail) is not by_code
        validate_suggestions(finding)


@pytest.mark.parametrize(
    ("code", "unit", "band"),
    [
        ("197657", "tablet", "ultra-low"),  # estradiol 0.5 MG Oral Tablet
        ("197659", "tablet", "standard"),  # estradiol 2 MG Oral Tablet
        ("242333", "patch", "low"),  # 168 HR estradiol 0.00104 MG/HR (25 micrograms/24 h)
        ("403922", "patch", "standard"),  # 0.00156 MG/HR = 37.5: between columns, the higher
        ("238003", "patch", "standard"),  # 168 HR estradiol 0.00208 MG/HR (50 micrograms/24 h)
        ("238004", "patch", "high"),  # 168 HR estradiol 0.00417 MG/HR (100 micrograms/24 h)
    ],
)
def test_hrt_rxnorm_products_are_banded_from_the_dose_table(
    code: str, unit: str, band: str
) -> None:
    assert band_of(rx(code), (1, unit)).band == band
