"""The shipped profiles/: valid R4 StructureDefinitions, named by convention, with examples.

No server here: ``tests/integration/test_profiles_hapi.py`` asks a real HAPI server to
``$validate`` the examples against the profiles.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.structuredefinition import StructureDefinition

from fhir_safety.config import REPO_ROOT
from fhir_safety.domain import PROJECT_CANONICAL

PROFILES = REPO_ROOT / "profiles"
EXAMPLES = PROFILES / "examples"
TERMINOLOGY = REPO_ROOT / "terminology"
EXPECTED_ERRORS_FILE = EXAMPLES / "expected-errors.json"
CORE = "http://hl7.org/fhir/StructureDefinition/"
# Bound by a profile but not yet written by the terminology side: expected to fail until the
# file appears in terminology/, then checked like every other binding.
PENDING_VALUE_SETS = {
    f"{PROJECT_CANONICAL}/ValueSet/concern-level": (
        "terminology/ has CodeSystem-concern-level.json but no ValueSet-concern-level.json yet"
    ),
}

SD_FILES = sorted(PROFILES.glob("StructureDefinition-*.json"))
EXAMPLE_FILES = sorted(p for p in EXAMPLES.glob("*-*.json") if p != EXPECTED_ERRORS_FILE)
VALID_EXAMPLES = [p for p in EXAMPLE_FILES if p.stem.endswith("-valid")]
INVALID_EXAMPLES = [p for p in EXAMPLE_FILES if "-invalid-" in p.stem]
EXAMPLE_NAME = re.compile(
    r"^(?P<type>[A-Z][A-Za-z]+)-(?P<profile>[a-z0-9-]+?)-(valid|invalid-[a-z0-9-]+)$"
)


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _names(paths: list[Path]) -> list[str]:
    return [p.name for p in paths]


def _sds() -> dict[str, dict[str, Any]]:
    return {sd["url"]: sd for sd in map(_load, SD_FILES)}


def _resource_profiles() -> dict[str, dict[str, Any]]:
    return {url: sd for url, sd in _sds().items() if sd["type"] != "Extension"}


def _terminology_urls(resource_type: str) -> set[str]:
    return {_load(p)["url"] for p in TERMINOLOGY.glob(f"{resource_type}-*.json")}


def _code_system_concepts() -> dict[tuple[str, str], str]:
    concepts = {}
    for path in TERMINOLOGY.glob("CodeSystem-*.json"):
        resource = _load(path)
        for concept in resource["concept"]:
            concepts[(resource["url"], concept["code"])] = concept["display"]
    return concepts


def _walk(value: Any) -> list[dict[str, Any]]:
    """Every JSON object inside ``value``, depth first."""
    found: list[dict[str, Any]] = []
    if isinstance(value, dict):
        found.append(value)
        for item in value.values():
            found += _walk(item)
    elif isinstance(value, list):
        for item in value:
            found += _walk(item)
    return found


def _strip_slices(element_id: str) -> str:
    return ".".join(part.split(":")[0] for part in element_id.split("."))


def _example_profile_id(path: Path) -> str:
    match = EXAMPLE_NAME.match(path.stem)
    assert match is not None, f"{path.name}: expected <Type>-<profile-id>-valid|invalid-<what>.json"
    return match.group("profile")


# -- StructureDefinitions ----------------------------------------------------------------------


def test_profiles_directory_has_structure_definitions() -> None:
    assert len(SD_FILES) >= 8


@pytest.mark.parametrize("path", SD_FILES, ids=_names(SD_FILES))
def test_structure_definition_file_parses_as_r4b_model(path: Path) -> None:
    StructureDefinition.model_validate(_load(path))


@pytest.mark.parametrize("path", SD_FILES, ids=_names(SD_FILES))
def test_structure_definition_metadata_follows_conventions(path: Path) -> None:
    sd = _load(path)
    sd_id = path.stem.removeprefix("StructureDefinition-")
    assert sd["resourceType"] == "StructureDefinition"
    assert sd["id"] == sd_id
    assert sd["url"] == f"{PROJECT_CANONICAL}/StructureDefinition/{sd_id}"
    assert sd["version"] == "0.1.0"
    assert sd["status"] == "active"
    assert sd["publisher"] == "fhir-safety"
    assert sd["fhirVersion"] == "4.0.1"
    assert sd["derivation"] == "constraint"
    assert re.fullmatch(r"[A-Z][A-Za-z0-9]*", sd["name"])
    assert sd["title"]


@pytest.mark.parametrize("path", SD_FILES, ids=_names(SD_FILES))
def test_structure_definition_description_cites_sources_and_uk_core(path: Path) -> None:
    description = _load(path)["description"]
    assert re.search(r"\[S\d+\]", description), "cite clinical.md sources as [Sn]"
    assert "UK Core" in description, (
        "say which UK Core profile it aligns with (or that none exists)"
    )


@pytest.mark.parametrize("path", SD_FILES, ids=_names(SD_FILES))
def test_structure_definition_base_is_core_r4_differential_only(path: Path) -> None:
    sd = _load(path)
    assert sd["baseDefinition"] == f"{CORE}{sd['type']}", "no UK Core base: packages are offline"
    assert "snapshot" not in sd, "differential only: the validator generates the snapshot"
    elements = sd["differential"]["element"]
    assert elements[0]["id"] == sd["type"]


@pytest.mark.parametrize("path", SD_FILES, ids=_names(SD_FILES))
def test_structure_definition_element_ids_match_paths(path: Path) -> None:
    sd = _load(path)
    ids = [element["id"] for element in sd["differential"]["element"]]
    assert len(ids) == len(set(ids)), "an element id is repeated"
    for element in sd["differential"]["element"]:
        assert element["path"] == _strip_slices(element["id"])
        assert element["path"].split(".")[0] == sd["type"]
        last = element["id"].split(".")[-1]
        if ":" in last:
            assert element["sliceName"] == last.split(":", 1)[1]


@pytest.mark.parametrize("path", SD_FILES, ids=_names(SD_FILES))
def test_structure_definition_slices_follow_a_slicing(path: Path) -> None:
    elements = _load(path)["differential"]["element"]
    sliced = {e["id"] for e in elements if "slicing" in e}
    for element in elements:
        if "sliceName" in element:
            assert element["id"].rsplit(":", 1)[0] in sliced, f"{element['id']} has no slicing"


@pytest.mark.parametrize(
    "path",
    [p for p in SD_FILES if _load(p)["type"] == "Extension"],
    ids=_names([p for p in SD_FILES if _load(p)["type"] == "Extension"]),
)
def test_extension_definition_has_context_and_fixed_url(path: Path) -> None:
    sd = _load(path)
    assert sd["kind"] == "complex-type"
    assert sd["context"], "an extension says where it may be used"
    url = next(e for e in sd["differential"]["element"] if e["id"] == "Extension.url")
    assert url["fixedUri"] == sd["url"]


def test_structure_definition_type_profiles_exist_in_profiles() -> None:
    sds = _sds()
    for sd in sds.values():
        for element in sd["differential"]["element"]:
            for element_type in element.get("type", []):
                for url in element_type.get("profile", []):
                    assert url in sds or url.startswith(CORE), f"{sd['id']}: unknown profile {url}"
                for url in element_type.get("targetProfile", []):
                    assert url in sds or url.startswith(CORE), f"{sd['id']}: unknown target {url}"


def _bound_value_sets() -> list[str]:
    return sorted(
        {
            element["binding"]["valueSet"]
            for sd in map(_load, SD_FILES)
            for element in sd["differential"]["element"]
            if "binding" in element
        }
    )


def _binding_params() -> list[Any]:
    """One case per bound ValueSet; a pending one is an expected failure until its file exists."""
    params = []
    for url in _bound_value_sets():
        path = TERMINOLOGY / f"ValueSet-{url.rsplit('/', 1)[1]}.json"
        marks = []
        if url in PENDING_VALUE_SETS and not path.exists():
            marks = [pytest.mark.xfail(reason=PENDING_VALUE_SETS[url], strict=True)]
        params.append(pytest.param(url, id=url.rsplit("/", 1)[1], marks=marks))
    return params


@pytest.mark.parametrize("url", _binding_params())
def test_structure_definition_binding_value_set_exists_in_terminology(url: str) -> None:
    assert url in _terminology_urls("ValueSet"), f"{url} is bound but not in terminology/"


def test_structure_definition_project_codes_exist_in_terminology() -> None:
    """Fixed and pattern codings of a project CodeSystem name a code that the CodeSystem has."""
    concepts = _code_system_concepts()
    code_systems = _terminology_urls("CodeSystem")
    for sd in _sds().values():
        for element in sd["differential"]["element"]:
            for node in _walk(
                {k: v for k, v in element.items() if k.startswith(("pattern", "fixed"))}
            ):
                system = node.get("system")
                if isinstance(system, str) and system.startswith(
                    f"{PROJECT_CANONICAL}/CodeSystem/"
                ):
                    assert system in code_systems, f"{sd['id']}: {system} not in terminology/"
                    assert (system, node["code"]) in concepts, f"{sd['id']}: {node['code']}"


# -- examples ----------------------------------------------------------------------------------


def test_every_profile_has_valid_and_invalid_examples() -> None:
    for sd in _resource_profiles().values():
        prefix = f"{sd['type']}-{sd['id']}-"
        assert EXAMPLES / f"{prefix}valid.json" in VALID_EXAMPLES, f"{sd['id']}: no valid example"
        assert any(p.name.startswith(f"{prefix}invalid-") for p in INVALID_EXAMPLES), sd["id"]


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=_names(EXAMPLE_FILES))
def test_example_meta_profile_names_a_profile_in_profiles(path: Path) -> None:
    resource = _load(path)
    profiles = _resource_profiles()
    (profile_url,) = resource["meta"]["profile"]
    assert profile_url in profiles, f"{profile_url} is not in profiles/"
    sd = profiles[profile_url]
    assert resource["resourceType"] == sd["type"]
    assert path.stem.startswith(f"{sd['type']}-{sd['id']}-")
    assert _example_profile_id(path) == sd["id"]
    assert resource["id"] == path.stem.removeprefix(f"{sd['type']}-")


@pytest.mark.parametrize("path", VALID_EXAMPLES, ids=_names(VALID_EXAMPLES))
def test_valid_example_parses_as_r4b_model(path: Path) -> None:
    resource = _load(path)
    get_fhir_model_class(resource["resourceType"]).model_validate(resource)


@pytest.mark.parametrize("path", VALID_EXAMPLES, ids=_names(VALID_EXAMPLES))
def test_valid_example_project_codings_match_code_systems(path: Path) -> None:
    concepts = _code_system_concepts()
    for node in _walk(_load(path)):
        system = node.get("system")
        if isinstance(system, str) and system.startswith(f"{PROJECT_CANONICAL}/CodeSystem/"):
            assert concepts.get((system, node["code"])) == node.get("display"), node


def test_expected_errors_cover_exactly_the_invalid_examples() -> None:
    expected = _load(EXPECTED_ERRORS_FILE)
    assert sorted(expected) == _names(INVALID_EXAMPLES)
    for name, substring in expected.items():
        assert isinstance(substring, str), name
        assert len(substring) >= 10, f"{name}: substring too vague"
