"""Upload profiles, terminology and demo data to a FHIR server, idempotently.

Everything goes up as transaction Bundles of ``PUT Type/id`` entries, so loading
twice leaves the server as loading once. When the server rejects a
transaction, its entries are retried one by one to name the resource at fault
and the server's reason.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fhir_safety.errors import FhirError, FhirUnavailableError, RequestError
from fhir_safety.fhir.client import FhirClient

__all__ = ["LoadItem", "LoadRejectedError", "collect_load_items", "load_items"]

# Conformance resources first: data may name their profiles and codes.
_ORDER = {"CodeSystem": 0, "ValueSet": 1, "StructureDefinition": 2}
_BATCH = 50
# NHS England's Reasonable Adjustment profiles, transcribed (profiles/nhs-england-ra/README.md).
NHS_ENGLAND_RA_FOLDER = "nhs-england-ra"


@dataclass(frozen=True, slots=True)
class LoadItem:
    source: Path
    resource: dict[str, Any]

    @property
    def reference(self) -> str:
        return f"{self.resource['resourceType']}/{self.resource['id']}"


class LoadRejectedError(FhirError):
    """The server refused one resource; the message names it and says why."""


def collect_load_items(repo_root: Path, *, with_examples: bool = True) -> list[LoadItem]:
    """terminology/, profiles/ (with the NHS England RA transcription, not the examples) and,
    optionally, examples/**/*.bundle.json."""
    folders = (
        repo_root / "terminology",
        repo_root / "profiles",
        repo_root / "profiles" / NHS_ENGLAND_RA_FOLDER,
    )
    items = [
        _item(path)
        for folder in folders
        for pattern in ("CodeSystem-*.json", "ValueSet-*.json", "StructureDefinition-*.json")
        for path in sorted(folder.glob(pattern))
    ]
    if with_examples:
        for path in sorted((repo_root / "examples").rglob("*.bundle.json")):
            items.extend(_bundle_items(path))
    return sorted(items, key=lambda item: _ORDER.get(item.resource["resourceType"], 9))


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise RequestError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict) or "resourceType" not in data:
        raise RequestError(f"{path} is not a FHIR resource")
    return data


def _item(path: Path) -> LoadItem:
    resource = _read(path)
    if not resource.get("id"):
        raise RequestError(f"{path}: a resource to load needs an id (loading is by id)")
    return LoadItem(path, resource)


def _bundle_items(path: Path) -> list[LoadItem]:
    bundle = _read(path)
    if bundle["resourceType"] != "Bundle":
        raise RequestError(f"{path} is not a Bundle")
    items = []
    for entry in bundle.get("entry") or []:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict) or not resource.get("id"):
            raise RequestError(f"{path}: every entry needs a resource with an id")
        items.append(LoadItem(path, resource))
    return items


async def load_items(
    client: FhirClient,
    items: Sequence[LoadItem],
    *,
    on_progress: Callable[[int], None] = lambda _: None,
) -> int:
    """PUT every item in transactions; returns how many were loaded."""
    loaded = 0
    for batch in _batches(items, _BATCH):
        try:
            await client.post("", _transaction(batch))
        except FhirUnavailableError:
            raise
        except FhirError:
            await _find_rejected(client, batch)
            raise  # the batch failed but every single entry passed: report the batch
        loaded += len(batch)
        on_progress(len(batch))
    return loaded


def _batches(items: Sequence[LoadItem], size: int) -> Iterable[Sequence[LoadItem]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _transaction(batch: Sequence[LoadItem]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": item.reference,
                "resource": item.resource,
                "request": {"method": "PUT", "url": item.reference},
            }
            for item in batch
        ],
    }


async def _find_rejected(client: FhirClient, batch: Sequence[LoadItem]) -> None:
    for item in batch:
        try:
            await client.put(item.resource)
        except FhirError as exc:
            raise LoadRejectedError(
                f"the server rejected {item.reference} (from {item.source}): {exc.message}"
            ) from exc
