"""FhirClient: errors become FhirError subclasses; size and paging are capped."""

from __future__ import annotations

import httpx
import pytest
from pytest_httpx import HTTPXMock

from fhir_safety.errors import FhirNotFoundError, FhirResponseError, FhirUnavailableError
from fhir_safety.fhir.client import FhirClient

BASE = "http://fhir.test/fhir"


async def test_read_404_raises_not_found(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(url=f"{BASE}/Patient/p1", status_code=404)
    async with httpx.AsyncClient() as http:
        with pytest.raises(FhirNotFoundError):
            await FhirClient(http, BASE).read("Patient", "p1")


async def test_read_of_wrong_type_is_a_response_error(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(url=f"{BASE}/Patient/p1", json={"resourceType": "Encounter"})
    async with httpx.AsyncClient() as http:
        with pytest.raises(FhirResponseError, match="returned 'Encounter'"):
            await FhirClient(http, BASE).read("Patient", "p1")


async def test_connection_refused_is_unavailable(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_exception(httpx.ConnectError("refused"), url=f"{BASE}/Patient/p1")
    async with httpx.AsyncClient() as http:
        with pytest.raises(FhirUnavailableError, match="ConnectError"):
            await FhirClient(http, BASE).read("Patient", "p1")


async def test_response_over_the_cap_is_refused(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(url=f"{BASE}/Patient/p1", content=b"{" + b" " * 5000 + b"}")
    async with httpx.AsyncClient() as http:
        with pytest.raises(FhirResponseError, match="over 1000 bytes"):
            await FhirClient(http, BASE, max_response_bytes=1000).read("Patient", "p1")


async def test_json_that_is_not_fhir_is_refused(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(url=f"{BASE}/Patient/p1", json=["not", "a", "resource"])
    async with httpx.AsyncClient() as http:
        with pytest.raises(FhirResponseError, match="not a FHIR resource"):
            await FhirClient(http, BASE).read("Patient", "p1")


async def test_endless_paging_is_capped(httpx_mock: HTTPXMock) -> None:
    page = {
        "resourceType": "Bundle",
        "type": "searchset",
        "link": [{"relation": "next", "url": f"{BASE}/Encounter?page=next"}],
    }
    httpx_mock.add_response(url=f"{BASE}/Encounter?page=next", json=page, is_reusable=True)
    httpx_mock.add_response(url=f"{BASE}/Encounter", json=page)
    async with httpx.AsyncClient() as http:
        with pytest.raises(FhirResponseError, match="more than 3 pages"):
            await FhirClient(http, BASE, max_pages=3).search_all("Encounter")


async def test_search_skips_included_and_outcome_entries(httpx_mock: HTTPXMock) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [
            {"resource": {"resourceType": "Encounter", "id": "e1"}, "search": {"mode": "match"}},
            {"resource": {"resourceType": "Patient", "id": "p1"}, "search": {"mode": "include"}},
            {"resource": {"resourceType": "OperationOutcome"}, "search": {"mode": "outcome"}},
        ],
    }
    httpx_mock.add_response(url=f"{BASE}/Encounter", json=bundle)
    async with httpx.AsyncClient() as http:
        found = await FhirClient(http, BASE).search_all("Encounter")
    assert [r["id"] for r in found] == ["e1"]
