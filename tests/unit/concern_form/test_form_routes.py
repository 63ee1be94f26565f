"""The concern form over HTTP, with the FHIR server faked by pytest-httpx."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from fhir.resources.R4B.observation import Observation as R4BObservation
from pytest_httpx import HTTPXMock

from fhir_safety.api.app import create_app
from fhir_safety.concern_form.links import issue_link
from fhir_safety.config import Settings
from fhir_safety.terminology import Terminology
from tests.conftest import FIXED_NOW
from tests.unit.concern_form.conftest import Clock, form_settings, with_form
from tests.unit.concern_form.fake_server import FakeFhir, encounter, patient

ORIGIN = "http://cds.test"


def token_of(html: str) -> str:
    found = re.search(r'name="token" value="([^"]+)"', html)
    assert found is not None, "no form token on the page"
    return found.group(1)


def answers(**changes: str) -> dict[str, str]:
    return {
        "how_today": "same",
        "worried": "no",
        "who": "family",
        "note": "",
        "name": "",
        "phone": "",
    } | changes


def send(client: TestClient, code: str, token: str | None = None, **changes: str) -> Any:
    if token is None:
        token = token_of(client.get(f"/concern/{code}").text)
    return client.post(f"/concern/{code}", data={"token": token, **answers(**changes)})


def observations(fhir: FakeFhir) -> list[dict[str, Any]]:
    return [r for r in fhir.writes if r["resourceType"] == "Observation"]


class Page(HTMLParser):
    """The parts of a page the accessibility checks need."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.inputs: list[dict[str, str | None]] = []
        self.labels: set[str] = set()
        self.ids: set[str] = set()
        self.legends = 0
        self.fieldsets = 0
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if found.get("id"):
            self.ids.add(str(found["id"]))
        if tag in {"input", "textarea"}:
            self.inputs.append(found)
        elif tag == "label" and found.get("for"):
            self.labels.add(str(found["for"]))
        elif tag == "legend":
            self.legends += 1
        elif tag == "fieldset":
            self.fieldsets += 1


# --- showing the form ------------------------------------------------------------------------------


def test_show_form_greets_by_first_name_only(client: TestClient, code: str) -> None:
    response = client.get(f"/concern/{code}")
    assert response.status_code == 200
    assert "How is Martha today?" in response.text
    # Without the random form token and the code itself (either may hold "7A" by chance).
    shown = response.text.replace(token_of(response.text), "").replace(code, "")
    for never in ("Mills", "Jane", "p-1", "enc-1", "1950", "7A"):
        assert never not in shown, never


def test_show_form_is_accessible_markup(client: TestClient, code: str) -> None:
    html = client.get(f"/concern/{code}").text
    page = Page(html)
    assert 'lang="en-GB"' in html
    assert 'name="viewport"' in html
    visible = [i for i in page.inputs if i.get("type") != "hidden"]
    assert len(visible) == 11  # 3 + 2 + 3 radios, the textarea, name, phone
    assert all(i.get("id") in page.labels for i in visible), "every control has a label"
    assert page.fieldsets == page.legends == 3  # each radio group has its legend
    assert {i.get("autocomplete") for i in visible if i.get("name") in {"name", "phone"}} == {
        "name",
        "tel",
    }
    assert "<script" not in html
    assert 'href="tel:01184960000"' in html  # the Martha's Rule line on every page


def test_show_form_sends_strict_security_headers(client: TestClient, code: str) -> None:
    headers = client.get(f"/concern/{code}").headers
    assert "default-src 'none'" in headers["content-security-policy"]
    assert "form-action 'self'" in headers["content-security-policy"]
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["referrer-policy"] == "same-origin"  # the code is in the URL
    assert headers["cache-control"] == "no-store"
    assert headers["x-frame-options"] == "DENY"


