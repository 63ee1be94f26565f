"""The dashboards over HTTP (TestClient): access, pages, drill-down, CSV, and the ward endpoint.

Every page is checked to show the numbers its JSON gives (the JSON comes from the same service
functions as the API endpoints), on the committed demo population (the embedded default).
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient
from jwt.algorithms import ECAlgorithm
from pytest_httpx import HTTPXMock

from fhir_safety.api.app import create_app
from fhir_safety.config import Settings, TrustedIssuer
from fhir_safety.services import population as pop
from fhir_safety.services import registry
from fhir_safety.terminology import Terminology
from tests.conftest import FIXED_NOW, load_example
from tests.unit.web.fake_server import BASE, population_server
from tests.unit.web.test_population import resources_in

LOOPBACK = ("127.0.0.1", 50123)
PAGES = (
    "/dashboards",
    "/dashboards/valproate",
    "/dashboards/valproate/patients",
    "/dashboards/long-stay",
    "/dashboards/wards",
    "/dashboards/wards/synth-ward-amu",
    "/dashboards/alert-fatigue",
)
ISS = "https://login.trust.example"
AUDIENCE = "fhir-safety-dashboards"


def make_client(settings: Settings, terminology: Terminology, **kwargs: Any) -> TestClient:
    app = create_app(settings, terminology=terminology, clock=lambda: FIXED_NOW)
    return TestClient(app, **kwargs)


@pytest.fixture
def dashboards(settings: Settings, terminology: Terminology) -> Iterator[TestClient]:
    with make_client(settings, terminology, client=LOOPBACK) as client:
        yield client


def numbers(html: str) -> list[int]:
    """The big numbers of the page's summary boxes, in order."""
    return [int(n) for n in re.findall(r'<span class="number">(\d+)</span>', html)]


# -- access ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", PAGES)
def test_page_from_loopback_is_served_accessible_and_uncached(
    dashboards: TestClient, path: str
) -> None:
    response = dashboards.get(path)
    assert response.status_code == 200, response.text
    html = response.text
    assert '<html lang="en-GB">' in html
    assert '<a class="skip-link" href="#main">' in html
    assert '<main id="main"' in html
    assert "<script" not in html
    assert response.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert 'scope="col"' in html or path == "/dashboards"


@pytest.mark.parametrize("path", [*PAGES, "/dashboards/valproate/patients?format=csv"])
def test_page_from_another_host_in_loopback_mode_is_refused(
    settings: Settings, terminology: Terminology, path: str
) -> None:
    with make_client(settings, terminology, client=("192.0.2.10", 40000)) as client:
        response = client.get(path)
    assert response.status_code == 401
    assert "Synth" not in response.text


def test_stylesheet_is_open_and_cacheable(settings: Settings, terminology: Terminology) -> None:
    with make_client(settings, terminology, client=("192.0.2.10", 40000)) as client:
        response = client.get("/dashboards/static/dashboard.css")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/css")
    assert "@media print" in response.text


@pytest.fixture(scope="module")
def signing_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP384R1())


@pytest.fixture
def bearer_settings(tmp_path: Path, signing_key: ec.EllipticCurvePrivateKey) -> Settings:
    jwk = ECAlgorithm.to_jwk(signing_key.public_key(), as_dict=True)
    jwk.update(kid="k1", alg="ES384", use="sig")
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [jwk]}))
    return Settings(
        feedback_database_url=f"sqlite:///{tmp_path / 'f.sqlite3'}",
        issuers=[TrustedIssuer(iss=ISS, jwks_file=jwks)],
        dashboards={"audience": AUDIENCE},
    )


def token(key: ec.EllipticCurvePrivateKey, *, aud: str = AUDIENCE, minutes: int = 30) -> str:
    now = int(FIXED_NOW.timestamp())
    claims = {
        "iss": ISS,
        "sub": "nurse.jones",
        "aud": aud,
        "iat": now,
        "exp": now + minutes * 60,
        "jti": "session-1",
    }
    return jwt.encode(claims, key, algorithm="ES384", headers={"kid": "k1"})


