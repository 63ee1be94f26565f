"""Fault injection over real sockets: every fault of the FHIR server and of the JWKS source.

The real app runs under uvicorn on 127.0.0.1 (``serve_in_thread``); a loopback
``FaultServer`` plays the EHR's FHIR server and the EHR's JWKS host and misbehaves by
path. A second server on 127.0.0.2 is "another host": a ``next`` link or a redirect
points there, and it must never be contacted. Nothing is mocked.

One row per fault x source, each with its defined outcome and a bound on the measured
time (the request deadline is the shipped default, 5 s; FHIR fetches get 80% of it):

- ``fhir-required``: long-stay needs the patient's in-progress Encounters (required
  prefetch key) -> 412 OperationOutcome naming ``prefetch.encounters``;
- ``fhir-optional``: valproate at order-sign reads only optional keys -> 200 with
  "Could not check: ..." cards naming each check that did not run, and no other card
  (no verdict drawn from data that never arrived);
- ``jwks``: the EHR's JWKS cannot be had -> a bare 401, and the service still answers
  a caller whose keys are fine straight afterwards.

Never a hang, a 5xx or silence.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from fhir_safety.api.app import create_app
from fhir_safety.config import Settings, TrustedIssuer
from fhir_safety.terminology import Terminology
from tests.conftest import load_example
from tests.integration.service_harness import serve_in_thread
from tests.reliability.fault_server import FAULTS, FaultServer
from tests.reliability.tokens import TestIssuer

DEADLINE_SECONDS = Settings().request_deadline_seconds  # the shipped default (5 s)
JWKS_FETCH_SECONDS = 5.0  # services/auth.py _JWKS_FETCH_TIMEOUT_SECONDS
FAST_SECONDS = 2.5  # a fault the service can see at once must be answered at once
MARGIN_SECONDS = 1.0  # scheduling slack on top of a deadline
SLOW_FAULTS = {"timeout", "stall", "drip"}
ACCESS_TOKEN = "fault-test-access-token-4f1d"  # the FHIR server's bearer token
GOOD_ISS = "https://ehr.faults.test"

VALPROATE_CHECKS = {
    "Could not check: current pregnancy before valproate",
    "Could not check: valproate Pregnancy Prevention Programme status (PPP Flag)",
    "Could not check: whether valproate is a new start (two-specialist rule, under 55)",
}


@dataclass(frozen=True)
class Row:
    fault: str  # "ok" (control), "refused", or one of fault_server.FAULTS
    source: str  # "fhir-required", "fhir-optional" or "jwks"

    @property
    def max_seconds(self) -> float:
        if self.fault not in SLOW_FAULTS:
            return FAST_SECONDS
        if self.source == "jwks":
            return JWKS_FETCH_SECONDS + MARGIN_SECONDS
        return DEADLINE_SECONDS + MARGIN_SECONDS


ROWS = [
    Row(fault, source)
    for source in ("fhir-required", "fhir-optional", "jwks")
    for fault in ("ok", "refused", *FAULTS)
]
MEASURED: dict[str, tuple[int, float]] = {}


# --- the world: fault server, another host, a closed port, the app ---------------------------


def _closed_port() -> int:
    """A loopback port nobody listens on (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@dataclass
class World:
    base: str
    faults: FaultServer
    decoy: FaultServer
    refused_port: int
    good: TestIssuer
    strangers: dict[str, TestIssuer]

    def fhir_base(self, fault: str) -> str:
        if fault == "refused":
            return f"http://127.0.0.1:{self.refused_port}/fhir"
        return self.faults.fhir_base(fault)


def _jwks_iss(fault: str) -> str:
    return f"https://ehr-{fault}.faults.test"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, terminology: Terminology) -> Iterator[World]:
    good = TestIssuer(GOOD_ISS)
    jwks_faults = ("ok", "refused", *FAULTS)
    strangers = {f: TestIssuer(_jwks_iss(f), kid=f"{f}-key") for f in jwks_faults}
    # The good EHR's key and the key of the "ok" JWKS row's EHR, at /ok/jwks.json.
    served = {"keys": good.jwks()["keys"] + strangers["ok"].jwks()["keys"]}
    decoy = FaultServer(host="127.0.0.2")
    faults = FaultServer(jwks=served, decoy_url=f"{decoy.url}/ok/fhir")
    refused = _closed_port()
    issuers = [TrustedIssuer(iss=GOOD_ISS, jwks_url=faults.jwks_url("ok"))]
    for fault in jwks_faults:
        url = (
            f"http://127.0.0.1:{refused}/jwks.json"
            if fault == "refused"
            else faults.jwks_url(fault)
        )
        issuers.append(TrustedIssuer(iss=_jwks_iss(fault), jwks_url=url))
    database = tmp_path_factory.mktemp("faults") / "feedback.sqlite3"
    settings = Settings(feedback_database_url=f"sqlite:///{database}", issuers=issuers)
    app = create_app(settings, terminology=terminology)
    try:
        with serve_in_thread(app) as base:
            yield World(base, faults, decoy, refused, good, strangers)
    finally:
        faults.close()
        decoy.close()
        _print_table()


