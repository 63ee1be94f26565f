"""No leaks: a full run's logs (JSON, DEBUG) and /metrics hold no token, JWT or patient identifier.

The app runs under uvicorn on 127.0.0.1 exactly as ``fhir-safety serve`` runs it
(``log_config=None``, uvicorn's access log on, ``configure_logging`` for the JSON
handler), here at DEBUG. The run goes through every example in examples/*/expected.json,
every no-prefetch example against a FHIR server (the examples' ``*.bundle.json`` data,
served through the app's HTTP transport seam), the $news2 operation, feedback, and the
error paths: malformed JSON, invalid resources, a wrong hook, an unknown service, every
kind of bad JWT, a replayed JWT, the FHIR server down, a body over the cap and a
subscription notification with the wrong secret.

Planted in every request: a unique patient id (replacing the example's everywhere), an NHS
number and a name on every Patient, the FHIR access token (``fhirAuthorization`` and the
configured server token), the JWTs (whole, and their payload and signature segments), and
the subscription secret. The examples' own patient ids, NHS numbers and names are checked
too. None may appear in the captured log text or in the /metrics text.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fhir_safety.api.app import create_app
from fhir_safety.config import Settings, TrustedIssuer
from fhir_safety.observability import configure_logging
from fhir_safety.terminology import Terminology
from tests.conftest import EXAMPLES
from tests.integration.service_harness import serve_in_thread
from tests.reliability.tokens import TestIssuer
from tests.unit.api.fhir_bundle_server import bundle_server

ISS = "https://ehr.leaks.test"
FHIR_BASE = "http://fhir.leaks.test/fhir"
DOWN_BASE = "http://fhir-down.leaks.test/fhir"
SERVER_TOKEN = "srv-token-5b0e2c7e-leakcheck"
ACCESS_TOKEN = "access-token-91c4d2aa-leakcheck"
SUBSCRIPTION_SECRET = "subscription-secret-77aa31-leakcheck"
NHS_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
MIN_SECRET_CHARS = 4  # shorter originals (none today) could match by chance


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# --- patient identity: what the examples hold, and what we plant ----------------------------


def _walk(value: Any) -> Iterator[Any]:
    yield value
    if isinstance(value, dict):
        for item in value.values():
            yield from _walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from _walk(item)


def _patients(document: Any) -> list[dict[str, Any]]:
    return [
        v for v in _walk(document) if isinstance(v, dict) and v.get("resourceType") == "Patient"
    ]


def _patient_ids(document: Any) -> set[str]:
    ids = {p["id"] for p in _patients(document) if isinstance(p.get("id"), str)}
    for value in _walk(document):
        if isinstance(value, str) and value.startswith("Patient/"):
            ids.add(value.removeprefix("Patient/"))
        if isinstance(value, dict) and isinstance(value.get("patientId"), str):
            ids.add(value["patientId"])
    return ids


def _identity(patient: dict[str, Any]) -> set[str]:
    found = {i.get("value") for i in patient.get("identifier") or [] if isinstance(i, dict)}
    for name in patient.get("name") or []:
        found |= {name.get("family"), name.get("text"), *(name.get("given") or [])}
    return {v for v in found if isinstance(v, str)}


class Planter:
    """Renames every patient id to a unique planted one; adds an NHS number and a name."""

    def __init__(self) -> None:
        self.planted: set[str] = set()
        self.originals: set[str] = set()

    def plant(self, document: dict[str, Any]) -> dict[str, Any]:
        ids = _patient_ids(document)
        for patient in _patients(document):
            self.originals |= _identity(patient)
        self.originals |= ids
        text = json.dumps(document)
        for original in sorted(ids, key=len, reverse=True):
            pattern = r'(?<=["/])' + re.escape(original) + r'(?=["/?&#])'
            text = re.sub(pattern, self.patient_id(original), text)
        planted: dict[str, Any] = json.loads(text)
        for patient in _patients(planted):
            key = _digest(str(patient.get("id")))
            nhs = "999" + str(int(key[:12], 16))[-7:]
            family, given = f"Leakfamily{key[:6]}", f"Leakgiven{key[6:12]}"
            patient.setdefault("identifier", []).append({"system": NHS_SYSTEM, "value": nhs})
            patient.setdefault("name", []).append({"family": family, "given": [given]})
            self.planted |= {nhs, family, given}
        return planted

    def patient_id(self, original: str) -> str:
        planted = f"leakpt-{_digest(original)[:10]}"
        self.planted.add(planted)
        return planted


# --- the run ---------------------------------------------------------------------------------


class Run:
    def __init__(self, base: str, issuer: TestIssuer, planter: Planter) -> None:
        self.base = base
        self.issuer = issuer
        self.planter = planter
        self.jwts: list[str] = []
        self.statuses: list[tuple[str, int]] = []
        self.http = httpx.Client(base_url=base, timeout=30)

    def token(self, path: str, **kwargs: Any) -> str:
        token = self.issuer.token(f"{self.base}{path}", **kwargs)
        self.jwts.append(token)
        return token

    def post(
        self,
        label: str,
        path: str,
        *,
        body: Any = None,
        content: bytes | None = None,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        method: str = "POST",
    ) -> httpx.Response:
        sent = {"Authorization": f"Bearer {token or self.token(path)}", **(headers or {})}
        if body is not None:
            content = json.dumps(body).encode()
            sent["Content-Type"] = "application/json"
        response = self.http.request(method, path, content=content, headers=sent)
        self.statuses.append((label, response.status_code))
        return response


def _expected_examples() -> list[tuple[str, str]]:
    cases = []
    for expected_file in sorted(EXAMPLES.glob("*/expected.json")):
        expected = json.loads(expected_file.read_text(encoding="utf-8"))
        for name, case in expected["examples"].items():
            cases.append((f"{expected_file.parent.name}/{name}", case["service"]))
    return cases


def _no_prefetch_examples() -> list[tuple[str, str]]:
    """Examples that need the FHIR server: (path, service), the service from the domain."""
    services = dict(_expected_examples())
    found = []
    for path in sorted(EXAMPLES.glob("*/*no-prefetch*.json")):
        domain = path.parent.name
        service = next(s for p, s in services.items() if p.startswith(f"{domain}/"))
        found.append((f"{domain}/{path.name}", service))
    return found


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EXAMPLES / name).read_text(encoding="utf-8"))
    return data


def _fhir_data(planter: Planter) -> dict[str, Any]:
    """Every example's FHIR data (*.bundle.json, and prefetch resources), planted, in one Bundle."""
    entries = []
    for path in sorted(EXAMPLES.glob("*/*.bundle.json")):
        entries += json.loads(path.read_text(encoding="utf-8"))["entry"]
    return planter.plant({"resourceType": "Bundle", "type": "transaction", "entry": entries})


