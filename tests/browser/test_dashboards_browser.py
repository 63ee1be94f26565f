"""The population dashboards in a real headless Chromium (Debian's ``chromium``, via Playwright).

Two sources, each behind the real app under uvicorn on loopback (the dashboards' demo access):

* ``hapi``: the real HAPI FHIR server (``hapi_base_url``, started once per
  session) with a synthetic population (``synth.generate(hospital=True)``) loaded as
  transaction Bundles. Marked ``integration`` too.
* ``ndjson``: the embedded default, the committed demo population (no server).

Each page loads and shows the numbers the JSON API gives for the same source; the valproate
drill-down and the CSV downloads work; the pages pass keyboard, label, table-header and
contrast checks and hide navigation when printed. Screenshots go to
``test-artifacts/screenshots/dashboards-*.png`` (gitignored).

Needs ``/usr/bin/chromium`` (``apt-get install chromium``) and ``pip install playwright``;
never ``playwright install``: the browser is Debian's.
"""

from __future__ import annotations

import csv
import io
import re
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from fhir_safety.api.app import create_app
from fhir_safety.cli import main as cli_main
from fhir_safety.config import Settings
from fhir_safety.services import registry, synth
from fhir_safety.terminology import Terminology
from tests.browser.chromium import SCREENSHOTS, chromium_context
from tests.conftest import FIXED_NOW, load_example
from tests.integration.conftest import hapi_base_url  # noqa: F401 - the session fixture
from tests.integration.service_harness import serve_in_thread

pytestmark = pytest.mark.browser


DESKTOP = {"width": 1280, "height": 900}
SEED = 41
SOURCES = ["ndjson", pytest.param("hapi", marks=pytest.mark.integration)]


@dataclass(frozen=True)
class Site:
    kind: str
    url: str  # the service's base URL

    def api(self, path: str, **params: str) -> Any:
        """The JSON API's answer for the same source (open: no issuer, loopback)."""
        response = httpx.get(f"{self.url}{path}", params=params, timeout=120)
        response.raise_for_status()
        return response.json()


# -- services -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ndjson_site(
    tmp_path_factory: pytest.TempPathFactory, terminology: Terminology
) -> Iterator[Site]:
    folder = tmp_path_factory.mktemp("dash-ndjson")
    settings = Settings(feedback_database_url=f"sqlite:///{folder / 'fb.sqlite3'}")
    app = create_app(settings, terminology=terminology, clock=lambda: FIXED_NOW)
    with serve_in_thread(app) as url:
        yield Site("ndjson", url)


@pytest.fixture(scope="module")
def loaded_hapi_for_browser(hapi_base_url: str) -> str:  # noqa: F811 - the imported fixture
    """HAPI with terminology, profiles and examples, loaded with ``fhir-safety load``.

    Playwright's sync API keeps an event loop running in this thread, so the CLI (which calls
    ``asyncio.run``) runs in a worker thread; loading twice is idempotent (PUT by id).
    """
    with ThreadPoolExecutor(max_workers=1) as worker:
        assert worker.submit(cli_main, ["load", "--fhir-server", hapi_base_url]).result() == 0
    return hapi_base_url


@pytest.fixture(scope="module")
def hapi_population(
    loaded_hapi_for_browser: str,
    tmp_path_factory: pytest.TempPathFactory,
    terminology: Terminology,
) -> list[synth.SyntheticPatient]:
    """A synthetic population with the hospital, PUT into HAPI as transaction Bundles."""
    loaded_hapi = loaded_hapi_for_browser
    people = synth.generate(
        patients=160, seed=SEED, terminology=terminology, valproate_rate=0.5, hospital=True
    )
    folder = tmp_path_factory.mktemp("dash-bundles")
    with httpx.Client(timeout=300) as http:
        for path in synth.write_bundles(people, folder, patients_per_bundle=40):
            response = http.post(
                loaded_hapi,
                content=path.read_bytes(),
                headers={"Content-Type": "application/fhir+json"},
            )
            assert response.status_code == 200, response.text[:2000]
    return people