def test_bearer_session_token_opens_every_page_again_and_again(
    bearer_settings: Settings, terminology: Terminology, signing_key: ec.EllipticCurvePrivateKey
) -> None:
    headers = {"Authorization": f"Bearer {token(signing_key)}"}
    with make_client(bearer_settings, terminology, client=("192.0.2.10", 40000)) as client:
        for path in PAGES:
            assert client.get(path, headers=headers).status_code == 200, path
        assert "signed in as nurse.jones" in client.get("/dashboards", headers=headers).text


@pytest.mark.parametrize(
    "problem", ["no token", "wrong audience", "expired", "CDS endpoint audience"]
)
def test_bearer_mode_refuses_a_missing_or_wrong_token(
    bearer_settings: Settings,
    terminology: Terminology,
    signing_key: ec.EllipticCurvePrivateKey,
    problem: str,
) -> None:
    tokens = {
        "no token": None,
        "wrong audience": token(signing_key, aud="another-app"),
        "expired": token(signing_key, minutes=-10),
        "CDS endpoint audience": token(signing_key, aud="http://testserver/dashboards"),
    }
    value = tokens[problem]
    headers = {"Authorization": f"Bearer {value}"} if value else {}
    with make_client(bearer_settings, terminology, client=LOOPBACK) as client:
        assert client.get("/dashboards/valproate", headers=headers).status_code == 401


def test_bearer_mode_needs_an_audience() -> None:
    with pytest.raises(ValueError, match="audience"):
        Settings(dashboards={"auth": "bearer"})


def test_api_endpoints_need_the_cds_jwt_when_issuers_are_configured(
    bearer_settings: Settings, terminology: Terminology, signing_key: ec.EllipticCurvePrivateKey
) -> None:
    with make_client(bearer_settings, terminology, client=LOOPBACK) as client:
        for path in (
            "/fhir-safety/wards",
            "/fhir-safety/wards/synth-ward-10",
            "/fhir-safety/long-stays",
        ):
            assert client.get(path).status_code == 401
            # A dashboard session token is not a CDS client's token for this endpoint.
            headers = {"Authorization": f"Bearer {token(signing_key)}"}
            assert client.get(path, headers=headers).status_code == 401


# -- pages show the API's numbers ----------------------------------------------------------------------


def test_valproate_page_shows_the_registry_counts(dashboards: TestClient) -> None:
    body = dashboards.get("/dashboards/valproate?format=json").json()
    html = dashboards.get("/dashboards/valproate").text
    assert numbers(html) == [body["counts"][s] for s in registry.ACTION_ORDER]
    assert f"{body['cohort']} patients in the cohort" in html
    for org in body["by_prescriber_organisation"]:
        assert f'<th scope="row">{org["organisation"]}</th>' in html.replace("&#39;", "'")
    assert '<svg class="chart" id="chart-status" role="img"' in html
    assert "Synthetic demo data" in html


@pytest.mark.parametrize("status", registry.ACTION_ORDER)
def test_valproate_drill_down_lists_the_patients_of_a_status(
    dashboards: TestClient, status: str
) -> None:
    body = dashboards.get("/dashboards/valproate?format=json").json()
    expected = sorted(p["patient_id"] for p in body["patients"] if p["action_status"] == status)
    page = dashboards.get("/dashboards/valproate/patients", params={"status": status}).text
    assert f"<strong>{len(expected)}</strong> patient" in page
    shown = sorted(re.findall(r'<th scope="row" class="nowrap">([^<]+)</th>', page))
    assert shown == expected
    response = dashboards.get(
        "/dashboards/valproate/patients", params={"status": status, "format": "csv"}
    )
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert sorted(r["patient_id"] for r in rows) == expected
    assert {r["action_status"] for r in rows} <= {status}


def test_valproate_drill_down_by_organisation_and_review_date(dashboards: TestClient) -> None:
    body = dashboards.get("/dashboards/valproate?format=json").json()
    first = body["by_prescriber_organisation"][0]
    rows = dashboards.get(
        "/dashboards/valproate/patients",
        params={"organisation": first["organisation"], "format": "json"},
    ).json()["patients"]
    assert len(rows) == first["total"]
    overdue = dashboards.get(
        "/dashboards/valproate/patients", params={"araf": "overdue", "format": "json"}
    ).json()["patients"]
    assert len(overdue) == body["araf_due"]["overdue"]


