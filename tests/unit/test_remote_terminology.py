"""RemoteTerminology against a mocked terminology server (pytest-httpx at the transport)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest
from pytest_httpx import HTTPXMock

from fhir_safety.errors import FhirResponseError, FhirUnavailableError
from fhir_safety.fhir.resources import Coding
from fhir_safety.services.remote_terminology import RemoteTerminology

BASE = "http://tx.test/fhir"
VS_URL = "https://fhir.nhs.uk/England/ValueSet/RA-FlagCode"
SCT = "http://snomed.info/sct"
VALIDATE = re.compile(re.escape(f"{BASE}/ValueSet/$validate-code") + r"\?.*")
EXPAND = re.compile(re.escape(f"{BASE}/ValueSet/$expand") + r"\?.*")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def remote(http: httpx.AsyncClient, clock: FakeClock) -> RemoteTerminology:
    return RemoteTerminology(f"{BASE}/", http, ttl_seconds=60, clock=clock)


def parameters(result: bool) -> dict[str, object]:
    return {"resourceType": "Parameters", "parameter": [{"name": "result", "valueBoolean": result}]}


@pytest.mark.parametrize("result", [True, False])
async def test_validate_code_server_answer_is_returned(
    httpx_mock: HTTPXMock, remote: RemoteTerminology, result: bool
) -> None:
    httpx_mock.add_response(url=VALIDATE, json=parameters(result))
    assert await remote.validate_code(VS_URL, SCT, "415803005") is result
    request = httpx_mock.get_request()
    assert request is not None
    assert request.url.params["url"] == VS_URL
    assert request.url.params["system"] == SCT
    assert request.url.params["code"] == "415803005"
    assert "fhir+json" in request.headers["accept"]


async def test_validate_code_cached_within_ttl_makes_one_request(
    httpx_mock: HTTPXMock, remote: RemoteTerminology, clock: FakeClock
) -> None:
    httpx_mock.add_response(url=VALIDATE, json=parameters(False))
    assert await remote.validate_code(VS_URL, SCT, "1") is False
    clock.now += 59
    assert await remote.validate_code(VS_URL, SCT, "1") is False
    assert len(httpx_mock.get_requests()) == 1


async def test_validate_code_after_ttl_asks_again(
    httpx_mock: HTTPXMock, remote: RemoteTerminology, clock: FakeClock
) -> None:
    httpx_mock.add_response(url=VALIDATE, json=parameters(True), is_reusable=True)
    await remote.validate_code(VS_URL, SCT, "1")
    clock.now += 61
    await remote.validate_code(VS_URL, SCT, "1")
    assert len(httpx_mock.get_requests()) == 2


@pytest.mark.parametrize("status", [404, 400, 422])
async def test_validate_code_unknown_value_set_returns_none(
    httpx_mock: HTTPXMock, remote: RemoteTerminology, status: int
) -> None:
    outcome = {"resourceType": "OperationOutcome", "issue": [{"severity": "error"}]}
    httpx_mock.add_response(url=VALIDATE, status_code=status, json=outcome)
    assert await remote.validate_code(VS_URL, SCT, "1") is None


async def test_validate_code_server_error_raises_unavailable(
    httpx_mock: HTTPXMock, remote: RemoteTerminology
) -> None:
    httpx_mock.add_response(url=VALIDATE, status_code=503)
    with pytest.raises(FhirUnavailableError):
        await remote.validate_code(VS_URL, SCT, "1")


async def test_validate_code_connection_error_raises_unavailable(
    httpx_mock: HTTPXMock, remote: RemoteTerminology
) -> None:
    httpx_mock.add_exception(httpx.ConnectError("refused"), url=VALIDATE)
    with pytest.raises(FhirUnavailableError):
        await remote.validate_code(VS_URL, SCT, "1")


@pytest.mark.parametrize(
    "body",
    [
        {"resourceType": "OperationOutcome"},
        {"resourceType": "Parameters", "parameter": [{"name": "message", "valueString": "x"}]},
    ],
)
async def test_validate_code_unusable_answer_raises_response_error(
    httpx_mock: HTTPXMock, remote: RemoteTerminology, body: dict[str, object]
) -> None:
    httpx_mock.add_response(url=VALIDATE, json=body)
    with pytest.raises(FhirResponseError):
        await remote.validate_code(VS_URL, SCT, "1")


async def test_validate_code_failure_is_not_cached(
    httpx_mock: HTTPXMock, remote: RemoteTerminology
) -> None:
    httpx_mock.add_response(url=VALIDATE, status_code=503)
    httpx_mock.add_response(url=VALIDATE, json=parameters(True))
    with pytest.raises(FhirUnavailableError):
        await remote.validate_code(VS_URL, SCT, "1")
    assert await remote.validate_code(VS_URL, SCT, "1") is True


async def test_expand_ecl_returns_codings_flattened(
    httpx_mock: HTTPXMock, remote: RemoteTerminology
) -> None:
    expansion = {
        "resourceType": "ValueSet",
        "expansion": {
            "contains": [
                {"system": SCT, "code": "129103003", "display": "Endometriosis"},
                {
                    "abstract": True,
                    "code": "group",
                    "contains": [{"system": SCT, "code": "198247003", "display": "Child"}],
                },
            ]
        },
    }
    httpx_mock.add_response(url=EXPAND, json=expansion)
    codings = await remote.expand_ecl("<<129103003")
    assert codings == [
        Coding(system=SCT, code="129103003", display="Endometriosis"),
        Coding(system=SCT, code="198247003", display="Child"),
    ]
    request = httpx_mock.get_request()
    assert request is not None
    assert request.url.params["url"] == "http://snomed.info/sct?fhir_vs=ecl/<<129103003"


async def test_expand_ecl_cached_within_ttl_makes_one_request(
    httpx_mock: HTTPXMock, remote: RemoteTerminology
) -> None:
    httpx_mock.add_response(url=EXPAND, json={"resourceType": "ValueSet", "expansion": {}})
    assert await remote.expand_ecl("<<1") == []
    assert await remote.expand_ecl("<<1") == []
    assert len(httpx_mock.get_requests()) == 1


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (200, {"resourceType": "Bundle"}, FhirResponseError),
        (200, {"resourceType": "ValueSet"}, FhirResponseError),
        (200, {"resourceType": "ValueSet", "expansion": {"contains": {}}}, FhirResponseError),
        (404, {"resourceType": "OperationOutcome"}, FhirResponseError),
        (500, {"resourceType": "OperationOutcome"}, FhirUnavailableError),
    ],
)
async def test_expand_ecl_bad_answer_raises(
    httpx_mock: HTTPXMock,
    remote: RemoteTerminology,
    status: int,
    body: dict[str, object],
    error: type[Exception],
) -> None:
    httpx_mock.add_response(url=EXPAND, status_code=status, json=body)
    with pytest.raises(error):
        await remote.expand_ecl("<<1")


def test_remote_terminology_strips_trailing_slash(remote: RemoteTerminology) -> None:
    assert remote.base_url == BASE
