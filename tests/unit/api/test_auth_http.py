"""JWT checks through HTTP: every CDS endpoint, exact ``aud``, 401 with no detail, no token in logs."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient

from fhir_safety.api.app import create_app
from fhir_safety.config import Settings, TrustedIssuer
from fhir_safety.terminology import Terminology
from tests.conftest import FIXED_NOW, load_example

ISS = "https://ehr.example.org"
KID = "ehr-key-1"
BASE = "http://testserver"


@pytest.fixture(scope="module")
def private_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP384R1())


@pytest.fixture
def secured(
    tmp_path: Path, private_key: ec.EllipticCurvePrivateKey, terminology: Terminology
) -> Iterator[TestClient]:
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(private_key.public_key()))
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(json.dumps({"keys": [jwk | {"kid": KID, "alg": "ES384", "use": "sig"}]}))
    settings = Settings(
        feedback_database_url=f"sqlite:///{tmp_path / 'fb.sqlite3'}",
        issuers=[TrustedIssuer(iss=ISS, jwks_file=jwks_file)],
    )
    with TestClient(
        create_app(settings, terminology=terminology, clock=lambda: FIXED_NOW)
    ) as client:
        yield client


def token(key: ec.EllipticCurvePrivateKey, aud: str, **claims: Any) -> str:
    payload = {
        "iss": ISS,
        "aud": aud,
        "iat": int(FIXED_NOW.timestamp()),
        "exp": int((FIXED_NOW + timedelta(minutes=5)).timestamp()),
        "jti": str(uuid.uuid4()),
        **claims,
    }
    return jwt.encode(payload, key, algorithm="ES384", headers={"kid": KID, "typ": "JWT"})


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def test_valid_token_is_accepted_on_every_endpoint(
    secured: TestClient, private_key: ec.EllipticCurvePrivateKey
) -> None:
    discovery = secured.get(
        "/cds-services", headers=bearer(token(private_key, f"{BASE}/cds-services"))
    )
    assert discovery.status_code == 200
    call = secured.post(
        "/cds-services/long-stay",
        json=load_example("long-stay/patient-view-short-stay.json"),
        headers=bearer(token(private_key, f"{BASE}/cds-services/long-stay")),
    )
    assert call.status_code == 200


@pytest.mark.parametrize(
    ("path", "method"),
    [
        ("/cds-services", "get"),
        ("/cds-services/long-stay", "post"),
        ("/cds-services/long-stay/feedback", "post"),
        ("/feedback/summary", "get"),
    ],
)
def test_missing_token_is_401_without_detail(secured: TestClient, path: str, method: str) -> None:
    response = getattr(secured, method)(path)
    assert response.status_code == 401
    assert response.json() == {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "login"}],
    }


def test_token_for_another_endpoint_is_refused(
    secured: TestClient, private_key: ec.EllipticCurvePrivateKey
) -> None:
    wrong_aud = token(private_key, f"{BASE}/cds-services/another-service")
    response = secured.post(
        "/cds-services/long-stay",
        json=load_example("long-stay/patient-view-short-stay.json"),
        headers=bearer(wrong_aud),
    )
    assert response.status_code == 401


def test_replayed_token_is_refused(
    secured: TestClient, private_key: ec.EllipticCurvePrivateKey
) -> None:
    once = token(private_key, f"{BASE}/cds-services")
    assert secured.get("/cds-services", headers=bearer(once)).status_code == 200
    assert secured.get("/cds-services", headers=bearer(once)).status_code == 401


def test_tokens_never_reach_the_logs(
    secured: TestClient, private_key: ec.EllipticCurvePrivateKey, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    good = token(private_key, f"{BASE}/cds-services")
    bad = token(private_key, f"{BASE}/elsewhere")
    secured.get("/cds-services", headers=bearer(good))
    secured.get("/cds-services", headers=bearer(bad))
    body = load_example("long-stay/patient-view-no-prefetch.json")
    body["fhirAuthorization"] = {
        "access_token": "SECRET-ACCESS-TOKEN",
        "token_type": "Bearer",
        "expires_in": 30,
        "scope": "patient/*.read",
        "subject": "fhir-safety",
    }
    body["fhirServer"] = "http://127.0.0.1:9/fhir"  # nothing listens: the fetch fails fast
    secured.post(
        "/cds-services/long-stay",
        json=body,
        headers=bearer(token(private_key, f"{BASE}/cds-services/long-stay")),
    )
    logged = "\n".join(
        r.getMessage() + json.dumps(getattr(r, "fields", {})) for r in caplog.records
    )
    assert "authentication refused" in logged  # the refusal itself is logged...
    for secret in (good, bad, "SECRET-ACCESS-TOKEN"):
        assert secret not in logged  # ...but never the credentials
    assert "p-1001" not in logged  # nor the patient


def test_two_workers_on_one_database_refuse_each_others_tokens(
    tmp_path: Path, private_key: ec.EllipticCurvePrivateKey, terminology: Terminology
) -> None:
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(private_key.public_key()))
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(json.dumps({"keys": [jwk | {"kid": KID, "alg": "ES384"}]}))
    settings = Settings(
        feedback_database_url=f"sqlite:///{tmp_path / 'shared.sqlite3'}",
        issuers=[TrustedIssuer(iss=ISS, jwks_file=jwks_file)],
        jwt_replay_cache="database",
    )
    once = bearer(token(private_key, f"{BASE}/cds-services"))
    worker_a = create_app(settings, terminology=terminology, clock=lambda: FIXED_NOW)
    worker_b = create_app(settings, terminology=terminology, clock=lambda: FIXED_NOW)
    with TestClient(worker_a) as a, TestClient(worker_b) as b:
        assert a.get("/cds-services", headers=once).status_code == 200
        assert b.get("/cds-services", headers=once).status_code == 401
