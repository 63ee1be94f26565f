"""Martha's Rule end to end on the real HAPI server.

The real app runs under uvicorn (HAPI must reach its Subscription receiver). A family member
fills in the concern form over HTTP ("worse", "worried"); the concern Observation lands on
HAPI; HAPI notifies the receiver; the Escalation Task appears on HAPI within 30 s, exactly
once, even when the notification comes again; and the ``news2-concern`` patient-view card
shows the NEWS2 from the vital signs loaded here, the concern, and that the outreach review
has been requested.

In the first test the form does not create the Task itself (``escalate_on_submit`` off), so
the Task can only come from the Subscription path (issue #7 item 5). The second runs the
default (the form creates the Task at once) with the Subscription also active: the two paths
together still make one Task.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from fhir_safety.api.app import create_app
from fhir_safety.concern_form.api import router as concern_form_router
from fhir_safety.concern_form.links import issue_link
from fhir_safety.config import Settings
from fhir_safety.fhir.client import FhirClient
from fhir_safety.fhir.resources import now_utc
from fhir_safety.services.concern_submission import CONCERN_PROFILE
from fhir_safety.services.escalation import escalation_task_id
from fhir_safety.services.subscriptions import SECRET_HEADER, register_subscription
from fhir_safety.terminology import Terminology
from tests.integration.fhir_loading import error_messages, validate
from tests.integration.service_harness import serve_in_thread

pytestmark = pytest.mark.integration

FORM_SECRET = "e2e-concern-form-secret-0123456789abcdef"
SUBSCRIPTION_SECRET = "e2e-subscription-secret"
CRITERIA = "Observation?code=concern-observation"
SCT, LOINC, UCUM = "http://snomed.info/sct", "http://loinc.org", "http://unitsofmeasure.org"
CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
TASK_DEADLINE_S = 30.0


# --- data for one patient --------------------------------------------------------------------------


def _vital(pid: str, key: str, code: str, value: float, unit: str, when: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": f"{pid}-{key}",
        "status": "final",
        "category": [{"coding": [{"system": CATEGORY, "code": "vital-signs"}]}],
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": when,
        "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit},
    }


def patient_data(pid: str, now: datetime) -> list[dict[str, Any]]:
    """Martha, on a ward, with a full set 20 minutes ago scoring NEWS2 5 (medium).

    RR 22 (2), SpO2 95% on air (1, scale 1), air (0), SBP 120 (0), pulse 95 (1), alert (0),
    temperature 38.5 (1): RCP Chart 1 [S7].
    """
    when = (now - timedelta(minutes=20)).isoformat(timespec="seconds")
    subject = {"reference": f"Patient/{pid}"}
    return [
        {
            "resourceType": "Patient",
            "id": pid,
            "active": True,
            "birthDate": "1950-01-01",
            "name": [{"use": "official", "family": "Mills", "given": ["Martha", "Jane"]}],
        },
        {
            "resourceType": "Encounter",
            "id": f"{pid}-enc",
            "status": "in-progress",
            "class": {
                "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                "code": "IMP",
            },
            "subject": subject,
            "period": {"start": (now - timedelta(days=2)).isoformat(timespec="seconds")},
        },
        _vital(pid, "rr", "9279-1", 22, "/min", when),
        _vital(pid, "spo2", "59408-5", 95, "%", when),
        _vital(pid, "sbp", "8480-6", 120, "mm[Hg]", when),
        _vital(pid, "pulse", "8867-4", 95, "/min", when),
        _vital(pid, "temp", "8310-5", 38.5, "Cel", when),
        {
            "resourceType": "Observation",
            "id": f"{pid}-air",
            "status": "final",
            "code": {"coding": [{"system": SCT, "code": "722742002"}]},
            "subject": subject,
            "effectiveDateTime": when,
        },
        {
            "resourceType": "Observation",
            "id": f"{pid}-acvpu",
            "status": "final",
            "category": [{"coding": [{"system": CATEGORY, "code": "survey"}]}],
            "code": {"coding": [{"system": SCT, "code": "1104441000000107"}]},
            "subject": subject,
            "effectiveDateTime": when,
            "valueCodeableConcept": {"coding": [{"system": SCT, "code": "248234008"}]},
        },
    ]


def put_transaction(base_url: str, resources: list[dict[str, Any]]) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
            for r in resources
        ],
    }
    response = httpx.post(base_url, json=bundle, timeout=60)
    assert response.status_code == 200, response.text


def search(base_url: str, query: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{base_url}/{query}", timeout=30)
    assert response.status_code == 200, response.text
    return [e["resource"] for e in response.json().get("entry", [])]


# --- the running service -----------------------------------------------------------------------------


def form_app(settings: Settings, terminology: Terminology) -> FastAPI:
    app = create_app(settings, terminology=terminology)
    if not any(getattr(r, "path", None) == "/concern/{code}" for r in app.routes):
        app.include_router(concern_form_router)  # until api/app.py includes it
    return app


@pytest.fixture
def service(
    loaded_hapi: str, tmp_path: Path, terminology: Terminology, request: pytest.FixtureRequest
) -> Iterator[tuple[FastAPI, str, Settings]]:
    """The app under uvicorn with HAPI as its FHIR server, and the concern Subscription."""
    escalate_on_submit: bool = request.param
    settings = Settings(
        feedback_database_url=f"sqlite:///{tmp_path / 'fb.sqlite3'}",
        fhir_server_url=loaded_hapi,
        subscription_secret=SUBSCRIPTION_SECRET,
        concern_form_secret=FORM_SECRET,
        request_deadline_seconds=20,
        concern_form={
            "escalate_on_submit": escalate_on_submit,
            "escalation_wait_seconds": 15,
            "marthas_rule_phone": "0118 496 0000",
        },
    )
    app = form_app(settings, terminology)
    with serve_in_thread(app) as url:

        async def subscribe() -> dict[str, Any]:
            async with httpx.AsyncClient(timeout=30) as http:
                return await register_subscription(
                    FhirClient(http, loaded_hapi),
                    CRITERIA,
                    f"{url}/subscriptions/notify",
                    SUBSCRIPTION_SECRET,
                )

        subscription = asyncio.run(subscribe())
        assert subscription["status"] == "active"
        try:
            yield app, url, settings
        finally:
            httpx.delete(f"{loaded_hapi}/Subscription/{subscription['id']}", timeout=30)


def fill_in_form(url: str, code: str, **answers: str) -> httpx.Response:
    """What a browser does: open the link, read the form token, post the answers."""
    with httpx.Client(base_url=url, timeout=60) as browser:
        page = browser.get(f"/concern/{code}")
        assert page.status_code == 200, page.text
        assert "How is Martha today?" in page.text
        token = re.search(r'name="token" value="([^"]+)"', page.text)
        assert token is not None
        return browser.post(
            f"/concern/{code}",
            data={"token": token.group(1), **answers},
            headers={"Origin": url},
        )


def wait_for_tasks(base_url: str, pid: str) -> list[dict[str, Any]]:
    deadline = time.monotonic() + TASK_DEADLINE_S
    while True:
        tasks = search(base_url, f"Task?patient={pid}&code=marthas-rule-call")
        if tasks:
            return tasks
        assert time.monotonic() < deadline, f"no Escalation Task within {TASK_DEADLINE_S:.0f} s"
        time.sleep(0.5)


def the_concern(base_url: str, pid: str) -> dict[str, Any]:
    (concern,) = search(base_url, f"Observation?patient={pid}&code=concern-observation")
    return concern


def card_response(url: str, base_url: str, pid: str) -> list[dict[str, Any]]:
    request = {
        "hook": "patient-view",
        "hookInstance": str(uuid.uuid4()),
        "fhirServer": base_url,
        "context": {"userId": "Practitioner/e2e-nurse", "patientId": pid},
    }
    response = httpx.post(f"{url}/cds-services/news2-concern", json=request, timeout=60)
    assert response.status_code == 200, response.text
    cards: list[dict[str, Any]] = response.json()["cards"]
    return cards


# --- the tests -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("service", [False], indirect=True, ids=["subscription-only"])
def test_form_concern_becomes_one_task_through_the_subscription_and_shows_on_the_card(
    loaded_hapi: str, service: tuple[FastAPI, str, Settings]
) -> None:
    app, url, settings = service
    pid = f"e2e-concern-{uuid.uuid4().hex[:8]}"
    put_transaction(loaded_hapi, patient_data(pid, now_utc()))
    code = issue_link(settings, pid, "7A", now=now_utc()).code

    sent = fill_in_form(
        url,
        code,
        how_today="worse",
        worried="yes",
        who="family",
        note="Mum is not herself, she is very sleepy",
        name="Jane",
        phone="07700 900 982",
    )
    assert sent.status_code == 200, sent.text
    # Honest confirmation: the form saw the Subscription make the Task (or knows it will).
    assert "critical care outreach team to check on Martha" in sent.text
    assert "could not ask" not in sent.text

    # The concern is on HAPI in the patient-concern shape, the Task follows within 30 s.
    concern = the_concern(loaded_hapi, pid)
    assert concern["performer"][0]["reference"].startswith("RelatedPerson/")
    assert concern["valueCodeableConcept"]["coding"][0]["code"] == "worried"
    with httpx.Client(timeout=120) as http:
        outcome = validate(loaded_hapi, http, concern, CONCERN_PROFILE)
    assert error_messages(outcome) == []
    (task,) = wait_for_tasks(loaded_hapi, pid)
    assert task["id"] == escalation_task_id(f"Observation/{concern['id']}")
    assert task["priority"] == "stat"  # concern together with NEWS2 5
    assert task["reasonReference"]["reference"] == f"Observation/{concern['id']}"
    assert task["requester"]["reference"] == concern["performer"][0]["reference"]
    first_version = task["meta"]["versionId"]

    # Delivered again: the Observation re-PUT on HAPI (a new version, so HAPI notifies again),
    # and the same notification delivered twice straight to the receiver.
    received = app.state.fhir_safety.receiver.received["Observation"]
    again = {k: v for k, v in concern.items() if k != "meta"} | {
        "meta": {"profile": concern["meta"]["profile"]},
        "issued": now_utc().isoformat(timespec="seconds"),
    }
    assert httpx.put(
        f"{loaded_hapi}/Observation/{concern['id']}", json=again, timeout=30
    ).is_success
    deadline = time.monotonic() + TASK_DEADLINE_S
    while app.state.fhir_safety.receiver.received["Observation"] <= received:
        assert time.monotonic() < deadline, "HAPI did not notify the updated concern"
        time.sleep(0.25)
    for _ in range(2):
        delivered = httpx.put(
            f"{url}/subscriptions/notify/Observation/{concern['id']}",
            json=again | {"id": concern["id"]},
            headers={SECRET_HEADER: SUBSCRIPTION_SECRET},
            timeout=30,
        )
        assert delivered.status_code == 200
    time.sleep(2)  # anything a late notification would do has been done
    (task,) = search(loaded_hapi, f"Task?patient={pid}&code=marthas-rule-call")
    assert task["meta"]["versionId"] == first_version  # not duplicated, not rewritten

    # The patient-view card: NEWS2 from the vitals, the concern, the escalation requested.
    cards = card_response(url, loaded_hapi, pid)
    summaries = [c["summary"] for c in cards]
    news2 = next(c for c in cards if c["summary"].startswith("NEWS2 5 (medium risk)"))
    assert news2["indicator"] == "warning"
    assert "worried" in news2["detail"].lower()
    escalation = next(c for c in cards if "already requested" in c["summary"])
    assert escalation["indicator"] == "info", summaries
    assert not escalation.get("suggestions"), "the concern is not requested twice"


@pytest.mark.parametrize("service", [True], indirect=True, ids=["form-and-subscription"])
def test_form_and_subscription_together_still_make_one_task(
    loaded_hapi: str, service: tuple[FastAPI, str, Settings]
) -> None:
    _, url, settings = service
    pid = f"e2e-concern-{uuid.uuid4().hex[:8]}"
    put_transaction(loaded_hapi, patient_data(pid, now_utc()))
    code = issue_link(settings, pid, "7A", now=now_utc()).code

    sent = fill_in_form(url, code, how_today="worse", worried="no", who="patient")
    assert sent.status_code == 200, sent.text
    assert "We have asked the critical care outreach team to check on Martha" in sent.text
    concern = the_concern(loaded_hapi, pid)
    assert concern["performer"][0]["reference"] == f"Patient/{pid}"
    (task,) = wait_for_tasks(loaded_hapi, pid)  # made by the form at once
    time.sleep(3)  # the Subscription's notification arrives and finds it
    tasks = search(loaded_hapi, f"Task?patient={pid}&code=marthas-rule-call")
    assert [t["id"] for t in tasks] == [task["id"]]