def _print_table() -> None:
    lines = ["", "fault x source: status, seconds"]
    lines += [f"  {key:32} {status}  {seconds:6.2f}" for key, (status, seconds) in MEASURED.items()]
    print("\n".join(lines))  # noqa: T201 - the measured table, shown with -s


# --- calls ----------------------------------------------------------------------------------


def _call(world: World, service: str, body: dict[str, Any], issuer: TestIssuer) -> httpx.Response:
    url = f"{world.base}/cds-services/{service}"
    headers = {"Authorization": f"Bearer {issuer.token(url)}"}
    # A client timeout far beyond any deadline: a hang shows up as a slow answer, not here.
    return httpx.post(url, json=body, headers=headers, timeout=60)


def _fhir_request(world: World, example: str, fault: str) -> dict[str, Any]:
    body = load_example(example)
    body.pop("prefetch", None)
    body["fhirServer"] = world.fhir_base(fault)
    body["fhirAuthorization"] = {
        "access_token": ACCESS_TOKEN,
        "token_type": "Bearer",
        "expires_in": 300,
        "scope": "patient/*.read",
        "subject": "fhir-safety",
    }
    return body


def _timed(row: Row, call: Any) -> httpx.Response:
    started = time.monotonic()
    response: httpx.Response = call()
    elapsed = time.monotonic() - started
    MEASURED[f"{row.source} {row.fault}"] = (response.status_code, elapsed)
    assert elapsed <= row.max_seconds, f"{row}: {elapsed:.2f} s (bound {row.max_seconds} s)"
    return response


# --- the table ------------------------------------------------------------------------------


@pytest.mark.parametrize("row", ROWS, ids=[f"{r.source}-{r.fault}" for r in ROWS])
def test_fault_gives_defined_outcome_within_deadline(world: World, row: Row) -> None:
    decoy_before = world.decoy.connections
    if row.source == "fhir-required":
        _check_required(world, row)
    elif row.source == "fhir-optional":
        _check_optional(world, row)
    else:
        _check_jwks(world, row)
    # Nothing was ever sent to another host: not the next page, not the bearer token.
    assert world.decoy.connections == decoy_before == 0
    if row.fault != "refused":  # the request really reached the misbehaving server
        assert any(r.fault == row.fault for r in world.faults.requests)


def _check_required(world: World, row: Row) -> None:
    body = _fhir_request(world, "long-stay/patient-view-no-prefetch.json", row.fault)
    response = _timed(row, lambda: _call(world, "long-stay", body, world.good))
    if row.fault == "ok":
        assert response.status_code == 200, response.text
        assert response.json() == {"cards": []}  # no in-progress encounter: nothing to say
        return
    assert response.status_code == 412, response.text
    issue = response.json()["issue"][0]
    assert issue["code"] == "incomplete"
    assert issue["expression"] == ["prefetch.encounters"]
    assert "required data 'encounters' (Encounter) is unavailable" in issue["diagnostics"]


def _check_optional(world: World, row: Row) -> None:
    body = _fhir_request(world, "valproate/order-sign-no-prefetch.json", row.fault)
    response = _timed(row, lambda: _call(world, "valproate", body, world.good))
    assert response.status_code == 200, response.text
    cards = response.json()["cards"]
    summaries = {card["summary"] for card in cards}
    if row.fault == "ok":
        # Data arrived (a Patient with no sex or birth date, nothing else): real checks ran.
        assert cards
        assert not any(s.startswith("Could not check") for s in summaries)
        return
    assert summaries == VALPROATE_CHECKS, summaries
    for card in cards:
        assert card["indicator"] == "warning"
        assert "Reason: " in card["detail"]
        assert "Do not read the absence of a warning as reassurance" in card["detail"]
    # The FHIR server's token went to the FHIR server only (when a request reached it).
    sent = [r for r in world.faults.requests if r.fault == row.fault and "/fhir/" in r.target]
    assert all(r.headers.get("authorization") == f"Bearer {ACCESS_TOKEN}" for r in sent)


def _check_jwks(world: World, row: Row) -> None:
    body = load_example("long-stay/patient-view-super-stranded-no-plan.json")
    body.pop("fhirServer", None)
    caller = world.strangers[row.fault]
    response = _timed(row, lambda: _call(world, "long-stay", body, caller))
    if row.fault == "ok":
        assert response.status_code == 200, response.text
        assert response.json()["cards"]
        return
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json() == {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "login"}],
    }
    # One EHR's broken key host does not take the service down for the others.
    assert _call(world, "long-stay", body, world.good).status_code == 200
