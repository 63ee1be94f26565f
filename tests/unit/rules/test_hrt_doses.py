"""The HRT oestrogen dose table: complete, consistent with the ValueSet and the name parser."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from fhir_safety.config import REPO_ROOT
from fhir_safety.errors import TerminologyError
from fhir_safety.hrt_doses import (
    BANDED_FAMILIES,
    DOSE_TABLE_FILE,
    FAMILIES,
    HrtDoseTable,
    load_hrt_dose_table,
    parse_oestrogen_name,
)
from fhir_safety.terminology import SNOMED, Terminology

TABLE_PATH = REPO_ROOT / "terminology" / DOSE_TABLE_FILE


def rows() -> list[dict[str, Any]]:
    data: dict[str, Any] = json.loads(TABLE_PATH.read_text(encoding="utf-8"))
    products: list[dict[str, Any]] = data["products"]
    return products


def test_hrt_dose_table_covers_every_systemic_oestrogen_code(terminology: Terminology) -> None:
    expansion = {(s, c): d for s, c, d in terminology.expansion("hrt-oestrogen-systemic")}
    table = {(r["system"], r["code"]): r["display"] for r in rows()}
    assert table == expansion


def test_hrt_dose_table_agrees_with_the_name_parser() -> None:
    for row in rows():
        parsed = parse_oestrogen_name(row["display"])
        assert parsed.family == row["family"], row
        expected = Decimal(row["strength"]) if row["strength"] is not None else None
        assert parsed.strength == expected, row


def test_hrt_dose_table_banded_rows_have_strengths() -> None:
    table = load_hrt_dose_table(REPO_ROOT / "terminology")
    for row in rows():
        product = table.lookup(row["system"], row["code"])
        assert product is not None
        assert product.by == "table"
        if product.family in BANDED_FAMILIES:
            assert product.strength is not None
            assert product.strength > 0


def test_hrt_dose_table_lookup_reads_dmd_as_snomed() -> None:
    table = load_hrt_dose_table(REPO_ROOT / "terminology")
    assert table.lookup("https://dmd.nhs.uk", "325546003") == table.lookup(SNOMED, "325546003")
    assert table.lookup(SNOMED, "no-such-code") is None
    assert table.lookup(None, "325546003") is None


def test_hrt_dose_table_sub_folder_is_not_read_as_a_value_set() -> None:
    loaded = Terminology.load(REPO_ROOT / "terminology")
    assert "hrt-oestrogen-systemic" in loaded.value_set_ids()


def test_hrt_dose_table_families_documented() -> None:
    data = json.loads(TABLE_PATH.read_text(encoding="utf-8"))
    assert set(data["families"]) == set(FAMILIES)
    assert data["_sources"]


ROW = {
    "system": SNOMED,
    "code": "1",
    "display": "Estradiol 1mg tablets",
    "family": "oral-estradiol",
}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, "no 'products'"),
        ({"products": []}, "no 'products'"),
        ({"products": ["x"]}, "not an object"),
        ({"products": [{**ROW, "strength": "1"}, {**ROW, "strength": "1"}]}, "listed twice"),
        ({"products": [{**ROW, "family": "pill"}]}, "unknown family"),
        ({"products": [ROW]}, "needs its strength"),
        ({"products": [{**ROW, "strength": "lots"}]}, "not a number"),
        ({"products": [{**ROW, "strength": "0"}]}, "positive"),
        ({"products": [{"code": "1"}]}, "needs system, code and display"),
    ],
)
def test_hrt_dose_table_rejects_inconsistent_rows(data: Any, message: str) -> None:
    with pytest.raises(TerminologyError, match=message):
        HrtDoseTable.from_json(data)


def test_hrt_dose_table_missing_file_raises(tmp_path: Path) -> None:
    with pytest.raises(TerminologyError, match="cannot read"):
        load_hrt_dose_table(tmp_path)


@pytest.mark.parametrize(
    ("name", "family", "strength"),
    [
        # RxNorm writes release rates per hour; the labelled daily dose is the nearest 0.5 microgram.
        ("168 HR estradiol 0.00104 MG/HR Transdermal System", "patch", "25"),
        ("168 HR estradiol 0.00156 MG/HR Transdermal System", "patch", "37.5"),
        ("84 HR estradiol 0.00208 MG/HR Transdermal System", "patch", "50"),
        ("84 HR estradiol 0.00313 MG/HR Transdermal System", "patch", "75"),
        ("168 HR estradiol 0.00417 MG/HR Transdermal System", "patch", "100"),
        ("estradiol acetate 0.05 MG/DAY Vaginal Ring", "vaginal-ring-systemic", "50"),
        ("estradiol 0.75 MG/ACTUAT Topical Gel", "gel-pump", "0.75"),
        ("estradiol 0.52 MG/ACTUAT Metered Dose Pump", "gel-pump", "0.52"),
        ("estradiol 1.53 MG/ACTUAT Metered Dose Spray", "spray", "1.53"),
        ("estrogens, esterified (USP) 0.625 MG Oral Tablet", "oral-other", "0.625"),
        ("estradiol 1 MG Oral Tablet", "oral-estradiol", "1"),
    ],
)
def test_parse_rxnorm_style_names(name: str, family: str, strength: str) -> None:
    parsed = parse_oestrogen_name(name)
    assert parsed.family == family
    assert parsed.strength == Decimal(strength)
