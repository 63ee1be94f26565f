"""``/dashboards``: the population pages, their CSV and JSON, and who may see them.

Every page takes ``format=html`` (default), ``json`` (the page's numbers, from the same service
functions as the JSON endpoints) and, for lists, ``csv``. Pages are not in the OpenAPI document:
they are for people; ``/fhir-safety/wards`` and ``/fhir-safety/long-stays`` are the API.

Access (``Settings.dashboards.auth``, docs/dashboards.md):

* ``loopback``: only requests from this machine (127.0.0.1 / ::1). Behind uvicorn's default
  proxy-header handling, a reverse proxy on this host that sends ``X-Forwarded-For`` shows the
  real client, which is then refused.
* ``bearer``: ``Authorization: Bearer <JWT>`` checked by the service's JWT verifier against the
  configured issuers (signature from the issuer's JWKS, ``iss``, ``exp``/``iat``, lifetime,
  ``tenant``), with ``aud`` = ``dashboards.audience``. A browser gets the header from an OIDC
  reverse proxy that logs the user in and forwards their token; the same token comes with every
  page, so CDS Hooks' single-use ``jti`` rule is not applied to it.
* ``auto`` (default): bearer when issuers are configured, else loopback.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from fhir_safety.api.app_state import AppState
from fhir_safety.api.deps import StateDep
from fhir_safety.errors import AuthenticationError, InvalidRequestError
from fhir_safety.rules.common import local_date
from fhir_safety.services import population as pop
from fhir_safety.services.auth import JwtVerifier
from fhir_safety.services.feedback_store import FeedbackStore
from fhir_safety.services.registry import ACTION_ORDER
from fhir_safety.web import charts
from fhir_safety.web.render import STATIC_DIR, render_page
from fhir_safety.web.views import AlertFatigue, override_rate, reason_display

__all__ = ["Viewer", "dashboard_viewer", "router"]

log = logging.getLogger(__name__)

router = APIRouter(prefix="/dashboards", tags=["Dashboards"], include_in_schema=False)

Format = Literal["html", "json", "csv"]
PageFormat = Literal["html", "json"]

# Patient-identifiable pages: never cached, never framed, no scripts, no third parties.
_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
}
_STATUS_TONES = {
    "Review or refer": "red",
    "Consider expiry of ARAF": "amber",
    "Keep under review": "blue",
    "No action required": "green",
}
_ARAF_TONES = {
    "overdue": "red",
    "due-soon": "amber",
    "due-90": "blue",
    "later": "green",
    "none": "grey",
}
_BAND_TONES = {"short": "green", "stranded": "amber", "super-stranded": "red"}


# -- access ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who is looking: how they were let in, and the token's subject when there is one."""

    mode: Literal["loopback", "bearer"]
    subject: str | None = None


class _ReusableTokens:
    """A replay cache that accepts every token: a browser session sends the same one each time."""

    async def check_and_remember(
        self,
        iss: str,  # noqa: ARG002 - the ReplayCache protocol
        jti: str,  # noqa: ARG002
        expires_at: datetime,  # noqa: ARG002
    ) -> bool:
        return True


def access_mode(state: AppState) -> Literal["loopback", "bearer"]:
    mode = state.settings.dashboards.auth
    if mode == "auto":
        return "bearer" if state.settings.issuers else "loopback"
    return mode


def _verifier(request: Request, state: AppState) -> JwtVerifier:
    verifier: JwtVerifier | None = getattr(request.app.state, "dashboard_verifier", None)
    if verifier is None:
        settings = state.settings
        verifier = JwtVerifier(
            settings.issuers,
            state.http,
            _ReusableTokens(),
            clock=state.clock,
            clock_skew_seconds=settings.jwt_clock_skew_seconds,
            max_lifetime_seconds=settings.jwt_max_lifetime_seconds,
            jwks_min_refresh_seconds=settings.jwks_min_refresh_seconds,
        )
        request.app.state.dashboard_verifier = verifier
    return verifier


