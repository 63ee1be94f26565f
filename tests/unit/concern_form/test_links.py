"""Issuing ward links: ``fhir-safety concern-link`` and ``POST /concern-links`` (staff, JWT)."""

from __future__ import annotations

import json
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
from fhir_safety.cli import main as cli_main
from fhir_safety.concern_form.links import issue_link, link_base_url
from fhir_safety.concern_form.signing import LinkSigner
from fhir_safety.config import Settings, TrustedIssuer
from fhir_safety.errors import ConfigurationError, InvalidRequestError
from fhir_safety.terminology import Terminology
from tests.conftest import FIXED_NOW
from tests.unit.concern_form.conftest import with_form
from tests.unit.concern_form.fake_server import BASE, SECRET, FakeFhir, patient

ISS = "https://ehr.example.org"
KID = "ehr-key-1"


def test_issue_link_url_code_and_expiry(settings: Settings) -> None:
    issued = issue_link(settings, "p-1", "7A", now=FIXED_NOW)
    assert issued.url == f"http://127.0.0.1:8000/concern/{issued.code}"
    assert issued.expires_at == FIXED_NOW + timedelta(days=7)
    assert issued.grouped_code.replace("-", "") == issued.code
    link = LinkSigner(SECRET).verify(issued.code, now=FIXED_NOW, max_lifetime=timedelta(days=7))
    assert (link.patient_id, link.ward) == ("p-1", "7A")


@pytest.mark.parametrize(
    ("updates", "base"),
    [
        ({}, "http://127.0.0.1:8000"),
        ({"public_base_url": "https://cds.trust.example"}, "https://cds.trust.example"),
    ],
)
def test_link_base_url_falls_back(settings: Settings, updates: dict[str, Any], base: str) -> None:
    assert link_base_url(settings.model_copy(update=updates)) == base


def test_link_base_url_prefers_the_public_form_url() -> None:
    settings = Settings(
        public_base_url="https://cds.trust.example",
        concern_form={"public_url": "https://concern.trust.example/"},
    )
    assert link_base_url(settings) == "https://concern.trust.example"


@pytest.mark.parametrize("days", [0, 8, -1])
def test_issue_link_days_outside_the_lifetime_is_refused(settings: Settings, days: int) -> None:
    with pytest.raises(InvalidRequestError, match="1 to 7 days"):
        issue_link(settings, "p-1", "7A", now=FIXED_NOW, days=days)


def test_issue_link_without_secret_is_a_configuration_error(settings: Settings) -> None:
    with pytest.raises(ConfigurationError, match="FHIR_SAFETY_CONCERN_FORM_SECRET"):
        issue_link(
            settings.model_copy(update={"concern_form_secret": None}), "p-1", "7A", now=FIXED_NOW
        )


def test_settings_refuse_a_short_secret() -> None:
    with pytest.raises(ValueError, match="at least 32"):
        Settings(concern_form_secret="short")


# --- the command line ----------------------------------------------------------------------------


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FHIR_SAFETY_CONCERN_FORM_SECRET", SECRET)
    monkeypatch.setenv("FHIR_SAFETY_FEEDBACK_DATABASE_URL", f"sqlite:///{tmp_path / 'fb.sqlite3'}")
    monkeypatch.delenv("FHIR_SAFETY_FHIR_SERVER_URL", raising=False)


@pytest.mark.usefixtures("env")
def test_cli_concern_link_prints_link_code_and_expiry(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["concern-link", "--patient", "p-1", "--ward", "7A"]) == 0
    out, err = capsys.readouterr()
    assert "Concern form link for Patient/p-1, ward 7A" in out
    assert "/concern/" in out
    assert "Works until" in out
    assert "marthas_rule_phone is not set" in err
    assert "the patient was not checked" in err