@pytest.fixture(scope="module")
def hapi_site(
    loaded_hapi_for_browser: str,
    hapi_population: list[synth.SyntheticPatient],
    tmp_path_factory: pytest.TempPathFactory,
    terminology: Terminology,
) -> Iterator[Site]:
    assert hapi_population  # loaded before the service reads it
    folder = tmp_path_factory.mktemp("dash-hapi")
    settings = Settings(
        feedback_database_url=f"sqlite:///{folder / 'fb.sqlite3'}",
        fhir_server_url=loaded_hapi_for_browser,
        request_deadline_seconds=30,
    )
    app = create_app(settings, terminology=terminology, clock=lambda: FIXED_NOW)
    with serve_in_thread(app) as url:
        yield Site("hapi", url)


@pytest.fixture(params=SOURCES)
def site(request: pytest.FixtureRequest) -> Site:
    fixture = "ndjson_site" if request.param == "ndjson" else "hapi_site"
    found: Site = request.getfixturevalue(fixture)
    return found


# -- the browser ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser_context(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    profile = tmp_path_factory.mktemp("chromium-dashboards")
    with chromium_context(
        profile,
        viewport=DESKTOP,
        locale="en-GB",
        accept_downloads=True,
    ) as context:
        yield context
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def page(browser_context: Any) -> Iterator[Any]:
    tab = browser_context.new_page()
    tab.set_default_timeout(120_000)  # a population read from HAPI takes a few seconds
    try:
        yield tab
    finally:
        tab.close()


def shot(page: Any, site: Site, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"dashboards-{site.kind}-{name}.png"), full_page=True)


def numbers(page: Any) -> list[int]:
    texts = page.locator(".stats .number").all_inner_texts()
    return [int(n) for n in texts if n.isdigit()]  # counts, not the override rate


def open_page(page: Any, site: Site, path: str) -> None:
    response = page.goto(f"{site.url}{path}")
    assert response is not None
    assert response.status == 200, path
    assert page.locator("html").get_attribute("lang") == "en-GB"


# -- accessibility checks run on every page -----------------------------------------------------------

_CONTRAST_JS = """() => {
  const parse = c => (c.match(/[\\d.]+/g) || []).map(Number);
  const background = el => {
    for (; el; el = el.parentElement) {
      const [r, g, b, a = 1] = parse(getComputedStyle(el).backgroundColor);
      if (a > 0) return [r, g, b];
    }
    return [255, 255, 255];
  };
  const out = [];
  const seen = new Set();
  for (const el of document.querySelectorAll('body *')) {
    if (el.closest('svg')) continue;
    const own = [...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
    if (!own || !el.getClientRects().length) continue;
    const style = getComputedStyle(el);
    if (style.visibility === 'hidden' || el.closest('.skip-link')) continue;
    const key = style.color + background(el) + style.fontSize + style.fontWeight;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push({text: el.textContent.trim().slice(0, 40), color: parse(style.color),
              bg: background(el), size: parseFloat(style.fontSize),
              bold: Number(style.fontWeight) >= 700});
  }
  return out;
}"""


def _luminance(rgb: list[float]) -> float:
    channels = []
    for value in rgb[:3]:
        c = value / 255
        channels.append(c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4)
    return 0.2126 * channels[0] + 0.7152 * channels[1] + 0.0722 * channels[2]


def contrast(a: list[float], b: list[float]) -> float:
    light, dark = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def check_accessibility(page: Any) -> None:
    # Text contrast (WCAG 1.4.3): 4.5:1, or 3:1 for large text (24px, or 18.66px bold).
    for item in page.evaluate(_CONTRAST_JS):
        large = item["size"] >= 24 or (item["bold"] and item["size"] >= 18.66)
        ratio = contrast(item["color"], item["bg"])
        assert ratio >= (3 if large else 4.5), item
    # Every column header says what it heads; every form control has a label.
    assert page.locator("thead th:not([scope='col'])").count() == 0
    for control in page.locator("select, input").all():
        control_id = control.get_attribute("id")
        assert control_id
        assert page.locator(f"label[for='{control_id}']").count() == 1
    # Charts are named images whose title and description exist.
    for chart in page.locator("svg.chart").all():
        assert chart.get_attribute("role") == "img"
        for part in (chart.get_attribute("aria-labelledby") or "").split():
            assert page.locator(f"#{part}").count() == 1
    assert page.locator("h1").count() == 1


