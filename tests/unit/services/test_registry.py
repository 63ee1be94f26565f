"""Valproate registry and the synthetic population: reproducible, and right against ground truth."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.list import List as FhirList
from fhir.resources.R4B.measurereport import MeasureReport
from pytest_httpx import HTTPXMock

from fhir_safety.cli import main
from fhir_safety.config import Settings
from fhir_safety.errors import DataUnavailableError, RequestError
from fhir_safety.fhir.client import FhirClient
from fhir_safety.services import registry, synth
from fhir_safety.terminology import Terminology

AS_OF = date(2026, 11, 26)
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
BASE = "http://fhir.test/fhir"


@pytest.fixture(scope="module")
def population(terminology: Terminology) -> list[synth.SyntheticPatient]:
    return synth.generate(
        patients=400, seed=11, terminology=terminology, as_of=AS_OF, valproate_rate=0.6
    )


def expected_counts(population: list[synth.SyntheticPatient]) -> dict[str, int]:
    found = Counter(p.expected_action for p in population if p.expected_action)
    return {status: found.get(status, 0) for status in registry.ACTION_ORDER}


# -- synth ---------------------------------------------------------------------------------------


def test_synth_same_seed_same_population(terminology: Terminology) -> None:
    first = synth.generate(patients=50, seed=3, terminology=terminology)
    second = synth.generate(patients=50, seed=3, terminology=terminology)
    assert [p.resources for p in first] == [p.resources for p in second]
    other = synth.generate(patients=50, seed=4, terminology=terminology)
    assert [p.resources for p in first] != [p.resources for p in other]


def test_synth_files_are_byte_identical(terminology: Terminology, tmp_path: Path) -> None:
    for name in ("a", "b"):
        people = synth.generate(patients=30, seed=5, terminology=terminology)
        synth.write_bundles(people, tmp_path / name, patients_per_bundle=10)
        synth.write_ground_truth(people, tmp_path / name, seed=5, as_of=AS_OF)
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert len(files) == 4
    for name in files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_synth_nhs_numbers_are_valid_test_numbers(
    population: list[synth.SyntheticPatient],
) -> None:
    for person in population:
        number = person.resources[0]["identifier"][0]["value"]
        assert number.startswith("999")
        assert len(number) == 10
        digits = [int(d) for d in number]
        check = 11 - sum(d * w for d, w in zip(digits[:9], range(10, 1, -1), strict=True)) % 11
        assert digits[9] == (0 if check == 11 else check)


def test_synth_ages_match_birth_dates(population: list[synth.SyntheticPatient]) -> None:
    for person in population:
        birth = date.fromisoformat(person.resources[0]["birthDate"])
        age = AS_OF.year - birth.year - ((AS_OF.month, AS_OF.day) < (birth.month, birth.day))
        assert age == person.age


def test_synth_population_has_every_scenario(population: list[synth.SyntheticPatient]) -> None:
    scenarios = {p.scenario for p in population}
    assert scenarios >= {
        "no-ppp",
        "enrolled-current",
        "enrolled-due-soon",
        "enrolled-expired",
        "declined",
        "pregnant",
        "hysterectomy",
        "male",
        "over-age",
        "not-on-valproate",
    }


def test_synth_transaction_bundles_are_valid_r4(terminology: Terminology, tmp_path: Path) -> None:
    people = synth.generate(patients=20, seed=9, terminology=terminology, valproate_rate=1.0)
    [path] = synth.write_bundles(people, tmp_path)
    Bundle.model_validate(json.loads(path.read_text()))


# -- registry -------------------------------------------------------------------------------------


def test_registry_from_ndjson_matches_ground_truth(
    population: list[synth.SyntheticPatient], terminology: Terminology, tmp_path: Path
) -> None:
    synth.write_ndjson(population, tmp_path)
    patients = registry.gather_from_ndjson(tmp_path, terminology)
    built = registry.build_registry(
        patients, settings=Settings(), terminology=terminology, now=NOW, source="test"
    )
    assert built.counts() == expected_counts(population)
    truth = {p.patient_id: p.expected_action for p in population}
    assert all(row.action_status == truth[row.patient_id] for row in built.rows)
    on_valproate = [
        p for p in population if p.scenario not in {"not-on-valproate", "stopped-valproate"}
    ]
    assert built.on_valproate == len(on_valproate)
    assert built.outside_cohort == {
        "male": sum(p.scenario == "male" for p in population),
        "over-age": sum(p.scenario == "over-age" for p in population),
    }


def _serve(population: list[synth.SyntheticPatient], fail: frozenset[str] = frozenset()) -> Any:
    by_type: dict[str, list[dict[str, Any]]] = {}
    for person in population:
        for resource in person.resources:
            by_type.setdefault(resource["resourceType"], []).append(resource)

    def respond(request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/fhir/")
        if "/" in path:
            kind, _, rid = path.partition("/")
            found = [r for r in by_type.get(kind, []) if r["id"] == rid]
            return httpx.Response(200, json=found[0]) if found else httpx.Response(404)
        if path in fail:
            return httpx.Response(503)
        params = request.url.params
        resources = by_type.get(path, [])
        if "patient" in params:
            ref = f"Patient/{params['patient']}"
            resources = [r for r in resources if r.get("subject", {}).get("reference") == ref]
        if "status" in params:
            resources = [r for r in resources if r.get("status") in params["status"].split(",")]
        if "code:in" in params:
            assert params["code:in"] == registry.ARAF_VALUE_SET_URL
            resources = [r for r in resources if r["code"]["coding"][0]["code"].startswith("2078")]
        return httpx.Response(
            200,
            json={
                "resourceType": "Bundle",
                "type": "searchset",
                "entry": [{"resource": r, "search": {"mode": "match"}} for r in resources],
            },
        )

    return respond


async def test_registry_from_server_matches_ground_truth(
    population: list[synth.SyntheticPatient], terminology: Terminology, httpx_mock: HTTPXMock
) -> None:
    httpx_mock.add_callback(_serve(population), is_reusable=True)
    found: list[int] = []
    async with httpx.AsyncClient() as http:
        client = FhirClient(http, BASE, max_pages=1000)
        patients = await registry.gather_from_server(
            client, terminology, Settings(), NOW, on_found=found.append
        )
    built = registry.build_registry(
        patients, settings=Settings(), terminology=terminology, now=NOW, source=BASE
    )
    assert built.counts() == expected_counts(population)
    assert found == [built.on_valproate]


async def test_registry_failed_search_is_recorded_and_fail_safe(
    population: list[synth.SyntheticPatient], terminology: Terminology, httpx_mock: HTTPXMock
) -> None:
    httpx_mock.add_callback(_serve(population, fail=frozenset({"Flag"})), is_reusable=True)
    async with httpx.AsyncClient() as http:
        patients = await registry.gather_from_server(
            FhirClient(http, BASE, max_pages=1000), terminology, Settings(), NOW
        )
    built = registry.build_registry(
        patients, settings=Settings(), terminology=terminology, now=NOW, source=BASE
    )
    assert built.rows
    assert all(row.data_gaps and row.data_gaps[0].startswith("Flag:") for row in built.rows)
    enrolled = [r for r in built.rows if r.patient_id in _ids(population, "enrolled-current")]
    assert enrolled
    assert {r.action_status for r in enrolled} == {"Review or refer"}


def _ids(population: list[synth.SyntheticPatient], scenario: str) -> set[str]:
    return {p.patient_id for p in population if p.scenario == scenario}


def test_registry_outputs_are_valid_and_reproducible(
    population: list[synth.SyntheticPatient], terminology: Terminology, tmp_path: Path
) -> None:
    synth.write_ndjson(population, tmp_path / "in")
    outputs = []
    for name in ("one", "two"):
        patients = registry.gather_from_ndjson(tmp_path / "in", terminology)
        built = registry.build_registry(
            patients, settings=Settings(), terminology=terminology, now=NOW, source="test"
        )
        registry.write_registry(built, tmp_path / name)
        outputs.append({p.name: p.read_bytes() for p in (tmp_path / name).iterdir()})
    assert outputs[0] == outputs[1]
    bundle = json.loads(outputs[0]["valproate-registry.bundle.json"])
    Bundle.model_validate(bundle)
    listing, report = (entry["resource"] for entry in bundle["entry"])
    FhirList.model_validate(listing)
    MeasureReport.model_validate(report)
    [group] = report["group"]
    assert group["population"][0]["count"] == len(listing["entry"])
    strata = {
        s["value"]["text"]: s["population"][0]["count"] for s in group["stratifier"][0]["stratum"]
    }
    assert strata == expected_counts(population)
    csv_lines = outputs[0]["valproate-registry.csv"].decode().splitlines()
    assert csv_lines[0].startswith("patient_id,nhs_number,age,gender,action_status")
    assert len(csv_lines) == 1 + len(listing["entry"])


def test_registry_rows_are_most_urgent_first(
    population: list[synth.SyntheticPatient], terminology: Terminology, tmp_path: Path
) -> None:
    synth.write_ndjson(population, tmp_path)
    built = registry.build_registry(
        registry.gather_from_ndjson(tmp_path, terminology),
        settings=Settings(),
        terminology=terminology,
        now=NOW,
        source="test",
    )
    order = [registry.ACTION_ORDER.index(r.action_status) for r in built.rows]
    assert order == sorted(order)


def test_registry_empty_folder_is_an_input_error(tmp_path: Path) -> None:
    assert main(["registry", "valproate", "--ndjson", str(tmp_path), "--out", str(tmp_path)]) == 2


def test_cli_synth_then_registry(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    assert (
        main(
            ["synth", "--patients", "120", "--seed", "2", "--out", str(data), "--format", "ndjson"]
        )
        == 0
    )
    capsys.readouterr()
    out = tmp_path / "out"
    code = main(
        [
            "registry",
            "valproate",
            "--ndjson",
            str(data),
            "--out",
            str(out),
            "--now",
            "2026-11-26T12:00:00Z",
            "--json",
        ]
    )
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    truth = json.loads((data / "ground-truth.json").read_text())
    expected = Counter(p["expected_action"] for p in truth["patients"] if p["expected_action"])
    assert printed["counts"] == {s: expected.get(s, 0) for s in registry.ACTION_ORDER}
    assert sorted(p.name for p in out.iterdir()) == [
        "valproate-registry.bundle.json",
        "valproate-registry.csv",
        "valproate-registry.json",
    ]


def test_cli_synth_rejects_bad_rate(tmp_path: Path) -> None:
    assert main(["synth", "--patients", "1", "--valproate-rate", "2", "--out", str(tmp_path)]) == 2


def test_synth_cli_hospital_flag_adds_stays(tmp_path: Path) -> None:
    from fhir_safety.cli import main

    assert (
        main(
            [
                "synth",
                "--patients",
                "30",
                "--seed",
                "4",
                "--format",
                "ndjson",
                "--hospital",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    assert (tmp_path / "Encounter.ndjson").read_text().count('"in-progress"') > 0


# -- reading a server by Bulk Data $export ---------------------------------------------------------

_EXPORT_STATEMENT = {
    "resourceType": "CapabilityStatement",
    "rest": [{"mode": "server", "operation": [{"name": "export"}]}],
}
_STATUS = f"{BASE}/$export-poll-status?_jobId=job"


def _serve_export(population: list[synth.SyntheticPatient]) -> Any:
    """A Bulk Data server: CapabilityStatement, kick-off, one poll, one NDJSON file per type."""
    by_type: dict[str, list[dict[str, Any]]] = {}
    for person in population:
        for resource in person.resources:
            by_type.setdefault(resource["resourceType"], []).append(resource)
    polls: list[int] = []

    def respond(request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/fhir/")
        if path == "metadata":
            return httpx.Response(200, json=_EXPORT_STATEMENT)
        if path == "$export":
            assert set(request.url.params["_type"].split(",")) == set(registry.READ_TYPES)
            assert request.url.params["_typeFilter"].startswith("Observation?code=")
            return httpx.Response(202, headers={"Content-Location": _STATUS})
        if path == "$export-poll-status" and request.method == "DELETE":
            return httpx.Response(202)
        if path == "$export-poll-status":
            polls.append(1)
            if len(polls) == 1:
                return httpx.Response(202, headers={"X-Progress": "50%"})
            output = [{"type": t, "url": f"{BASE}/Binary/{t}"} for t in sorted(by_type)]
            manifest = {"transactionTime": "2026-11-26T11:59:00Z", "output": output, "error": []}
            return httpx.Response(200, json=manifest)
        if path.startswith("Binary/"):
            kind = path.removeprefix("Binary/")
            lines = "".join(json.dumps(r) + "\n" for r in by_type[kind])
            return httpx.Response(200, content=lines.encode())
        raise AssertionError(f"an export needs no other request: {request.method} {request.url}")

    return respond


def _quick_polls() -> Settings:
    return Settings.model_validate({"bulk_export": {"first_poll_seconds": 0.01}})


async def test_gather_reads_a_server_by_export_when_it_offers_one(
    population: list[synth.SyntheticPatient], terminology: Terminology, httpx_mock: HTTPXMock
) -> None:
    httpx_mock.add_callback(_serve_export(population), is_reusable=True)
    statuses: list[str] = []
    async with httpx.AsyncClient() as http:
        gathered = await registry.gather(
            FhirClient(http, BASE), terminology, _quick_polls(), NOW, on_status=statuses.append
        )
    built = registry.build_registry(
        gathered.patients, settings=Settings(), terminology=terminology, now=NOW, source="t"
    )
    assert built.counts() == expected_counts(population)
    assert gathered.source == (
        f"{BASE} (system-level $export, transactionTime 2026-11-26T11:59:00Z)"
    )
    assert "50%" in statuses
    assert httpx_mock.get_requests()[-1].method == "DELETE"


async def test_gather_searches_a_server_that_offers_no_export(
    population: list[synth.SyntheticPatient], terminology: Terminology, httpx_mock: HTTPXMock
) -> None:
    httpx_mock.add_callback(_serve(population), is_reusable=True)  # metadata: no export
    async with httpx.AsyncClient() as http:
        client = FhirClient(http, BASE, max_pages=1000)
        gathered = await registry.gather(client, terminology, Settings(), NOW)
        with pytest.raises(DataUnavailableError, match="does not offer Bulk Data"):
            await registry.gather(client, terminology, Settings(), NOW, method="export")
    built = registry.build_registry(
        gathered.patients, settings=Settings(), terminology=terminology, now=NOW, source="t"
    )
    assert built.counts() == expected_counts(population)
    assert gathered.source == f"{BASE} (paged search)"


async def test_gather_by_search_never_asks_for_an_export(
    population: list[synth.SyntheticPatient], terminology: Terminology, httpx_mock: HTTPXMock
) -> None:
    httpx_mock.add_callback(_serve(population), is_reusable=True)
    async with httpx.AsyncClient() as http:
        client = FhirClient(http, BASE, max_pages=1000)
        await registry.gather(client, terminology, Settings(), NOW, method="search")
    assert not [r for r in httpx_mock.get_requests() if r.url.path.endswith("/metadata")]


async def test_gather_keeps_the_export_in_an_empty_folder_only(
    population: list[synth.SyntheticPatient],
    terminology: Terminology,
    httpx_mock: HTTPXMock,
    tmp_path: Path,
) -> None:
    httpx_mock.add_callback(_serve_export(population), is_reusable=True)
    kept = tmp_path / "export"
    async with httpx.AsyncClient() as http:
        client = FhirClient(http, BASE)
        await registry.gather(client, terminology, _quick_polls(), NOW, export_dir=kept)
        assert len(list(kept.glob("*.ndjson"))) == len(
            {r["resourceType"] for p in population for r in p.resources}
        )
        again = registry.gather_from_ndjson(kept, terminology)
        assert len(again) > 0
        with pytest.raises(RequestError, match=r"already holds \.ndjson files"):
            await registry.gather(client, terminology, _quick_polls(), NOW, export_dir=kept)


def test_cli_registry_by_export(
    population: list[synth.SyntheticPatient],
    httpx_mock: HTTPXMock,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    httpx_mock.add_callback(_serve_export(population), is_reusable=True)
    monkeypatch.setenv("FHIR_SAFETY_BULK_EXPORT__FIRST_POLL_SECONDS", "0.01")
    args = ["registry", "valproate", "--fhir-server", BASE, "--method", "export"]
    assert main([*args, "--out", str(tmp_path), "--now", NOW.isoformat()]) == 0
    written = json.loads((tmp_path / "valproate-registry.json").read_text())
    assert written["counts"] == expected_counts(population)
    assert "$export" in written["source"]
