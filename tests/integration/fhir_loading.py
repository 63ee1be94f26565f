"""Put the project's conformance resources on a FHIR server, and ask it to $validate.

``load_conformance`` PUTs every CodeSystem and ValueSet of ``terminology/`` and every
StructureDefinition of ``profiles/`` (profiles and extensions), code systems first so that
value sets can expand, then value sets, then profiles. PUT by id makes it idempotent.

    with httpx.Client(timeout=120) as http:
        loaded = load_conformance(hapi_base_url, http)
        outcome = validate(hapi_base_url, http, resource, profile_url)
        errors = error_messages(outcome)
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

__all__ = [
    "NHS_ENGLAND_RA",
    "PROFILES",
    "REPO_ROOT",
    "TERMINOLOGY",
    "ConformanceLoadError",
    "conformance_files",
    "error_messages",
    "issues",
    "load_conformance",
    "validate",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
TERMINOLOGY = REPO_ROOT / "terminology"
PROFILES = REPO_ROOT / "profiles"
# NHS England's RA profiles and code systems, transcribed (profiles/nhs-england-ra/README.md).
NHS_ENGLAND_RA = PROFILES / "nhs-england-ra"

FHIR_JSON = "application/fhir+json"
_ORDER = ("CodeSystem", "ValueSet", "StructureDefinition")


class ConformanceLoadError(RuntimeError):
    """The server refused a conformance resource; the message names the file and the reason."""


def conformance_files(terminology: Path = TERMINOLOGY, profiles: Path = PROFILES) -> list[Path]:
    """CodeSystems, then ValueSets, then StructureDefinitions, each sorted by file name.

    All of them go up before the first $validate: HAPI caches code validation, so a ValueSet
    loaded later would not be seen until the server restarts.
    """
    folders = (terminology, profiles / NHS_ENGLAND_RA.name)
    return [
        *(p for folder in folders for p in sorted(folder.glob("CodeSystem-*.json"))),
        *(p for folder in folders for p in sorted(folder.glob("ValueSet-*.json"))),
        *sorted(profiles.glob("StructureDefinition-*.json")),
        *sorted((profiles / NHS_ENGLAND_RA.name).glob("StructureDefinition-*.json")),
    ]


def _resources(paths: list[Path]) -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in paths:
        try:
            resource = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:  # a file being rewritten, or bad JSON
            raise ConformanceLoadError(f"cannot read {path}: {exc}") from exc
        if resource.get("resourceType") not in _ORDER or not resource.get("id"):
            raise ConformanceLoadError(
                f"{path}: not a CodeSystem/ValueSet/StructureDefinition with an id"
            )
        yield path, resource


def load_conformance(
    base_url: str,
    http: httpx.Client,
    *,
    terminology: Path = TERMINOLOGY,
    profiles: Path = PROFILES,
) -> list[str]:
    """PUT ``{base}/{Type}/{id}`` for every conformance file; returns the references loaded."""
    base = base_url.rstrip("/")
    loaded = []
    for path, resource in _resources(conformance_files(terminology, profiles)):
        reference = f"{resource['resourceType']}/{resource['id']}"
        response = http.put(
            f"{base}/{reference}",
            content=json.dumps(resource).encode("utf-8"),
            headers={"Content-Type": FHIR_JSON, "Accept": FHIR_JSON},
        )
        if not response.is_success:
            raise ConformanceLoadError(
                f"PUT {reference} (from {path.name}) failed with HTTP {response.status_code}: "
                f"{_diagnostics(response)}"
            )
        loaded.append(reference)
    return loaded


def validate(
    base_url: str, http: httpx.Client, resource: dict[str, Any], profile: str
) -> dict[str, Any]:
    """``POST {base}/{Type}/$validate?profile=<url>``; returns the OperationOutcome.

    HAPI answers 200 when the resource is valid and 412 (with the same OperationOutcome) when
    it is not; anything else is a failure of the call, not of the resource.
    """
    response = http.post(
        f"{base_url.rstrip('/')}/{resource['resourceType']}/$validate",
        params={"profile": profile},
        content=json.dumps(resource).encode("utf-8"),
        headers={"Content-Type": FHIR_JSON, "Accept": FHIR_JSON},
    )
    if response.status_code not in (httpx.codes.OK, httpx.codes.PRECONDITION_FAILED):
        raise ConformanceLoadError(
            f"$validate of {resource['resourceType']}/{resource.get('id')} answered HTTP "
            f"{response.status_code}: {_diagnostics(response)}"
        )
    outcome: dict[str, Any] = response.json()
    return outcome


def issues(outcome: dict[str, Any], *severities: str) -> list[dict[str, Any]]:
    """The OperationOutcome's issues of the given severities (all issues if none given)."""
    found: list[dict[str, Any]] = outcome.get("issue", [])
    return [i for i in found if not severities or i.get("severity") in severities]


def error_messages(outcome: dict[str, Any]) -> list[str]:
    """Diagnostics of the error and fatal issues, each prefixed with its location."""
    return [
        f"{', '.join(issue.get('location', []))}: {issue.get('diagnostics', '')}"
        for issue in issues(outcome, "error", "fatal")
    ]


def _diagnostics(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:2000]
    if isinstance(body, dict) and body.get("resourceType") == "OperationOutcome":
        return "; ".join(str(issue.get("diagnostics", "")) for issue in body.get("issue", []))
    return response.text[:2000]