async def dashboard_viewer(request: Request, state: StateDep) -> Viewer:
    """Let in a loopback browser (demo) or a bearer token for ``dashboards.audience``."""
    if access_mode(state) == "loopback":
        host = request.client.host if request.client else ""
        if not _is_loopback(host):
            raise AuthenticationError(f"dashboards open to loopback only; request from {host!r}")
        return Viewer("loopback")
    audience = state.settings.dashboards.audience
    if not audience:
        log.error("dashboards need FHIR_SAFETY_DASHBOARDS__AUDIENCE when issuers are configured")
        raise AuthenticationError("dashboards.audience is not configured")
    client = await _verifier(request, state).verify(request.headers.get("authorization"), audience)
    return Viewer("bearer", client.sub or client.iss)


ViewerDep = Annotated[Viewer, Depends(dashboard_viewer)]


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


# -- helpers ---------------------------------------------------------------------------------------


async def _population(state: AppState) -> pop.Population:
    return await pop.open_population(
        state.settings, state.terminology, http=state.http, now=state.clock()
    )


def _is_demo(population: pop.Population) -> bool:
    return (
        population.source.kind == "ndjson"
        and Path(population.source.location).resolve() == pop.DEMO_DIR.resolve()
    )


def _base(request: Request) -> str:
    return f"{request.scope.get('root_path', '')}/dashboards"


def _html(
    request: Request,
    state: AppState,
    template: str,
    *,
    section: str,
    title: str,
    population: pop.Population | None = None,
    **context: Any,
) -> HTMLResponse:
    common: dict[str, Any] = {
        "base": _base(request),
        "section": section,
        "title": title,
        "zone": state.settings.timezone,
    }
    if population is not None:
        common |= {
            "source": population.source.describe(),
            "as_of": population.as_of,
            "export": population.is_export,
            "demo": _is_demo(population),
        }
    return HTMLResponse(render_page(template, **common, **context), headers=_HEADERS)


def _json(body: dict[str, Any]) -> JSONResponse:
    return JSONResponse(body, headers=_HEADERS)


def _csv(text: str, filename: str) -> Response:
    headers = _HEADERS | {"Content-Disposition": f'attachment; filename="{filename}"'}
    return Response(text, media_type="text/csv; charset=utf-8", headers=headers)


def _choice(value: str | None, allowed: list[str] | tuple[str, ...], name: str) -> str | None:
    """A filter from a form: blank means "any"; anything else must be one of ``allowed``."""
    if value is None or value == "":
        return None
    if value not in allowed:
        raise InvalidRequestError(f"{name} must be one of {', '.join(allowed)}", location=name)
    return value


def _query(**values: str | None) -> str:
    return urlencode({k: v for k, v in values.items() if v})


@lru_cache(maxsize=1)
def _stylesheet() -> bytes:
    return (STATIC_DIR / "dashboard.css").read_bytes()


# -- pages -----------------------------------------------------------------------------------------


@router.get("/static/dashboard.css")
async def read_stylesheet() -> Response:
    """The stylesheet (no personal data: open to every caller, cached for an hour)."""
    return Response(
        _stylesheet(),
        media_type="text/css; charset=utf-8",
        headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"},
    )


@router.get("", response_class=HTMLResponse)
async def read_index(request: Request, state: StateDep, viewer: ViewerDep) -> HTMLResponse:
    """The four dashboards."""
    population = await _population(state)
    access = (
        "this machine only (loopback; demo mode)"
        if viewer.mode == "loopback"
        else f"signed in as {viewer.subject}"
    )
    return _html(
        request,
        state,
        "index.html",
        section="home",
        title="Population dashboards",
        population=population,
        access=access,
    )


@router.get("/valproate", response_model=None)
async def read_valproate(
    request: Request, state: StateDep, _: ViewerDep, format: PageFormat = "html"
) -> Response:
    """Valproate registry: counts by action status, ARAF review dates, prescriber organisations."""
    population = await _population(state)
    dash = await population.valproate()
    if format == "json":
        return _json(dash.as_json())
    status_chart = charts.bar_chart(
        chart_id="chart-status",
        title="Patients by action status",
        bars=[charts.Bar(s, dash.registry.counts()[s], _STATUS_TONES[s]) for s in ACTION_ORDER],
    )
    araf = dash.by_araf()
    araf_chart = charts.bar_chart(
        chart_id="chart-araf",
        title="Patients by ARAF review date",
        bars=[charts.Bar(dash.araf_label(k), araf[k], _ARAF_TONES[k]) for k, _ in pop.ARAF_BUCKETS],
    )
    return _html(
        request,
        state,
        "valproate.html",
        section="valproate",
        title="Valproate registry",
        population=population,
        dash=dash,
        statuses=ACTION_ORDER,
        araf_buckets=pop.ARAF_BUCKETS,
        status_chart=status_chart,
        araf_chart=araf_chart,
        max_age=state.settings.valproate.ppp_max_age,
        validity_months=state.settings.valproate.araf_validity_months,
    )


