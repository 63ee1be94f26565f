"""Prefetch, then the FHIR server: every way the data can arrive or fail to."""

from __future__ import annotations

import asyncio
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from pytest_httpx import HTTPXMock

from fhir_safety.cds.prefetch import PrefetchTemplate
from fhir_safety.errors import DataUnavailableError, InvalidResourceError
from fhir_safety.fhir.client import FhirClient
from fhir_safety.services.record import build_record, resolve_prefetch
from tests.conftest import FIXED_NOW

BASE = "http://fhir.test/fhir"
CONTEXT = {"patientId": "p-1", "userId": "Practitioner/u-1"}
ENCOUNTERS = PrefetchTemplate(
    "encounters", "Encounter?patient={{context.patientId}}&status=in-progress"
)
PLANS = PrefetchTemplate("carePlans", "CarePlan?patient={{context.patientId}}", required=False)
PATIENT = PrefetchTemplate("patient", "Patient/{{context.patientId}}")
ENCOUNTER_URL = f"{BASE}/Encounter?patient=p-1&status=in-progress"
PLANS_URL = f"{BASE}/CarePlan?patient=p-1"


def enc(eid: str = "e-1") -> dict[str, Any]:
    return {
        "resourceType": "Encounter",
        "id": eid,
        "status": "in-progress",
        "class": {"code": "IMP"},
        "period": {"start": "2026-11-01T00:00:00Z"},
    }


def searchset(*resources: dict[str, Any], next_url: str | None = None) -> dict[str, Any]:
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": r, "search": {"mode": "match"}} for r in resources],
    }
    if next_url:
        bundle["link"] = [{"relation": "next", "url": next_url}]
    return bundle


async def gather(
    prefetch: dict[str, Any] | None,
    *,
    server: bool = True,
    templates: tuple[PrefetchTemplate, ...] = (ENCOUNTERS, PLANS),
    deadline: float = 2.0,
) -> Any:
    async with httpx.AsyncClient(timeout=deadline) as http:
        client = FhirClient(http, BASE, access_token="secret-token") if server else None
        return await resolve_prefetch(templates, CONTEXT, prefetch, client, timeout_seconds=deadline)


async def test_prefetch_complete_makes_no_server_call(httpx_mock: HTTPXMock) -> None:
    outcome = await gather({"encounters": searchset(enc()), "carePlans": None})
    assert outcome.resources == {"encounters": [enc()], "carePlans": []}
    assert outcome.sources == {"encounters": "prefetch", "carePlans": "prefetch"}
    assert httpx_mock.get_requests() == []


async def test_prefetch_key_absent_is_fetched_with_bearer_token(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(url=ENCOUNTER_URL, json=searchset(enc()))
    outcome = await gather({"carePlans": None})
    assert outcome.resources["encounters"] == [enc()]
    assert outcome.sources["encounters"] == "fhir-server"
    [request] = httpx_mock.get_requests()
    assert request.headers["authorization"] == "Bearer secret-token"


async def test_prefetch_null_means_no_data_not_a_fetch(httpx_mock: HTTPXMock) -> None:
    outcome = await gather({"encounters": None, "carePlans": None})
    assert outcome.resources["encounters"] == []
    assert httpx_mock.get_requests() == []


async def test_prefetch_operation_outcome_is_refetched(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(url=ENCOUNTER_URL, json=searchset(enc()))
    failed = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "timeout"}],
    }
    outcome = await gather({"encounters": failed, "carePlans": None})
    assert outcome.resources["encounters"] == [enc()]
    assert outcome.sources["encounters"] == "fhir-server"


async def test_prefetch_empty_bundle_is_no_data(httpx_mock: HTTPXMock) -> None:
    outcome = await gather({"encounters": searchset(), "carePlans": searchset()})
    assert outcome.resources == {"encounters": [], "carePlans": []}
    assert httpx_mock.get_requests() == []


async def test_prefetch_paged_bundle_fetches_the_rest(httpx_mock: HTTPXMock) -> None:
    page2 = f"{BASE}?_getpages=abc&_getpagesoffset=1"
    httpx_mock.add_response(url=page2, json=searchset(enc("e-2")))
    outcome = await gather({"encounters": searchset(enc("e-1"), next_url=page2), "carePlans": None})
    assert [r["id"] for r in outcome.resources["encounters"]] == ["e-1", "e-2"]


