"""The terminology engine: membership, name matching and its precedence, loading errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fhir_safety.domain import PROJECT_CANONICAL
from fhir_safety.errors import TerminologyError
from fhir_safety.fhir.resources import CodeableConcept, Coding
from fhir_safety.terminology import (
    ATC,
    RXNORM,
    SNOMED,
    CodeMatch,
    Terminology,
    load_default_terminology,
    normalise_text,
)

EPILIM_CHRONO_500 = "739111000001100"  # clinical.md section 3.1 [S22]
CARD_TOPIC = f"{PROJECT_CANONICAL}/CodeSystem/card-topic"


def concept(
    text: str | None = None, *codings: tuple[str | None, str | None, str | None]
) -> CodeableConcept:
    return CodeableConcept(
        text=text, coding=[Coding(system=s, code=c, display=d) for s, c, d in codings]
    )


def test_load_default_terminology_is_cached() -> None:
    assert load_default_terminology() is load_default_terminology()


def test_value_set_ids_lists_required_sets(terminology: Terminology) -> None:
    required = {
        "valproate-products", "hrt-oestrogen-systemic", "hrt-combined", "vaginal-oestrogen-low-dose",
        "progestogens-endometrial", "lng-ius-52mg", "lng-ius-low-dose", "hysterectomy",
        "pregnancy-risk-absent", "pregnancy-current", "news2-total-score", "news2-subscores", "acvpu",
        "inspired-oxygen", "vital-respiratory-rate", "vital-oxygen-saturation", "vital-systolic-bp",
        "vital-blood-pressure-panel", "vital-heart-rate", "vital-body-temperature",
        "learning-disability", "autism", "reasonable-adjustment-flag-codes", "pelvic-mesh-procedures",
        "valproate-araf", "discharge-care-plan-category", "endometriosis",
    }  # fmt: skip
    assert required <= terminology.value_set_ids()


@pytest.mark.parametrize(
    ("value_set", "system", "code", "expected"),
    [
        ("valproate-products", SNOMED, EPILIM_CHRONO_500, True),
        ("valproate-products", ATC, "N03AG01", True),
        ("valproate-products", SNOMED, "325545004", False),  # estradiol 1mg tablets
        ("hrt-oestrogen-systemic", SNOMED, "325545004", True),
        ("hrt-combined", SNOMED, "325662001", True),
        ("vaginal-oestrogen-low-dose", SNOMED, "24576211000001108", True),
        ("progestogens-endometrial", SNOMED, "11758911000001105", True),
        ("lng-ius-52mg", SNOMED, "3493211000001100", True),
        ("lng-ius-52mg", SNOMED, "24408111000001100", False),  # Jaydess generic
        ("lng-ius-low-dose", SNOMED, "24408111000001100", True),
        ("hysterectomy", SNOMED, "236886002", True),
        ("hysterectomy", SNOMED, "42010004", False),  # uterine myomectomy
        ("news2-total-score", SNOMED, "1104051000000101", True),
        ("vital-heart-rate", "http://loinc.org", "8867-4", True),
        ("valproate-products", "https://dmd.nhs.uk", EPILIM_CHRONO_500, True),  # dm+d alias
        ("valproate-products", None, EPILIM_CHRONO_500, False),
        ("valproate-products", SNOMED, None, False),
    ],
)
def test_contains_checks_membership(
    terminology: Terminology, value_set: str, system: str | None, code: str | None, expected: bool
) -> None:
    assert terminology.contains(value_set, system, code) is expected


def test_contains_unknown_value_set_raises(terminology: Terminology) -> None:
    with pytest.raises(TerminologyError, match="unknown value set"):
        terminology.contains("no-such-set", SNOMED, "123")


def test_match_unknown_value_set_raises(terminology: Terminology) -> None:
    with pytest.raises(TerminologyError):
        terminology.match("no-such-set", concept("Epilim"))


def test_expansion_unknown_value_set_raises(terminology: Terminology) -> None:
    with pytest.raises(TerminologyError):
        terminology.expansion("no-such-set")


def test_match_code_returns_code_match_with_our_display(terminology: Terminology) -> None:
    found = terminology.match(
        "valproate-products", concept(None, (SNOMED, EPILIM_CHRONO_500, "whatever"))
    )
    assert found == CodeMatch(
        "valproate-products",
        "code",
        SNOMED,
        EPILIM_CHRONO_500,
        terminology.display(SNOMED, EPILIM_CHRONO_500),
        None,
    )


def test_match_second_coding_matches_by_code(terminology: Terminology) -> None:
    found = terminology.match(
        "valproate-products",
        concept(None, ("http://example.org/local", "X1", "Epilim"), (ATC, "N03AG01", None)),
    )
    assert found is not None
    assert (found.by, found.system, found.code) == ("code", ATC, "N03AG01")


def test_match_text_only_epilim_chrono_matches_valproate_by_name(terminology: Terminology) -> None:
    found = terminology.match("valproate-products", concept("Epilim Chrono 500mg"))
    assert found is not None
    assert (found.by, found.matched_text, found.display) == (
        "name",
        "epilim chrono",
        "Epilim Chrono 500mg",
    )
    assert found.system is None
    assert found.code is None


def test_match_coding_display_only_matches_by_name(terminology: Terminology) -> None:
    found = terminology.match(
        "valproate-products", concept(None, (None, None, "Sodium valproate 200mg tablets"))
    )
    assert found is not None
    assert found.by == "name"


def test_match_known_system_code_not_in_set_does_not_fall_back_to_name(
    terminology: Terminology,
) -> None:
    # A SNOMED-coded estradiol product whose display mentions valproate by mistake stays a no:
    # we hold SNOMED codes, so the code decides.
    coded = concept("sodium valproate", (SNOMED, "325545004", "Estradiol 1mg tablets"))
    assert terminology.match("valproate-products", coded) is None


def test_match_rxnorm_code_we_list_matches_by_code(terminology: Terminology) -> None:
    coded = concept(None, (RXNORM, "1099681", None))
    found = terminology.match("valproate-products", coded)
    assert found is not None
    assert (found.by, found.system, found.code) == ("code", RXNORM, "1099681")
    assert found.display == "valproic acid 250 MG Oral Capsule"


def test_match_rxnorm_code_we_do_not_list_falls_back_to_name(terminology: Terminology) -> None:
    # RxNorm is held in part, so an unlisted RxNorm code does not decide: the name does.
    coded = concept("valproate sodium 100 MG/ML Injectable Solution", (RXNORM, "1099648", None))
    found = terminology.match("valproate-products", coded)
    assert found is not None
    assert found.by == "name"


def test_match_atc_code_decides_for_valproate_but_not_for_hormones(
    terminology: Terminology,
) -> None:
    # ATC is held in full for valproate (N03AG01 covers all valproates): another ATC code is a no.
    lamotrigine = concept("valproate", (ATC, "N03AX09", None))
    assert terminology.match("valproate-products", lamotrigine) is None
    # No ATC hormone codes ship (G03CA03 is systemic and vaginal), so names decide there.
    estradiol = concept("Estradiol 10 microgram vaginal tablets", (ATC, "G03CA03", None))
    assert terminology.match("hrt-oestrogen-systemic", estradiol) is None
    vaginal = terminology.match("vaginal-oestrogen-low-dose", estradiol)
    assert vaginal is not None
    assert vaginal.by == "name"


def test_match_code_in_a_sibling_set_decides_over_the_name(terminology: Terminology) -> None:
    # An RxNorm combined-HRT code whose text reads like estradiol alone is combined, not systemic.
    prempro = concept("Premarin 0.625 mg", (RXNORM, "1000355", None))
    assert terminology.match("hrt-oestrogen-systemic", prempro) is None
    found = terminology.match("hrt-combined", prempro)
    assert found is not None
    assert found.by == "code"


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("197658", "hrt-oestrogen-systemic"),  # estradiol 1 MG Oral Tablet
        ("238003", "hrt-oestrogen-systemic"),  # 168 HR estradiol 0.00208 MG/HR Transdermal System
        ("1359126", "hrt-combined"),  # estradiol 1 MG / norethindrone acetate 0.5 MG Oral Tablet
        ("1000405", "progestogens-endometrial"),  # norethindrone acetate 5 MG Oral Tablet
        ("804156", "lng-ius-52mg"),  # levonorgestrel 0.000833 MG/HR IUS (Mirena)
        ("1811886", "lng-ius-low-dose"),  # levonorgestrel 0.000729 MG/HR IUS (Kyleena)
    ],
)
def test_match_rxnorm_hormone_codes_land_in_one_set(
    terminology: Terminology, code: str, expected: str
) -> None:
    hormone_sets = sorted(terminology.name_rule_ids() - {"valproate-products"})
    coded = concept(None, (RXNORM, code, None))
    found = [vs for vs in hormone_sets if terminology.match(vs, coded) is not None]
    assert found == [expected]


def test_match_unlisted_rxnorm_vaginal_estradiol_is_read_by_name(
    terminology: Terminology,
) -> None:
    # 884707 (estradiol 10 mcg vaginal insert) is not shipped: its name still keeps it exempt.
    coded = concept("estradiol 0.01 MG Vaginal Insert", (RXNORM, "884707", None))
    assert terminology.match("hrt-oestrogen-systemic", coded) is None
    assert terminology.match("vaginal-oestrogen-low-dose", coded) is not None


def test_held_in_full_systems_per_medicine_set(terminology: Terminology) -> None:
    assert terminology.held_in_full("valproate-products") == {SNOMED, ATC}
    assert terminology.held_in_full("hrt-oestrogen-systemic") == {SNOMED}
    assert terminology.held_in_full("hysterectomy") == frozenset()


def test_match_word_boundary_prevents_partial_names(terminology: Terminology) -> None:
    assert terminology.match("valproate-products", concept("Epilimx 500")) is None
    assert terminology.match("hrt-oestrogen-systemic", concept("Oestradiolix gel")) is None


def test_match_none_concept_is_no_match(terminology: Terminology) -> None:
    assert terminology.match("valproate-products", None) is None


def test_match_non_medicine_set_has_no_name_matching(terminology: Terminology) -> None:
    assert terminology.match("hysterectomy", concept("Total hysterectomy")) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Estradiol 10 microgram vaginal tablets", "vaginal-oestrogen-low-dose"),
        ("estriol 0.1% cream", "vaginal-oestrogen-low-dose"),
        ("Vagifem 10mcg", "vaginal-oestrogen-low-dose"),
        ("Premarin vaginal cream", "vaginal-oestrogen-low-dose"),
        ("Menoring 50 vaginal ring", "hrt-oestrogen-systemic"),
        ("Estradiol 2mg tablets", "hrt-oestrogen-systemic"),
        ("Evorel 50 patches", "hrt-oestrogen-systemic"),
        ("Oestrogel pump", "hrt-oestrogen-systemic"),
        ("Evorel Conti patches", "hrt-combined"),
        ("Femoston 1/10", "hrt-combined"),
        ("Estradiol 1mg / norethisterone acetate 500 microgram", "hrt-combined"),
        ("Oestrogel and Utrogestan", "hrt-combined"),
        ("Utrogestan 100mg capsules", "progestogens-endometrial"),
        ("Medroxyprogesterone 10 mg tablets", "progestogens-endometrial"),
        ("Mirena", "lng-ius-52mg"),
        ("Levonorgestrel 52 mg intrauterine system", "lng-ius-52mg"),
        ("levonorgestrel 20 micrograms/24 hours IUS", "lng-ius-52mg"),
        ("Jaydess", "lng-ius-low-dose"),
        ("levonorgestrel 19.5 mg IUS", "lng-ius-low-dose"),
        ("Utrogestan 200mg vaginal capsules", None),
        ("Depo-Provera 150mg injection", None),
        ("Micronor 350 microgram tablets", None),
        ("levonorgestrel intrauterine system", None),
    ],
)
def test_match_name_precedence_picks_one_hormone_set(
    terminology: Terminology, text: str, expected: str | None
) -> None:
    hormone_sets = sorted(terminology.name_rule_ids() - {"valproate-products"})
    matched = [vs for vs in hormone_sets if terminology.match(vs, concept(text))]
    assert matched == ([expected] if expected else [])


def test_match_precedence_spans_text_and_displays(terminology: Terminology) -> None:
    # The vaginal form in the coding display wins over the bare name in the text.
    mixed = concept("Estradiol", (None, None, "Estradiol 10microgram pessaries"))
    assert terminology.match("hrt-oestrogen-systemic", mixed) is None
    assert terminology.match("vaginal-oestrogen-low-dose", mixed) is not None


@pytest.mark.parametrize(
    ("system", "code", "expected"),
    [
        (SNOMED, EPILIM_CHRONO_500, True),
        (CARD_TOPIC, "news2", True),  # project CodeSystem concept
        (SNOMED, "24408111000001100", True),
        (SNOMED, "999999999", False),
        (None, "news2", False),
        (SNOMED, None, False),
    ],
)
def test_is_known_code_covers_sets_and_code_systems(
    terminology: Terminology, system: str | None, code: str | None, expected: bool
) -> None:
    assert terminology.is_known_code(system, code) is expected


def test_display_reads_code_systems_and_expansions(terminology: Terminology) -> None:
    assert terminology.display(CARD_TOPIC, "news2") == "NEWS2"
    assert terminology.display(SNOMED, "236886002") == "Hysterectomy (procedure)"
    assert terminology.display(SNOMED, "0") is None


def test_expansion_returns_system_code_display_rows(terminology: Terminology) -> None:
    rows = terminology.expansion("acvpu")
    assert (SNOMED, "248234008", "Mentally alert") in rows
    assert len(rows) == 5


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [("Levonorgestrel  13.5 mg\tIUS", "levonorgestrel 13.5mg ius"), ("EPILIM", "epilim")],
)
def test_normalise_text_joins_numbers_and_units(raw: str, normalised: str) -> None:
    assert normalise_text(raw) == normalised


# -- loading errors -------------------------------------------------------------------------

VS_ID = "tiny"


def _value_set(**overrides: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "ValueSet",
        "id": VS_ID,
        "url": f"{PROJECT_CANONICAL}/ValueSet/{VS_ID}",
        "expansion": {
            "timestamp": "2026-11-26T00:00:00Z",
            "total": 1,
            "contains": [{"system": SNOMED, "code": "1", "display": "One"}],
        },
    }
    resource.update(overrides)
    return resource


def _write(directory: Path, name: str, resource: Any) -> None:
    (directory / name).write_text(json.dumps(resource), encoding="utf-8")


def test_load_minimal_directory_works(tmp_path: Path) -> None:
    _write(tmp_path, f"ValueSet-{VS_ID}.json", _value_set())
    loaded = Terminology.load(tmp_path)
    assert loaded.value_set_ids() == {VS_ID}
    assert loaded.contains(VS_ID, SNOMED, "1")


@pytest.mark.parametrize(
    ("filename", "resource", "message"),
    [
        ("ValueSet-tiny.json", _value_set(id="other"), "does not match file name"),
        ("ValueSet-tiny.json", _value_set(url="http://x/ValueSet/tiny"), "url must be"),
        ("ValueSet-tiny.json", _value_set(expansion={"contains": []}), "no precomputed expansion"),
        ("ValueSet-tiny.json", _value_set(resourceType="CodeSystem"), "resourceType"),
        ("Tiny.json", _value_set(), "expected ValueSet-<id>.json"),
        ("ValueSet-tiny.json", [1, 2], "not a JSON object"),
    ],
)
def test_load_inconsistent_file_raises(
    tmp_path: Path, filename: str, resource: Any, message: str
) -> None:
    _write(tmp_path, filename, resource)
    with pytest.raises(TerminologyError, match=message):
        Terminology.load(tmp_path)


def test_load_miscounted_expansion_raises(tmp_path: Path) -> None:
    resource = _value_set()
    resource["expansion"]["total"] = 2
    _write(tmp_path, f"ValueSet-{VS_ID}.json", resource)
    with pytest.raises(TerminologyError, match="total"):
        Terminology.load(tmp_path)


def test_load_code_system_codes_are_known(tmp_path: Path) -> None:
    _write(tmp_path, f"ValueSet-{VS_ID}.json", _value_set())
    code_system = {
        "resourceType": "CodeSystem",
        "id": "cs",
        "url": f"{PROJECT_CANONICAL}/CodeSystem/cs",
        "concept": [{"code": "a", "display": "A"}],
    }
    _write(tmp_path, "CodeSystem-cs.json", code_system)
    loaded = Terminology.load(tmp_path)
    assert loaded.is_known_code(f"{PROJECT_CANONICAL}/CodeSystem/cs", "a")
    assert loaded.display(f"{PROJECT_CANONICAL}/CodeSystem/cs", "a") == "A"


def test_load_code_system_without_concepts_raises(tmp_path: Path) -> None:
    _write(tmp_path, f"ValueSet-{VS_ID}.json", _value_set())
    _write(
        tmp_path,
        "CodeSystem-cs.json",
        {"resourceType": "CodeSystem", "id": "cs", "url": f"{PROJECT_CANONICAL}/CodeSystem/cs"},
    )
    with pytest.raises(TerminologyError, match="no concepts"):
        Terminology.load(tmp_path)


def test_load_bad_json_raises(tmp_path: Path) -> None:
    (tmp_path / f"ValueSet-{VS_ID}.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(TerminologyError, match="cannot read JSON"):
        Terminology.load(tmp_path)


def test_load_missing_directory_raises(tmp_path: Path) -> None:
    with pytest.raises(TerminologyError, match="not found"):
        Terminology.load(tmp_path / "absent")


@pytest.mark.parametrize(
    ("names", "message"),
    [
        ({"unknown-set": {"group": "g", "priority": 1, "names": ["x"]}}, "unknown value set"),
        ({VS_ID: {"group": "g", "priority": 1}}, "no names"),
        ({VS_ID: {"group": "g", "priority": "1", "names": ["x"]}}, "int priority"),
        ({VS_ID: {"group": "g", "priority": 1, "names": []}}, "non-empty list"),
    ],
)
def test_load_bad_medicine_names_raises(tmp_path: Path, names: Any, message: str) -> None:
    _write(tmp_path, f"ValueSet-{VS_ID}.json", _value_set())
    _write(tmp_path, "medicine-names.json", names)
    with pytest.raises(TerminologyError, match=message):
        Terminology.load(tmp_path)


def test_load_shared_priority_in_group_raises(tmp_path: Path) -> None:
    _write(tmp_path, f"ValueSet-{VS_ID}.json", _value_set())
    _write(
        tmp_path,
        "ValueSet-other.json",
        _value_set(id="other", url=f"{PROJECT_CANONICAL}/ValueSet/other"),
    )
    entry = {"group": "g", "priority": 1, "names": ["x"]}
    _write(tmp_path, "medicine-names.json", {VS_ID: entry, "other": entry})
    with pytest.raises(TerminologyError, match="share priority"):
        Terminology.load(tmp_path)


def test_terminology_https_snomed_uri_is_read_as_snomed(terminology: Terminology) -> None:
    # NHS England's RA examples write https://snomed.info/sct; the codes are SNOMED CT.
    system, code, _ = terminology.expansion("autism")[0]
    assert terminology.contains("autism", "https://snomed.info/sct", code)
    assert system == "http://snomed.info/sct"