@router.get("/valproate/patients", response_model=None)
async def read_valproate_patients(
    request: Request,
    state: StateDep,
    _: ViewerDep,
    status: str | None = None,
    organisation: str | None = None,
    araf: str | None = None,
    format: Format = "html",
) -> Response:
    """Drill-down: the registry's patients, filtered by status, review date and organisation."""
    population = await _population(state)
    dash = await population.valproate()
    chosen_status = _choice(status, ACTION_ORDER, "status")
    chosen_araf = _choice(araf, [k for k, _ in pop.ARAF_BUCKETS], "araf")
    chosen_org = _choice(organisation, [o for o, _, _ in dash.by_organisation()], "organisation")
    rows = dash.select(status=chosen_status, organisation=chosen_org, araf=chosen_araf)
    if format == "csv":
        return _csv(dash.csv(rows), "valproate-registry.csv")
    if format == "json":
        body = dash.as_json()
        wanted = {r.patient_id for r in rows}
        body["patients"] = [p for p in body["patients"] if p["patient_id"] in wanted]
        body["filters"] = {"status": chosen_status, "organisation": chosen_org, "araf": chosen_araf}
        return _json(body)
    described = [
        text
        for text in (
            chosen_status,
            dash.araf_label(chosen_araf) if chosen_araf else None,
            f"prescribed by {chosen_org}" if chosen_org else None,
        )
        if text
    ]
    return _html(
        request,
        state,
        "valproate_patients.html",
        section="valproate",
        title="Valproate registry: patients",
        population=population,
        dash=dash,
        rows=rows,
        statuses=ACTION_ORDER,
        araf_buckets=pop.ARAF_BUCKETS,
        selected={"status": chosen_status, "araf": chosen_araf, "organisation": chosen_org},
        filters_text="; ".join(described),
        query=_query(status=chosen_status, araf=chosen_araf, organisation=chosen_org),
    )


@router.get("/long-stay", response_model=None)
async def read_long_stays(
    request: Request,
    state: StateDep,
    _: ViewerDep,
    ward: str | None = None,
    show: Literal["long", "all"] = "long",
    format: Format = "html",
) -> Response:
    """Inpatients by ward with length of stay, band and expected discharge date."""
    population = await _population(state)
    stays = await population.long_stays()
    wards = [ward for ward, _ in stays.wards()]
    chosen_ward = _choice(ward, [w.id for w in wards], "ward")
    shown = stays.select(ward=chosen_ward, band="stranded-or-longer" if show == "long" else None)
    if format == "csv":
        return _csv(shown.csv(), "long-stays.csv")
    if format == "json":
        return _json(shown.as_json())
    chart = charts.column_chart(
        chart_id="chart-los",
        title="Inpatients by completed days in hospital",
        columns=[charts.Bar(label, n, _BAND_TONES[band]) for label, n, band in stays.histogram()],
        x_label="Completed days in hospital",
        y_label="Inpatients",
        legend=[
            ("short", "green"),
            (f"stranded ({stays.stranded_days}+)", "amber"),
            (f"super-stranded ({stays.super_stranded_days}+)", "red"),
        ],
    )
    return _html(
        request,
        state,
        "long_stay.html",
        section="long-stay",
        title="Long stays",
        population=population,
        stays=stays,
        shown=shown,
        chart=chart,
        all_wards=wards,
        selected={"ward": chosen_ward, "show": show},
        query=_query(ward=chosen_ward, show=show),
    )