def test_valproate_full_csv_has_the_registry_columns(dashboards: TestClient) -> None:
    text = dashboards.get("/dashboards/valproate/patients?format=csv").text
    header, *rows = text.splitlines()
    assert header == ",".join([*registry.CSV_COLUMNS, "prescriber_organisation"])
    cohort = dashboards.get("/dashboards/valproate?format=json").json()["cohort"]
    assert len(rows) == cohort


@pytest.mark.parametrize(
    "query", ["status=Sometimes", "araf=yesterday", "organisation=Nowhere+Surgery", "format=xml"]
)
def test_valproate_unknown_filter_is_a_bad_request(dashboards: TestClient, query: str) -> None:
    assert dashboards.get(f"/dashboards/valproate/patients?{query}").status_code == 400


def test_long_stay_page_shows_the_endpoints_numbers(dashboards: TestClient) -> None:
    api = dashboards.get("/fhir-safety/long-stays").json()
    page_json = dashboards.get("/dashboards/long-stay?show=all&format=json").json()
    assert page_json == api
    counts = api["counts"]
    html = dashboards.get("/dashboards/long-stay").text
    assert numbers(html)[:5] == [
        counts["inpatients"],
        counts["stranded"],
        counts["super_stranded"],
        counts["long_stay_without_expected_discharge"],
        counts["long_stay_expected_discharge_passed"],
    ]
    long = [p for p in api["patients"] if p["band"] in {"stranded", "super-stranded"}]
    assert html.count('<span class="tag stranded">') + html.count(
        '<span class="tag super-stranded">'
    ) == len(long)
    assert '<svg class="chart" id="chart-los" role="img"' in html


def test_long_stay_ward_filter_and_csv(dashboards: TestClient) -> None:
    api = dashboards.get("/fhir-safety/long-stays", params={"ward": "synth-ward-12"}).json()
    assert api["patients"]
    assert {p["ward_id"] for p in api["patients"]} == {"synth-ward-12"}
    text = dashboards.get("/fhir-safety/long-stays?ward=synth-ward-12&format=csv").text
    assert len(text.splitlines()) == len(api["patients"]) + 1
    page = dashboards.get("/dashboards/long-stay?ward=synth-ward-12&show=all&format=csv").text
    assert page == text


def test_wards_page_and_endpoint_agree(dashboards: TestClient) -> None:
    api = dashboards.get("/fhir-safety/wards").json()
    assert api["wards"]
    html = dashboards.get("/dashboards/wards").text
    for ward in api["wards"]:
        assert f'/dashboards/wards/{ward["id"]}">{ward["name"]}</a>' in html.replace("&#39;", "'")
    assert dashboards.get("/dashboards/wards?format=json").json() == api


@pytest.mark.parametrize(
    "ward_id", ["synth-ward-amu", "synth-ward-10", "synth-ward-12", "synth-ward-21"]
)
def test_ward_board_shows_the_ward_endpoints_numbers(dashboards: TestClient, ward_id: str) -> None:
    api = dashboards.get(f"/fhir-safety/wards/{ward_id}").json()
    assert dashboards.get(f"/dashboards/wards/{ward_id}?format=json").json() == api
    html = dashboards.get(f"/dashboards/wards/{ward_id}").text
    counts = api["counts"]
    assert numbers(html) == [
        counts["inpatients"],
        counts["news2_high"],
        counts["news2_medium"],
        counts["news2_incomplete_or_missing"],
        counts["with_concerns"],
        counts["open_escalations"],
        counts["worry_without_open_escalation"],
    ]
    for patient in api["patients"]:
        assert patient["news2"]["label"] in html.replace("&#39;", "'")
        for concern in patient["concerns"]:
            assert concern["text"] in html.replace("&#39;", "'")


def test_ward_endpoint_shape(dashboards: TestClient) -> None:
    body = dashboards.get("/fhir-safety/wards/synth-ward-10").json()
    assert body["ward"] == {"id": "synth-ward-10", "name": "Ward 10 (Respiratory)"}
    assert body["as_of"] == "2026-11-26T09:00:00+00:00"  # the demo export's time
    assert body["concern_window_hours"] == 24
    patient = body["patients"][0]
    assert set(patient) >= {"patient_id", "bed", "news2", "concerns", "open_escalations"}
    assert set(patient["news2"]) >= {"status", "total", "band", "minimum_band", "missing"}