def _transport(bundle: dict[str, Any]) -> httpx.MockTransport:
    serve = bundle_server(bundle)

    def respond(request: httpx.Request) -> httpx.Response:
        if request.url.host == "fhir-down.leaks.test":
            raise httpx.ConnectError("connection refused", request=request)
        return serve(request)

    return httpx.MockTransport(respond)


@pytest.fixture
def captured_logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """The real JSON log set-up at DEBUG, writing into a buffer; restored afterwards."""
    buffer = io.StringIO()
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    saved_levels = {
        name: logging.getLogger(name).level
        for name in ("httpx", "httpcore", "uvicorn", "uvicorn.access", "uvicorn.error")
    }
    monkeypatch.setattr(sys, "stderr", buffer)
    configure_logging("DEBUG")
    try:
        yield buffer
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
        for name, level in saved_levels.items():
            logging.getLogger(name).setLevel(level)


def test_full_run_logs_and_metrics_hold_no_secret_or_patient_identifier(
    captured_logs: io.StringIO, terminology: Terminology, tmp_path: Path
) -> None:
    issuer = TestIssuer(ISS)
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(json.dumps(issuer.jwks()), encoding="utf-8")
    planter = Planter()
    settings = Settings(
        feedback_database_url=f"sqlite:///{tmp_path / 'feedback.sqlite3'}",
        issuers=[TrustedIssuer(iss=ISS, jwks_file=jwks_file)],
        fhir_server_url=FHIR_BASE,
        fhir_server_token=SERVER_TOKEN,
        subscription_secret=SUBSCRIPTION_SECRET,
        max_body_bytes=200_000,
        log_level="DEBUG",
    )
    app = create_app(settings, terminology=terminology, transport=_transport(_fhir_data(planter)))
    with serve_in_thread(app) as base:
        run = Run(base, issuer, planter)
        _examples(run)
        _news2_and_feedback(run)
        _error_paths(run)
        logging.getLogger("fhir_safety.api").debug("leak-check canary")
        metrics = run.http.get("/metrics").text
        run.http.close()

    logs = captured_logs.getvalue()
    _check_capture_is_real(logs, run)
    secrets = _secrets(run)
    for where, text in (("logs", logs), ("metrics", metrics)):
        leaked = sorted(s for s in secrets if s in text)
        lines = [line for line in text.splitlines() if any(s in line for s in leaked)]
        assert not leaked, f"{where} hold {leaked[:10]}: {lines[:5]}"


