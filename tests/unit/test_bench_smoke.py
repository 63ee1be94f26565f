"""Smoke tests of bench/: it imports, and its synthetic requests are valid for every service.

No timing here: performance figures live in docs/benchmarks.md (``python -m bench.run``).
"""

from __future__ import annotations

import importlib
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient

from bench import synthetic
from bench.floor_app import create_floor_app
from bench.http_load import held
from bench.loadgen import percentile
from bench.report import evaluate_targets
from fhir_safety.cds.catalogue import CATALOGUE, ServiceDefinition
from fhir_safety.cds.hooks import check_context, hook_spec
from fhir_safety.cds.models import CdsRequest
from fhir_safety.services.record import MODELS, build_record, parse_resource, resolve_prefetch
from fhir_safety.terminology import Terminology

SERVICES = [pytest.param(s, id=f"{s.id}-{s.hook}") for s in CATALOGUE.services]


@pytest.fixture(scope="module")
def typical(terminology: Terminology) -> synthetic.PatientData:
    return synthetic.make_patient(terminology, scale=1)


@pytest.mark.parametrize(
    "module",
    [
        "bench.run",
        "bench.loadgen",
        "bench.floor_app",
        "bench.synthetic",
        "bench.inprocess",
        "bench.http_load",
        "bench.external",
        "bench.servers",
        "bench.report",
    ],
)
def test_bench_module_imports(module: str) -> None:
    assert importlib.import_module(module) is not None


def test_make_patient_typical_has_the_issue_counts(typical: synthetic.PatientData) -> None:
    counts = typical.counts()
    assert counts["Encounter"] == 1
    assert counts["MedicationRequest"] == 30
    # 20 NEWS2 sets of 6 (five vital signs and ACVPU), plus air-or-oxygen and an ARAF.
    assert counts["Observation"] == synthetic.VITAL_SETS * 6 + 2 == 122
    assert (counts["Condition"], counts["Procedure"], counts["Flag"]) == (15, 5, 3)


def test_make_patient_large_is_ten_times_typical(terminology: Terminology) -> None:
    large = synthetic.make_patient(terminology, scale=10)
    assert large.counts()["MedicationRequest"] == 300
    assert large.counts()["Encounter"] == 10


@pytest.mark.parametrize("service", SERVICES)
async def test_synthetic_request_valid_for_service(
    service: ServiceDefinition, typical: synthetic.PatientData, terminology: Terminology
) -> None:
    raw = synthetic.build_request(service, typical, terminology)
    request = CdsRequest.model_validate(raw)
    check_context(hook_spec(service.hook), request.context)
    assert request.prefetch is not None
    assert {t.key for t in service.prefetch} <= set(request.prefetch)
    outcome = await resolve_prefetch(
        service.prefetch, request.context, request.prefetch, None, timeout_seconds=1.0
    )
    assert outcome.unavailable == {}
    record = build_record(
        hook=request.hook,
        context=request.context,
        templates=service.prefetch,
        outcome=outcome,
        now=synthetic.NOW,
        zone=ZoneInfo("Europe/London"),
    )
    for template in service.prefetch:  # a filtered search may rightly find nothing
        value = request.prefetch[template.key]
        if template.is_read:
            assert record.resources.get(template.resource_type), template.key
        else:
            assert value["resourceType"] == "Bundle", template.key
    assert sum(len(items) for items in record.resources.values()) > 0


@pytest.mark.parametrize("service", SERVICES)
def test_synthetic_request_without_prefetch_names_the_server(
    service: ServiceDefinition, typical: synthetic.PatientData, terminology: Terminology
) -> None:
    raw = synthetic.build_request(
        service, typical, terminology, with_prefetch=False, fhir_server="http://127.0.0.1:1/fhir"
    )
    assert "prefetch" not in raw
    assert CdsRequest.model_validate(raw).fhir_server == "http://127.0.0.1:1/fhir"


@pytest.mark.parametrize("resource_type", sorted(MODELS))
def test_minimal_resource_parses_for_every_model(resource_type: str) -> None:
    resource = synthetic.minimal_resource(resource_type, "x-1", "p-1")
    assert parse_resource(resource, "here") is not None


def test_matches_query_filters_category_and_code(terminology: Terminology) -> None:
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"system": "s", "code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "9279-1"}]},
    }
    assert synthetic.matches_query(
        observation, "Observation?patient=p&category=vital-signs", terminology
    )
    assert not synthetic.matches_query(
        observation, "Observation?patient=p&category=survey", terminology
    )
    assert synthetic.matches_query(
        observation, "Observation?code=http://loinc.org|9279-1", terminology
    )
    assert not synthetic.matches_query(observation, "Observation?status=amended", terminology)


def test_transaction_bundle_puts_every_resource(typical: synthetic.PatientData) -> None:
    bundle = synthetic.transaction_bundle(typical)
    assert len(bundle["entry"]) == sum(typical.counts().values())
    assert all(
        e["request"]
        == {"method": "PUT", "url": f"{e['resource']['resourceType']}/{e['resource']['id']}"}
        for e in bundle["entry"]
    )


def test_floor_app_returns_the_given_bytes() -> None:
    with TestClient(create_floor_app(b'{"cards":[]}')) as client:
        response = client.post("/cds-services/anything", json={"hook": "patient-view"})
    assert response.status_code == 200
    assert response.content == b'{"cards":[]}'


@pytest.mark.parametrize(
    ("values", "p", "expected"),
    [
        ([], 50, None),
        ([1.0], 99, 1.0),
        ([1.0, 2.0, 3.0, 4.0], 50, 2.0),
        ([1.0, 2.0, 3.0, 4.0], 99, 4.0),
    ],
)
def test_percentile_nearest_rank(values: list[float], p: float, expected: float | None) -> None:
    assert percentile(values, p) == expected


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        ({"rate": 100.0, "errors": {}, "p99_ms": 20.0, "achieved_rate": 99.0}, True),
        ({"rate": 100.0, "errors": {}, "p99_ms": 120.0, "achieved_rate": 99.0}, False),
        ({"rate": 100.0, "errors": {"timeout": 1}, "p99_ms": 20.0, "achieved_rate": 99.0}, False),
        ({"rate": 100.0, "errors": {}, "p99_ms": 20.0, "achieved_rate": 80.0}, False),
        ({"rate": 100.0, "failed": "boom"}, False),
    ],
)
def test_held_needs_no_errors_low_p99_and_the_rate(result: dict[str, Any], expected: bool) -> None:
    assert held(result) is expected


def test_evaluate_targets_without_measurements_says_not_measured() -> None:
    targets = evaluate_targets({"inprocess": [], "http": {}, "no_prefetch": {}, "population": {}})
    assert targets
    assert all(t.met is None for t in targets)
