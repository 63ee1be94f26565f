"""Bulk Data $export client: kick-off, polling, manifest, downloads and every refusal."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
from pytest_httpx import HTTPXMock

from fhir_safety.config import BulkExportSettings
from fhir_safety.errors import FhirError, FhirResponseError, FhirUnavailableError
from fhir_safety.fhir.bulk import export_level, run_export
from fhir_safety.fhir.client import FhirClient

BASE = "http://fhir.test/fhir"
STATUS = f"{BASE}/$export-poll-status?_jobId=1"
TOKEN = "secret-token"


@dataclass
class FakeClock:
    """Time that moves only when the client sleeps: the polling schedule is exact."""

    now: float = 0.0
    sleeps: list[float] = field(default_factory=list)

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def __call__(self) -> float:
        return self.now


def _ndjson(*resources: dict[str, Any]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in resources)


PATIENT = {"resourceType": "Patient", "id": "p1"}
REQUEST = {"resourceType": "MedicationRequest", "id": "m1", "subject": {"reference": "Patient/p1"}}


def _manifest(outputs: list[dict[str, str]], **extra: Any) -> dict[str, Any]:
    return {
        "transactionTime": "2026-11-26T09:00:00Z",
        "request": f"{BASE}/$export",
        "requiresAccessToken": True,
        "output": outputs,
        "error": [],
        **extra,
    }


def _kick_off(httpx_mock: HTTPXMock, location: str = STATUS) -> None:
    httpx_mock.add_response(
        method="GET",
        url=httpx.URL(f"{BASE}/$export", params={"_type": "Patient,MedicationRequest"}),
        status_code=202,
        headers={"Content-Location": location},
    )


def _complete(httpx_mock: HTTPXMock, manifest: dict[str, Any], busy: int = 0) -> None:
    for _ in range(busy):
        httpx_mock.add_response(
            method="GET", url=STATUS, status_code=202, headers={"X-Progress": "working"}
        )
    httpx_mock.add_response(method="GET", url=STATUS, json=manifest)


def _allow_delete(httpx_mock: HTTPXMock, status: int = 202) -> None:
    httpx_mock.add_response(method="DELETE", url=STATUS, status_code=status)


async def _export(
    tmp_path: Path, clock: FakeClock | None = None, policy: BulkExportSettings | None = None
) -> Any:
    clock = clock or FakeClock()
    async with httpx.AsyncClient() as http:
        client = FhirClient(http, BASE, access_token=TOKEN)
        return await run_export(
            client,
            tmp_path / "out",
            level="system",
            types=["Patient", "MedicationRequest"],
            policy=policy or BulkExportSettings(),
            sleep=clock.sleep,
            clock=clock,
        )


# -- what the server offers ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("statement", "level"),
    [
        ({"rest": [{"operation": [{"name": "export"}], "resource": []}]}, "system"),
        (
            {"rest": [{"resource": [{"type": "Patient", "operation": [{"name": "export"}]}]}]},
            "patient",
        ),
        ({"rest": [{"resource": [{"type": "Group", "operation": [{"name": "export"}]}]}]}, None),
        ({"rest": [{"operation": [{"name": "everything"}]}]}, None),
        ({}, None),
    ],
)
async def test_export_level_reads_the_capability_statement(
    httpx_mock: HTTPXMock, statement: dict[str, Any], level: str | None
) -> None:
    httpx_mock.add_response(
        url=f"{BASE}/metadata", json={"resourceType": "CapabilityStatement", **statement}
    )
    async with httpx.AsyncClient() as http:
        assert await export_level(FhirClient(http, BASE)) == level


async def test_export_level_is_none_when_metadata_cannot_be_read(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(url=f"{BASE}/metadata", status_code=503)
    async with httpx.AsyncClient() as http:
        assert await export_level(FhirClient(http, BASE)) is None


# -- the happy path -------------------------------------------------------------------------------


async def test_export_downloads_every_output_with_the_token_and_cleans_up(
    httpx_mock: HTTPXMock, tmp_path: Path
) -> None:
    _kick_off(httpx_mock)
    outputs = [
        {"type": "Patient", "url": f"{BASE}/Binary/a"},
        {"type": "MedicationRequest", "url": f"{BASE}/Binary/b"},
    ]
    _complete(httpx_mock, _manifest(outputs), busy=3)
    httpx_mock.add_response(url=f"{BASE}/Binary/a", content=_ndjson(PATIENT))
    httpx_mock.add_response(url=f"{BASE}/Binary/b", content=_ndjson(REQUEST))
    _allow_delete(httpx_mock)
    clock = FakeClock()

    manifest = await _export(tmp_path, clock)

    assert manifest.transaction_time == "2026-11-26T09:00:00Z"
    assert [p.name for p in manifest.files] == [
        "0001-Patient.ndjson",
        "0002-MedicationRequest.ndjson",
    ]
    assert json.loads(manifest.files[1].read_text()) == REQUEST
    assert manifest.bytes_downloaded == len(_ndjson(PATIENT)) + len(_ndjson(REQUEST))
    assert clock.sleeps == [0.5, 1.0, 2.0]  # exponential backoff while the server says 202
    kick_off = httpx_mock.get_requests()[0]
    assert kick_off.headers["Prefer"] == "respond-async, handling=lenient"
    assert kick_off.headers["Accept"] == "application/fhir+json"
    for request in httpx_mock.get_requests():
        assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert httpx_mock.get_requests()[-1].method == "DELETE"


async def test_type_filters_are_encoded_whole_so_their_commas_survive(
    httpx_mock: HTTPXMock, tmp_path: Path
) -> None:
    query = "Observation?code=http://snomed.info/sct|1,http://snomed.info/sct|2"
    httpx_mock.add_response(
        method="GET",
        url=httpx.URL(
            f"{BASE}/Patient/$export", params={"_type": "Observation", "_typeFilter": query}
        ),
        status_code=202,
        headers={"Content-Location": STATUS},
    )
    _complete(httpx_mock, _manifest([]))
    _allow_delete(httpx_mock)
    async with httpx.AsyncClient() as http:
        manifest = await run_export(
            FhirClient(http, BASE),
            tmp_path,
            level="patient",
            types=["Observation"],
            type_filters=[query],
        )
    assert manifest.files == ()
    raw = str(httpx_mock.get_requests()[0].url)
    assert "_typeFilter=Observation%3Fcode%3D" in raw
    assert unquote(raw.split("_typeFilter=")[1]) == query


async def test_a_429_is_obeyed_up_to_the_cap_and_a_202_retry_after_is_a_hint(
    httpx_mock: HTTPXMock, tmp_path: Path
) -> None:
    _kick_off(httpx_mock)
    httpx_mock.add_response(url=STATUS, status_code=202, headers={"Retry-After": "120"})
    httpx_mock.add_response(url=STATUS, status_code=429, headers={"Retry-After": "7"})
    httpx_mock.add_response(url=STATUS, status_code=429, headers={"Retry-After": "900"})
    _complete(httpx_mock, _manifest([]))
    _allow_delete(httpx_mock)
    clock = FakeClock()
    await _export(tmp_path, clock, BulkExportSettings(max_poll_seconds=30))
    assert clock.sleeps == [0.5, 7.0, 30.0]


async def test_a_token_free_output_elsewhere_is_fetched_over_https_without_the_token(
    httpx_mock: HTTPXMock, tmp_path: Path
) -> None:
    _kick_off(httpx_mock)
    signed = "https://bucket.example.org/export/a.ndjson?signature=x"
    _complete(
        httpx_mock,
        _manifest([{"type": "Patient", "url": signed}], requiresAccessToken=False),
    )
    httpx_mock.add_response(url=signed, content=_ndjson(PATIENT))
    _allow_delete(httpx_mock)
    manifest = await _export(tmp_path)
    assert len(manifest.files) == 1
    download = httpx_mock.get_request(url=signed)
    assert download is not None
    assert "Authorization" not in download.headers


# -- refusals -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error", "text"),
    [
        (400, FhirError, "unsupported _type"),
        (500, FhirUnavailableError, "unsupported _type"),
        (200, FhirResponseError, "not 202"),
    ],
)
async def test_a_kick_off_that_is_not_accepted_fails_with_the_servers_reason(
    httpx_mock: HTTPXMock, tmp_path: Path, status: int, error: type[Exception], text: str
) -> None:
    outcome = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "invalid", "diagnostics": "unsupported _type"}],
    }
    httpx_mock.add_response(
        url=httpx.URL(f"{BASE}/$export", params={"_type": "Patient,MedicationRequest"}),
        status_code=status,
        json=outcome,
    )
    with pytest.raises(error, match=text):
        await _export(tmp_path)


async def test_a_status_url_outside_the_server_is_refused_before_the_token_goes_there(
    httpx_mock: HTTPXMock, tmp_path: Path
) -> None:
    _kick_off(httpx_mock, location="http://evil.example/status/1")
    with pytest.raises(FhirResponseError, match="leaves the FHIR server's base URL"):
        await _export(tmp_path)
    assert all(r.url.host == "fhir.test" for r in httpx_mock.get_requests())


async def test_a_202_without_content_location_is_refused(
    httpx_mock: HTTPXMock, tmp_path: Path
) -> None:
    httpx_mock.add_response(status_code=202)
    with pytest.raises(FhirResponseError, match="without a Content-Location"):
        await _export(tmp_path)


async def test_an_export_that_never_finishes_is_cancelled_at_the_deadline(
    httpx_mock: HTTPXMock, tmp_path: Path
) -> None:
    _kick_off(httpx_mock)
    httpx_mock.add_response(method="GET", url=STATUS, status_code=202, is_reusable=True)
    _allow_delete(httpx_mock)
    clock = FakeClock()
    with pytest.raises(FhirUnavailableError, match="did not finish within 60 s"):
        await _export(tmp_path, clock, BulkExportSettings(max_wait_seconds=60, max_poll_seconds=10))
    assert clock.now <= 60
    assert httpx_mock.get_requests()[-1].method == "DELETE"


async def test_a_failed_job_reports_the_servers_operation_outcome(
    httpx_mock: HTTPXMock, tmp_path: Path
) -> None:
    _kick_off(httpx_mock)
    outcome = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "exception", "diagnostics": "job crashed"}],
    }
    httpx_mock.add_response(url=STATUS, status_code=500, json=outcome)
    _allow_delete(httpx_mock, status=404)  # a refused DELETE changes nothing
    with pytest.raises(FhirUnavailableError, match="job crashed"):
        await _export(tmp_path)


async def test_error_files_in_the_manifest_fail_the_export(
    httpx_mock: HTTPXMock, tmp_path: Path
) -> None:
    _kick_off(httpx_mock)
    outputs = [{"type": "Patient", "url": f"{BASE}/Binary/a"}]
    errors = [{"type": "OperationOutcome", "url": f"{BASE}/Binary/err"}]
    _complete(httpx_mock, _manifest(outputs, error=errors))
    outcome = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "processing", "diagnostics": "Flag: 3 failed"}],
    }
    httpx_mock.add_response(url=f"{BASE}/Binary/err", content=_ndjson(outcome))
    _allow_delete(httpx_mock)
    with pytest.raises(FhirResponseError, match=r"1 error file.*Flag: 3 failed"):
        await _export(tmp_path)
    assert httpx_mock.get_request(url=f"{BASE}/Binary/a") is None  # nothing partial downloaded


@pytest.mark.parametrize(
    ("url", "requires_token"),
    [
        ("http://evil.example/a.ndjson", True),
        ("https://evil.example/a.ndjson", True),
        ("http://bucket.example.org/a.ndjson", False),
    ],
)
async def test_outputs_elsewhere_are_refused_unless_token_free_over_https(
    httpx_mock: HTTPXMock, tmp_path: Path, url: str, requires_token: bool
) -> None:
    _kick_off(httpx_mock)
    _complete(
        httpx_mock,
        _manifest([{"type": "Patient", "url": url}], requiresAccessToken=requires_token),
    )
    _allow_delete(httpx_mock)
    with pytest.raises(FhirResponseError, match="outside the FHIR server's base URL"):
        await _export(tmp_path)
    assert all(r.url.host == "fhir.test" for r in httpx_mock.get_requests())


async def test_downloads_stop_at_the_byte_cap(httpx_mock: HTTPXMock, tmp_path: Path) -> None:
    _kick_off(httpx_mock)
    outputs = [
        {"type": "Patient", "url": f"{BASE}/Binary/a"},
        {"type": "MedicationRequest", "url": f"{BASE}/Binary/b"},
    ]
    _complete(httpx_mock, _manifest(outputs))
    httpx_mock.add_response(url=f"{BASE}/Binary/a", content=b"x" * 60)
    httpx_mock.add_response(url=f"{BASE}/Binary/b", content=b"y" * 60)
    _allow_delete(httpx_mock)
    with pytest.raises(FhirResponseError, match="download over 40 bytes"):
        await _export(tmp_path, policy=BulkExportSettings(max_bytes=100))


@pytest.mark.parametrize(
    "body", [b"not json", b'{"transactionTime": "x"}', b'{"output": [{"type": "Patient"}]}']
)
async def test_a_malformed_manifest_is_refused(
    httpx_mock: HTTPXMock, tmp_path: Path, body: bytes
) -> None:
    _kick_off(httpx_mock)
    httpx_mock.add_response(url=STATUS, content=body)
    _allow_delete(httpx_mock)
    with pytest.raises(FhirResponseError, match="manifest"):
        await _export(tmp_path)