@pytest.mark.usefixtures("env", "fhir")
def test_cli_concern_link_checks_the_patient_on_the_server(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = ["concern-link", "--patient", "p-1", "--ward", "7A", "--fhir-server", BASE, "--json"]
    assert cli_main(args) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["firstName"] == "Martha"
    assert printed["encounter"] == "enc-1"
    assert printed["expires"].endswith("+00:00")
    code = printed["code"]
    assert LinkSigner(SECRET).verify(code, now=FIXED_NOW, max_lifetime=timedelta(days=28))


@pytest.mark.usefixtures("env")
def test_cli_concern_link_patient_not_admitted_is_exit_2(
    capsys: pytest.CaptureFixture[str], fhir: FakeFhir
) -> None:
    fhir.add(patient("p-home"))
    args = ["concern-link", "--patient", "p-home", "--ward", "7A", "--fhir-server", BASE]
    assert cli_main(args) == 2
    assert "no encounter in progress" in " ".join(capsys.readouterr().err.split())


def test_cli_concern_link_without_secret_is_exit_4(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("FHIR_SAFETY_CONCERN_FORM_SECRET", raising=False)
    assert cli_main(["concern-link", "--patient", "p-1", "--ward", "7A"]) == 4
    assert "no secret" in capsys.readouterr().err


@pytest.mark.usefixtures("env")
def test_cli_concern_link_bad_ward_is_exit_2() -> None:
    assert cli_main(["concern-link", "--patient", "p-1", "--ward", "!!"]) == 2


# --- the staff endpoint ----------------------------------------------------------------------------


def test_staff_endpoint_is_never_open(client: TestClient) -> None:
    response = client.post("/concern-links", json={"patient": "p-1", "ward": "7A"})
    assert response.status_code == 401


@pytest.fixture
def private_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP384R1())


@pytest.fixture
def secured(
    tmp_path: Path,
    settings: Settings,
    terminology: Terminology,
    private_key: ec.EllipticCurvePrivateKey,
    fhir: FakeFhir,  # noqa: ARG001 - in place before the app starts
) -> Iterator[TestClient]:
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(private_key.public_key()))
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(json.dumps({"keys": [jwk | {"kid": KID, "alg": "ES384", "use": "sig"}]}))
    secured_settings = settings.model_copy(
        update={"issuers": [TrustedIssuer(iss=ISS, jwks_file=jwks_file)]}
    )
    app = with_form(create_app(secured_settings, terminology=terminology, clock=lambda: FIXED_NOW))
    with TestClient(app, base_url="http://cds.test") as client:
        yield client


def bearer(key: ec.EllipticCurvePrivateKey) -> dict[str, str]:
    claims = {
        "iss": ISS,
        "aud": "http://cds.test/concern-links",
        "iat": int(FIXED_NOW.timestamp()),
        "exp": int((FIXED_NOW + timedelta(minutes=5)).timestamp()),
        "jti": str(uuid.uuid4()),
    }
    value = jwt.encode(claims, key, algorithm="ES384", headers={"kid": KID, "typ": "JWT"})
    return {"Authorization": f"Bearer {value}"}


def test_staff_endpoint_with_jwt_issues_a_link(
    secured: TestClient, private_key: ec.EllipticCurvePrivateKey
) -> None:
    response = secured.post(
        "/concern-links",
        json={"patient": "p-1", "ward": "7A", "days": 3},
        headers=bearer(private_key),
    )
    assert response.status_code == 201
    body = response.json()
    assert body["firstName"] == "Martha"
    assert body["expires"] == (FIXED_NOW + timedelta(days=3)).isoformat()
    assert secured.get(body["url"].removeprefix("http://127.0.0.1:8000")).status_code == 200


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"patient": "p-404", "ward": "7A"}, 400),
        ({"patient": "p-1", "ward": "7A", "days": 30}, 400),
        ({"patient": "p 1", "ward": "7A"}, 400),
        ({"patient": "p-1"}, 400),
        ({"patient": "p-1", "ward": "7A", "extra": 1}, 400),
    ],
)
def test_staff_endpoint_refuses_what_cannot_be_a_link(
    secured: TestClient, private_key: ec.EllipticCurvePrivateKey, body: dict[str, Any], status: int
) -> None:
    response = secured.post("/concern-links", json=body, headers=bearer(private_key))
    assert response.status_code == status
    assert response.json()["resourceType"] == "OperationOutcome"
