"""The concern form in a real headless Chromium (Debian's ``chromium``, driven by Playwright).

The app runs under uvicorn with a fake FHIR server behind it (no HAPI needed). At a phone
viewport the test checks the labels and groups, answers with the keyboard only (Tab through,
arrow keys and Space in the radio groups, Enter to send), sees the confirmation, sees the
error summary take focus when answers are missing, and sees the plain page for an invalid and
an expired link. Screenshots go to ``test-artifacts/screenshots/`` (gitignored).

Needs ``/usr/bin/chromium`` (``apt-get install chromium``) and ``pip install playwright``;
never ``playwright install``: the browser is Debian's.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from fhir_safety.api.app import create_app
from fhir_safety.concern_form.api import router as concern_form_router
from fhir_safety.concern_form.links import issue_link
from fhir_safety.config import Settings
from fhir_safety.fhir.resources import now_utc
from fhir_safety.terminology import Terminology
from tests.browser.chromium import SCREENSHOTS, chromium_context
from tests.integration.service_harness import serve_in_thread
from tests.unit.concern_form.fake_server import BASE, SECRET, FakeFhir, encounter, patient

pytestmark = pytest.mark.browser


PHONE = {"width": 375, "height": 812}


@pytest.fixture(scope="module")
def fhir() -> FakeFhir:
    return FakeFhir(patient(), encounter())


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    folder = tmp_path_factory.mktemp("browser")
    return Settings(
        feedback_database_url=f"sqlite:///{folder / 'fb.sqlite3'}",
        fhir_server_url=BASE,
        concern_form_secret=SECRET,
        subscription_secret="sub-secret",
        concern_form={
            "marthas_rule_phone": "0118 496 0000",
            "marthas_rule_text": "the Call 4 Concern line",
            "escalation_wait_seconds": 0,
        },
    )


@pytest.fixture(scope="module")
def service(settings: Settings, fhir: FakeFhir, terminology: Terminology) -> Iterator[str]:
    app = create_app(settings, terminology=terminology, transport=httpx.MockTransport(fhir))
    if not any(getattr(r, "path", None) == "/concern/{code}" for r in app.routes):
        app.include_router(concern_form_router)
    with serve_in_thread(app) as url:
        yield url


@pytest.fixture(scope="module")
def browser_context(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    profile = tmp_path_factory.mktemp("chromium-profile")
    with chromium_context(
        profile,
        viewport=PHONE,
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
        locale="en-GB",
    ) as context:
        yield context
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def page(browser_context: Any) -> Iterator[Any]:
    tab = browser_context.new_page()
    try:
        yield tab
    finally:
        tab.close()


def shot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"concern-form-{name}.png"), full_page=True)


def focused(page: Any) -> dict[str, Any]:
    info: dict[str, Any] = page.evaluate(
        """() => {
            const el = document.activeElement;
            const style = getComputedStyle(el);
            return {tag: el.tagName.toLowerCase(), id: el.id, name: el.name || null,
                    value: el.value || null, text: (el.textContent || '').trim().slice(0, 80),
                    outline: style.outlineStyle + ' ' + style.outlineWidth,
                    shadow: style.boxShadow, background: style.backgroundColor};
        }"""
    )
    return info


def test_form_at_phone_size_keyboard_only_to_confirmation(
    page: Any, service: str, settings: Settings, fhir: FakeFhir
) -> None:
    code = issue_link(settings, "p-1", "7A", now=now_utc()).code
    page.goto(f"{service}/concern/{code}")
    assert page.title() == "How is Martha today? \u2013 Tell us how they are"

    # Labels and groups as a screen reader announces them.
    group = page.get_by_role("group", name="How is Martha today?")
    assert group.get_by_role("radio").count() == 3
    assert page.get_by_role("group", name="Are you worried about Martha?").is_visible()
    assert page.get_by_role("group", name="Who are you?").is_visible()
    for label in ("Better", "About the same", "Worse", "Yes, I am worried", "I am family"):
        assert page.get_by_label(label, exact=True).count() == 1, label
    assert page.get_by_label("Tell us more (optional)").is_visible()
    assert page.get_by_role("link", name="0118 496 0000").get_attribute("href") == "tel:01184960000"

    # Big enough to tap (WCAG 2.2 2.5.8 asks for 24 px; we give at least 44), and no sideways
    # scrolling on a phone.
    for target in (page.locator(".radio-label").first, page.get_by_role("button", name="Send")):
        box = target.bounding_box()
        assert box is not None
        assert box["height"] >= 44
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    shot(page, "01-form-phone")

    # Keyboard only: the skip link comes first and shows itself.
    page.keyboard.press("Tab")
    assert focused(page)["text"] == "Skip to main content"
    assert page.get_by_role("link", name="Skip to main content").is_visible()
    page.keyboard.press("Tab")
    assert focused(page)["text"] == "0118 496 0000"
    page.keyboard.press("Tab")
    first_radio = focused(page)
    assert (first_radio["name"], first_radio["value"]) == ("how_today", "better")
    assert first_radio["outline"] == "solid 4px", "focus is visible"
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    assert page.get_by_label("Worse", exact=True).is_checked()
    page.keyboard.press("Tab")
    assert focused(page)["value"] == "yes"
    assert not page.get_by_label("Yes, I am worried").is_checked()
    page.keyboard.press("Space")
    assert page.get_by_label("Yes, I am worried").is_checked()
    page.keyboard.press("Tab")
    assert focused(page)["id"] == "note"
    page.keyboard.type("She is very sleepy and not making sense")
    page.keyboard.press("Tab")
    assert focused(page)["value"] == "patient"
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Space")
    assert page.get_by_label("I am family").is_checked()
    page.keyboard.press("Tab")
    assert focused(page)["id"] == "name"
    page.keyboard.type("Jane")
    page.keyboard.press("Tab")
    assert focused(page)["id"] == "phone"
    page.keyboard.type("07700 900 982")
    shot(page, "02-form-answered-phone")
    with page.expect_navigation():
        page.keyboard.press("Enter")  # implicit submission from the last field

    assert page.title() == "Thank you \u2013 Tell us how they are"
    heading = page.get_by_role("heading", level=1)
    assert heading.inner_text() == "Thank you. We have your answer"
    assert page.get_by_text(
        "We have asked the critical care outreach team to check on Martha."
    ).is_visible()
    assert page.get_by_text("Still worried, or is Martha getting worse?").is_visible()
    shot(page, "03-sent-phone")
    written = [r for r in fhir.writes if r["resourceType"] == "Observation"]
    assert written[-1]["note"][0]["text"] == "She is very sleepy and not making sense"
    assert len(fhir.of_type("Task")) >= 1


def test_form_missing_answers_error_summary_takes_focus(
    page: Any, service: str, settings: Settings
) -> None:
    code = issue_link(settings, "p-1", "7A", now=now_utc()).code
    page.goto(f"{service}/concern/{code}")
    page.get_by_role("button", name="Send").focus()
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.title().startswith("Error: ")
    summary = page.get_by_role("alert")
    assert "There is a problem" in summary.inner_text()
    assert focused(page)["tag"] == "div", "the error summary has focus"
    page.get_by_role("link", name="Choose how Martha is today").click()
    assert focused(page)["id"] == "how_today-first"
    error = page.locator("#how_today-error")
    assert " ".join((error.text_content() or "").split()) == "Error: Choose how Martha is today"
    described = page.get_by_role("group", name="How is Martha today?")
    assert "how_today-error" in (described.get_attribute("aria-describedby") or "")
    shot(page, "04-errors-phone")


@pytest.mark.parametrize("which", ["invalid", "expired"])
def test_form_unusable_link_shows_a_plain_error(
    page: Any, service: str, settings: Settings, which: str
) -> None:
    if which == "invalid":
        code = "21NH-2BWG-08VM-NOT-A-REAL-CODE"
    else:
        issued_then = now_utc() - timedelta(days=7, minutes=1)
        code = issue_link(settings, "p-1", "7A", now=issued_then).code
    response = page.goto(f"{service}/concern/{code}")
    assert response is not None
    assert response.status == 404
    assert page.get_by_role("heading", level=1).inner_text() == "This link is not working"
    assert page.get_by_text("Ask a nurse on the ward for a new link.").is_visible()
    assert page.get_by_role("link", name="0118 496 0000").is_visible()
    assert "Martha" not in page.content()
    shot(page, f"05-link-{which}-phone")