def check_keyboard_and_print(page: Any, site: Site, name: str) -> None:
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip-link"
    assert page.locator(".skip-link").is_visible()
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    page.keyboard.press("Tab")  # the first link or control inside the page content
    focused = page.evaluate(
        "() => { const e = document.activeElement; return {inMain: !!e.closest('main'),"
        " bg: getComputedStyle(e).backgroundColor, shadow: getComputedStyle(e).boxShadow}; }"
    )
    assert focused["inMain"]
    assert focused["bg"] == "rgb(255, 235, 59)" or "rgb(255, 235, 59)" in focused["shadow"]
    page.emulate_media(media="print")
    assert not page.locator(".site-header nav").is_visible()
    assert (
        not page.locator("form.filters").is_visible() or page.locator("form.filters").count() == 0
    )
    shot(page, site, f"{name}-print")
    page.emulate_media(media="screen")


# -- the pages ------------------------------------------------------------------------------------------


def test_index_links_every_dashboard(page: Any, site: Site) -> None:
    open_page(page, site, "/dashboards")
    links = page.locator("main .cards h2 a").all_inner_texts()
    assert links == ["Valproate registry", "Long stays", "Ward boards", "Alert fatigue"]
    check_accessibility(page)
    shot(page, site, "index")
    check_keyboard_and_print(page, site, "index")


def test_valproate_page_shows_the_registry_api_numbers_and_drills_down(
    page: Any, site: Site, tmp_path: Path
) -> None:
    if site.kind == "hapi":
        api = site.api("/fhir-safety/registry/valproate")  # the registry endpoint itself
    else:
        api = site.api("/dashboards/valproate", format="json")
    open_page(page, site, "/dashboards/valproate")
    assert numbers(page) == [api["counts"][s] for s in registry.ACTION_ORDER]
    assert page.locator("svg#chart-status[role='img']").is_visible()
    check_accessibility(page)
    shot(page, site, "valproate")
    check_keyboard_and_print(page, site, "valproate")

    # Drill down from the most urgent count to its patients.
    status = "Review or refer"
    page.locator(".stats a").first.click()
    page.wait_for_url(re.compile(r"/dashboards/valproate/patients\?status=Review"))
    expected = sorted(p["patient_id"] for p in api["patients"] if p["action_status"] == status)
    assert page.locator("#result-count strong").inner_text() == str(len(expected))
    shown = sorted(page.locator("tbody th[scope='row']").all_inner_texts())
    assert shown == expected
    check_accessibility(page)
    shot(page, site, "valproate-patients")

    # The CSV of the same patients.
    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download these patients as CSV").click()
    saved = tmp_path / "patients.csv"
    download_info.value.save_as(saved)
    rows = list(csv.DictReader(io.StringIO(saved.read_text())))
    assert sorted(r["patient_id"] for r in rows) == expected
    assert {r["action_status"] for r in rows} <= {status}

    # Filter with the form, keyboard only: choose an ARAF bucket and submit.
    page.locator("#araf").focus()
    page.locator("#araf").select_option("none")
    page.locator("#status").select_option("")
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"araf=none"))
    without_date = [p for p in api["patients"] if p["review_due"] is None]
    assert page.locator("#result-count strong").inner_text() == str(len(without_date))


def test_long_stay_page_shows_the_endpoints_numbers(page: Any, site: Site, tmp_path: Path) -> None:
    api = site.api("/fhir-safety/long-stays")
    counts = api["counts"]
    open_page(page, site, "/dashboards/long-stay")
    assert numbers(page) == [
        counts["inpatients"],
        counts["stranded"],
        counts["super_stranded"],
        counts["long_stay_without_expected_discharge"],
        counts["long_stay_expected_discharge_passed"],
    ]
    assert page.locator("svg#chart-los[role='img']").is_visible()
    long = [p for p in api["patients"] if p["band"] in {"stranded", "super-stranded"}]
    assert page.locator(
        "main table tbody .tag.stranded, main table tbody .tag.super-stranded"
    ).count() == len(long)
    check_accessibility(page)
    shot(page, site, "long-stay")
    check_keyboard_and_print(page, site, "long-stay")

    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download this list as CSV").click()
    saved = tmp_path / "long-stays.csv"
    download_info.value.save_as(saved)
    rows = list(csv.DictReader(io.StringIO(saved.read_text())))
    assert sorted(r["patient_id"] for r in rows) == sorted(p["patient_id"] for p in long)