def test_show_form_every_unusable_link_gets_the_same_page(
    client: TestClient, settings: Settings, code: str, fhir: FakeFhir, clock: Clock
) -> None:
    fhir.add(patient("p-gone", active=False))
    fhir.add(encounter("p-gone", "enc-2"))
    codes = {
        "tampered": code[:-2] + ("00" if not code.endswith("00") else "11"),
        "garbage": "NOT-A-CODE",
        "unknown patient": issue_link(settings, "p-404", "7A", now=FIXED_NOW).code,
        "inactive patient": issue_link(settings, "p-gone", "7A", now=FIXED_NOW).code,
        "not admitted": issue_link(settings, "p-home", "7A", now=FIXED_NOW).code,
    }
    fhir.add(patient("p-home"))
    pages = {name: client.get(f"/concern/{c}") for name, c in codes.items()}
    clock.advance(days=7)
    pages["expired"] = client.get(f"/concern/{code}")
    assert {r.status_code for r in pages.values()} == {404}
    assert len({r.text for r in pages.values()}) == 1, "no page says more than another"
    assert "This link is not working" in pages["expired"].text


@pytest.mark.usefixtures("fhir")
def test_show_form_not_set_up_without_secret(tmp_path: Path, terminology: Terminology) -> None:
    settings = form_settings(tmp_path).model_copy(update={"concern_form_secret": None})
    with TestClient(with_form(create_app(settings, terminology=terminology))) as client:
        response = client.get("/concern/21NH2BWG08VM")
    assert response.status_code == 503
    assert "This form is not ready yet" in response.text


@pytest.mark.usefixtures("fhir")
def test_show_form_not_set_up_without_fhir_server(tmp_path: Path, terminology: Terminology) -> None:
    settings = form_settings(tmp_path).model_copy(update={"fhir_server_url": None})
    code = issue_link(settings, "p-1", "7A", now=FIXED_NOW).code
    with TestClient(
        with_form(create_app(settings, terminology=terminology, clock=lambda: FIXED_NOW))
    ) as client:
        assert client.get(f"/concern/{code}").status_code == 503


def test_show_form_fhir_server_down_is_plain_503(
    tmp_path: Path, terminology: Terminology, httpx_mock: HTTPXMock
) -> None:
    httpx_mock.add_response(status_code=502, is_reusable=True)
    settings = form_settings(tmp_path)
    code = issue_link(settings, "p-1", "7A", now=FIXED_NOW).code
    with TestClient(
        with_form(create_app(settings, terminology=terminology, clock=lambda: FIXED_NOW))
    ) as client:
        response = client.get(f"/concern/{code}")
    assert response.status_code == 503
    assert "Sorry, there is a problem" in response.text
    assert "Speak to a nurse" in response.text


# --- sending answers -----------------------------------------------------------------------------


def test_send_not_worried_writes_the_concern_and_thanks(
    client: TestClient, code: str, fhir: FakeFhir
) -> None:
    response = send(client, code, how_today="better", note="Eating again")
    assert response.status_code == 200
    assert "Thank you. We have your answer" in response.text
    assert "can see it" in response.text
    (observation,) = observations(fhir)
    R4BObservation.model_validate(observation)
    assert observation["valueCodeableConcept"]["coding"][0]["code"] == "better"
    assert observation["note"][0]["text"] == "Eating again"
    assert fhir.of_type("Task") == []


def test_send_worried_asks_the_outreach_team_once(
    client: TestClient, code: str, fhir: FakeFhir
) -> None:
    response = send(client, code, how_today="worse", worried="yes", name="Jane")
    assert response.status_code == 200
    assert "We have asked the critical care outreach team to check on Martha" in response.text
    assert "Still worried, or is Martha getting worse?" in response.text
    (task,) = fhir.of_type("Task")
    (observation,) = observations(fhir)
    assert task["reasonReference"]["reference"] == f"Observation/{observation['id']}"
    assert task["requester"]["reference"].startswith("RelatedPerson/concern-person-")