@pytest.mark.parametrize("ward_id", ["bad%20id", "x" * 65, "a$b"])
def test_ward_endpoint_refuses_ids_that_are_not_fhir_ids(
    dashboards: TestClient, ward_id: str
) -> None:
    assert dashboards.get(f"/fhir-safety/wards/{ward_id}").status_code == 400


def test_ward_endpoint_ward_with_nobody_is_empty(dashboards: TestClient) -> None:
    body = dashboards.get("/fhir-safety/wards/ward-closed").json()
    assert body["patients"] == []
    assert body["counts"]["inpatients"] == 0


def test_ward_endpoint_reads_the_configured_fhir_server(
    tmp_path: Path, terminology: Terminology, httpx_mock: HTTPXMock
) -> None:
    httpx_mock.add_callback(population_server(resources_in(pop.DEMO_DIR)), is_reusable=True)
    settings = Settings(
        feedback_database_url=f"sqlite:///{tmp_path / 'f.sqlite3'}", fhir_server_url=BASE
    )
    with make_client(settings, terminology, client=LOOPBACK) as client:
        from_server = client.get("/fhir-safety/wards/synth-ward-10").json()
    with make_client(
        Settings(feedback_database_url=f"sqlite:///{tmp_path / 'g.sqlite3'}"),
        terminology,
        client=LOOPBACK,
    ) as client:
        from_folder = client.get("/fhir-safety/wards/synth-ward-10").json()
    assert from_server["source"] == f"FHIR server {BASE}"
    # The server is read as of the service's clock, which is the demo's export time here.
    assert {k: v for k, v in from_server.items() if k != "source"} == {
        k: v for k, v in from_folder.items() if k != "source"
    }


# -- alert fatigue ---------------------------------------------------------------------------------------


def test_alert_fatigue_shows_the_demo_sample_while_the_store_is_empty(
    dashboards: TestClient,
) -> None:
    assert dashboards.get("/feedback/summary").json() == {"rules": []}
    body = dashboards.get("/dashboards/alert-fatigue?format=json").json()
    assert body["demo"] is True
    html = dashboards.get("/dashboards/alert-fatigue").text
    assert "This service has not recorded any cards yet" in html
    shown = sum(r["shown"] for r in body["rules"])
    accepted = sum(r["accepted"] for r in body["rules"])
    assert numbers(html)[:2] == [shown, accepted]
    assert '<svg class="chart" id="chart-fatigue" role="img"' in html


def test_alert_fatigue_shows_this_services_store_once_it_has_cards(
    dashboards: TestClient,
) -> None:
    response = dashboards.post(
        "/cds-services/long-stay",
        json=load_example("long-stay/patient-view-super-stranded-no-plan.json"),
    )
    [card] = response.json()["cards"]
    feedback = {
        "feedback": [
            {
                "card": card["uuid"],
                "outcome": "overridden",
                "overrideReason": {
                    "reason": {
                        "code": "need-more-info",
                        "system": "http://terminology.hl7.org/CodeSystem/non-adherence-reason-codes",
                        "display": "Could not address recommended action due to need for more information/pending results/pending consult",
                    }
                },
                "outcomeTimestamp": (FIXED_NOW + timedelta(minutes=2)).isoformat(),
            }
        ]
    }
    assert dashboards.post("/cds-services/long-stay/feedback", json=feedback).status_code == 200
    summary = dashboards.get("/feedback/summary").json()["rules"]
    body = dashboards.get("/dashboards/alert-fatigue?format=json").json()
    assert body["demo"] is False
    assert body["rules"] == summary
    assert body["days"][-1] == {
        "day": "2026-11-26",
        "shown": 1,
        "accepted": 0,
        "overridden": 1,
        "noFeedback": 0,
    }
    html = dashboards.get("/dashboards/alert-fatigue?service=long-stay").text
    assert "demo sample" not in html
    assert numbers(html)[:3] == [1, 0, 1]
    assert "Could not address recommended action" in html
    assert dashboards.get("/dashboards/alert-fatigue?service=nope").status_code == 400