def test_ward_boards_show_the_ward_endpoints_numbers(page: Any, site: Site) -> None:
    wards = site.api("/fhir-safety/wards")["wards"]
    synthetic = [w for w in wards if w["id"].startswith("synth-ward-")]
    assert synthetic
    open_page(page, site, "/dashboards/wards")
    check_accessibility(page)
    shot(page, site, "wards")
    for ward in synthetic:
        page.get_by_role("link", name=ward["name"], exact=True).click()
        page.wait_for_url(re.compile(f"/dashboards/wards/{ward['id']}$"))
        api = site.api(f"/fhir-safety/wards/{ward['id']}")
        counts = api["counts"]
        assert numbers(page) == [
            counts["inpatients"],
            counts["news2_high"],
            counts["news2_medium"],
            counts["news2_incomplete_or_missing"],
            counts["with_concerns"],
            counts["open_escalations"],
            counts["worry_without_open_escalation"],
        ]
        rows = page.locator("main table tbody tr")
        assert rows.count() == len(api["patients"])
        for index, patient in enumerate(api["patients"]):
            assert patient["news2"]["label"] in rows.nth(index).inner_text()
        check_accessibility(page)
        shot(page, site, f"ward-{ward['id']}")
        page.go_back()
    page.goto(f"{site.url}/dashboards/wards/{synthetic[0]['id']}")
    check_keyboard_and_print(page, site, "ward")


def test_alert_fatigue_shows_the_feedback_summary(page: Any, site: Site) -> None:
    # Issue a card and override it, so this service's store has something to show.
    request = load_example("long-stay/patient-view-super-stranded-no-plan.json")
    cards = httpx.post(f"{site.url}/cds-services/long-stay", json=request, timeout=60).json()
    uuid = cards["cards"][0]["uuid"]
    feedback = {
        "feedback": [
            {
                "card": uuid,
                "outcome": "overridden",
                "overrideReason": {
                    "reason": {
                        "system": "http://terminology.hl7.org/CodeSystem/non-adherence-reason-codes",
                        "code": "action-completed",
                        "display": "Recommended action was already completed",
                    }
                },
                "outcomeTimestamp": FIXED_NOW.isoformat(),
            }
        ]
    }
    sent = httpx.post(f"{site.url}/cds-services/long-stay/feedback", json=feedback, timeout=60)
    assert sent.status_code == 200
    summary = site.api("/feedback/summary")["rules"]
    open_page(page, site, "/dashboards/alert-fatigue")
    shown = sum(r["shown"] for r in summary)
    accepted = sum(r["accepted"] for r in summary)
    overridden = sum(r["overridden"] for r in summary)
    assert numbers(page)[:3] == [shown, accepted, overridden]
    assert (
        "Recommended action was already completed"
        in page.locator("#reasons ~ .table-wrap").first.inner_text()
    )
    assert page.locator("svg#chart-fatigue[role='img']").is_visible()
    assert page.locator(".tag.demo").count() == 0
    check_accessibility(page)
    shot(page, site, "alert-fatigue")
    check_keyboard_and_print(page, site, "alert-fatigue")


def test_demo_alert_fatigue_says_it_is_the_demo_sample(
    page: Any, tmp_path_factory: pytest.TempPathFactory, terminology: Terminology
) -> None:
    folder = tmp_path_factory.mktemp("dash-demo")
    settings = Settings(feedback_database_url=f"sqlite:///{folder / 'fb.sqlite3'}")
    app = create_app(settings, terminology=terminology, clock=lambda: FIXED_NOW)
    with serve_in_thread(app) as url:
        demo = Site("demo", url)
        body = demo.api("/dashboards/alert-fatigue", format="json")
        open_page(page, demo, "/dashboards/alert-fatigue")
        assert page.locator(".notice").inner_text().startswith("This service has not recorded")
        assert numbers(page)[0] == sum(r["shown"] for r in body["rules"])
        check_accessibility(page)
        shot(page, demo, "alert-fatigue")