def _examples(run: Run) -> None:
    for name, service in _expected_examples():
        body = run.planter.plant(_load(name))
        body.pop("fhirServer", None)
        response = run.post(name, f"/cds-services/{service}", body=body)
        assert response.status_code == 200, (name, response.text)
    for name, service in _no_prefetch_examples():
        body = run.planter.plant(_load(name))
        body["fhirServer"] = FHIR_BASE
        body["fhirAuthorization"] = _authorization()
        response = run.post(name, f"/cds-services/{service}", body=body)
        assert response.status_code == 200, (name, response.text)
        # and with no fhirServer: the configured server and its token
        del body["fhirServer"], body["fhirAuthorization"]
        response = run.post(f"{name} default server", f"/cds-services/{service}", body=body)
        assert response.status_code == 200, (name, response.text)


def _authorization() -> dict[str, Any]:
    return {
        "access_token": ACCESS_TOKEN,
        "token_type": "Bearer",
        "expires_in": 300,
        "scope": "patient/*.read",
        "subject": "fhir-safety",
    }


def _news2_and_feedback(run: Run) -> None:
    observations = run.planter.plant(_load("news2/uk-core-news2-observations.json"))
    assert run.post("$news2", "/fhir-safety/$news2", body=observations).status_code == 200
    patient = run.planter.patient_id(
        _load("news2/patient-view-no-prefetch.json")["context"]["patientId"]
    )
    path = f"/fhir-safety/Patient/{patient}/$news2"
    assert run.post("$news2 patient", path, content=b"").status_code == 200
    # Feedback with free text naming the patient: stored for the summary, never logged.
    cards = run.post(
        "hook for feedback",
        "/cds-services/long-stay",
        body=run.planter.plant(_load("long-stay/patient-view-super-stranded-no-plan.json")),
    ).json()["cards"]
    name = sorted(run.planter.planted)[0]
    feedback = {
        "feedback": [
            {
                "card": cards[0]["uuid"],
                "outcome": "overridden",
                "overrideReason": {"userComment": f"discussed with {name}"},
                "outcomeTimestamp": "2026-11-26T09:05:00Z",
            }
        ]
    }
    path = "/cds-services/long-stay/feedback"
    assert run.post("feedback", path, body=feedback).status_code == 200
    assert run.post("feedback again", path, body=feedback).json()["stored"] == 0