@router.get("/wards", response_model=None)
async def read_wards(
    request: Request, state: StateDep, _: ViewerDep, format: PageFormat = "html"
) -> Response:
    """Wards with inpatients now."""
    population = await _population(state)
    wards = await population.wards()
    if format == "json":
        return _json(
            {
                "as_of": population.as_of.isoformat(),
                "source": population.source.describe(),
                "wards": [w.as_dict() for w in wards],
            }
        )
    settings = state.settings
    return _html(
        request,
        state,
        "wards.html",
        section="wards",
        title="Ward boards",
        population=population,
        wards=wards,
        window=settings.news2.concern_window_hours,
        stranded_days=settings.long_stay.stranded_days,
        super_stranded_days=settings.long_stay.super_stranded_days,
    )


@router.get("/wards/{ward_id}", response_model=None)
async def read_ward(
    request: Request,
    state: StateDep,
    _: ViewerDep,
    ward_id: str,
    format: PageFormat = "html",
) -> Response:
    """A ward board: NEWS2, concerns in the last 24 hours, open escalations."""
    population = await _population(state)
    board = await population.ward_board(ward_id)
    if format == "json":
        return _json(board.as_json())
    return _html(
        request,
        state,
        "ward.html",
        section="wards",
        title=f"{board.ward.name}: ward board",
        population=population,
        board=board,
    )


@router.get("/alert-fatigue", response_model=None)
async def read_alert_fatigue(
    request: Request,
    state: StateDep,
    _: ViewerDep,
    service: str | None = None,
    days: Annotated[int, Query(ge=1, le=366)] = 28,
    format: PageFormat = "html",
) -> Response:
    """Cards shown, accepted and overridden per service and rule, reasons, and over time."""
    fatigue = await _alert_fatigue(state, service, days)
    if format == "json":
        return _json(fatigue.as_json())
    series = fatigue.days()
    chart = charts.stacked_chart(
        chart_id="chart-fatigue",
        title="Cards per day by latest outcome",
        columns=[
            charts.StackedColumn(
                d.day.strftime("%d %b"),
                (
                    charts.Segment("accepted", d.accepted, "green"),
                    charts.Segment("overridden", d.overridden, "red", "hatch"),
                    charts.Segment("no feedback", d.no_feedback, "grey"),
                ),
            )
            for d in series
        ],
        x_label="Day the card was shown",
        y_label="Cards",
        legend=[("accepted", "green"), ("overridden", "red:hatch"), ("no feedback", "grey")],
        label_every=max(1, -(-len(series) // 7)),  # about seven labels, never crowded
    )
    return _html(
        request,
        state,
        "alert_fatigue.html",
        section="alert-fatigue",
        title="Alert fatigue",
        fatigue=fatigue,
        chart=chart,
        days=days,
        rate=override_rate,
        reason_display=reason_display,
        query=_query(service=fatigue.service, days=str(days)),
    )


async def _alert_fatigue(state: AppState, service: str | None, days: int) -> AlertFatigue:
    """This service's feedback store; the demo sample while the store is empty and the demo
    population is the source (said on the page)."""
    store: FeedbackStore = state.store
    summary = await run_in_threadpool(store.summary, None)
    source = "this service's feedback store (as GET /feedback/summary)"
    demo = False
    today = local_date(state.clock(), _zone(state))
    if not summary:
        population = await _population(state)
        demo_store = (
            await run_in_threadpool(
                pop.demo_feedback_store,
                Path(population.source.location),
                timezone=state.settings.timezone,
            )
            if _is_demo(population)
            else None
        )
        if demo_store is not None:
            store, demo = demo_store, True
            summary = await run_in_threadpool(store.summary, None)
            source = f"demo sample {pop.DEMO_FEEDBACK_FILE} of the demo population"
            today = local_date(population.as_of, _zone(state))
    chosen = _choice(service, sorted({r.service_id for r in summary}), "service")
    daily = await run_in_threadpool(store.daily, today - timedelta(days=days - 1))
    return AlertFatigue.build(
        summary=summary,
        daily=daily,
        today=today,
        days=days,
        service=chosen,
        source=source,
        demo=demo,
    )


def _zone(state: AppState) -> ZoneInfo:
    return ZoneInfo(state.settings.timezone)