@pytest.mark.parametrize("form_config", [{"escalate_on_submit": False}])
def test_send_worried_with_no_route_to_the_team_says_speak_to_a_nurse(
    client: TestClient, code: str, fhir: FakeFhir
) -> None:
    response = send(client, code, worried="yes")
    assert response.status_code == 200
    assert "Please speak to a nurse now, or call the Call 4 Concern line on" in response.text
    assert "could not ask the critical care outreach team" in response.text
    assert "We have asked" not in response.text
    assert len(observations(fhir)) == 1


def test_send_patient_answer_ignores_name_and_phone(
    client: TestClient, code: str, fhir: FakeFhir
) -> None:
    send(client, code, who="patient", name="Someone", phone="07700 900 982")
    assert [r["resourceType"] for r in fhir.writes] == ["Observation"]


def test_send_same_token_twice_writes_once(client: TestClient, code: str, fhir: FakeFhir) -> None:
    token = token_of(client.get(f"/concern/{code}").text)
    first = send(client, code, token, worried="yes")
    second = send(client, code, token, worried="yes")
    assert "Thank you" in first.text
    assert second.status_code == 200
    assert "We already have your answer" in second.text
    assert len(observations(fhir)) == 1
    assert len(fhir.of_type("Task")) == 1


# --- CSRF ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("token", ["", "forged-token-value", "A" * 50])
def test_send_without_a_good_token_writes_nothing(
    client: TestClient, code: str, fhir: FakeFhir, token: str
) -> None:
    response = send(client, code, token, how_today="worse", note="kept")
    assert response.status_code == 400
    assert "Please press Send again" in response.text
    assert 'value="worse" checked' in response.text  # the answers are kept
    assert ">kept</textarea>" in response.text
    assert token_of(response.text) != token  # with a fresh token
    assert fhir.writes == []


def test_send_token_for_another_patient_writes_nothing(
    client: TestClient, settings: Settings, code: str, fhir: FakeFhir
) -> None:
    fhir.add(patient("p-2"))
    fhir.add(encounter("p-2", "enc-2"))
    other = issue_link(settings, "p-2", "7A", now=FIXED_NOW).code
    token = token_of(client.get(f"/concern/{other}").text)
    assert send(client, code, token).status_code == 400
    assert fhir.writes == []


def test_send_after_the_page_was_open_too_long_asks_again(
    client: TestClient, code: str, fhir: FakeFhir, clock: Clock
) -> None:
    token = token_of(client.get(f"/concern/{code}").text)
    clock.advance(minutes=120)
    assert send(client, code, token).status_code == 200
    token = token_of(client.get(f"/concern/{code}").text)
    clock.advance(minutes=120, seconds=1)
    assert send(client, code, token).status_code == 400
    assert len(observations(fhir)) == 1


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Origin": "https://evil.example"}, 403),
        ({"Origin": "null"}, 403),
        ({"Sec-Fetch-Site": "cross-site"}, 403),
        ({"Sec-Fetch-Site": "same-site"}, 403),
        ({"Origin": ORIGIN, "Sec-Fetch-Site": "same-origin"}, 200),
        ({}, 200),
    ],
)
def test_send_from_another_site_is_refused(
    client: TestClient, code: str, fhir: FakeFhir, headers: dict[str, str], status: int
) -> None:
    token = token_of(client.get(f"/concern/{code}").text)
    response = client.post(f"/concern/{code}", data={"token": token, **answers()}, headers=headers)
    assert response.status_code == status
    assert len(observations(fhir)) == (1 if status == 200 else 0)


# --- checking answers ----------------------------------------------------------------------------