def _error_paths(run: Run) -> None:
    long_stay = run.planter.plant(_load("long-stay/patient-view-super-stranded-no-plan.json"))
    path = "/cds-services/long-stay"
    text = json.dumps(long_stay).encode()
    expect = {
        "malformed json": (run.post("malformed", path, content=text[:-9]), 400),
        "wrong hook": (run.post("hook", path, body=dict(long_stay, hook="order-sign")), 400),
        "unknown service": (run.post("unknown", "/cds-services/nope", body=long_stay), 404),
        "too large": (run.post("large", path, content=text + b" " * 200_001), 413),
    }
    broken = json.loads(json.dumps(long_stay))
    broken["prefetch"]["encounters"]["entry"][0]["resource"]["period"] = {"start": "yesterday"}
    expect["invalid resource"] = (run.post("invalid", path, body=broken), 422)
    no_patient = json.loads(json.dumps(long_stay))
    del no_patient["context"]["patientId"]
    expect["missing context"] = (run.post("context", path, body=no_patient), 422)
    down = {k: v for k, v in long_stay.items() if k != "prefetch"} | {"fhirServer": DOWN_BASE}
    down["fhirAuthorization"] = _authorization()
    expect["fhir server down"] = (run.post("down", path, body=down), 412)
    patient = long_stay["context"]["patientId"]
    news2_path = f"/fhir-safety/Patient/{patient}/$news2"
    expect["$news2 wrong patient"] = (
        run.post(
            "news2 other",
            news2_path,
            body=run.planter.plant(_load("news2/uk-core-news2-observations.json")),
        ),
        None,
    )
    # JWT failures: garbage, another key, expired, wrong audience, replayed, none.
    stranger = TestIssuer(ISS)
    bad_tokens = {
        "garbage token": "eyJhbGciOiJFUzM4NCJ9.eyJzdWIiOiJ4In0.c2ln",
        "other key": stranger.token(f"{run.base}{path}"),
        "expired": run.issuer.token(f"{run.base}{path}", issued=1_700_000_000, lifetime=300),
        "wrong audience": run.issuer.token(f"{run.base}/cds-services/valproate"),
    }
    run.jwts += bad_tokens.values()
    for label, token in bad_tokens.items():
        expect[label] = (run.post(label, path, body=long_stay, token=token), 401)
    replayed = run.token(path)
    assert run.post("first use", path, body=long_stay, token=replayed).status_code == 200
    expect["replayed"] = (run.post("replay", path, body=long_stay, token=replayed), 401)
    no_token = run.http.post(path, json=long_stay)
    expect["no token"] = (no_token, 401)
    notify = f"/subscriptions/notify/Patient/{patient}"
    wrong_secret = run.http.put(
        notify,
        json=_patients(long_stay)[0]
        if _patients(long_stay)
        else {"resourceType": "Patient", "id": patient},
        headers={"X-Fhir-Safety-Secret": "wrong-" + SUBSCRIPTION_SECRET},
    )
    expect["wrong subscription secret"] = (wrong_secret, 401)
    for label, (response, status) in expect.items():
        assert response.status_code < 500, (label, response.text)
        if status is not None:
            assert response.status_code == status, (label, response.status_code, response.text)


def _check_capture_is_real(logs: str, run: Run) -> None:
    """The buffer holds the JSON log of this run at DEBUG, not an empty or foreign stream."""
    lines = [json.loads(line) for line in logs.splitlines() if line.strip()]
    messages = {line["message"] for line in lines}
    assert "hook answered" in messages
    assert "authentication refused" in messages
    assert "request refused" in messages
    # DEBUG records of any fhir_safety logger reach the buffer (the run itself logs none).
    assert {"level": "DEBUG", "message": "leak-check canary"}.items() <= next(
        line for line in lines if line["message"] == "leak-check canary"
    ).items()
    assert len([s for s in run.statuses if s[1] == 200]) > 50


def _secrets(run: Run) -> set[str]:
    segments = {part for token in run.jwts for part in token.split(".")[1:] if len(part) > 16}
    found = {
        *run.jwts,
        *segments,
        SERVER_TOKEN,
        ACCESS_TOKEN,
        SUBSCRIPTION_SECRET,
        *run.planter.planted,
        *run.planter.originals,
    }
    return {s for s in found if len(s) >= MIN_SECRET_CHARS}
