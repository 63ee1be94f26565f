"""The shipped terminology/ files: valid R4, self-consistent, and honest about their sources."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B.codesystem import CodeSystem
from fhir.resources.R4B.valueset import ValueSet

from fhir_safety.config import REPO_ROOT
from fhir_safety.domain import PROJECT_CANONICAL

TERMINOLOGY = REPO_ROOT / "terminology"
NOTE_URL = f"{PROJECT_CANONICAL}/StructureDefinition/curation-note"
SCT = "http://snomed.info/sct"
VALUE_SET_FILES = sorted(TERMINOLOGY.glob("ValueSet-*.json"))
CODE_SYSTEM_FILES = sorted(TERMINOLOGY.glob("CodeSystem-*.json"))
ALL_FILES = VALUE_SET_FILES + CODE_SYSTEM_FILES

# Codes that ../shared/reference/clinical.md marks UNVERIFIED and that therefore must not ship
# as verified codes in any file (any system), with the clinical.md line each comes from.
UNVERIFIED_CODES = {
    "161800001": "section 3.3: 'H/O hysterectomy (situation) | 161800001 ... display **UNVERIFIED**'",
    "1366381000000107": "section 3.2: 'Valproate-related referral ... display **UNVERIFIED**'",
    "G03DB01": "section 4.2: 'dydrogesterone G03DB01 ... **UNVERIFIED** (standard WHO values)'",
    "G03DC02": "section 4.2: 'norethisterone G03DC02 ... **UNVERIFIED**'",
    "G03CA57": "section 4.2: 'conjugated oestrogens G03CA57 ... **UNVERIFIED**'",
    "G03CA04": "section 4.2: 'estriol G03CA04 ... **UNVERIFIED**'",
    "T83.7": "section 7: 'ICD-10 (5th ed.) T83.7 ... **UNVERIFIED**'",
    "88330-6": "section 1.4: 'some open-source IGs use LOINC 88330-6 for NEWS ... Do not use.'",
}

# Codes whose *code* clinical.md verifies (used in production or present in gm-sde) but whose
# FSN/label it calls UNVERIFIED. They may ship only with a curation note that says so, or with
# the display taken from a list that does verify it.
FSN_UNVERIFIED_WITH_NOTE = {
    "1366401000000107": "section 3.2: ARAF 'old' (2018) - code from NCL [S23]; FSN **UNVERIFIED**",
    "2078951000000106": "section 3.2: ARAF 'new' (2024) - code from NCL [S23]; FSN **UNVERIFIED**",
}
LABEL_VERIFIED_ELSEWHERE = {
    # section 3.3: '29827000 (in NCL PREGRISK list; display not given in source - UNVERIFIED label)'
    "29827000": "Excision of bilateral fallopian tubes and ovaries (procedure)",  # gm-sde oophorectomy
}


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _ids(paths: list[Path]) -> list[str]:
    return [p.name for p in paths]


@pytest.mark.parametrize("path", VALUE_SET_FILES, ids=_ids(VALUE_SET_FILES))
def test_value_set_file_parses_as_r4_valueset(path: Path) -> None:
    ValueSet.model_validate(_load(path))


@pytest.mark.parametrize("path", CODE_SYSTEM_FILES, ids=_ids(CODE_SYSTEM_FILES))
def test_code_system_file_parses_as_r4_codesystem(path: Path) -> None:
    resource = CodeSystem.model_validate(_load(path))
    assert resource.count == len(resource.concept or [])


@pytest.mark.parametrize("path", ALL_FILES, ids=_ids(ALL_FILES))
def test_terminology_file_metadata_matches_conventions(path: Path) -> None:
    resource = _load(path)
    resource_type, resource_id = path.stem.split("-", 1)
    assert resource["resourceType"] == resource_type
    assert resource["id"] == resource_id
    assert resource["url"] == f"{PROJECT_CANONICAL}/{resource_type}/{resource_id}"
    assert resource["version"] == "0.1.0"
    assert resource["status"] == "active"
    assert resource["publisher"] == "fhir-safety"
    assert re.fullmatch(r"[A-Z][A-Za-z0-9]*", resource["name"])
    assert resource["title"]
    assert len(resource["description"]) > 80


def test_terminology_urls_are_unique() -> None:
    urls = [_load(p)["url"] for p in ALL_FILES]
    assert len(urls) == len(set(urls))


@pytest.mark.parametrize("path", VALUE_SET_FILES, ids=_ids(VALUE_SET_FILES))
def test_value_set_expansion_equals_compose_minus_excludes(path: Path) -> None:
    resource = _load(path)
    compose = resource["compose"]

    def codes(entries: list[dict[str, Any]]) -> set[tuple[str, str]]:
        return {(e["system"], c["code"]) for e in entries for c in e["concept"]}

    expected = codes(compose["include"]) - codes(compose.get("exclude", []))
    contains = resource["expansion"]["contains"]
    got = [(c["system"], c["code"]) for c in contains]
    assert len(got) == len(set(got)), "expansion lists a code twice"
    assert set(got) == expected
    assert resource["expansion"]["total"] == len(got)
    assert resource["expansion"]["timestamp"] == "2026-11-26T00:00:00Z"


@pytest.mark.parametrize("path", VALUE_SET_FILES, ids=_ids(VALUE_SET_FILES))
def test_value_set_compose_entries_carry_curation_note(path: Path) -> None:
    compose = _load(path)["compose"]
    for entry in compose["include"] + compose.get("exclude", []):
        notes = [e for e in entry.get("extension", []) if e["url"] == NOTE_URL]
        assert len(notes) == 1, entry["system"]
        assert len(notes[0]["valueString"]) > 20
        assert "filter" not in entry, "keep includes enumerated"
        assert "valueSet" not in entry, "keep includes enumerated"


@pytest.mark.parametrize("path", VALUE_SET_FILES, ids=_ids(VALUE_SET_FILES))
def test_value_set_expansion_displays_match_compose(path: Path) -> None:
    resource = _load(path)
    composed = {
        (e["system"], c["code"]): c["display"]
        for e in resource["compose"]["include"]
        for c in e["concept"]
    }
    for item in resource["expansion"]["contains"]:
        assert item["display"] == composed[(item["system"], item["code"])]


def _every_coding() -> list[tuple[str, str, str, str]]:
    """(file, system, code, display) for every concept in every file, includes and excludes."""
    rows = []
    for path in VALUE_SET_FILES:
        resource = _load(path)
        compose = resource["compose"]
        for entry in compose["include"] + compose.get("exclude", []):
            rows += [
                (path.name, entry["system"], c["code"], c["display"]) for c in entry["concept"]
            ]
    for path in CODE_SYSTEM_FILES:
        resource = _load(path)
        rows += [(path.name, resource["url"], c["code"], c["display"]) for c in resource["concept"]]
    return rows


def test_terminology_unverified_codes_ship_nowhere() -> None:
    found = [(f, s, c) for f, s, c, _ in _every_coding() if c in UNVERIFIED_CODES]
    assert found == []


def test_terminology_fsn_unverified_codes_carry_an_unverified_note() -> None:
    for path in VALUE_SET_FILES:
        for entry in _load(path)["compose"]["include"]:
            codes = {c["code"] for c in entry["concept"]}
            if codes & set(FSN_UNVERIFIED_WITH_NOTE):
                assert entry["system"] == SCT
                assert "UNVERIFIED" in entry["extension"][0]["valueString"], path.name


def test_terminology_label_unverified_codes_use_the_verified_display() -> None:
    for _, system, code, display in _every_coding():
        if code in LABEL_VERIFIED_ELSEWHERE:
            assert (system, display) == (SCT, LABEL_VERIFIED_ELSEWHERE[code])


@pytest.mark.parametrize("path", CODE_SYSTEM_FILES, ids=_ids(CODE_SYSTEM_FILES))
def test_project_code_system_description_says_why(path: Path) -> None:
    description = _load(path)["description"].lower()
    assert "project code system" in description
    assert "national code" in description


def test_medicine_names_refer_to_shipped_value_sets() -> None:
    names = _load(TERMINOLOGY / "medicine-names.json")
    ids = {p.stem.split("-", 1)[1] for p in VALUE_SET_FILES}
    entries = {k: v for k, v in names.items() if not k.startswith("_")}
    assert set(entries) <= ids
    for entry in entries.values():
        assert entry["source"]
        assert entry["note"]
        assert all(n == n.lower() for n in entry.get("names", []))


def test_hormone_value_sets_do_not_overlap() -> None:
    sets = [
        "hrt-oestrogen-systemic",
        "hrt-combined",
        "vaginal-oestrogen-low-dose",
        "progestogens-endometrial",
        "lng-ius-52mg",
        "lng-ius-low-dose",
    ]
    members = {
        vs: {c["code"] for c in _load(TERMINOLOGY / f"ValueSet-{vs}.json")["expansion"]["contains"]}
        for vs in sets
    }
    for i, first in enumerate(sets):
        for second in sets[i + 1 :]:
            assert not members[first] & members[second], (first, second)
