"""Loading and subscribing, against a mocked FHIR server (the real one is in tests/integration)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from pytest_httpx import HTTPXMock

from fhir_safety.config import REPO_ROOT
from fhir_safety.errors import AuthenticationError, FhirUnavailableError
from fhir_safety.fhir.client import FhirClient
from fhir_safety.services.loader import LoadRejectedError, collect_load_items, load_items
from fhir_safety.services.subscriptions import (
    NotificationReceiver,
    register_subscription,
    subscription_resource,
)

BASE = "http://fhir.test/fhir"


def test_collect_puts_conformance_resources_first() -> None:
    items = collect_load_items(REPO_ROOT)
    kinds = [item.resource["resourceType"] for item in items]
    first_data = next(
        i for i, k in enumerate(kinds) if k not in {"CodeSystem", "ValueSet", "StructureDefinition"}
    )
    assert set(kinds[:first_data]) <= {"CodeSystem", "ValueSet", "StructureDefinition"}
    assert "Encounter/enc-1" in {item.reference for item in items}


async def test_load_sends_put_transactions(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(
        url=BASE,
        method="POST",
        json={"resourceType": "Bundle", "type": "transaction-response"},
        is_reusable=True,
    )
    items = collect_load_items(REPO_ROOT)
    progressed: list[int] = []
    async with httpx.AsyncClient() as http:
        loaded = await load_items(FhirClient(http, BASE), items, on_progress=progressed.append)
    assert loaded == len(items) == sum(progressed)
    first = json.loads(httpx_mock.get_requests()[0].content)
    assert first["type"] == "transaction"
    assert {e["request"]["method"] for e in first["entry"]} == {"PUT"}


async def test_load_names_the_rejected_resource(httpx_mock: HTTPXMock) -> None:
    outcome = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "invalid", "diagnostics": "Unknown code 'xyz'"}],
    }
    httpx_mock.add_response(url=BASE, method="POST", status_code=400, json=outcome)
    items = [i for i in collect_load_items(REPO_ROOT) if i.resource["resourceType"] == "Encounter"]
    httpx_mock.add_response(
        url=f"{BASE}/Encounter/enc-1", method="PUT", status_code=422, json=outcome
    )
    async with httpx.AsyncClient() as http:
        with pytest.raises(
            LoadRejectedError, match=r"rejected Encounter/enc-1 .*Unknown code 'xyz'"
        ):
            await load_items(FhirClient(http, BASE), items)


async def test_load_unreachable_server_is_a_clear_error(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_exception(httpx.ConnectError("refused"))
    async with httpx.AsyncClient() as http:
        with pytest.raises(FhirUnavailableError, match="ConnectError"):
            await load_items(FhirClient(http, BASE), collect_load_items(REPO_ROOT)[:1])


async def test_subscribe_waits_until_active(httpx_mock: HTTPXMock) -> None:
    resource = subscription_resource(
        "Observation?code=x", "http://svc/subscriptions/notify", "s3cret"
    )
    url = f"{BASE}/Subscription/{resource['id']}"
    httpx_mock.add_response(url=url, method="PUT", json=resource)
    httpx_mock.add_response(url=url, method="GET", json=resource | {"status": "requested"})
    httpx_mock.add_response(url=url, method="GET", json=resource | {"status": "active"})
    async with httpx.AsyncClient() as http:
        active = await register_subscription(
            FhirClient(http, BASE),
            "Observation?code=x",
            "http://svc/subscriptions/notify",
            "s3cret",
            poll_seconds=0.01,
        )
    assert active["status"] == "active"
    sent = json.loads(httpx_mock.get_requests()[0].content)
    assert sent["channel"]["header"] == ["X-Fhir-Safety-Secret: s3cret"]


async def test_subscribe_gives_up_after_the_wait(httpx_mock: HTTPXMock) -> None:
    resource = subscription_resource("Observation?code=x", "http://svc/n", "s")
    url = f"{BASE}/Subscription/{resource['id']}"
    httpx_mock.add_response(url=url, method="PUT", json=resource)
    httpx_mock.add_response(url=url, method="GET", json=resource, is_reusable=True)
    async with httpx.AsyncClient() as http:
        with pytest.raises(FhirUnavailableError, match="still 'requested'"):
            await register_subscription(
                FhirClient(http, BASE),
                "Observation?code=x",
                "http://svc/n",
                "s",
                wait_seconds=0.05,
                poll_seconds=0.01,
            )


def test_subscription_id_is_stable_for_the_same_criteria() -> None:
    one = subscription_resource("Observation?code=x", "http://a/n", "s1")
    two = subscription_resource("Observation?code=x", "http://a/n", "s2")
    other = subscription_resource("Observation?code=y", "http://a/n", "s1")
    assert one["id"] == two["id"] != other["id"]


async def test_receiver_checks_secret_and_dispatches_by_type() -> None:
    receiver = NotificationReceiver("s3cret")
    seen: list[dict[str, Any]] = []

    async def handler(resource: dict[str, Any]) -> None:
        seen.append(resource)

    async def broken(_: dict[str, Any]) -> None:
        raise RuntimeError("handler bug")

    receiver.add_handler("Observation", broken)
    receiver.add_handler("Observation", handler)
    with pytest.raises(AuthenticationError):
        receiver.check_secret("wrong")
    with pytest.raises(AuthenticationError):
        NotificationReceiver(None).check_secret("anything")
    receiver.check_secret("s3cret")
    await receiver.deliver({"resourceType": "Observation", "id": "o1"})
    await receiver.deliver(None)
    assert seen == [{"resourceType": "Observation", "id": "o1"}]
    assert receiver.received == {"Observation": 1, "ping": 1}