def test_send_missing_answers_shows_errors_tied_to_fields(
    client: TestClient, code: str, fhir: FakeFhir
) -> None:
    response = send(client, code, how_today="", worried="maybe", who="")
    assert response.status_code == 400
    html = response.text
    assert "<title>Error: " in html
    assert 'class="error-summary" role="alert"' in html
    assert '<a href="#how_today-first">Choose how Martha is today</a>' in html
    assert '<a href="#worried-first">' in html
    assert '<a href="#who-first">Choose who you are</a>' in html
    assert 'aria-describedby="how_today-hint how_today-error"' in html
    assert 'aria-describedby="worried-error"' in html
    page = Page(html)
    assert {"how_today-first", "worried-first", "who-first", "how_today-error"} <= page.ids
    assert fhir.writes == []


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"note": "x" * 1001}, "note", "Write 1,000 characters or fewer. You wrote 1,001."),
        ({"phone": "call me"}, "phone", "Enter a phone number, like 07700 900 982"),
        ({"name": "N" * 81}, "name", "Write your name in 80 characters or fewer"),
    ],
)
def test_send_text_too_long_or_wrong_is_tied_to_its_field(
    client: TestClient, code: str, fhir: FakeFhir, changes: dict[str, str], field: str, message: str
) -> None:
    response = send(client, code, **changes)
    assert response.status_code == 400
    assert f'<a href="#{field}">{message}</a>' in response.text
    assert f'aria-describedby="{field}-hint {field}-error" aria-invalid="true"' in response.text
    assert fhir.writes == []


def test_send_control_characters_are_dropped(client: TestClient, code: str, fhir: FakeFhir) -> None:
    send(client, code, note="line one\r\nline\x00 two\x1b")
    (observation,) = observations(fhir)
    assert observation["note"][0]["text"] == "line one\nline two"


def test_send_html_in_answers_is_escaped_when_shown_again(client: TestClient, code: str) -> None:
    response = send(client, code, how_today="", note="<script>alert(1)</script>")
    assert "<script>" not in response.text
    assert "&lt;script&gt;" in response.text


def test_send_body_over_the_cap_is_413(client: TestClient, code: str, fhir: FakeFhir) -> None:
    token = token_of(client.get(f"/concern/{code}").text)
    response = client.post(f"/concern/{code}", data={"token": token, **answers(note="x" * 20_000)})
    assert response.status_code == 413
    assert "Your answer is too long" in response.text
    assert fhir.writes == []


# --- rate limit and failures --------------------------------------------------------------------------


@pytest.mark.parametrize("form_config", [{"submissions_per_hour": 2}])
def test_send_more_than_the_hourly_limit_is_429(
    client: TestClient, code: str, fhir: FakeFhir, clock: Clock
) -> None:
    assert [send(client, code).status_code for _ in range(3)] == [200, 200, 429]
    limited = send(client, code, worried="yes")
    assert limited.status_code == 429
    assert "This link can send 2 answers in an hour" in limited.text
    assert "Speak to a nurse" in limited.text
    clock.advance(hours=1)
    assert send(client, code).status_code == 200
    assert len(observations(fhir)) == 3


def test_send_when_the_server_cannot_write_says_not_sent(
    client: TestClient, code: str, fhir: FakeFhir
) -> None:
    token = token_of(client.get(f"/concern/{code}").text)
    fhir.fail_writes = True
    response = send(client, code, token, worried="yes")
    assert response.status_code == 503
    assert "Your answer has not been sent" in response.text
    fhir.fail_writes = False
    assert send(client, code, token, worried="yes").status_code == 200  # same page, retried


# --- entering a code, the stylesheet -------------------------------------------------------------


def test_enter_code_page_and_redirect(client: TestClient) -> None:
    page = client.get("/concern")
    assert page.status_code == 200
    assert '<label class="label" for="code">Code</label>' in page.text
    moved = client.get("/concern", params={"code": " 21nh-2bwg-08vm "}, follow_redirects=False)
    assert moved.status_code == 303
    assert moved.headers["location"] == "/concern/21NH2BWG08VM"
    wrong = client.get("/concern", params={"code": "<b>bad</b>"})
    assert wrong.status_code == 200
    assert 'aria-invalid="true"' in wrong.text
    assert "<b>bad" not in wrong.text


def test_stylesheet_is_served(client: TestClient) -> None:
    response = client.get("/concern-form/form.css")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/css")
    assert ":focus-visible" in response.text
