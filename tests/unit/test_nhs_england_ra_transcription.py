"""profiles/nhs-england-ra/: a transcription of NHS England's RA profiles, said to be one.

HAPI checks the rules themselves (tests/integration/test_nhs_england_ra_hapi.py); here, that
every file says what it is and where it came from, and that nothing it names is missing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fhir_safety.config import REPO_ROOT
from fhir_safety.rules import reasonable_adjustments as ra
from fhir_safety.services.loader import collect_load_items

FOLDER = REPO_ROOT / "profiles" / "nhs-england-ra"
NHSE = "https://fhir.nhs.uk/England"
CORE = "http://hl7.org/fhir/StructureDefinition/"
FILES = sorted(FOLDER.glob("*-*.json"))


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _urls(kind: str) -> set[str]:
    return {_load(p)["url"] for p in FOLDER.glob(f"{kind}-*.json")}


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_each_file_is_marked_as_a_transcription_of_the_pinned_ig(path: Path) -> None:
    resource = _load(path)
    kind, rid = path.stem.split("-", 1)
    assert resource["resourceType"] == kind
    assert resource["id"] == rid
    assert resource["url"] == f"{NHSE}/{kind}/{rid}"
    assert resource["publisher"].startswith("fhir-safety (transcription")
    assert f"NHSDigital/ra-sandbox@{ra.RA_IG_COMMIT}" in resource["description"]
    assert "NOT an NHS England publication" in resource["description"]


def test_value_sets_are_defined_by_compose_so_hapi_can_validate_them() -> None:
    for path in FOLDER.glob("ValueSet-*.json"):
        resource = _load(path)
        assert resource["compose"]["include"], path.name
        assert "expansion" not in resource, path.name


def test_everything_the_profiles_name_is_in_the_folder_or_core() -> None:
    profiles, value_sets = _urls("StructureDefinition"), _urls("ValueSet")
    for path in FOLDER.glob("StructureDefinition-*.json"):
        for element in _load(path)["differential"]["element"]:
            for element_type in element.get("type", []):
                for url in element_type.get("profile", []) + element_type.get("targetProfile", []):
                    assert url in profiles or url.startswith(CORE), f"{path.name}: {url}"
            if "binding" in element:
                assert element["binding"]["valueSet"] in value_sets, f"{path.name}: binding"


def test_the_profiles_our_suggestions_claim_are_all_here() -> None:
    profiles = _urls("StructureDefinition")
    for url in (ra.PATIENT_FLAG_PROFILE, ra.FLAG_CONDITION_PROFILE, ra.FLAG_CONSENT_PROFILE):
        assert url in profiles
    codes = {(c["code"]) for c in _load(FOLDER / "CodeSystem-PatientFlagCategory.json")["concept"]}
    assert ra.NRAF in codes


def test_fhir_safety_load_uploads_the_transcription_before_the_profiles_that_use_it() -> None:
    items = collect_load_items(REPO_ROOT, with_examples=False)
    sources = [item.source for item in items]
    for path in FILES:
        assert path in sources, path.name
    kinds = [item.resource["resourceType"] for item in items]
    assert kinds == sorted(kinds, key=("CodeSystem", "ValueSet", "StructureDefinition").index)