async def test_server_paging_follows_next_links(httpx_mock: HTTPXMock) -> None:
    page2 = f"{BASE}/Encounter?page=2"
    httpx_mock.add_response(url=ENCOUNTER_URL, json=searchset(enc("e-1"), next_url=page2))
    httpx_mock.add_response(url=page2, json=searchset(enc("e-2")))
    outcome = await gather({"carePlans": None})
    assert [r["id"] for r in outcome.resources["encounters"]] == ["e-1", "e-2"]


async def test_next_link_to_another_host_is_not_followed(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(
        url=ENCOUNTER_URL, json=searchset(enc(), next_url="http://evil.test/fhir/steal")
    )
    outcome = await gather({"carePlans": None})
    assert "leaves the FHIR server's base URL" in outcome.unavailable["encounters"]
    assert len(httpx_mock.get_requests()) == 1  # the token never went to evil.test


async def test_server_500_makes_required_key_unavailable(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(url=ENCOUNTER_URL, status_code=500)
    outcome = await gather({"carePlans": None})
    assert "500" in outcome.unavailable["encounters"]
    with pytest.raises(DataUnavailableError, match="encounters"):
        build_record(
            hook="patient-view",
            context=CONTEXT,
            templates=(ENCOUNTERS, PLANS),
            outcome=outcome,
            now=FIXED_NOW,
            zone=ZoneInfo("UTC"),
        )


async def test_server_timeout_is_reported_within_the_deadline(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_exception(httpx.ReadTimeout("slow"), url=ENCOUNTER_URL)
    outcome = await gather({"carePlans": None})
    assert "timed out" in outcome.unavailable["encounters"]


async def test_server_stall_is_cut_at_the_deadline(httpx_mock: HTTPXMock) -> None:
    async def stall(_: httpx.Request) -> httpx.Response:
        await asyncio.sleep(10)
        return httpx.Response(200, json=searchset())

    httpx_mock.add_callback(stall, url=ENCOUNTER_URL)
    loop = asyncio.get_running_loop()
    started = loop.time()
    outcome = await gather({"carePlans": None}, deadline=0.3)
    assert loop.time() - started < 2
    assert "did not answer within" in outcome.unavailable["encounters"]


async def test_server_html_error_page_is_not_read_as_fhir(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(
        url=ENCOUNTER_URL,
        text="<html><body>Tomcat error</body></html>",
        headers={"content-type": "text/html"},
    )
    outcome = await gather({"carePlans": None})
    assert "not JSON" in outcome.unavailable["encounters"]


async def test_prefetch_html_string_is_refetched(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(url=ENCOUNTER_URL, json=searchset(enc()))
    outcome = await gather(
        {"encounters": "<html>500 Internal Server Error</html>", "carePlans": None}
    )
    assert outcome.resources["encounters"] == [enc()]


async def test_optional_key_failure_is_marked_unavailable_not_fatal(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(url=PLANS_URL, status_code=503)
    outcome = await gather({"encounters": searchset(enc())})
    record = build_record(
        hook="patient-view",
        context=CONTEXT,
        templates=(ENCOUNTERS, PLANS),
        outcome=outcome,
        now=FIXED_NOW,
        zone=ZoneInfo("UTC"),
    )
    assert record.why_unavailable("CarePlan") is not None
    assert record.why_unavailable("Encounter") is None


async def test_no_prefetch_and_no_server_is_412() -> None:
    outcome = await gather(None, server=False)
    with pytest.raises(DataUnavailableError, match="no prefetch and no FHIR server"):
        build_record(
            hook="patient-view",
            context=CONTEXT,
            templates=(ENCOUNTERS,),
            outcome=outcome,
            now=FIXED_NOW,
            zone=ZoneInfo("UTC"),
        )


async def test_read_template_uses_instance_read(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(
        url=f"{BASE}/Patient/p-1", json={"resourceType": "Patient", "id": "p-1", "gender": "female"}
    )
    outcome = await gather({}, templates=(PATIENT,))
    assert outcome.resources["patient"][0]["gender"] == "female"


async def test_prefetch_resource_of_wrong_type_is_422() -> None:
    with pytest.raises(InvalidResourceError, match=r"prefetch\.patient"):
        await gather({"patient": enc()}, templates=(PATIENT,))


async def test_invalid_resource_in_prefetch_is_422() -> None:
    bad = enc() | {"period": {"start": "yesterday"}}
    outcome = await gather({"encounters": searchset(bad), "carePlans": None})
    with pytest.raises(InvalidResourceError, match=r"prefetch\.encounters\[0\]"):
        build_record(
            hook="patient-view",
            context=CONTEXT,
            templates=(ENCOUNTERS, PLANS),
            outcome=outcome,
            now=FIXED_NOW,
            zone=ZoneInfo("UTC"),
        )
