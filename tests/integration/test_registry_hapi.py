"""The valproate registry against real HAPI: its classification equals the generator's truth.

The synthetic population is written to HAPI with its ids prefixed, so other tests' synthetic
data on the same (session-wide) server cannot mix with it; the registry reads the whole
server, and its rows for our patients are compared with the ground truth computed
independently by the generator (which scenario each patient was built as).
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections import Counter
from typing import Any

import httpx
import pytest

from fhir_safety.config import Settings
from fhir_safety.fhir.client import FhirClient
from fhir_safety.services import registry, synth
from fhir_safety.terminology import Terminology

pytestmark = pytest.mark.integration

_REFERENCE = re.compile(r"^(?P<type>[A-Z][A-Za-z]+)/(?P<id>[A-Za-z0-9\-.]+)$")


def _prefixed(value: Any, prefix: str) -> Any:
    """The resource with every id and relative reference prefixed."""
    if isinstance(value, dict):
        out = {k: _prefixed(v, prefix) for k, v in value.items()}
        if "resourceType" in out and "id" in out:
            out["id"] = f"{prefix}{value['id']}"
        return out
    if isinstance(value, list):
        return [_prefixed(v, prefix) for v in value]
    if isinstance(value, str) and (match := _REFERENCE.match(value)):
        return f"{match['type']}/{prefix}{match['id']}"
    return value


def _upload(base_url: str, resources: list[dict[str, Any]]) -> None:
    for start in range(0, len(resources), 200):
        batch = resources[start : start + 200]
        bundle = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {
                    "resource": r,
                    "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"},
                }
                for r in batch
            ],
        }
        response = httpx.post(base_url, json=bundle, timeout=300)
        assert response.status_code == 200, response.text[:2000]


@pytest.fixture(scope="module")
def uploaded(
    loaded_hapi: str, terminology: Terminology
) -> tuple[str, list[synth.SyntheticPatient]]:
    """A synthetic population on HAPI, its ids prefixed: (prefix, population)."""
    population = synth.generate(
        patients=150, seed=2026, terminology=terminology, valproate_rate=0.5
    )
    prefix = f"reg{uuid.uuid4().hex[:6]}-"
    resources = [_prefixed(r, prefix) for person in population for r in person.resources]
    _upload(loaded_hapi, resources)
    return prefix, population


def _gather(
    base_url: str, terminology: Terminology, method: registry.GatherMethod
) -> registry.Gathered:
    now = synth.snapshot_time(synth.DEFAULT_AS_OF)
    # HAPI's batch jobs start on a 5 s maintenance pass (docs/hapi.md): poll every second.
    settings = Settings.model_validate(
        {"bulk_export": {"first_poll_seconds": 1.0, "max_poll_seconds": 2.0}}
    )

    async def gather() -> registry.Gathered:
        async with httpx.AsyncClient(timeout=120) as http:
            client = FhirClient(http, base_url, max_pages=1000)
            return await registry.gather(client, terminology, settings, now, method=method)

    return asyncio.run(gather())


def _our_rows(
    gathered: registry.Gathered, terminology: Terminology, prefix: str
) -> dict[str, registry.RegistryRow]:
    now = synth.snapshot_time(synth.DEFAULT_AS_OF)
    built = registry.build_registry(
        gathered.patients, settings=Settings(), terminology=terminology, now=now, source="t"
    )
    return {
        row.patient_id.removeprefix(prefix): row
        for row in built.rows
        if row.patient_id.startswith(prefix)
    }


@pytest.mark.parametrize("method", ["search", "export"])
def test_registry_on_hapi_matches_the_generators_ground_truth(
    loaded_hapi: str,
    terminology: Terminology,
    uploaded: tuple[str, list[synth.SyntheticPatient]],
    method: registry.GatherMethod,
) -> None:
    prefix, population = uploaded
    gathered = _gather(loaded_hapi, terminology, method)
    ours = _our_rows(gathered, terminology, prefix)
    truth = {p.patient_id: p.expected_action for p in population if p.expected_action}
    assert {pid: row.action_status for pid, row in ours.items()} == truth
    expected = Counter(truth.values())
    assert Counter(row.action_status for row in ours.values()) == expected
    assert all(not row.data_gaps for row in ours.values())  # every read worked on HAPI
    wording = "system-level $export" if method == "export" else "paged search"
    assert wording in gathered.source


def test_registry_on_hapi_by_export_equals_the_search_row_for_row(
    loaded_hapi: str,
    terminology: Terminology,
    uploaded: tuple[str, list[synth.SyntheticPatient]],
) -> None:
    """HAPI offers $export, so "auto" exports; every field of every row equals the search's."""
    prefix, _ = uploaded
    exported = _gather(loaded_hapi, terminology, "auto")
    searched = _gather(loaded_hapi, terminology, "search")
    assert "$export" in exported.source
    assert _our_rows(exported, terminology, prefix) == _our_rows(searched, terminology, prefix)
