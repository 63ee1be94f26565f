"""Escalation on arrival against a mocked FHIR server: one Task per concern, even notified twice."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fhir.resources.R4B.task import Task as R4BTask
from pytest_httpx import HTTPXMock

from fhir_safety.config import Settings
from fhir_safety.fhir.client import FhirClient
from fhir_safety.services.escalation import (
    ConcernEscalator,
    escalation_task_id,
    register_concern_escalation,
)
from fhir_safety.services.subscriptions import NotificationReceiver
from fhir_safety.terminology import Terminology
from tests.unit.rules.news2_data import NOW, PATIENT, concern, escalation, full_set, patient

BASE = "http://fhir.test/fhir"
TASK_ID = escalation_task_id("Observation/c-1")
TASK_URL = f"{BASE}/Task/{TASK_ID}"


def searchset(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": r, "search": {"mode": "match"}} for r in resources],
    }


class FakeServer:
    """Enough of a FHIR server: reads, category/code searches by patient, PUT stores."""

    def __init__(self, resources: list[dict[str, Any]]) -> None:
        self.resources = {(r["resourceType"], r["id"]): r for r in resources}
        self.puts: list[dict[str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/fhir/")
        if request.method == "PUT":
            body = json.loads(request.content)
            self.puts.append(body)
            self.resources[(body["resourceType"], body["id"])] = body
            return httpx.Response(201, json=body)
        if "/" in path:
            found = self.resources.get(tuple(path.split("/", 1)))  # type: ignore[arg-type]
            if found is None:
                return httpx.Response(404, json={"resourceType": "OperationOutcome", "issue": []})
            return httpx.Response(200, json=found)
        params = dict(request.url.params)
        matches = [
            r
            for (kind, _), r in self.resources.items()
            if kind == path and self._matches(r, params)
        ]
        return httpx.Response(200, json=searchset(matches))

    @staticmethod
    def _matches(resource: dict[str, Any], params: dict[str, str]) -> bool:
        if "category" in params:
            codes = {c.get("code") for cc in resource.get("category", []) for c in cc["coding"]}
            return params["category"] in codes
        if "code" in params:
            wanted = set(params["code"].split(","))
            return bool(wanted & {c.get("code") for c in resource["code"]["coding"]})
        return True


@pytest.fixture
def settings() -> Settings:
    return Settings()


def escalator(http: httpx.AsyncClient, settings: Settings, terminology: Terminology) -> Any:
    return ConcernEscalator(FhirClient(http, BASE), settings, terminology, clock=lambda: NOW)


def serve(httpx_mock: HTTPXMock, server: FakeServer) -> None:
    httpx_mock.add_callback(server, is_reusable=True, is_optional=True)


async def test_escalate_worried_concern_creates_task(
    httpx_mock: HTTPXMock, settings: Settings, terminology: Terminology
) -> None:
    notified = concern(display="Jane (daughter)")
    server = FakeServer([patient(), *full_set(), notified])
    serve(httpx_mock, server)
    async with httpx.AsyncClient() as http:
        outcome = await escalator(http, settings, terminology).escalate(notified)
    assert outcome.action == "created"
    (task,) = server.puts
    R4BTask.model_validate(task)
    assert task["id"] == TASK_ID
    assert task["priority"] == "urgent"
    assert task["reasonReference"] == {"reference": "Observation/c-1"}
    assert task["requester"] == {"reference": "RelatedPerson/daughter"}
    assert task["owner"]["reference"] == "CareTeam/critical-care-outreach"
    assert task["for"] == {"reference": f"Patient/{PATIENT}"}


async def test_escalate_notified_twice_creates_one_task(
    httpx_mock: HTTPXMock, settings: Settings, terminology: Terminology
) -> None:
    notified = concern()
    server = FakeServer([*full_set(), notified])
    serve(httpx_mock, server)
    receiver = NotificationReceiver("s3cret")
    async with httpx.AsyncClient() as http:
        register_concern_escalation(
            receiver, FhirClient(http, BASE), settings, terminology, lambda: NOW
        )
        await receiver.deliver(notified)
        accepted = server.resources[("Task", TASK_ID)] | {"status": "accepted"}
        server.resources[("Task", TASK_ID)] = accepted  # the outreach team picks it up
        await receiver.deliver(notified)
    assert len(server.puts) == 1
    assert server.resources[("Task", TASK_ID)]["status"] == "accepted"  # never reset


async def test_escalate_with_news2_at_least_5_is_stat(
    httpx_mock: HTTPXMock, settings: Settings, terminology: Terminology
) -> None:
    notified = concern("worse", performer="Patient/p-1")
    server = FakeServer([*full_set(rr=22, spo2=93, pulse=95), notified])
    serve(httpx_mock, server)
    async with httpx.AsyncClient() as http:
        outcome = await escalator(http, settings, terminology).escalate(notified)
    assert outcome.task is not None
    assert outcome.task["priority"] == "stat"
    assert "NEWS2: 5, medium risk" in outcome.task["description"]


async def test_escalate_task_from_card_counts(
    httpx_mock: HTTPXMock, settings: Settings, terminology: Terminology
) -> None:
    notified = concern()
    server = FakeServer([*full_set(), notified, escalation("c-1", tid="made-on-card")])
    serve(httpx_mock, server)
    async with httpx.AsyncClient() as http:
        outcome = await escalator(http, settings, terminology).escalate(notified)
    assert outcome.action == "exists"
    assert server.puts == []


@pytest.mark.parametrize(
    ("resource", "reason"),
    [
        (concern("better"), "does not escalate"),
        (concern("not-worried"), "does not escalate"),
        (concern(when=(NOW - timedelta(hours=24, seconds=1)).isoformat()), "older than"),
        (concern(status="entered-in-error"), "not a usable concern"),
        (full_set()[0], "not a usable concern"),
        ({"resourceType": "Patient", "id": "p-1"}, "not an Observation"),
        (concern() | {"subject": {"reference": "Group/g"}}, "names no Patient"),
        ({"resourceType": "Observation", "id": "x"}, "not an Observation"),  # invalid
    ],
)
async def test_escalate_ignores_what_does_not_escalate(
    httpx_mock: HTTPXMock,
    settings: Settings,
    terminology: Terminology,
    resource: dict[str, Any],
    reason: str,
) -> None:
    async with httpx.AsyncClient() as http:
        outcome = await escalator(http, settings, terminology).escalate(resource)
    assert outcome.action == "ignored"
    assert reason in outcome.reason
    assert httpx_mock.get_requests() == []  # decided without asking the server


async def test_escalate_exactly_24_hours_old_still_escalates(
    httpx_mock: HTTPXMock, settings: Settings, terminology: Terminology
) -> None:
    notified = concern(when=(NOW - timedelta(hours=24)).isoformat())
    server = FakeServer([notified])
    serve(httpx_mock, server)
    async with httpx.AsyncClient() as http:
        outcome = await escalator(http, settings, terminology).escalate(notified)
    assert outcome.action == "created"
    assert outcome.task is not None
    assert "incomplete" in outcome.task["description"]  # no vital signs on the server


async def test_escalate_server_error_creates_nothing(
    httpx_mock: HTTPXMock, settings: Settings, terminology: Terminology
) -> None:
    httpx_mock.add_response(url=TASK_URL, status_code=503)
    receiver = NotificationReceiver("s3cret")
    async with httpx.AsyncClient() as http:
        register_concern_escalation(
            receiver, FhirClient(http, BASE), settings, terminology, lambda: NOW
        )
        await receiver.deliver(concern())  # the receiver logs the failure; HAPI is not retried
    assert [r.method for r in httpx_mock.get_requests()] == ["GET"]


def test_escalation_task_id_is_deterministic_and_a_valid_fhir_id() -> None:
    first = escalation_task_id("Observation/c-1")
    assert first == escalation_task_id("Observation/c-1")
    assert first != escalation_task_id("Observation/c-2")
    assert re.fullmatch(r"[A-Za-z0-9\-.]{1,64}", first)
